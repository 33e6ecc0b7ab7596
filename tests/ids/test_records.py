"""Records and HS_ADMIN: the JSON codec round-trips, lenient where clients are, strict else."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from factory5g.ids.admin import (
    AdminPerm,
    AdminRef,
    Identity,
    admin_permissions,
    hash_secret,
    is_hashed_secret,
    parse_identity,
    verify_secret,
)
from factory5g.ids.errors import InvalidCredential, InvalidValue
from factory5g.ids.records import (
    DEFAULT_PERMISSIONS,
    SECRET_PERMISSIONS,
    HandleValue,
    ValuePerm,
    decode_values,
    encode_values,
    format_timestamp,
    parse_timestamp,
    parse_values,
)

types = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, blacklist_categories=("Cc", "Cs")),
    min_size=1,
    max_size=20,
)
admin_data = st.builds(
    lambda h, i, p: {"handle": h, "index": i, "permissions": AdminPerm(p).to_text()},
    st.sampled_from(["0.NA/88.118.8", "88.118.8/admin"]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 0xFFF),
)
data = st.one_of(
    st.tuples(st.just("string"), st.text(max_size=50)),
    st.tuples(st.just("hex"), st.binary(max_size=20).map(bytes.hex)),
    st.tuples(st.just("admin"), admin_data),
    st.tuples(
        st.just("vlist"),
        st.lists(
            st.fixed_dictionaries({"handle": st.just("88.1/g"), "index": st.integers(1, 999)}),
            max_size=3,
        ),
    ),
)
values = st.builds(
    lambda index, t, d, ttl, absolute, ts, perms: HandleValue(
        index,
        "HS_ADMIN" if d[0] == "admin" else ("HS_VLIST" if d[0] == "vlist" else t),
        d[1],
        d[0],
        ttl,
        absolute,
        ts,
        ValuePerm(perms),
    ),
    st.integers(1, 2**32 - 1),
    types,
    data,
    st.integers(0, 2**31 - 1),
    st.booleans(),
    st.integers(0, 2**31 - 1),
    st.integers(0, 15),
)


@given(st.lists(values, max_size=6, unique_by=lambda v: v.index))
def test_encode_decode_round_trip(vals: list[HandleValue]) -> None:
    assert decode_values(encode_values(vals)) == sorted(vals, key=lambda v: v.index)


@given(st.integers(0, 2**31 - 1))
def test_timestamps_round_trip(t: int) -> None:
    assert parse_timestamp(format_timestamp(t)) == t


def test_default_value_looks_like_handle_net() -> None:
    v = HandleValue(1, "URL", "http://www.handle.net/index.html", timestamp=1006381295)
    assert v.to_json() == {
        "index": 1,
        "type": "URL",
        "data": {"format": "string", "value": "http://www.handle.net/index.html"},
        "ttl": 86400,
        "timestamp": "2001-11-21T22:21:35Z",
    }


def test_pyhandle_style_input_is_accepted() -> None:
    vals = parse_values(
        {
            "values": [
                {"index": 1, "type": "URL", "data": "http://x"},
                {
                    "index": 100,
                    "type": "HS_ADMIN",
                    "data": {
                        "format": "admin",
                        "value": {
                            "index": "200",
                            "handle": "0.NA/88.1",
                            "permissions": "011111110011",
                        },
                    },
                },
                {"index": 2, "type": "X", "data": "y", "timestamp": "2000-01-01T00:00:00Z"},
            ]
        },
        now=5,
    )
    assert vals[1].data == {"handle": "0.NA/88.1", "index": 200, "permissions": "011111110011"}
    assert [v.timestamp for v in vals] == [5, 5, 5]  # a client's timestamp is ignored
    assert parse_values([{"index": 1, "type": "URL", "data": "a"}], now=0)[0].data == "a"
    assert parse_values({"index": 1, "type": "URL", "data": "a"}, now=0)[0].index == 1


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"index": 0, "type": "URL", "data": "x"}, "0 is reserved"),
        ({"index": 2**32, "type": "URL", "data": "x"}, "must be 1"),
        ({"index": "a", "type": "URL", "data": "x"}, "an integer"),
        ({"index": 1, "type": "", "data": "x"}, "non-empty string"),
        ({"index": 1, "type": "URL"}, "no 'data'"),
        ({"index": 1, "type": "URL", "data": {"format": "nope", "value": "x"}}, "unknown data"),
        ({"index": 1, "type": "URL", "data": {"format": "hex", "value": "zz"}}, "not valid hex"),
        ({"index": 1, "type": "HS_ADMIN", "data": "x"}, "format 'admin'"),
        ({"index": 1, "type": "URL", "data": "x", "ttl": -1}, "ttl"),
        ({"index": 1, "type": "URL", "data": "x", "permissions": "12"}, "four 0/1"),
        ({"index": 1, "type": "URL", "data": "x", "color": "red"}, "unknown field"),
        (
            {
                "index": 1,
                "type": "HS_ADMIN",
                "data": {
                    "format": "admin",
                    "value": {"handle": "x", "index": 1, "permissions": "1"},
                },
            },
            "must be a handle",
        ),
        (
            {
                "index": 1,
                "type": "HS_ADMIN",
                "data": {
                    "format": "admin",
                    "value": {"handle": "0.NA/1", "index": 1, "permissions": "2"},
                },
            },
            "0/1 characters",
        ),
        ("just a string", "JSON object"),
    ],
)
def test_bad_values_say_what_is_wrong(raw: object, message: str) -> None:
    with pytest.raises(InvalidValue, match=message):
        parse_values([raw], now=0)


def test_duplicate_index_is_rejected() -> None:
    with pytest.raises(InvalidValue, match="twice"):
        parse_values(
            [{"index": 1, "type": "A", "data": "x"}, {"index": 1, "type": "B", "data": "y"}], now=0
        )


def test_secret_keys_are_private_unless_asked() -> None:
    v = HandleValue.from_json({"index": 300, "type": "HS_SECKEY", "data": "k"}, now=0)
    assert v.permissions == SECRET_PERMISSIONS
    assert not v.publicly_readable
    assert v.to_json()["permissions"] == "1100"
    assert HandleValue.from_json({"index": 1, "type": "URL", "data": "k"}, now=0).permissions == (
        DEFAULT_PERMISSIONS
    )


def test_type_queries_match_subtypes() -> None:
    v = HandleValue(1, "URL.ALT", "x")
    assert v.type_matches("url")
    assert v.type_matches("URL.ALT")
    assert not v.type_matches("URL.A")
    assert not v.type_matches("UR")


@given(st.integers(0, 0xFFF))
def test_admin_permission_text_round_trips(bits: int) -> None:
    p = AdminPerm(bits)
    assert AdminPerm.from_text(p.to_text()) == p
    assert len(p.to_text()) == 12


def test_admin_permission_order_matches_handle_net() -> None:
    # "011111111111": everything but LIST_HANDLES, the handle default of Handle.Net's tools.
    p = AdminPerm.from_text("011111111111")
    assert AdminPerm.LIST_HANDLES not in p
    assert AdminPerm.ADD_HANDLE in p
    assert AdminPerm.from_text("011111110011") == p & ~(
        AdminPerm.ADD_DERIVED_PREFIX | AdminPerm.DELETE_DERIVED_PREFIX
    )
    assert AdminRef.from_json({"handle": "0.NA/1", "index": "200", "permissions": "1"}).index == 200


def test_identity_parsing() -> None:
    assert parse_identity("300:88.118.8/admin") == (300, "88.118.8/admin")
    for bad in ("88.118.8/admin", "x:88/a", "300:"):
        with pytest.raises(InvalidCredential):
            parse_identity(bad)


def test_secrets_are_hashed_and_verified() -> None:
    stored = hash_secret("pässword")
    assert is_hashed_secret(stored)
    assert "pässword" not in stored
    assert verify_secret("pässword", stored)
    assert not verify_secret("password", stored)
    assert not verify_secret("pässword", "plain-text")
    assert hash_secret("x") != hash_secret("x")  # salted


async def test_group_membership_through_vlists() -> None:
    me = Identity(300, "88.1/admin", "88.1/admin")
    group = [HandleValue(200, "HS_VLIST", [{"handle": "88.1/ops", "index": 0}], "vlist")]
    ops = [HandleValue(1, "HS_VLIST", [{"handle": "88.1/admin", "index": 300}], "vlist")]
    records = {"0.NA/88.1": group, "88.1/ops": ops}

    async def load(key: str) -> list[HandleValue] | None:
        return records.get(key)

    def admin(handle: str, index: int, perms: str) -> HandleValue:
        ref = {"handle": handle, "index": index, "permissions": perms}
        return HandleValue(100, "HS_ADMIN", ref, "admin")

    direct = await admin_permissions(
        me, [admin("88.1/admin", 300, "000000000011")], load, lambda t: t
    )
    assert direct == AdminPerm.ADD_HANDLE | AdminPerm.DELETE_HANDLE
    anyindex = await admin_permissions(me, [admin("88.1/admin", 0, "1")], load, lambda t: t)
    assert anyindex == AdminPerm.ADD_HANDLE
    nested = await admin_permissions(
        me, [admin("0.NA/88.1", 200, "100000000000")], load, lambda t: t
    )
    assert nested == AdminPerm.LIST_HANDLES
    other = await admin_permissions(me, [admin("88.1/admin", 301, "1")], load, lambda t: t)
    assert other is None


def test_stored_json_is_the_served_json() -> None:
    vals = [HandleValue(2, "B", "y", timestamp=0), HandleValue(1, "A", "x", timestamp=0)]
    assert [v["index"] for v in orjson.loads(encode_values(vals))] == [1, 2]
