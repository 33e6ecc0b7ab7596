"""Handle syntax (RFC 3650 §3): ``prefix/suffix``, UTF-8, and how names compare.

* The **prefix** (naming authority) is ASCII: dot-separated segments of letters, digits, ``-``
  and ``_`` (``88.118.8``, ``0.NA``). It compares case-insensitively (RFC 3650 §3: "ASCII
  characters are case-insensitive" in naming authorities), so its canonical form is upper case.
* The **suffix** (local name) is any non-empty UTF-8 string without control characters; it may
  contain ``/``. It is case-sensitive unless the node folds case (``fold_case``), in which case
  ASCII letters compare case-insensitively, like Handle.Net's ``case_sensitive = no``.
* A handle is at most :data:`MAX_HANDLE_BYTES` bytes of UTF-8 (a bound of this node: Handle
  itself only limits it to 2**31, and an identifier printed as a QR code on a part is short).

``0.NA/<prefix>`` handles (the *prefix handles*, RFC 3651 §3.1) hold the HS_ADMIN, HS_SITE and
HS_SERV values of a prefix: who administers it and which service is responsible for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from factory5g.ids.errors import InvalidHandle

__all__ = [
    "MAX_HANDLE_BYTES",
    "NA_PREFIX",
    "Handle",
    "canonical_prefix",
    "fold_ascii",
    "handle_from_path",
    "parse_handle",
    "parse_prefix",
    "prefix_handle",
    "prefix_parents",
]

MAX_HANDLE_BYTES = 1024
NA_PREFIX = "0.NA"
_PREFIX_RE = re.compile(r"[0-9A-Za-z_-]+(\.[0-9A-Za-z_-]+)*\Z")
_UPPER = {c: c - 32 for c in range(ord("a"), ord("z") + 1)}
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc, exactly


def fold_ascii(text: str) -> str:
    """Upper-case ASCII letters only (RFC 3650 folds ASCII, never other scripts)."""
    return text.upper() if text.isascii() else text.translate(_UPPER)


def parse_prefix(text: str) -> str:
    """Check a prefix (``88.118.8``) and return it as given; raise InvalidHandle if malformed."""
    if not text:
        raise InvalidHandle(text, "empty prefix")
    if not _PREFIX_RE.match(text):
        raise InvalidHandle(
            text,
            "a prefix is dot-separated segments of ASCII letters, digits, '-' and '_' "
            "(e.g. 88.118.8)",
        )
    return text


def canonical_prefix(prefix: str) -> str:
    return fold_ascii(prefix)


def prefix_handle(prefix: str) -> str:
    """The prefix handle of ``prefix``: ``0.NA/88.118.8``."""
    return f"{NA_PREFIX}/{prefix}"


def prefix_parents(prefix: str) -> list[str]:
    """``88.118.8`` → ``["88.118.8", "88.118", "88"]``: the prefix and its ancestors, longest
    first (RFC 3650 §3.1: derived prefixes are delegated by their parent)."""
    parts = prefix.split(".")
    return [".".join(parts[:n]) for n in range(len(parts), 0, -1)]


@dataclass(frozen=True, slots=True)
class Handle:
    """A syntactically valid handle, as written (``text``) and as compared (``key``)."""

    prefix: str
    suffix: str

    @property
    def text(self) -> str:
        return f"{self.prefix}/{self.suffix}"

    def key(self, fold_case: bool = False) -> str:
        """The name under which the handle is stored and compared."""
        suffix = fold_ascii(self.suffix) if fold_case else self.suffix
        return f"{canonical_prefix(self.prefix)}/{suffix}"

    @property
    def is_prefix_handle(self) -> bool:
        return canonical_prefix(self.prefix) == NA_PREFIX

    def __str__(self) -> str:
        return self.text


def parse_handle(text: str, *, allow_empty_suffix: bool = False) -> Handle:
    """Parse ``prefix/suffix``; raise :class:`InvalidHandle` saying what is wrong.

    ``allow_empty_suffix`` admits ``prefix/`` (a PUT with ``mintNewSuffix=true``).
    """
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidHandle(text, "not valid Unicode (lone surrogate)") from None
    if size > MAX_HANDLE_BYTES:
        raise InvalidHandle(text, f"{size} bytes long; a handle is at most {MAX_HANDLE_BYTES}")
    prefix, slash, suffix = text.partition("/")
    if not slash:
        raise InvalidHandle(text, "no '/' between prefix and suffix")
    parse_prefix(prefix)
    if not suffix and not allow_empty_suffix:
        raise InvalidHandle(text, "empty suffix")
    bad = _CONTROL_RE.search(suffix)
    if bad is not None:
        ch, at = bad.group(), len(prefix) + 1 + bad.start()
        raise InvalidHandle(text, f"control character U+{ord(ch):04X} at {at}")
    return Handle(prefix, suffix)


def handle_from_path(raw: bytes, *, allow_empty_suffix: bool = False) -> Handle:
    """The handle in a raw (still percent-encoded) URL path segment, decoded strictly: invalid
    UTF-8 is an invalid handle, not a replacement character."""
    if len(raw) > 3 * MAX_HANDLE_BYTES:
        raise InvalidHandle(raw[:80].decode("latin-1"), f"longer than {MAX_HANDLE_BYTES} bytes")
    data = unquote_to_bytes(raw) if b"%" in raw else raw
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidHandle(
            data.decode("utf-8", "replace"), f"not valid UTF-8 (byte {exc.start})"
        ) from None
    return parse_handle(text, allow_empty_suffix=allow_empty_suffix)
