"""Hook specifications: everything a vaeforge plugin can contribute.

A plugin is a module (found through the ``vaeforge`` entry-point group) whose
functions are marked ``@vaeforge.hookimpl`` and named after one of the hooks
below. Hooks are always called with keyword arguments, so an implementation
may accept any subset of a spec's arguments; arguments may be added to a spec
in later versions but never renamed or removed.

Registration hooks are called once per plugin, in plugin load order, when the
registry is built. Each receives a ``register`` callback bound to the registry
and to the calling plugin, so a duplicate name is reported naming both
plugins. Importing a plugin module must stay cheap: import the component
modules inside the hook, and heavy third-party libraries inside factories.

This module imports nothing at run time beyond pluggy, so ``vaeforge --help``
never loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable

    from vaeforge.cli import CommandRegistry
    from vaeforge.registry import Component

    RegisterFn = Callable[..., Component]

hookspec = pluggy.HookspecMarker("vaeforge")
hookimpl = pluggy.HookimplMarker("vaeforge")


# -- Registration: called once per plugin while the registry is built --------


@hookspec
def register_models(register: RegisterFn) -> None:
    """Contribute model families.

    Every implementation is called. For each model call
    ``register(name, factory, config=ConfigCls)``. The trainer builds the model
    as ``factory(config, data_info)`` where ``config`` is an instance of
    ``ConfigCls`` structured from the run config's ``model.params`` and
    ``data_info`` is the data source's :class:`vaeforge.api.DataInfo`. The
    factory returns a ``torch.nn.Module`` that follows the model contract of
    :class:`vaeforge.api.VAEModel`. A name already taken raises, naming both
    plugins.

    :param register: adds one model to the registry on behalf of this plugin.

    .. versionadded:: 0.1
    """


@hookspec
def register_losses(register: RegisterFn) -> None:
    """Contribute loss terms.

    Every implementation is called. For each term call
    ``register(name, factory, config=ConfigCls)``; the trainer builds it as
    ``factory(config)``. A term is called as ``term(out, batch, ctx)`` and
    returns a scalar tensor or a mapping of named scalar tensors (summed, each
    logged as ``<split>/<term>/<key>``); see :class:`vaeforge.api.LossTerm`.

    :param register: adds one loss term to the registry on behalf of this plugin.

    .. versionadded:: 0.1
    """


@hookspec
def register_callbacks(register: RegisterFn) -> None:
    """Contribute training callbacks and controllers.

    Every implementation is called. For each callback call
    ``register(name, factory, config=ConfigCls)``; the trainer builds it as
    ``factory(config)``. Callbacks implement any of the ``on_<event>`` methods
    of :class:`vaeforge.api.Callback`; one with state implements
    ``state_dict()`` / ``load_state_dict()`` and is checkpointed.

    :param register: adds one callback to the registry on behalf of this plugin.

    .. versionadded:: 0.1
    """


@hookspec
def register_data_sources(register: RegisterFn) -> None:
    """Contribute data sources.

    Every implementation is called. For each source call
    ``register(name, factory, config=ConfigCls)``; the trainer builds it as
    ``factory(config)`` and calls its ``load()`` to get a
    :class:`vaeforge.api.DataSplits` of in-memory tensors (the fast path),
    map-style datasets or iterable streams.

    :param register: adds one data source to the registry on behalf of this plugin.

    .. versionadded:: 0.1
    """


@hookspec
def register_loggers(register: RegisterFn) -> None:
    """Contribute metric sinks.

    Every implementation is called. For each logger call
    ``register(name, factory, config=ConfigCls)``; the trainer builds it on
    rank 0 only as ``factory(config, run_dir)``. Import the logging library
    inside the factory, not at plugin import. A logger that raises while
    logging is switched off with one warning and training goes on.

    :param register: adds one logger to the registry on behalf of this plugin.

    .. versionadded:: 0.1
    """


@hookspec
def register_optimizers(register: RegisterFn) -> None:
    """Contribute optimizers.

    Every implementation is called. For each optimizer call
    ``register(name, factory, config=ConfigCls)``; the trainer builds it as
    ``factory(params, config)`` where ``params`` is the list of trainable
    parameters (frozen ones left out) and returns a ``torch.optim.Optimizer``.

    :param register: adds one optimizer to the registry on behalf of this plugin.

    .. versionadded:: 0.1
    """


@hookspec
def register_schedulers(register: RegisterFn) -> None:
    """Contribute learning-rate schedulers.

    Every implementation is called. For each scheduler call
    ``register(name, factory, config=ConfigCls)``; the trainer builds it as
    ``factory(optimizer, config, total_steps)`` and steps it once per
    optimizer step (never on a skipped step). It must provide
    ``state_dict()`` / ``load_state_dict()``.

    :param register: adds one scheduler to the registry on behalf of this plugin.

    .. versionadded:: 0.1
    """


@hookspec
def register_schedules(register: RegisterFn) -> None:
    """Contribute weight schedules for loss terms.

    Every implementation is called. For each schedule call
    ``register(name, factory, config=ConfigCls)``. A config may then give a
    loss weight as ``{schedule: <name>, <params>...}``; the trainer builds
    ``factory(config)`` and calls the result as
    ``schedule(step, epoch, steps_per_epoch) -> float`` before every step.

    :param register: adds one weight schedule to the registry on behalf of this plugin.

    .. versionadded:: 0.1
    """


@hookspec
def register_metrics(register: RegisterFn) -> None:
    """Contribute evaluation metrics.

    Every implementation is called. For each metric call
    ``register(name, factory, config=ConfigCls)``; the trainer builds it as
    ``factory(config)`` and, after each validation pass, calls
    ``metric(model, data, ctx)`` which returns a mapping of metric names to
    floats, logged under ``val/``; see :class:`vaeforge.api.Metric`.

    :param register: adds one metric to the registry on behalf of this plugin.

    .. versionadded:: 0.1
    """


@hookspec
def register_presets(register: RegisterFn) -> None:
    """Contribute named, ready-to-run configs.

    Every implementation is called. For each preset call
    ``register(name, source)`` where ``source`` is a path to a YAML file
    shipped inside the plugin package, or a mapping. ``vaeforge train <name>``
    then runs it.

    :param register: adds one preset to the registry on behalf of this plugin.

    .. versionadded:: 0.1
    """


# -- Command line: called while the CLI is built -----------------------------


@hookspec
def register_commands(cli: CommandRegistry) -> None:
    """Contribute subcommands to the ``vaeforge`` command line.

    Every implementation is called before arguments are parsed, also for
    ``vaeforge --help``, so it must not import torch or other heavy libraries;
    import them inside the handler. Call
    ``cli.add_command(name, handler, help=...)``, which returns the
    ``argparse.ArgumentParser`` of the new subcommand for adding arguments;
    the handler is called as ``handler(args)`` and returns an exit code.

    :param cli: the command registry of the ``vaeforge`` program.

    .. versionadded:: 0.1
    """


REGISTRATION_HOOKS: dict[str, str] = {
    "model": "register_models",
    "loss": "register_losses",
    "callback": "register_callbacks",
    "data_source": "register_data_sources",
    "logger": "register_loggers",
    "optimizer": "register_optimizers",
    "scheduler": "register_schedulers",
    "schedule": "register_schedules",
    "metric": "register_metrics",
    "preset": "register_presets",
}
"""Component kind -> the hook that contributes it."""
