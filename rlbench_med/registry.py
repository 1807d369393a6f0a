"""One generic, typed registry reused for every kind of component.

Entries are registered with a decorator (``@REG.register("name")``), as lazy ``"module:attr"``
strings imported on first use, or by plugins: an entry-point group resolved on the first lookup
(never at import time) and modules or ``.py`` files loaded explicitly with :func:`load_plugin`.
Unknown names raise :class:`RegistryError` with a "did you mean" hint and the list of names.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, names: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` (or ``'x' or 'y'``) for the names closest to ``name``; empty when none is close."""
    close = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class RegistryError(LookupError):
    """Unknown name, conflicting registration or a plugin that failed to load."""


class PluginError(RegistryError):
    """A plugin (entry point, module or file) could not be imported."""


@dataclass
class _Entry(Generic[T]):
    obj: T | None
    lazy: str | None  # "module:attr", imported on first use
    origin: str


def _describe_origin(obj: object) -> str:
    module = getattr(obj, "__module__", None) or "?"
    try:
        file = inspect.getsourcefile(obj)  # type: ignore[arg-type]
        line = inspect.getsourcelines(obj)[1]  # type: ignore[arg-type]
        return f"{module} ({file}:{line})"
    except (TypeError, OSError):
        return module


def _import_attr(target: str) -> object:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise RegistryError(f"lazy entry {target!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # the plugin's own import error (or exit), re-raised with its name
        raise PluginError(f"cannot import {module_name!r} for entry {target!r}: {_import_failure(exc)}") from exc
    obj: object = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise RegistryError(f"{module_name!r} has no attribute {attr!r} (entry {target!r})") from exc
    return obj


class Registry(Generic[T]):
    """A name -> object table for one kind of component (``kind`` is used in messages).

    ``entry_point_group`` names the ``importlib.metadata`` entry-point group whose entries are
    added (lazily) the first time a name is looked up or listed.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._entries: dict[str, _Entry[T]] = {}
        self._entry_points_loaded = entry_point_group is None
        self._entry_points_loading = False

    # -- registration -------------------------------------------------------------------------
    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` returns a decorator.

        Registering the same object again is a no-op (modules may be re-imported); a different
        object under a taken name raises.
        """

        def add(target: T) -> T:
            self._add(name, _Entry(obj=target, lazy=None, origin=_describe_origin(target)))
            return target

        return add if obj is None else add(obj)

    def register_lazy(self, name: str, target: str, origin: str | None = None) -> None:
        """Register ``"module:attr"``; it is imported the first time ``name`` is looked up."""
        self._add(name, _Entry(obj=None, lazy=target, origin=origin or target))

    def _add(self, name: str, entry: _Entry[T]) -> None:
        if not name or not isinstance(name, str):
            raise RegistryError(f"{self.kind} names must be non-empty strings, got {name!r}")
        existing = self._entries.get(name)
        if existing is not None:
            same_lazy = entry.lazy is not None and entry.lazy == existing.lazy
            same_obj = entry.obj is not None and entry.obj is existing.obj
            if same_lazy or same_obj:
                return
            if existing.lazy is not None and entry.obj is not None:
                # A lazy entry whose module is being imported right now registers its own
                # target with the decorator: that is the same entry, not a conflict.
                module_name, _, attr = existing.lazy.partition(":")
                target = (getattr(entry.obj, "__module__", None), getattr(entry.obj, "__qualname__", None))
                if target == (module_name, attr):
                    existing.obj = entry.obj
                    return
                if self._resolve_quietly(existing) is entry.obj:
                    return
            raise RegistryError(
                f"{self.kind} {name!r} is already registered (from {existing.origin}); "
                f"pick another name for the one from {entry.origin}"
            )
        self._entries[name] = entry

    def _resolve_quietly(self, entry: _Entry[T]) -> object | None:
        try:
            return _import_attr(entry.lazy) if entry.lazy else entry.obj
        except RegistryError:
            return None

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and plugins that clean up after themselves)."""
        if name not in self._entries:
            raise RegistryError(self._unknown_message(name))
        del self._entries[name]

    # -- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        self._load_entry_points()
        entry = self._entries.get(name)
        if entry is None:
            raise RegistryError(self._unknown_message(name))
        if entry.obj is None:
            assert entry.lazy is not None
            entry.obj = _import_attr(entry.lazy)  # type: ignore[assignment]
        return entry.obj  # type: ignore[return-value]

    def origin(self, name: str) -> str:
        """Where ``name`` was defined: module and file:line, or the lazy target / plugin."""
        self._load_entry_points()
        entry = self._entries.get(name)
        if entry is None:
            raise RegistryError(self._unknown_message(name))
        return entry.origin

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def _unknown_message(self, name: str) -> str:
        names = sorted(self._entries)
        hint = did_you_mean(name, names)
        listing = ", ".join(names) if names else "(none registered)"
        return f"unknown {self.kind} {name!r}.{hint} Known {self.kind}s: {listing}"

    # -- plugins ------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self._entry_points_loading:
            return
        assert self.entry_point_group is not None
        self._entry_points_loading = True
        try:
            self._register_entry_points()
        finally:
            self._entry_points_loading = False

    def _register_entry_points(self) -> None:
        assert self.entry_point_group is not None
        for ep in importlib.metadata.entry_points(group=self.entry_point_group):
            dist = getattr(ep, "dist", None)
            dist_name = getattr(dist, "name", None) or "?"
            origin = f"entry point {ep.name!r} = {ep.value!r} (distribution {dist_name})"
            if ":" in ep.value:
                self.register_lazy(ep.name, ep.value, origin=origin)
            else:
                # A module-valued entry point registers its components itself when imported.
                try:
                    importlib.import_module(ep.value)
                except (Exception, SystemExit) as exc:
                    raise PluginError(
                        f"{self.kind} plugin {ep.name!r} from distribution {dist_name} "
                        f"failed to import module {ep.value!r}: {_import_failure(exc)}"
                    ) from exc
        self._entry_points_loaded = True


def load_plugin(spec: str) -> None:
    """Import a plugin given as a dotted module path or a path to a ``.py`` file.

    The plugin registers its components with the usual decorators when imported.
    """
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise PluginError(f"plugin file {spec!r} does not exist")
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        module_name = f"rlbench_med_plugin_{path.stem}_{digest}"
        if module_name in sys.modules:
            return
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        if module_spec is None or module_spec.loader is None:
            raise PluginError(f"plugin file {spec!r} cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        try:
            module_spec.loader.exec_module(module)
        except (Exception, SystemExit) as exc:
            del sys.modules[module_name]
            raise PluginError(f"plugin file {spec!r} failed to import: {_import_failure(exc)}") from exc
        return
    try:
        importlib.import_module(spec)
    except (Exception, SystemExit) as exc:
        raise PluginError(f"plugin module {spec!r} failed to import: {_import_failure(exc)}") from exc


def _import_failure(exc: BaseException) -> str:
    """Why a plugin failed to import, in one phrase; ``sys.exit`` at import is named as such (it would
    otherwise end ``rlbench-med`` with that code and no word)."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while being imported; a plugin must only define and register"
    return f"{type(exc).__name__}: {exc}"
