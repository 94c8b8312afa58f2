"""The plugin manager: finds plugins, loads them one by one, builds the registry.

Plugins are modules named by entry points in the ``vaeforge`` group; the
core's own components come from :data:`BUILTIN_PLUGINS`, registered through
the very same hooks. Loading is fault tolerant: a plugin that fails to import,
fails to validate (a hookimpl with an unknown name or argument) or raises
while registering is recorded in :attr:`PluginManager.failures` and reported
as one warning line, and every other plugin still loads. A run whose config
names a component of a failed plugin then stops with an error naming the
plugin, its distribution, version and the cause
(see :meth:`vaeforge.registry.Registry.get`).

Environment variables:

``VAEFORGE_DISABLE_PLUGIN_AUTOLOAD=1``
    load no entry points, only the built-ins.
``VAEFORGE_PLUGINS=a,b``
    load only these entry points (``""`` loads none).
``VAEFORGE_DISABLE_PLUGINS=a,b``
    never load these entry points.
``VAEFORGE_STRICT_PLUGINS=1``
    any plugin failure is an error instead of a warning.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import warnings
from importlib import metadata
from types import ModuleType

import attrs
import pluggy

from vaeforge import hookspecs
from vaeforge.errors import PluginError, did_you_mean
from vaeforge.registry import Registry

ENTRY_POINT_GROUP = "vaeforge"
BUILTIN_PLUGINS: tuple[str, ...] = ("vaeforge.builtin.plugin",)
BUILTIN_NAME = "vaeforge"


class PluginWarning(UserWarning):
    """A plugin failed to load and was skipped."""


@attrs.define
class PluginInfo:
    """What is known about one plugin, loaded or not.

    :param name: the entry-point name (``vaeforge`` for the built-ins).
    :param module: the module the entry point names.
    :param distribution: the distribution that declares it, if any.
    :param version: that distribution's version.
    :param error: why it failed to load, or None when it loaded.
    """

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None

    def describe(self) -> str:
        """``'name' (dist 1.0)`` for messages."""
        if self.distribution:
            return f"plugin {self.name!r} ({self.distribution} {self.version})"
        return f"plugin {self.name!r} ({self.module})"


class PluginManager(pluggy.PluginManager):
    """A pluggy manager for the ``vaeforge`` hooks that remembers where each plugin came from."""

    def __init__(self) -> None:
        super().__init__(ENTRY_POINT_GROUP)
        self.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}

    @property
    def failures(self) -> dict[str, PluginInfo]:
        """Plugins that failed to import, validate or register, by name."""
        return {name: info for name, info in self.infos.items() if info.error is not None}

    def add_plugin(self, module: ModuleType | object, info: PluginInfo | None = None) -> bool:
        """Register one plugin and validate its hookimpls; on failure record it and return False.

        :param module: the plugin: a module (or any object) with ``@hookimpl`` functions.
        :param info: where it came from; defaults to a plugin named after the module.
        """
        if info is None:
            name = getattr(module, "__name__", type(module).__name__)
            info = PluginInfo(name=name, module=name)
        self.infos[info.name] = info
        try:
            self.register(module, name=info.name)
        except pluggy.PluginValidationError as exc:
            self.fail(info.name, _signature_problem(exc))
            return False
        unknown = self._unknown_hooks(info.name)
        if unknown:
            self.unregister(name=info.name)
            self.fail(info.name, "; ".join(
                f"PluginValidationError: unknown hook {hook!r}{did_you_mean(hook, self._spec_names())}"
                for hook in unknown))
            return False
        self.check_pending()  # anything left is another plugin's, registered without add_plugin
        return True

    def _spec_names(self) -> list[str]:
        return [name for name, caller in vars(self.hook).items() if caller.spec is not None]

    def _unknown_hooks(self, plugin_name: str) -> list[str]:
        """Hooks that ``plugin_name`` implements but no hookspec declares (optional hooks excepted)."""
        return sorted(
            name for name, caller in vars(self.hook).items()
            if caller.spec is None
            and any(impl.plugin_name == plugin_name and not impl.optionalhook for impl in caller.get_hookimpls())
        )

    def fail(self, name: str, cause: BaseException | str) -> None:
        """Record that plugin ``name`` failed, and warn (or raise in strict mode)."""
        info = self.infos.setdefault(name, PluginInfo(name=name, module=name))
        text = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        info.error = " ".join(str(text).split())
        if os.environ.get("VAEFORGE_STRICT_PLUGINS") == "1":
            raise PluginError(f"{info.describe()} failed to load: {info.error} "
                              "(VAEFORGE_STRICT_PLUGINS=1 makes this an error)")
        warnings.warn(f"{info.describe()} failed to load and was skipped: {info.error}", PluginWarning, stacklevel=2)


def _signature_problem(exc: pluggy.PluginValidationError) -> str:
    """pluggy's multi-line signature error as one line naming the hookimpl, the spec and what differs."""
    text = " ".join(str(exc).split())
    match = re.search(r"hookimpl definition: ((\w+)\(.*?\)) Argument\(s\) (\{.*?\}) are declared", text)
    if match is None:
        return f"PluginValidationError: {text}"
    impl, hook_name, extra = match.groups()
    spec = f"{hook_name}({', '.join(_spec_args(hook_name))})"
    return f"PluginValidationError: {impl} asks for {extra}, which the hookspec {spec} does not provide"


