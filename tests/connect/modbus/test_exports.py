"""Every public name of the Modbus package is exported, and every export exists (httpx's habit)."""

from __future__ import annotations

import types

import pytest

import factory5g.connect.modbus as package
import factory5g.sim.modbus as sim
from factory5g.connect.modbus import adapter, codec, errors, plan

MODULES = [adapter, codec, errors, plan, sim]


@pytest.mark.parametrize("module", [package, *MODULES])
def test_all_names_exist(module: types.ModuleType) -> None:
    for name in module.__all__:
        assert hasattr(module, name), f"{module.__name__}.__all__ lists missing {name!r}"


@pytest.mark.parametrize("module", MODULES)
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
    assert set(errors.__all__) - {
        "EXCEPTION_NAMES",
        "FUNCTION_NAMES",
        "describe",
        "exception_name",
    } <= set(package.__all__)
    assert "ModbusAdapter" in package.__all__
