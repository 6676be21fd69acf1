"""Plugin loading and the registries built from the register hooks."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from xbench import hookspecs
from xbench.errors import PluginError, RegistryError
from xbench.settings import settings
from xbench.specs import DatasetSpec, LossSpec, MethodSpec, StudentSpec, TaskSpec, TeacherSpec

#: registry kind -> (hook name, spec type)
KINDS: dict[str, tuple[str, type]] = {
    "teachers": ("xbench_register_teachers", TeacherSpec),
    "students": ("xbench_register_students", StudentSpec),
    "losses": ("xbench_register_losses", LossSpec),
    "datasets": ("xbench_register_datasets", DatasetSpec),
    "tasks": ("xbench_register_tasks", TaskSpec),
    "methods": ("xbench_register_methods", MethodSpec),
}


@dataclass(frozen=True)
class PluginInfo:
    name: str
    dist: str
    version: str
    module: str


@dataclass(frozen=True)
class Entry:
    spec: Any
    plugin: str


@dataclass
class Registry:
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    entries: dict[str, dict[str, Entry]] = field(default_factory=lambda: {k: {} for k in KINDS})

    def get(self, kind: str, name: str) -> Any:
        return self.entry(kind, name).spec

    def entry(self, kind: str, name: str) -> Entry:
        table = self.entries[kind]
        if name not in table:
            singular = kind[:-1] if kind != "losses" else "loss"
            hint = difflib.get_close_matches(name, list(table), n=1)
            msg = f"unknown {singular} '{name}'"
            msg += f"; did you mean '{hint[0]}'?" if hint else f"; known: {', '.join(sorted(table)) or 'none'}"
            raise RegistryError(msg)
        return table[name]

    def owner(self, kind: str, name: str) -> PluginInfo:
        return self.plugins[self.entry(kind, name).plugin]

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def default_teacher(self, task: Any) -> str:
        """The teacher a task's default-teacher methods use: the task's own choice, else the one
        registered teacher that declares itself the task's default (``TeacherSpec.default_for``)."""
        if task.default_teacher:
            return task.default_teacher
        named = [n for n in self.names("teachers") if task.name in self.get("teachers", n).default_for]
        if len(named) != 1:
            from xbench.errors import IncompatibleError

            raise IncompatibleError(
                f"task '{task.name}' names no default teacher and "
                + ("no registered teacher declares itself its default" if not named else
                   f"teachers {', '.join(repr(n) for n in named)} each declare themselves its default")
                + "; pass --teacher NAME")
        return named[0]

    def registered_by(self, plugin: str) -> dict[str, list[str]]:
        out = {}
        for kind, table in self.entries.items():
            names = sorted(n for n, e in table.items() if e.plugin == plugin)
            if names:
                out[kind] = names
        return out


def disabled_plugins() -> set[str]:
    return set(settings().disable_plugins)


def _load(ep: EntryPoint) -> tuple[Any, PluginInfo]:
    dist = ep.dist
    info = PluginInfo(
        name=ep.name,
        dist=dist.metadata["Name"] if dist else "?",
        version=dist.version if dist else "?",
        module=ep.value,
    )
    try:
        module = ep.load()
    except Exception as exc:  # any failure to import is the plugin's, and must name it
        raise PluginError(
            f"plugin '{ep.name}' ({info.dist}) failed to import {ep.value}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return module, info


def plugin_manager(extra: dict[str, Any] | None = None) -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """Load every ``xbench`` entry point (minus XBENCH_DISABLE_PLUGINS) into a plugin manager.
    ``extra`` maps names to plugin objects registered as well (used by tests and the kit)."""
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    infos: dict[str, PluginInfo] = {}
    blocked = disabled_plugins()
    seen: set[str] = set()
    for ep in sorted(entry_points(group=hookspecs.PROJECT), key=lambda e: e.name):
        if ep.name in blocked or ep.name in seen:  # a dist found twice on sys.path loads once
            continue
        seen.add(ep.name)
        module, info = _load(ep)
        pm.register(module, name=ep.name)
        infos[ep.name] = info
    for name, obj in (extra or {}).items():
        if name in blocked:
            continue
        pm.register(obj, name=name)
        infos[name] = PluginInfo(name=name, dist="(in-process)", version="-", module=repr(obj))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:  # a misspelled hook fails at once, by name
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        hook = str(exc).split("'")[1] if str(exc).count("'") >= 2 else str(exc)
        hint = difflib.get_close_matches(hook, [k for k, _ in KINDS.values()], n=1)
        raise PluginError(f"plugin '{name}' implements an unknown hook '{hook}'"
                          + (f"; did you mean '{hint[0]}'?" if hint else "")) from exc
    return pm, infos


def build_registry(extra: dict[str, Any] | None = None) -> Registry:
    """Call each plugin's register hooks one plugin at a time, so every entry knows its owner."""
    pm, infos = plugin_manager(extra)
    reg = Registry(plugins=infos)
    for kind, (hook_name, spec_type) in KINDS.items():
        caller = getattr(pm.hook, hook_name)
        for impl in caller.get_hookimpls():
            plugin = impl.plugin_name

            def register(spec: Any, _plugin: str = plugin, _kind: str = kind, _t: type = spec_type,
                         _hook: str = hook_name) -> None:
                if not isinstance(spec, _t):
                    raise PluginError(
                        f"plugin '{_plugin}' registered a {type(spec).__name__} through "
                        f"{_hook}; expected {_t.__name__}"
                    )
                table = reg.entries[_kind]
                if spec.name in table:
                    other = table[spec.name].plugin
                    raise RegistryError(
                        f"{_kind[:-1] if _kind != 'losses' else 'loss'} '{spec.name}' is registered "
                        f"by both plugin '{other}' and plugin '{_plugin}'"
                    )
                table[spec.name] = Entry(spec=spec, plugin=_plugin)

            try:
                impl.function(register=register)
            except (PluginError, RegistryError):
                raise
            except Exception as exc:  # a plugin's own bug: name the plugin, keep the cause chained
                raise PluginError(
                    f"plugin '{plugin}' raised in {hook_name}: {type(exc).__name__}: {exc}"
                ) from exc
    return reg
