"""The generic registry: registration, lazy entries, did-you-mean, origins and plugins."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlbench_med.registry import PluginError, Registry, RegistryError, load_plugin


@pytest.fixture
def reg() -> Registry[object]:
    return Registry("widget")


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleFactory]:
    """Writes uniquely named modules into a temporary import path; removes them afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    factory = ModuleFactory(tmp_path)
    yield factory
    for name in factory.names:
        sys.modules.pop(name, None)


HOLDER_WITH_GROUP = "from rlbench_med.registry import Registry\nREG = Registry('estimator', entry_point_group='test.group')\n"


class ModuleFactory:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.names: list[str] = []

    def write(self, source: str, stem: str = "mod") -> str:
        name = f"regtest_{stem}_{uuid.uuid4().hex[:8]}"
        (self.root / f"{name}.py").write_text(textwrap.dedent(source))
        self.names.append(name)
        return name


# -- registration -------------------------------------------------------------------------------


def test_decorator_registers_and_returns_the_object(reg: Registry[object]) -> None:
    @reg.register("alpha")
    def alpha() -> int:
        return 1

    assert alpha() == 1
    assert reg.get("alpha") is alpha
    assert "alpha" in reg and "beta" not in reg
    assert reg.names() == ["alpha"] and list(reg) == ["alpha"] and len(reg) == 1


def test_register_with_an_object_directly(reg: Registry[object]) -> None:
    sentinel = object()
    assert reg.register("thing", sentinel) is sentinel
    assert reg.get("thing") is sentinel


def test_registering_the_same_object_twice_is_a_no_op(reg: Registry[object]) -> None:
    sentinel = object()
    reg.register("thing", sentinel)
    reg.register("thing", sentinel)
    assert reg.names() == ["thing"]


def test_a_different_object_under_a_taken_name_raises(reg: Registry[object]) -> None:
    @reg.register("alpha")
    def first() -> None: ...

    with pytest.raises(RegistryError) as info:

        @reg.register("alpha")
        def second() -> None: ...

    message = str(info.value)
    assert "'alpha' is already registered" in message and "test_registry" in message
    assert reg.get("alpha") is first


def test_empty_names_are_rejected(reg: Registry[object]) -> None:
    with pytest.raises(RegistryError, match="non-empty"):
        reg.register("", object())


# -- lazy entries -------------------------------------------------------------------------------


def test_lazy_entry_is_imported_on_first_lookup_only(reg: Registry[object], modules: ModuleFactory) -> None:
    name = modules.write("VALUE = {'loaded': True}\n")
    reg.register_lazy("lazy", f"{name}:VALUE")
    assert name not in sys.modules
    assert "lazy" in reg.names()
    assert name not in sys.modules  # listing does not import
    assert reg.get("lazy") == {"loaded": True}
    assert name in sys.modules
    assert reg.origin("lazy") == f"{name}:VALUE"


def test_lazy_entry_with_a_dotted_attribute(reg: Registry[object], modules: ModuleFactory) -> None:
    name = modules.write("class Outer:\n    class Inner:\n        pass\n")
    reg.register_lazy("inner", f"{name}:Outer.Inner")
    assert reg.get("inner").__name__ == "Inner"  # type: ignore[attr-defined]


def test_malformed_lazy_target_raises_on_lookup(reg: Registry[object]) -> None:
    reg.register_lazy("bad", "no_colon_here")
    with pytest.raises(RegistryError, match="package.module:attribute"):
        reg.get("bad")


def test_lazy_target_with_a_missing_attribute_names_it(reg: Registry[object], modules: ModuleFactory) -> None:
    name = modules.write("X = 1\n")
    reg.register_lazy("missing", f"{name}:Y")
    with pytest.raises(RegistryError, match=f"{name}.*has no attribute 'Y'"):
        reg.get("missing")


def test_lazy_target_that_fails_to_import_names_the_module(reg: Registry[object], modules: ModuleFactory) -> None:
    name = modules.write("raise ImportError('needs the gpu extra')\n")
    reg.register_lazy("broken", f"{name}:THING")
    with pytest.raises(PluginError, match=f"cannot import '{name}'.*needs the gpu extra"):
        reg.get("broken")


def test_registering_the_object_a_lazy_entry_points_to_is_not_a_conflict(reg: Registry[object], modules: ModuleFactory) -> None:
    name = modules.write("THING = object()\n")
    reg.register_lazy("thing", f"{name}:THING")
    reg.register("thing", sys.modules[name].THING if name in sys.modules else __import__(name).THING)
    assert reg.get("thing") is sys.modules[name].THING