def _spec_args(hook_name: str) -> list[str]:
    spec = getattr(hookspecs, hook_name, None)
    return list(inspect.signature(spec).parameters) if spec is not None else []


def _names_from_env(variable: str) -> set[str] | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def load_entry_points(pm: PluginManager) -> None:
    """Import and register every allowed plugin of the ``vaeforge`` entry-point group."""
    allowed = _names_from_env("VAEFORGE_PLUGINS")
    denied = _names_from_env("VAEFORGE_DISABLE_PLUGINS") or set()
    found: set[str] = set()
    for entry_point in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
        found.add(entry_point.name)
        if (allowed is not None and entry_point.name not in allowed) or entry_point.name in denied:
            continue
        if entry_point.name in pm.infos:
            continue  # the same entry point seen through two paths on sys.path
        dist = entry_point.dist
        info = PluginInfo(
            name=entry_point.name,
            module=entry_point.value,
            distribution=dist.name if dist is not None else None,
            version=dist.version if dist is not None else None,
        )
        try:
            module = entry_point.load()
        except Exception as exc:  # a broken plugin must not take the others down
            pm.infos[info.name] = info
            pm.fail(info.name, exc)
            continue
        pm.add_plugin(module, info)
    for name in sorted((allowed or set()) - found):
        warnings.warn(f"VAEFORGE_PLUGINS names {name!r}, but no such plugin is installed", PluginWarning, stacklevel=2)


def make_plugin_manager(*, autoload: bool | None = None) -> PluginManager:
    """A manager with the built-ins registered and, unless disabled, every installed plugin.

    :param autoload: load entry points; defaults to True unless
        ``VAEFORGE_DISABLE_PLUGIN_AUTOLOAD=1`` is set.
    """
    pm = PluginManager()
    for module_name in BUILTIN_PLUGINS:
        module = importlib.import_module(module_name)
        pm.add_plugin(module, PluginInfo(name=BUILTIN_NAME, module=module_name, distribution="vaeforge",
                                         version=_version("vaeforge")))
    if autoload is None:
        autoload = os.environ.get("VAEFORGE_DISABLE_PLUGIN_AUTOLOAD") != "1"
    if autoload:
        load_entry_points(pm)
    return pm


def build_registry(pm: PluginManager) -> Registry:
    """Call every registration hook of every loaded plugin and return the filled registry.

    Each plugin's hookimpl is called on its own, with a ``register`` callback
    bound to that plugin, in registration order (built-ins first). A plugin
    that raises, or registers a name another plugin already took, is recorded
    as failed and all its components are removed again.
    """
    registry = Registry(failures=pm.failures)
    for kind, hook_name in hookspecs.REGISTRATION_HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            if impl.plugin_name in pm.failures:
                continue
            register = registry.bound(kind, impl.plugin_name)
            try:
                impl.function(**{arg: register for arg in impl.argnames})
            except Exception as exc:
                registry.record_failure(impl.plugin_name)
                pm.fail(impl.plugin_name, f"{hook_name}: {type(exc).__name__}: {exc}")
    registry.failures = pm.failures
    return registry


def load_registry(*, autoload: bool | None = None) -> tuple[PluginManager, Registry]:
    """The usual start of every command: a plugin manager and its registry."""
    pm = make_plugin_manager(autoload=autoload)
    return pm, build_registry(pm)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def unloaded_extras(plugin: str, registry: Registry) -> tuple[str, list[tuple[str, str]]] | None:
    """The distribution of entry point ``plugin`` and its extras whose vaeforge plugin is not loaded.

    Each extra comes with why its plugin is missing (not installed, not
    loaded, failed). Requirements that are installed but declare no vaeforge
    entry point are not plugins and are skipped.
    """
    owner = next((ep.dist for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == plugin), None)
    if owner is None:
        return None
    loaded = {component.plugin for component in registry.components()}
    extras: list[tuple[str, str]] = []
    for requirement in owner.requires or []:
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)[^;]*;(.*)", requirement)
        extra = re.search(r"""extra\s*==\s*['"]([^'"]+)['"]""", match.group(2)) if match else None
        if match is None or extra is None:
            continue
        name = match.group(1)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            extras.append((extra.group(1), f"{name} is not installed"))
            continue
        plugins = [ep.name for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
        if not plugins or loaded.intersection(plugins):
            continue
        failed = next((registry.failures[p] for p in plugins if p in registry.failures), None)
        if failed is not None:
            state = f"{name} {dist.version} is installed, but its plugin {failed.name!r} failed to load: {failed.error}"
        else:
            state = (f"{name} {dist.version} is installed, but its plugin {plugins[0]!r} is not loaded: "
                     "see VAEFORGE_PLUGINS, VAEFORGE_DISABLE_PLUGINS and VAEFORGE_DISABLE_PLUGIN_AUTOLOAD")
        extras.append((extra.group(1), state))
    return owner.name, extras


__all__ = [
    "BUILTIN_PLUGINS",
    "ENTRY_POINT_GROUP",
    "PluginInfo",
    "PluginManager",
    "PluginWarning",
    "build_registry",
    "load_entry_points",
    "load_registry",
    "make_plugin_manager",
    "unloaded_extras",
]

