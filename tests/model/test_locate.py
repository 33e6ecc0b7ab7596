"""key_lines: a generator that knows where it put every key checks the scanner line by line."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from factory5g.model import template_text
from factory5g.model.locate import key_lines, line_of

Path = tuple[str | int, ...]

# -- a TOML writer that records the line of every key path it writes ----------------------------


@dataclass
class Writer:
    newline: str = "\n"
    parts: list[str] = field(default_factory=list)
    line: int = 1
    expected: dict[Path, int] = field(default_factory=dict)

    def write(self, s: str) -> None:
        """Write ``s``; a "\\n" in it is the document's newline (LF or CRLF)."""
        self.line += s.count("\n")
        self.parts.append(s.replace("\n", self.newline))

    def mark(self, path: Path) -> None:
        assert path not in self.expected, path
        self.expected[path] = self.line

    def text(self) -> str:
        return "".join(self.parts)


# Characters that a naive scanner would mistake for structure when they sit inside a string.
TRICKY = "#[]{}=,.'\"\\ aZ09é°\t"
tricky_text = st.text(st.sampled_from(TRICKY), max_size=12)
literal_text = st.text(st.sampled_from(TRICKY.replace("'", "")), max_size=12)  # no ' inside '...'


def basic_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'


scalars = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.sampled_from(["1.5", "-0.25", "6.02e23", "inf", "-inf", "nan", "0x1F", "1_000"]),
    st.sampled_from(["true", "false"]),
    st.sampled_from(["1979-05-27T07:32:00Z", "1979-05-27", "07:32:00", "1979-05-27 07:32:00.5"]),
    tricky_text.map(basic_string),
    literal_text.map(lambda s: f"'{s}'"),
)


def multi_line_string(lines: list[str], literal: bool) -> str:
    if literal:
        return "'''\n" + "\n".join(lines) + "'''"
    body = "\n".join(s.replace("\\", "\\\\").replace('"', '\\"') for s in lines)
    return '"""\n' + body + '"""'


multi_line_strings = st.builds(
    multi_line_string,
    st.lists(literal_text, min_size=1, max_size=4),
    st.booleans(),
)

BARE = "abcxyzAZ0189_-"
bare_keys = st.text(st.sampled_from(BARE), min_size=1, max_size=6)
quoted_keys = st.one_of(
    st.text(st.sampled_from("ab #[]{}=.,'é"), min_size=1, max_size=6).map(lambda s: (s, f'"{s}"')),
    st.text(st.sampled_from('ab #[]{}=.,"é'), min_size=1, max_size=6).map(lambda s: (s, f"'{s}'")),
)
# (the key as tomllib reads it, the key as written)
keys = st.one_of(bare_keys.map(lambda k: (k, k)), quoted_keys)


# Value specs: ("raw", text) | ("array", items, multiline, trailing_comma) | ("inline", pairs)
def _inline(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(st.tuples(keys, children), max_size=3, unique_by=lambda kv: kv[0][0]).map(
        lambda pairs: ("inline", pairs)
    )


one_line_values = st.recursive(
    scalars.map(lambda s: ("raw", s)),
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: ("array", items, False, False)),
        _inline(children),
    ),
    max_leaves=4,
)

values = st.one_of(
    one_line_values,
    multi_line_strings.map(lambda s: ("raw", s)),
    # multi-line arrays, of inline tables (the site file's carries = [...]) or of anything
    st.tuples(
        st.lists(
            st.one_of(
                _inline(one_line_values),
                one_line_values,
                multi_line_strings.map(lambda s: ("raw", s)),
            ),
            max_size=4,
        ),
        st.booleans(),
    ).map(lambda t: ("array", t[0], True, t[1])),
)

comments = st.sampled_from(
    ["", "", "  # a comment", " #[[x]] y = {", "# key = 'v' [t] \"", "\t# ] } ,"]
)


