"""pyhandle (the EUDAT client from PyPI), unchanged, against a running node over HTTP:
create, retrieve, modify, delete, search."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyhandle.client.resthandleclient import RESTHandleClient
from pyhandle.handleexceptions import (
    HandleAlreadyExistsException,
    HandleAuthenticationError,
    HandleNotFoundException,
)

from factory5g.ids.service import NodeConfig
from tests.ids.conftest import PREFIX, ServerThread, serve_node

USER, SECRET = f"300:{PREFIX}/admin", "s3cret-admin"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    with serve_node(tmp_path / "ids.sqlite", NodeConfig(prefixes=(PREFIX,)), secret=SECRET) as s:
        yield s


@pytest.fixture
def client(server: ServerThread) -> RESTHandleClient:
    return RESTHandleClient.instantiate_with_username_and_password(
        server.url,
        USER,
        SECRET,
        HTTPS_verify=False,
        reverselookup_username=USER,
        reverselookup_password=SECRET,
    )


def test_create_retrieve_modify_delete(client: RESTHandleClient) -> None:
    h = f"{PREFIX}/pyhandle-1"
    assert client.register_handle(h, "https://plant.example/1", checksum="c0ffee") == h
    record = client.retrieve_handle_record(h)
    assert record["URL"] == "https://plant.example/1"
    assert record["CHECKSUM"] == "c0ffee"
    assert "0.NA/88.118.8" in record["HS_ADMIN"]  # pyhandle's default owner: 200:0.NA/prefix
    client.modify_handle_value(h, URL="https://plant.example/2", DESC="rolled coil")
    assert client.get_value_from_handle(h, "URL") == "https://plant.example/2"
    assert client.get_value_from_handle(h, "DESC") == "rolled coil"
    client.delete_handle_value(h, "CHECKSUM")
    assert client.get_value_from_handle(h, "CHECKSUM") is None
    assert client.delete_handle(h) == h
    assert client.retrieve_handle_record(h) is None
    with pytest.raises(HandleNotFoundException):
        client.delete_handle(h)


def test_register_twice_and_generated_names(client: RESTHandleClient) -> None:
    h = f"{PREFIX}/pyhandle-2"
    client.register_handle(h, "https://a")
    with pytest.raises(HandleAlreadyExistsException):
        client.register_handle(h, "https://b")
    assert client.register_handle(h, "https://b", overwrite=True) == h
    assert client.get_value_from_handle(h, "URL") == "https://b"
    generated = client.generate_and_register_handle(PREFIX, "https://c")
    assert generated.startswith(f"{PREFIX}/")
    assert client.get_value_from_handle(generated, "URL") == "https://c"
    # register_handle_json: the caller's values as given, HS_ADMIN added when missing.
    entries = [
        {"index": 1, "type": "URL", "data": "https://d"},
        {"index": 2, "type": "F5G_BATCH", "data": f"{PREFIX}/B1"},
    ]
    client.register_handle_json(f"{PREFIX}/pyhandle-3", entries)
    record = client.retrieve_handle_record_json(f"{PREFIX}/pyhandle-3")
    assert sorted(v["index"] for v in record["values"]) == [1, 2, 100]


def test_search(client: RESTHandleClient) -> None:
    for i in range(3):
        client.register_handle(f"{PREFIX}/s{i}", f"https://plant.example/search/{i}")
    client.register_handle(f"{PREFIX}/other", "https://elsewhere.example/")
    found = client.search_handle(URL="https://plant.example/search/*")
    assert sorted(found) == [f"{PREFIX}/s0", f"{PREFIX}/s1", f"{PREFIX}/s2"]
    assert client.search_handle(URL="https://plant.example/search/1", prefix=PREFIX) == [
        f"{PREFIX}/s1"
    ]


def test_wrong_credentials(server: ServerThread) -> None:
    bad = RESTHandleClient.instantiate_with_username_and_password(
        server.url, USER, "wrong", HTTPS_verify=False
    )
    with pytest.raises(Exception, match=r"403|AUTHENTICATION|uthentica") as info:
        bad.register_handle(f"{PREFIX}/nope", "https://x")
    assert not isinstance(info.value, HandleAlreadyExistsException)
    with pytest.raises(HandleNotFoundException):
        RESTHandleClient.instantiate_with_username_and_password(
            server.url, f"300:{PREFIX}/nobody", SECRET, HTTPS_verify=False
        )
    anonymous = RESTHandleClient.instantiate_for_read_access(server.url, HTTPS_verify=False)
    assert anonymous.retrieve_handle_record(f"{PREFIX}/admin") is not None
    with pytest.raises(HandleAuthenticationError):
        anonymous.register_handle(f"{PREFIX}/anon", "https://x")
