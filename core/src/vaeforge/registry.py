"""Named components, one namespace per kind.

Plugins fill the registry through the ``register_<kind>s`` hooks; the config
refers to components only by these names. A registry never imports the heavy
parts of a component until it is built: a factory may be given as a
``"package.module:attribute"`` string that is imported on first use.

Factory calling conventions (the arguments each kind's factory receives):

==============  ===================================================================
kind            factory call
==============  ===================================================================
model           ``factory(config, data_info)`` -> ``torch.nn.Module``
loss            ``factory(config)`` -> loss term (see :mod:`vaeforge.api`)
callback        ``factory(config)`` -> callback object
data_source     ``factory(config)`` -> :class:`vaeforge.api.DataSource`
logger          ``factory(config, run_dir)`` -> logger object
optimizer       ``factory(params, config)`` -> ``torch.optim.Optimizer``
scheduler       ``factory(optimizer, config, total_steps)`` -> LR scheduler
schedule        ``factory(config)`` -> callable ``(step, epoch, steps_per_epoch) -> float``
metric          ``factory(config)`` -> metric object
preset          not called: the "factory" is a path to a YAML file or a mapping
==============  ===================================================================

``config`` is the instance of the component's config class structured from
the run config's ``params``; a component registered without a config class
takes no parameters (its factory receives None, and any ``params`` given for
it in a config file is an error).
"""

from __future__ import annotations

import importlib
import re
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, Union

import attrs

from vaeforge.errors import ComponentError, PluginError, UserError, did_you_mean

KINDS: tuple[str, ...] = (
    "model",
    "loss",
    "callback",
    "data_source",
    "logger",
    "optimizer",
    "scheduler",
    "schedule",
    "metric",
    "preset",
)
"""Every component kind, in the order the ``register_<kind>s`` hooks run."""