def write_value(w: Writer, path: Path, spec: Any, comment: str) -> None:
    kind = spec[0]
    if kind == "raw":
        w.write(spec[1])
    elif kind == "inline":
        w.write("{")
        for i, ((key, written), sub) in enumerate(spec[1]):
            w.write(", " if i else " ")
            w.mark((*path, key))
            w.write(f"{written} = ")
            write_value(w, (*path, key), sub, "")
        w.write(" }" if spec[1] else "}")
    else:
        _, items, multiline, trailing = spec
        w.write("[")
        for i, item in enumerate(items):
            if multiline:
                w.write(f"{comment}\n    ")
            elif i:
                w.write(" ")
            w.mark((*path, i))
            write_value(w, (*path, i), item, "")
            if i < len(items) - 1 or (trailing and multiline):
                w.write(",")
        if multiline:
            w.write(f"{comment}\n")
        w.write("]")


@dataclass
class KeyValue:
    key: tuple[tuple[str, str], ...]  # dotted key parts: (as read, as written)
    value: Any


@st.composite
def key_values(draw: st.DrawFn, reserved: frozenset[str] = frozenset()) -> list[KeyValue]:
    """Key/value lines of one table, with distinct first key parts."""
    firsts = draw(
        st.lists(keys, max_size=4, unique_by=lambda k: k[0]).map(
            lambda ks: [k for k in ks if k[0] not in reserved]
        )
    )
    out = []
    for first in firsts:
        dotted = draw(st.lists(bare_keys.map(lambda k: (k, k)), max_size=1))
        out.append(KeyValue((first, *dotted), draw(values)))
    return out


@dataclass
class Doc:
    text: str
    expected: dict[Path, int]


@st.composite
def documents(draw: st.DrawFn) -> Doc:
    w = Writer(newline=draw(st.sampled_from(["\n", "\n", "\r\n"])))
    blank = st.sampled_from(["", "\n", "# ---- [section] ----\n", "   \n"])
    indent = st.sampled_from(["", "", "  ", "\t"])
    eq = st.sampled_from([" = ", "=", "  =  "])

    def write_kvs(table: Path, kvs: list[KeyValue]) -> None:
        for kv in kvs:
            w.write(draw(blank))
            w.write(draw(indent))
            path = (*table, *(k for k, _ in kv.key))
            w.mark(path)
            w.write(".".join(written for _, written in kv.key) + draw(eq))
            comment = draw(comments)
            write_value(w, path, kv.value, comment)
            w.write(f"{comment}\n")

    def header(path: Path, parts: list[str], aot: bool) -> None:
        w.write(draw(blank))
        w.mark(path)
        sep = draw(st.sampled_from([".", " . "]))
        pad = draw(st.sampled_from(["", " "]))
        name = sep.join(parts)
        w.write(f"[[{pad}{name}{pad}]]" if aot else f"[{pad}{name}{pad}]")
        w.write(f"{draw(comments)}\n")

    names = st.text(st.sampled_from("abcxyz_0"), min_size=1, max_size=5)
    sections = draw(st.lists(names, max_size=4, unique=True))
    write_kvs((), draw(key_values(reserved=frozenset(sections))))
    for name in sections:
        if draw(st.booleans()):  # [name], maybe with a [name.sub]
            sub = f"{name}_sub"
            header((name,), [name], aot=False)
            write_kvs((name,), draw(key_values(reserved=frozenset({sub}))))
            if draw(st.booleans()):
                header((name, sub), [name, sub], aot=False)
                write_kvs((name, sub), draw(key_values()))
        else:  # [[name]] elements, each maybe with [[name.child]] elements
            child = "child"
            for i in range(draw(st.integers(1, 3))):
                header((name, i), [name], aot=True)
                write_kvs((name, i), draw(key_values(reserved=frozenset({child}))))
                for j in range(draw(st.integers(0, 2))):
                    header((name, i, child, j), [name, child], aot=True)
                    write_kvs((name, i, child, j), draw(key_values()))
    return Doc(w.text(), w.expected)


