"""mount(): where the Lambda handlers go, and failing loudly where Chalice's deployer would not find them.

In process: Chalice apps and module objects, no processes, no sockets.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from chalice import Chalice

from lambdapool import Service
from lambdapool.chalice import handler_name, mount


def service_with_one_endpoint(service_id: str = "s") -> Service:
    service = Service(service_id)
    service.function(endpoint_id="f")(lambda: None)
    return service


@pytest.fixture
def modules() -> Iterator[list[str]]:
    """Names of modules a test puts in ``sys.modules``; removed afterwards."""
    names: list[str] = []
    yield names
    for name in names:
        sys.modules.pop(name, None)


def new_module(name: str, modules: list[str], **attributes: object) -> ModuleType:
    module = ModuleType(name)
    vars(module).update(attributes)
    sys.modules[name] = module
    modules.append(name)
    return module


def handler_strings(app: Chalice) -> list[str]:
    return [function.handler_string for function in app.pure_lambda_functions] + [
        source.handler_string for source in app.event_sources
    ]


def test_handlers_go_to_the_module_that_defines_the_app_even_when_mount_is_called_from_a_helper(
    modules: list[str],
) -> None:
    app = Chalice(app_name="helped")
    app_module = new_module("lp_test_helped_app", modules, app=app)
    helper = new_module("lp_test_helper", modules, mount=mount)
    exec("def wire(app, service):\n    mount(app, service)\n", vars(helper))  # a helper module's function
    service = service_with_one_endpoint()
    helper.wire(app, service)
    name = handler_name(service.endpoint("f"))
    assert callable(getattr(app_module, name))
    assert not hasattr(helper, name)
    assert handler_strings(app) == [f"lp_test_helped_app.{name}"]


def test_the_module_imported_as_app_wins_as_chalice_imports_app_py(
    modules: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Chalice(app_name="conventional")
    conventional = ModuleType("app")
    conventional.app = app  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app", conventional)
    also_holding = new_module("lp_test_also_holding", modules, app=app)
    mount(app, service_with_one_endpoint())
    assert handler_strings(app) == ["app.lambdapool_s__f"]
    assert callable(conventional.lambdapool_s__f)  # type: ignore[attr-defined]
    assert not hasattr(also_holding, "lambdapool_s__f")


def test_an_app_no_module_holds_fails_loudly_and_registers_nothing() -> None:
    app = Chalice(app_name="orphan")  # a local variable only: Chalice's deployer could never import it
    with pytest.raises(ValueError, match="cannot tell which module"):
        mount(app, service_with_one_endpoint())
    assert app.routes == {} and app.pure_lambda_functions == []


def test_an_app_two_modules_hold_fails_loudly_naming_them(modules: list[str]) -> None:
    app = Chalice(app_name="twice")
    new_module("lp_test_first", modules, app=app)
    new_module("lp_test_second", modules, application=app)
    with pytest.raises(ValueError, match="lp_test_first, lp_test_second"):
        mount(app, service_with_one_endpoint())


def test_an_explicit_module_is_used_by_object_or_by_name(modules: list[str]) -> None:
    by_object, by_name = Chalice(app_name="one"), Chalice(app_name="two")
    target = new_module("lp_test_explicit", modules)
    mount(by_object, service_with_one_endpoint("a"), module=target)
    mount(by_name, service_with_one_endpoint("b"), module="lp_test_explicit")
    assert handler_strings(by_object) == ["lp_test_explicit.lambdapool_a__f"]
    assert handler_strings(by_name) == ["lp_test_explicit.lambdapool_b__f"]
    assert callable(target.lambdapool_a__f) and callable(target.lambdapool_b__f)  # type: ignore[attr-defined]


def test_a_module_chalice_could_not_import_by_its_name_fails_loudly() -> None:
    app = Chalice(app_name="unimportable")
    stray = ModuleType("lp_test_not_in_sys_modules")
    with pytest.raises(ValueError, match=r"would look for 'lp_test_not_in_sys_modules\.lambdapool_s__f'"):
        mount(app, service_with_one_endpoint(), module=stray)
    with pytest.raises(ValueError, match="is not imported"):
        mount(app, service_with_one_endpoint(), module="lp_test_not_in_sys_modules")


def test_a_handler_name_taken_in_app_py_fails_at_mount(modules: list[str]) -> None:
    app = Chalice(app_name="taken")
    module = new_module("lp_test_taken", modules, app=app, lambdapool_s__f="mine")
    with pytest.raises(ValueError, match="already defines 'lambdapool_s__f'"):
        mount(app, service_with_one_endpoint())
    assert module.lambdapool_s__f == "mine"  # type: ignore[attr-defined]
    assert app.routes == {} and app.pure_lambda_functions == []