@attrs.frozen
class Component:
    """One registered component.

    :param kind: one of :data:`KINDS`.
    :param name: the name configs use.
    :param factory: a callable, or a ``"module:attribute"`` import string.
    :param config: the attrs class its ``params`` are structured into, or None.
    :param plugin: the name of the plugin that registered it.
    """

    kind: str
    name: str
    factory: Any
    config: type | None
    plugin: str

    def load(self) -> Any:
        """Return the factory, importing it first if it was given as a string."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attribute = self.factory.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
        return obj

    @property
    def doc(self) -> str:
        """The first line of the factory's docstring, else of the config class's.

        A factory given as an import string is not imported for this, and a
        preset's source (a path or a mapping) has no docstring of its own.
        """
        for source in (self.factory, self.config):
            if not callable(source):
                continue
            text = (getattr(source, "__doc__", None) or "").strip()
            if text:
                return text.splitlines()[0]
        return ""


@attrs.frozen
class FieldDoc:
    """One field of a component's config class, as ``vaeforge components`` and the docs show it.

    :param name: the key in ``params``.
    :param type: the type, spelled as in Python (``int | None``, ``'min' | 'max'`` for a Literal).
    :param default: the default as Python would print it, or None when the field is required.
    :param doc: the field's ``:param name:`` text from the class docstring.
    """

    name: str
    type: str
    default: str | None
    doc: str


def config_fields(config: type) -> list[FieldDoc]:
    """The fields of an attrs config class in declaration order, with types, defaults and docs."""
    try:
        attrs.resolve_types(config)
    except Exception:  # noqa: S110 - an unresolvable annotation is shown as written
        pass
    docs = param_docs(config.__doc__ or "")
    fields = []
    for field in attrs.fields(config):
        if field.default is attrs.NOTHING:
            default = None
        elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
            default = format_default(field.default.factory())
        else:
            default = format_default(field.default)
        fields.append(FieldDoc(field.name, type_name(field.type), default, docs.get(field.name, "")))
    return fields


def param_docs(doc: str) -> dict[str, str]:
    """``:param name: text`` entries of a docstring, continuation lines joined."""
    docs: dict[str, str] = {}
    current = None
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped.startswith(":param "):
            name, _, text = stripped[len(":param "):].partition(":")
            current = name.strip()
            docs[current] = text.strip()
        elif current and stripped and not stripped.startswith(":"):
            docs[current] += " " + stripped
        else:
            current = None
    return docs


def type_name(annotation: Any) -> str:
    """``int | None``, ``list[str]``, ``'fp32' | 'bf16'``: a type as a reader writes it, without module paths."""
    if isinstance(annotation, str):
        return annotation
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return " | ".join(repr(arg) for arg in args)
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_name(arg) for arg in args)
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else type_name(arg) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation))


_YAML_WORDS = {"", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n"}


def format_default(value: Any) -> str:
    """A default as it would be written in a YAML run file (flow style): ``null``, ``true``, ``[256, 128]``."""
    if attrs.has(type(value)):
        value = {a.name: getattr(value, a.name) for a in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {format_default(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_default(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        plain = re.fullmatch(r"[A-Za-z_][\w./-]*", value) and value.lower() not in _YAML_WORDS
        return value if plain else repr(value)
    return repr(value)


class Registry:
    """Components by kind and name. Names are unique within a kind."""

    def __init__(self, failures: Mapping[str, Any] | None = None) -> None:
        self._components: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        self.failures: Mapping[str, Any] = failures or {}
        """Plugins that failed to load, by name (``PluginInfo`` objects with ``describe()`` and ``error``)."""
        self._orphans: dict[tuple[str, str], str] = {}

    def register(
        self,
        kind: str,
        name: str,
        factory: Any,
        config: type | None = None,
        *,
        plugin: str,
    ) -> Component:
        """Add one component; a name already taken in ``kind`` is an error naming both plugins."""
        if kind not in self._components:
            raise ComponentError(f"plugin {plugin!r}: unknown component kind {kind!r}{did_you_mean(kind, KINDS)}")
        if not isinstance(name, str) or not name:
            raise ComponentError(f"plugin {plugin!r}: a {kind} name must be a non-empty string, got {name!r}")
        if config is not None and not attrs.has(config):
            raise ComponentError(
                f"plugin {plugin!r}: {kind} {name!r}: config must be an attrs class, got {config!r}"
            )
        existing = self._components[kind].get(name)
        if existing is not None:
            raise ComponentError(
                f"{kind} {name!r} is registered twice: by plugin {existing.plugin!r} and by plugin {plugin!r}"
            )
        component = Component(kind=kind, name=name, factory=factory, config=config, plugin=plugin)
        self._components[kind][name] = component
        return component

    def record_failure(self, plugin: str) -> None:
        """Remove every component ``plugin`` registered because the plugin failed midway.

        The removed names are remembered, so asking for one of them later is
        an error naming the failed plugin rather than "unknown".
        """
        for kind, components in self._components.items():
            for name in [n for n, c in components.items() if c.plugin == plugin]:
                del components[name]
                self._orphans[(kind, name)] = plugin

    def get(self, kind: str, name: str) -> Component:
        """Return the component, or raise listing what is available with a did-you-mean."""
        try:
            return self._components[kind][name]
        except KeyError:
            pass
        orphan_of = self._orphans.get((kind, name))
        if orphan_of is not None and orphan_of in self.failures:
            info = self.failures[orphan_of]
            raise PluginError(f"{kind} {name!r} comes from {info.describe()}, which failed to load: {info.error}")
        available = sorted(self._components.get(kind, {}))
        listing = ", ".join(available) if available else "none"
        message = f"unknown {kind} {name!r}{did_you_mean(name, available)} (available: {listing})"
        if self.failures:
            failed = "; ".join(f"{info.describe()}: {info.error}" for info in self.failures.values())
            message += f"; it may come from a plugin that failed to load: {failed}"
        raise ComponentError(message)

    def __contains__(self, key: tuple[str, str]) -> bool:
        kind, name = key
        return name in self._components.get(kind, {})

    def build(self, kind: str, name: str, params: Any, *args: Any) -> Any:
        """Build component ``name`` of ``kind`` with its structured ``params`` (None without a config class).

        Follows the calling conventions in this module's docstring. A factory
        that raises ValueError, TypeError, KeyError or FileNotFoundError is
        reported as a :class:`~vaeforge.errors.ComponentError` naming the
        component and its plugin.
        """
        component = self.get(kind, name)
        factory = component.load()
        try:
            if kind in ("optimizer", "scheduler"):
                return factory(args[0], params, *args[1:])
            return factory(params, *args)
        except UserError:
            raise
        except (ValueError, TypeError, KeyError, FileNotFoundError) as exc:
            raise ComponentError(f"{kind} {name!r} (plugin {component.plugin!r}): {exc}") from exc

    def names(self, kind: str) -> list[str]:
        """Sorted names registered for ``kind``."""
        return sorted(self._components[kind])

    def components(self, kind: str | None = None) -> Iterator[Component]:
        """Every component, or those of one kind, sorted by kind then name."""
        kinds = KINDS if kind is None else (kind,)
        for k in kinds:
            for name in sorted(self._components[k]):
                yield self._components[k][name]

    def bound(self, kind: str, plugin: str) -> Callable[..., Component]:
        """The ``register(name, factory, config=None)`` callback handed to one plugin's hook."""

        def register(name: str, factory: Any, config: type | None = None) -> Component:
            return self.register(kind, name, factory, config, plugin=plugin)

        register.__doc__ = f"Register a {kind} named ``name`` on behalf of plugin {plugin!r}."
        return register
