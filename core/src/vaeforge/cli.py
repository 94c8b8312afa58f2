"""The ``vaeforge`` command line.

Building the parser loads plugins (their modules are light) and asks them
for extra subcommands, but imports no torch: ``vaeforge --help`` stays fast.
Every handler imports what it needs. A :class:`~vaeforge.errors.UserError`
becomes ``error: ...`` lines on standard error and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vaeforge.errors import NonFiniteError, PluginError, UserError

Handler = Callable[[argparse.Namespace], int]


class CommandRegistry:
    """What ``register_commands(cli)`` receives: a way to add subcommands."""

    def __init__(self, subparsers: Any, plugin: str = "vaeforge"):
        self._subparsers = subparsers
        self.plugin = plugin
        self.names: dict[str, str] = {}

    def add_command(self, name: str, handler: Handler, help: str = "") -> argparse.ArgumentParser:
        """Add ``vaeforge <name>``; returns its parser. ``handler(args)`` returns the exit code."""
        if name in self.names:
            raise PluginError(f"command {name!r} is added twice: by plugin {self.names[name]!r} and by {self.plugin!r}")
        self.names[name] = self.plugin
        parser = self._subparsers.add_parser(name, help=help, description=help)
        parser.set_defaults(handler=handler)
        return parser


def _format_warning(message: Any, category: type, filename: str, lineno: int, line: str | None = None) -> str:
    return f"warning: {message}\n"


def _registry() -> Any:
    from vaeforge.plugins import build_registry

    return build_registry(_PLUGIN_MANAGER)


def _overrides_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="dotted overrides, e.g. trainer.epochs=50 'losses[1].weight=0.2'")


# -- handlers ----------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from vaeforge import run
    from vaeforge.config import load_config

    registry = _registry()
    config = load_config(args.target, registry, args.overrides)
    folder = Path(args.run_dir) if args.run_dir else run.default_run_dir(config)
    metrics = run.train(config, registry, folder, device=args.device)
    _print_summary(folder, metrics)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from vaeforge import run

    metrics = run.resume(Path(args.run_dir), _registry(), device=args.device)
    _print_summary(Path(args.run_dir), metrics)
    return 0


def _print_summary(folder: Path, metrics: dict[str, float]) -> None:
    shown = {k: round(v, 6) for k, v in sorted(metrics.items()) if k.startswith(("train/loss", "val/"))}
    print(f"run folder: {folder}")
    if shown:
        print("final: " + ", ".join(f"{k}={v}" for k, v in shown.items()))


def cmd_validate(args: argparse.Namespace) -> int:
    from vaeforge.config import load_config

    config = load_config(args.target, _registry(), args.overrides)
    print(f"ok: {args.target} is a valid config for run {config.name!r}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    from vaeforge.config import config_to_yaml, load_config

    sys.stdout.write(config_to_yaml(load_config(args.target, _registry(), args.overrides)))
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    registry = _registry()
    rows = []
    for info in _PLUGIN_MANAGER.infos.values():
        components = [f"{c.kind}:{c.name}" for c in registry.components() if c.plugin == info.name]
        rows.append({"name": info.name, "distribution": info.distribution, "version": info.version,
                     "module": info.module, "components": components, "error": info.error})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['name']} ({row['distribution'] or row['module']} {row['version'] or ''})".replace(" )", ")"))
        if row["error"]:
            print(f"  failed to load: {row['error']}")
        by_kind: dict[str, list[str]] = {}
        for item in row["components"]:
            kind, _, name = item.partition(":")
            by_kind.setdefault(kind, []).append(name)
        for kind, names in by_kind.items():
            print(f"  {kind}: {', '.join(names)}")
    return 0


def cmd_components(args: argparse.Namespace) -> int:
    from vaeforge.registry import KINDS, config_fields

    registry = _registry()
    if args.kind and args.kind not in KINDS:
        from vaeforge.errors import did_you_mean

        raise UserError(f"unknown component kind {args.kind!r}{did_you_mean(args.kind, KINDS)} "
                        f"(kinds: {', '.join(KINDS)})")
    for component in registry.components(args.kind):
        if component.kind == "preset":
            continue
        print(f"{component.kind} {component.name}  [plugin {component.plugin}]  {component.doc}".rstrip())
        for field in config_fields(component.config) if component.config is not None else ():
            default = "required" if field.default is None else f"default {field.default}"
            print(f"    {field.name}: {field.type}, {default}. {field.doc}".rstrip())
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    registry = _registry()
    for component in registry.components("preset"):
        source = component.load()
        summary = ""
        if isinstance(source, (str, Path)) and Path(source).is_file():
            first = Path(source).read_text(encoding="utf-8").splitlines()[:1]
            summary = first[0].lstrip("# ").strip() if first and first[0].startswith("#") else ""
        print(f"{component.name}  [plugin {component.plugin}]  {summary}".rstrip())
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    from vaeforge.inspect import sample_run

    path = sample_run(Path(args.run_dir), _registry(), args.n, Path(args.out), seed=args.seed,
                      checkpoint=args.checkpoint, device=args.device)
    print(f"wrote {args.n} samples to {path}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaeforge.inspect import evaluate_run

    metrics = evaluate_run(Path(args.run_dir), _registry(), checkpoint=args.checkpoint, device=args.device)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return 0


# -- the parser --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The full parser, plugin subcommands included."""
    from vaeforge import __version__

    parser = argparse.ArgumentParser(prog="vaeforge", description="Train variational autoencoders from YAML configs.")
    parser.add_argument("--version", action="version", version=f"vaeforge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands = CommandRegistry(sub)

    p = commands.add_command("train", cmd_train, help="train a preset or a config file")
    p.add_argument("target", help="a preset name (see 'vaeforge presets') or a YAML file")
    _overrides_arg(p)
    p.add_argument("--run-dir", help="the run folder (default: runs/<name>/<timestamp>)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or mps (default: VAEFORGE_DEVICE, else the best available)")

    p = commands.add_command("resume", cmd_resume, help="continue a run from its newest complete checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--device")

    p = commands.add_command("validate", cmd_validate, help="check a config and report every error")
    p.add_argument("target")
    _overrides_arg(p)

    config_parser = commands.add_command("config", lambda a: (config_parser.print_help(), 2)[1],
                                         help="work with configs")
    config_sub = config_parser.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    show = config_sub.add_parser("show", help="print the fully resolved config as YAML")
    show.set_defaults(handler=cmd_config_show)
    show.add_argument("target")
    _overrides_arg(show)

    p = commands.add_command("plugins", cmd_plugins, help="list plugins, their components and load errors")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = commands.add_command("components", cmd_components, help="list components and their config fields")
    p.add_argument("kind", nargs="?", help="only this kind (model, loss, callback, ...)")

    commands.add_command("presets", cmd_presets, help="list ready-to-run presets")

    p = commands.add_command("sample", cmd_sample, help="draw samples from a trained run")
    p.add_argument("run_dir")
    p.add_argument("-n", type=int, default=64, help="number of samples")
    p.add_argument("--out", required=True, help="an image grid (.png, image data only) or an array (.npy)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="best", help="best (falls back to last), last, or a checkpoint folder")
    p.add_argument("--device")

    p = commands.add_command("evaluate", cmd_evaluate, help="validation metrics of a run's checkpoint, as JSON")
    p.add_argument("run_dir")
    p.add_argument("--checkpoint", default="best", help="best (falls back to last), last, or a checkpoint folder")
    p.add_argument("--device")

    for impl in _PLUGIN_MANAGER.hook.register_commands.get_hookimpls():
        commands.plugin = impl.plugin_name
        try:
            impl.function(**{arg: commands for arg in impl.argnames})
        except Exception as exc:
            _PLUGIN_MANAGER.fail(impl.plugin_name, f"register_commands: {type(exc).__name__}: {exc}")
    return parser


_PLUGIN_MANAGER: Any = None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    global _PLUGIN_MANAGER
    warnings.formatwarning = _format_warning  # one line per warning
    try:
        from vaeforge.plugins import make_plugin_manager

        _PLUGIN_MANAGER = make_plugin_manager()
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:  # overrides may follow options: train digits --run-dir x trainer.epochs=3
            if not hasattr(args, "overrides") or any(a.startswith("-") for a in extra):
                parser.error(f"unrecognized arguments: {' '.join(extra)}")
            args.overrides = [*args.overrides, *extra]
        if getattr(args, "handler", None) is None:
            parser.print_help()
            return 2
        return int(args.handler(args))
    except UserError as exc:
        for line in exc.lines:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except NonFiniteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # vaeforge components | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
