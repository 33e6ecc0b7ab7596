"""Every public name of the OPC UA package is exported, and every export exists."""

from __future__ import annotations

import types

import pytest

import factory5g.connect.opcua as package
from factory5g.connect.opcua import adapter, browse, cli, convert, errors, security, session
from factory5g.sim import opcua as sim_opcua

MODULES = [package, adapter, browse, cli, convert, errors, security, session, sim_opcua]


@pytest.mark.parametrize("module", MODULES)
def test_all_names_exist(module: types.ModuleType) -> None:
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name!r}"


@pytest.mark.parametrize("module", MODULES[1:])
def test_public_definitions_are_exported(module: types.ModuleType) -> None:
    defined = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and isinstance(value, type | types.FunctionType)
        and value.__module__ == module.__name__
    }
    assert defined <= set(module.__all__), defined - set(module.__all__)


def test_the_package_exports_the_adapter_and_every_error() -> None:
    assert set(errors.__all__) | {"OpcUaAdapter"} == set(package.__all__)
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), Exception)