def resolve(data: Any, path: Path) -> Any:
    for part in path:
        data = data[part]
    return data


@settings(max_examples=100)
@given(documents())
def test_key_lines_finds_every_key_where_the_generator_put_it(doc: Doc) -> None:
    data = tomllib.loads(doc.text)  # the generator writes valid TOML...
    for path in doc.expected:
        resolve(data, path)  # ...and every recorded path exists in it
    assert key_lines(doc.text) == doc.expected


# -- robustness ---------------------------------------------------------------------------------

toml_ish = st.text(st.sampled_from(list("[]{}=,.#\"'\\ \n\ta1_")), max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), toml_ish))
@example("a = [}]")
@example("a = [1}")
@example("a = [ { b = ]")
@example('[[a]]\n[[a."b]]\nc = """')
@example("a = " + "[" * 1500)
@example("a = " + "{b = " * 1500)
def test_key_lines_never_raises_and_terminates(text: str) -> None:
    lines = key_lines(text)
    n_lines = text.count("\n") + 1
    assert all(1 <= line <= n_lines for line in lines.values())


# -- the site file and line_of --------------------------------------------------------------------


def _leaves(node: Any, path: Path = ()) -> list[Path]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaves(v, (*path, k))]
    if isinstance(node, list) and node and all(isinstance(v, dict) for v in node):
        return [p for i, v in enumerate(node) for p in _leaves(v, (*path, i))]
    return [path]


def test_every_key_of_the_steel_template_is_on_its_own_line() -> None:
    text = template_text("steel")
    lines = key_lines(text)
    source = text.splitlines()
    leaves = _leaves(tomllib.loads(text))
    assert len(leaves) > 200
    for path in leaves:
        key = path[-1]
        assert isinstance(key, str)
        # a key starts its line, or follows "{" or "," in an inline table
        assert re.search(rf"(^\s*|[{{,]\s*){re.escape(key)} =", source[lines[path] - 1]), path


def test_nested_arrays_of_tables_are_counted_per_parent() -> None:
    text = "\n".join(
        [
            "[[equipment]]",  # 1
            'id = "a"',  # 2
            "  [[equipment.signal]]",  # 3
            '  name = "x"',  # 4
            "  [[equipment.signal]]",  # 5
            '  name = "y"',  # 6
            "[[equipment]]",  # 7
            'id = "b"',  # 8
            "  [[equipment.signal]]",  # 9
            '  name = "z"',  # 10
            '  binding = { kind = "sim", model = "m" }',  # 11
            "[equipment.meta]",  # 12
            "carries = [",  # 13
            '  { kind = "plc" },  # [x] = {',  # 14
            "  # { kind = 'no' },",  # 15
            '  { kind = "vision", ul_mbps = 1 },',  # 16
            "]",  # 17
        ]
    )
    lines = key_lines(text)
    assert lines[("equipment", 0, "signal", 1, "name")] == 6
    assert lines[("equipment", 1, "signal", 0)] == 9
    assert lines[("equipment", 1, "signal", 0, "binding", "model")] == 11
    assert lines[("equipment", 1, "meta")] == 12
    assert lines[("equipment", 1, "meta", "carries", 1)] == 16
    assert lines[("equipment", 1, "meta", "carries", 1, "ul_mbps")] == 16
    assert ("equipment", 1, "meta", "carries", 2) not in lines


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("a", 0, "b"), 3),
        (("a", 0, "b", "nope", 7), 3),  # nearest recorded parent
        (("a", 5, "b"), None),  # ("a", 5) unrecorded, ("a",) unrecorded: no line
        (("zzz",), None),
        ((), None),
    ],
)
def test_line_of_falls_back_to_the_nearest_parent(path: Path, expected: int | None) -> None:
    lines = key_lines("# c\n[[a]]\nb = 1\n")
    assert line_of(lines, path) == expected
