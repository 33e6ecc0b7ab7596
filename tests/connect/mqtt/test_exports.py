"""Every public name of the MQTT package is exported, and every export exists (httpx's habit)."""

from __future__ import annotations

import types

import pytest

import factory5g.connect.mqtt as package
from factory5g.connect.mqtt import broker, client, errors, packets


@pytest.mark.parametrize("module", [package, broker, client, errors, packets])
def test_all_names_exist(module: types.ModuleType) -> None:
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name!r}"


@pytest.mark.parametrize("module", [broker, client, errors, packets])
def test_public_definitions_are_exported(module: types.ModuleType) -> None:
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and isinstance(value, type | types.FunctionType)
        and value.__module__ == module.__name__
    }
    assert defined <= set(module.__all__), defined - set(module.__all__)


def test_the_package_exports_the_client_broker_and_errors() -> None:
    for module in (broker, client, errors):
        assert set(module.__all__) <= set(package.__all__) | {"CONNACK_REASONS"}