def test_same_lazy_target_twice_is_a_no_op_and_a_different_one_conflicts(reg: Registry[object]) -> None:
    reg.register_lazy("x", "a.b:C")
    reg.register_lazy("x", "a.b:C")
    with pytest.raises(RegistryError, match="already registered"):
        reg.register_lazy("x", "a.b:D")


# -- unknown names ------------------------------------------------------------------------------


def test_unknown_name_suggests_close_matches_and_lists_all(reg: Registry[object]) -> None:
    for name in ("grpo", "drpo", "rloo"):
        reg.register(name, object())
    with pytest.raises(RegistryError) as info:
        reg.get("dpro")
    message = str(info.value)
    assert "unknown widget 'dpro'" in message
    assert "Did you mean 'drpo'" in message
    assert "Known widgets: drpo, grpo, rloo" in message


def test_unknown_name_without_close_match_has_no_hint(reg: Registry[object]) -> None:
    reg.register("grpo", object())
    with pytest.raises(RegistryError) as info:
        reg.get("zzzzzz")
    assert "Did you mean" not in str(info.value) and "grpo" in str(info.value)


def test_unknown_name_in_an_empty_registry(reg: Registry[object]) -> None:
    with pytest.raises(RegistryError, match=r"\(none registered\)"):
        reg.get("anything")


# -- origin -------------------------------------------------------------------------------------


def test_origin_gives_module_file_and_line(reg: Registry[object]) -> None:
    @reg.register("here")
    def here() -> None: ...

    origin = reg.origin("here")
    assert origin.startswith("tests.test_registry (") and "test_registry.py:" in origin
    line = int(origin.rsplit(":", 1)[1].rstrip(")"))
    assert line == here.__code__.co_firstlineno - 1 or line == here.__code__.co_firstlineno


def test_origin_of_an_unknown_name_raises(reg: Registry[object]) -> None:
    with pytest.raises(RegistryError, match="unknown widget"):
        reg.origin("nope")


# -- entry-point plugins --------------------------------------------------------------------------


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, group: str, entries: list[tuple[str, str]]) -> list[str]:
    """Make ``importlib.metadata.entry_points(group=...)`` return ``entries``; returns the call log."""
    calls: list[str] = []

    def fake(*, group: str) -> list[importlib.metadata.EntryPoint]:
        calls.append(group)
        if group != expected_group:
            return []
        return [importlib.metadata.EntryPoint(name=n, value=v, group=group) for n, v in entries]

    expected_group = group
    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    return calls


def test_entry_point_plugin_is_resolved_lazily_on_first_lookup(monkeypatch: pytest.MonkeyPatch, modules: ModuleFactory) -> None:
    name = modules.write("class Estimator:\n    pass\n")
    calls = _fake_entry_points(monkeypatch, "rlbench_med.algorithms", [("plug", f"{name}:Estimator")])
    reg: Registry[object] = Registry("estimator", entry_point_group="rlbench_med.algorithms")
    reg.register("builtin", object())
    assert calls == []  # never at construction or registration
    assert reg.get("plug").__name__ == "Estimator"  # type: ignore[attr-defined]
    assert calls == ["rlbench_med.algorithms"]
    assert reg.names() == ["builtin", "plug"]
    assert calls == ["rlbench_med.algorithms"]  # read once
    assert "entry point 'plug'" in reg.origin("plug")


def test_module_valued_entry_point_registers_itself(monkeypatch: pytest.MonkeyPatch, modules: ModuleFactory) -> None:
    holder = modules.write(HOLDER_WITH_GROUP, "holder")
    plugin = modules.write(f"from {holder} import REG\n\n@REG.register('selfmade')\nclass SelfMade:\n    pass\n", "plugin")
    _fake_entry_points(monkeypatch, "test.group", [("selfmade", plugin)])
    reg = __import__(holder).REG
    assert plugin not in sys.modules
    assert reg.get("selfmade").__name__ == "SelfMade"


def test_entry_point_that_fails_to_import_is_named(monkeypatch: pytest.MonkeyPatch, modules: ModuleFactory) -> None:
    broken = modules.write("import definitely_not_installed_package_xyz\n", "broken")
    _fake_entry_points(monkeypatch, "test.group", [("fancy", broken)])
    reg: Registry[object] = Registry("estimator", entry_point_group="test.group")
    with pytest.raises(PluginError) as info:
        reg.names()
    message = str(info.value)
    assert "plugin 'fancy'" in message and broken in message and "definitely_not_installed_package_xyz" in message


