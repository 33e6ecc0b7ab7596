"""Find the line of a key path in TOML text, so that errors point at the line to fix.

``tomllib`` gives values but no positions. This scanner walks the text once and records the line of
every table header, key, inline-table key and array element, by key path: ``("equipment", 2,
"signal", 0, "unit")``. It never raises: on text it does not understand it records less, and
callers fall back to the nearest recorded parent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.lines: dict[Path, int] = {}
        self.aot: dict[Path, int] = {}  # array-of-tables path -> index of its last element

    # -- low level --------------------------------------------------------------------------

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.i < len(self.s):
                if self.s[self.i] == "\n":
                    self.line += 1
                self.i += 1

    def skip_ws(self, newlines: bool) -> None:
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.advance()
            elif c == "#":
                while self.i < len(self.s) and self.s[self.i] != "\n":
                    self.i += 1
            else:
                return

    def skip_line(self) -> None:
        while self.i < len(self.s) and self.s[self.i] != "\n":
            self.i += 1

    def read_string(self) -> str:
        q = self.peek()
        triple = self.s.startswith(q * 3, self.i)
        end = q * 3 if triple else q
        self.advance(3 if triple else 1)
        out: list[str] = []
        while self.i < len(self.s):
            if self.s.startswith(end, self.i):
                self.advance(len(end))
                return "".join(out)
            c = self.s[self.i]
            if c == "\\" and q == '"':
                out.append(self.s[self.i : self.i + 2])
                self.advance(2)
                continue
            if c == "\n" and not triple:
                return "".join(out)
            out.append(c)
            self.advance()
        return "".join(out)

    def read_key(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip_ws(newlines=False)
            c = self.peek()
            if c in "\"'":
                parts.append(self.read_string())
            else:
                m = _BARE.match(self.s, self.i)
                if not m:
                    return parts
                parts.append(m.group())
                self.advance(m.end() - m.start())
            self.skip_ws(newlines=False)
            if self.peek() == ".":
                self.advance()
                continue
            return parts

    # -- structure --------------------------------------------------------------------------

    def resolve(self, parts: Sequence[str]) -> list[str | int]:
        """Key parts of a header, with the current index of every array of tables on the way."""
        path: list[str | int] = []
        for p in parts:
            path.append(p)
            idx = self.aot.get(tuple(path))
            if idx is not None:
                path.append(idx)
        return path

    def value(self, path: Path) -> None:
        self.skip_ws(newlines=False)
        c = self.peek()
        if c in "\"'":
            self.read_string()
        elif c == "{":
            self.advance()
            while True:
                self.skip_ws(newlines=True)
                if self.peek() in ("}", ""):
                    self.advance()
                    return
                if self.peek() == ",":
                    self.advance()
                    continue
                line = self.line
                key = self.read_key()
                if not key:
                    self.advance()
                    continue
                sub = (*path, *key)
                self.lines.setdefault(sub, line)
                self.skip_ws(newlines=False)
                if self.peek() == "=":
                    self.advance()
                    self.value(sub)
        elif c == "[":
            self.advance()
            index = 0
            while True:
                self.skip_ws(newlines=True)
                c = self.peek()
                if c in ("]", ""):
                    self.advance()
                    return
                if c == ",":
                    self.advance()
                    index += 1
                    continue
                self.lines.setdefault((*path, index), self.line)
                start = self.i
                self.value((*path, index))
                if self.i == start:  # a stray '}' is not a value: step over it, never loop
                    self.advance()
        else:
            while self.i < len(self.s) and self.s[self.i] not in ",]}\n#":
                self.i += 1

    def run(self) -> dict[Path, int]:
        current: Path = ()
        while self.i < len(self.s):
            self.skip_ws(newlines=True)
            c = self.peek()
            if not c:
                break
            line = self.line
            if c == "[":
                is_aot = self.s.startswith("[[", self.i)
                self.advance(2 if is_aot else 1)
                parts = self.read_key()
                if is_aot and parts:
                    parent = self.resolve(parts[:-1])
                    key = (*parent, parts[-1])
                    self.aot[key] = self.aot.get(key, -1) + 1
                    current = (*key, self.aot[key])
                elif parts:
                    current = tuple(self.resolve(parts))
                self.lines.setdefault(current, line)
                self.skip_line()
                continue
            keys = self.read_key()
            if not keys:
                self.skip_line()
                continue
            path = (*current, *keys)
            self.lines.setdefault(path, line)
            self.skip_ws(newlines=False)
            if self.peek() == "=":
                self.advance()
                self.value(path)
            self.skip_line()
        return self.lines


def key_lines(text: str) -> dict[Path, int]:
    """Line number (1-based) of every key path found in ``text``."""
    try:
        return _Scanner(text).run()
    except RecursionError:  # absurdly nested input: give up on positions, not on checking
        return {}


def line_of(lines: dict[Path, int], path: Sequence[str | int]) -> int | None:
    """Line of ``path``, else of its nearest recorded parent."""
    p = tuple(path)
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return None
