"""The fast path of ``POST /api/v1/commands``: the requests it takes are exactly those
CommandBody takes unchanged, and it hands everything else to FastAPI with the body intact."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from factory5g.api.routes.commands import (
    MAX_FAST_BODY,
    CommandBody,
    CommandFastPath,
    _bearer,
    fast_request,
)
from factory5g.apps.control import CommandRequest

FIELDS = ["target", "value", "args", "deadline_ms", "idempotency_key", "issued_at_ms"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    st.text(max_size=5),
    st.sampled_from(["5", "1.5", "true", "", "x" * 201]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(), scalars))
bodies = st.one_of(
    st.dictionaries(st.sampled_from([*FIELDS, "extra"]), values, max_size=7),
    st.fixed_dictionaries(
        {
            "target": st.one_of(st.text(max_size=30), scalars),
            "deadline_ms": st.one_of(
                st.floats(-1, 70_000), st.integers(-5, 70_000), st.booleans(), st.text()
            ),
            "idempotency_key": st.one_of(st.text(max_size=210), scalars),
        },
        optional={"value": values, "args": values, "issued_at_ms": values},
    ),
    values,
)


def via_pydantic(raw: bytes) -> CommandRequest | None:
    try:
        b = CommandBody.model_validate_json(raw)
    except ValidationError:
        return None
    return CommandRequest(
        b.target,
        b.idempotency_key,
        b.deadline_ms,
        value=b.value,
        args=tuple(b.args) if b.args is not None else None,
        issued_at_ms=b.issued_at_ms,
    )


def typed(req: CommandRequest) -> tuple[Any, ...]:
    """The request with the type of every value (5 and 5.0 and True are different commands)."""
    args = None if req.args is None else tuple((type(a), a) for a in req.args)
    return (
        req.target,
        req.idempotency_key,
        (type(req.deadline_ms), req.deadline_ms),
        (type(req.value), req.value),
        args,
        (type(req.issued_at_ms), req.issued_at_ms),
    )


@given(bodies)
def test_the_fast_path_takes_a_body_only_as_the_model_would(body: Any) -> None:
    try:
        raw = orjson.dumps(body)
    except TypeError:  # an integer JSON has but orjson does not write: pydantic's alone
        return
    fast = fast_request(raw)
    if fast is not None:
        slow = via_pydantic(raw)
        assert slow is not None, body
        assert typed(fast) == typed(slow)


plain = st.one_of(
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
plain_bodies = st.fixed_dictionaries(
    {
        "target": st.text(max_size=30),
        "deadline_ms": st.one_of(st.floats(0, 60_000, exclude_min=True), st.integers(1, 60_000)),
        "idempotency_key": st.text(min_size=1, max_size=200),
    },
    optional={
        "value": st.one_of(st.none(), plain),
        "args": st.one_of(st.none(), st.lists(st.one_of(plain, st.text(max_size=5)), max_size=3)),
        "issued_at_ms": st.one_of(st.none(), st.floats(0, 2e12), st.integers(0, 2**40)),
    },
)


@given(plain_bodies)
def test_every_plain_body_takes_the_fast_path_as_the_model_reads_it(body: Any) -> None:
    raw = orjson.dumps(body)
    fast = fast_request(raw)
    assert fast is not None, body
    slow = via_pydantic(raw)
    assert slow is not None
    assert typed(fast) == typed(slow)


@pytest.mark.parametrize(
    "body",
    [
        {"target": "t", "deadline_ms": 100, "idempotency_key": "k", "value": 5},
        {"target": "t", "deadline_ms": 100.5, "idempotency_key": "k", "value": 5.0},
        {"target": "t", "deadline_ms": 60_000, "idempotency_key": "k", "value": True},
        {"target": "m", "deadline_ms": 1, "idempotency_key": "k", "args": [1, 2.5, "x", False]},
        {"target": "t", "deadline_ms": 9, "idempotency_key": "k" * 200, "issued_at_ms": 1e12},
    ],
)
def test_plain_bodies_take_the_fast_path_with_their_types(body: dict[str, Any]) -> None:
    raw = orjson.dumps(body)
    fast = fast_request(raw)
    slow = via_pydantic(raw)
    assert fast is not None
    assert slow is not None
    assert typed(fast) == typed(slow)


@pytest.mark.parametrize(
    "body",
    [
        {"target": "t", "deadline_ms": "100", "idempotency_key": "k"},  # coerced by pydantic
        {"target": "t", "deadline_ms": 100, "idempotency_key": "k", "value": "5"},
        {"target": "t", "deadline_ms": True, "idempotency_key": "k"},
        {"target": "t", "deadline_ms": 0, "idempotency_key": "k"},  # refused by pydantic
        {"target": "t", "deadline_ms": 60_001, "idempotency_key": "k"},
        {"target": "t", "deadline_ms": 100, "idempotency_key": ""},
        {"target": "t", "deadline_ms": 100, "idempotency_key": "k" * 201},
        {"target": "t", "deadline_ms": 100, "idempotency_key": "k", "colour": "red"},
        {"deadline_ms": 100, "idempotency_key": "k"},
        [1, 2],
    ],
)
def test_bodies_to_coerce_or_refuse_go_to_fastapi(body: Any) -> None:
    assert fast_request(orjson.dumps(body)) is None


def test_not_json_goes_to_fastapi() -> None:
    assert fast_request(b"{'target': 1}") is None
    assert fast_request(b"") is None


@pytest.mark.parametrize(
    ("headers", "token"),
    [
        ([(b"authorization", b"Bearer abc")], "abc"),
        ([(b"authorization", b"bearer abc"), (b"content-type", b"application/json")], "abc"),
        (
            [
                (b"content-type", b"application/json; charset=utf-8"),
                (b"authorization", b"Bearer a"),
            ],
            "a",
        ),
        ([], None),
        ([(b"authorization", b"Basic abc")], None),
        ([(b"authorization", b"Bearer ")], None),
        ([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")], None),
        ([(b"authorization", b"Bearer a"), (b"content-type", b"text/plain")], None),
    ],
)
def test_bearer_token_and_content_type(
    headers: list[tuple[bytes, bytes]], token: str | None
) -> None:
    assert _bearer(headers) == token


async def test_a_request_it_does_not_take_reaches_the_app_with_its_whole_body() -> None:
    seen: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            m = await receive()
            body += m.get("body", b"")
            if not m.get("more_body"):
                break
        seen.append(body)

    class State:
        runtime = None  # not started: nothing for the fast path
        tokens = None

    class App:
        state = State()

    chunks = [b"x" * 40_000, b"y" * 40_000, b"z" * 10]
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    fast = CommandFastPath(app, "/api/v1/commands")
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/commands",
        "query_string": b"",
        "headers": [],
        "app": App(),
    }
    await fast(scope, receive, lambda m: None)
    assert seen == [b"".join(chunks)]
    assert sum(map(len, chunks)) > MAX_FAST_BODY  # read past the limit, then handed on
    assert fast.answered == 0