def test_lazy_entry_point_that_fails_to_import_is_named_on_lookup(
    monkeypatch: pytest.MonkeyPatch, modules: ModuleFactory
) -> None:
    broken = modules.write("raise RuntimeError('boom at import')\n", "broken")
    _fake_entry_points(monkeypatch, "test.group", [("fancy", f"{broken}:Thing")])
    reg: Registry[object] = Registry("estimator", entry_point_group="test.group")
    assert "fancy" in reg.names()
    with pytest.raises(PluginError, match=f"{broken}.*boom at import"):
        reg.get("fancy")


def test_entry_point_conflicting_with_a_builtin_name_raises(monkeypatch: pytest.MonkeyPatch, modules: ModuleFactory) -> None:
    name = modules.write("X = 1\n")
    _fake_entry_points(monkeypatch, "test.group", [("grpo", f"{name}:X")])
    reg: Registry[object] = Registry("estimator", entry_point_group="test.group")
    reg.register("grpo", object())
    with pytest.raises(RegistryError, match="'grpo' is already registered"):
        reg.get("grpo")


# -- load_plugin ----------------------------------------------------------------------------------


def test_file_plugin_registers_with_the_decorator(tmp_path: Path, modules: ModuleFactory) -> None:
    holder = modules.write("from rlbench_med.registry import Registry\nREG = Registry('widget')\n", "holder")
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(f"from {holder} import REG\n\n@REG.register('from_file')\ndef from_file():\n    return 42\n")
    load_plugin(str(plugin))
    reg = sys.modules[holder].REG
    assert reg.get("from_file")() == 42
    assert "my_plugin.py" in reg.origin("from_file")
    load_plugin(str(plugin))  # loading twice is harmless
    assert reg.names() == ["from_file"]


def test_module_plugin_registers_with_the_decorator(modules: ModuleFactory) -> None:
    holder = modules.write("from rlbench_med.registry import Registry\nREG = Registry('widget')\n", "holder")
    plugin = modules.write(f"from {holder} import REG\nREG.register('from_module', 'ok')\n", "plugin")
    load_plugin(plugin)
    assert sys.modules[holder].REG.get("from_module") == "ok"


def test_file_plugin_that_fails_is_named_with_its_error(tmp_path: Path) -> None:
    plugin = tmp_path / "bad_plugin.py"
    plugin.write_text("x = 1\nraise ValueError('bad config in plugin')\n")
    with pytest.raises(PluginError) as info:
        load_plugin(str(plugin))
    assert "bad_plugin.py" in str(info.value) and "ValueError: bad config in plugin" in str(info.value)


def test_missing_plugin_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match="does not exist"):
        load_plugin(str(tmp_path / "nowhere.py"))


def test_module_plugin_that_fails_to_import_is_named() -> None:
    with pytest.raises(PluginError, match="plugin module 'no_such_plugin_module_abc' failed to import"):
        load_plugin("no_such_plugin_module_abc")


def test_entry_point_to_a_class_registered_by_its_own_decorator(
    monkeypatch: pytest.MonkeyPatch, modules: ModuleFactory
) -> None:
    holder = modules.write(HOLDER_WITH_GROUP, "holder")
    plugin = modules.write(f"from {holder} import REG\n\n@REG.register('decorated')\nclass Decorated:\n    pass\n", "plugin")
    _fake_entry_points(monkeypatch, "test.group", [("decorated", f"{plugin}:Decorated")])
    reg = __import__(holder).REG
    assert reg.get("decorated").__name__ == "Decorated"


@pytest.mark.parametrize("code", ["0", "3", "'bye'"])
def test_a_plugin_that_exits_at_import_is_an_error_not_an_exit(code: str, tmp_path: Path,
                                                                modules: ModuleFactory) -> None:
    plugin = tmp_path / "exiting_plugin.py"
    plugin.write_text(f"import sys\nsys.exit({code})\n")
    with pytest.raises(PluginError, match=f"plugin file '{plugin}' failed to import: it called sys.exit\\({code}\\) "
                                          "while being imported; a plugin must only define and register"):
        load_plugin(str(plugin))
    module = modules.write(f"import sys\nsys.exit({code})\n", "exiting_module")
    with pytest.raises(PluginError, match=f"plugin module '{module}' failed to import: it called sys.exit"):
        load_plugin(module)
