"""Validate requests and responses against the official 3GPP OpenAPI documents in
../shared/specs/3gpp-openapi, loaded with their cross-file references (``referencing``)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag

import yaml
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT4

SPECS = Path(__file__).resolve().parents[3] / "shared" / "specs" / "3gpp-openapi"
BASE = "https://3gpp.example/specs/"


@functools.cache
def _document(name: str) -> dict[str, Any]:
    path = SPECS / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the 3GPP OpenAPI documents live in shared/")
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def _retrieve(uri: str) -> Resource[Any]:
    if not uri.startswith(BASE):
        raise NoSuchResource(ref=uri)
    return Resource.from_contents(_document(uri.removeprefix(BASE)), default_specification=DRAFT4)


REGISTRY: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]


def _pointer(doc: Any, pointer: str) -> Any:
    node = doc
    for part in pointer.lstrip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


class Api:
    """One API document: find an operation, validate its request and response bodies."""

    def __init__(self, filename: str, prefix: str) -> None:
        self.filename = filename
        self.prefix = prefix  # e.g. /3gpp-as-session-with-qos/v1
        self.doc = _document(filename)

    def _operation(self, template: str, method: str) -> dict[str, Any]:
        op: dict[str, Any] = self.doc["paths"][template][method.lower()]
        return op

    def _validate(self, file: str, pointer: str, instance: Any) -> None:
        schema = {"$ref": f"{BASE}{file}#{pointer}"}
        OAS30Validator(schema, registry=REGISTRY).validate(instance)

    def request(self, template: str, method: str, body: Any, content_type: str) -> None:
        op = self._operation(template, method)
        content = op["requestBody"]["content"]
        assert content_type in content, f"{method} {template} takes {list(content)}"
        path = "/".join(
            _escape(p)
            for p in [
                "paths",
                template,
                method.lower(),
                "requestBody",
                "content",
                content_type,
                "schema",
            ]
        )
        self._validate(self.filename, "/" + path, body)

    def response(
        self, template: str, method: str, status: int, body: Any, content_type: str
    ) -> None:
        op = self._operation(template, method)
        key = str(status) if str(status) in op["responses"] else "default"
        assert key in op["responses"], f"{method} {template} does not define {status}"
        resp = op["responses"][key]
        file, pointer = (
            self.filename,
            "/"
            + "/".join(_escape(p) for p in ["paths", template, method.lower(), "responses", key]),
        )
        if "$ref" in resp:
            target, frag = urldefrag(resp["$ref"])
            file = target or self.filename
            pointer = frag
            resp = _pointer(_document(file), frag)
        content = resp.get("content")
        if content is None:
            assert body in (None, b"", ""), f"{status} has no body in the spec"
            return
        assert content_type in content, f"{status} answers {list(content)}, not {content_type}"
        self._validate(file, f"{pointer}/content/{_escape(content_type)}/schema", body)

    def callback(self, template: str, method: str, name: str, body: Any) -> None:
        op = self._operation(template, method)
        cb = op["callbacks"][name]
        expr = next(iter(cb))
        path = "/".join(
            _escape(p)
            for p in [
                "paths",
                template,
                method.lower(),
                "callbacks",
                name,
                expr,
                "post",
                "requestBody",
                "content",
                "application/json",
                "schema",
            ]
        )
        self._validate(self.filename, "/" + path, body)


QOS = Api("TS29122_AsSessionWithQoS.yaml", "/3gpp-as-session-with-qos/v1")
MON = Api("TS29122_MonitoringEvent.yaml", "/3gpp-monitoring-event/v1")
TI = Api("TS29522_TrafficInfluence.yaml", "/3gpp-traffic-influence/v1")
