"""The typed run configuration: YAML in, attrs objects out, every error at once.

Loading happens in four steps, each collecting errors instead of stopping at
the first:

1. the source (a file or a registered preset) is parsed with a safe YAML
   loader; Python tags are refused;
2. dotted overrides (``trainer.epochs=50``, ``losses[1].weight=0.2``) are
   applied to the parsed document;
3. every component (``{name, params}``) is looked up in the registry and its
   ``params`` structured into the component's own attrs class with a strict
   converter (unknown keys, wrong types and strings where numbers belong are
   errors);
4. the document is structured into :class:`RunConfig`.

All problems are raised together as one :class:`~vaeforge.errors.ConfigError`
whose lines read ``file:line: $.path: message`` (with a did-you-mean where
one fits). Nothing is written anywhere before a config has loaded.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs
import yaml
from attrs import field, frozen
from attrs.validators import ge, gt, optional
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn

from vaeforge.errors import ComponentError, ConfigError, PluginError, did_you_mean
from vaeforge.registry import Registry

# -- The run configuration ----------------------------------------------------


@frozen(kw_only=True)
class ComponentSpec:
    """A registered component chosen by name, with its parameters.

    :param name: the registered name (see ``vaeforge components``).
    :param params: the component's own settings; after loading, an instance of
        its config class (or None for a component without settings).
    """

    name: str
    params: Any = None


@frozen(kw_only=True)
class ScheduleSpec:
    """A loss weight that changes during training.

    Written in YAML as ``{schedule: linear, start: 0.0, end: 1.0, epochs: 10}``:
    every key but ``schedule`` is a parameter of that schedule.

    :param name: the registered schedule name.
    :param params: an instance of the schedule's config class.
    """

    name: str
    params: Any = None


@frozen(kw_only=True)
class LossSpec:
    """One loss term of the objective.

    :param name: the registered loss name.
    :param params: the term's own settings.
    :param weight: a constant multiplier, or a schedule written as ``{schedule: <name>, <params>...}``.
    """

    name: str
    params: Any = None
    weight: Any = 1.0


@frozen(kw_only=True)
class DataConfig:
    """Where batches come from.

    :param name: the registered data source.
    :param params: the source's own settings.
    :param batch_size: training batch size.
    :param val_batch_size: validation batch size; defaults to ``batch_size``.
    :param subset: keep only this many training examples (chosen with ``seed``).
    :param seed: seed for ``subset`` and shuffling; defaults to the run's seed.
    :param shuffle: reshuffle the training data every epoch.
    :param drop_last: drop a last incomplete training batch.
    :param num_workers: DataLoader workers (not used on the in-memory fast path).
    :param pin_memory: pin host memory for faster copies to CUDA.
    """

    name: str
    params: Any = None
    batch_size: int = field(default=64, validator=ge(1))
    val_batch_size: int | None = field(default=None, validator=optional(ge(1)))
    subset: int | None = field(default=None, validator=optional(ge(1)))
    seed: int | None = None
    shuffle: bool = True
    drop_last: bool = False
    num_workers: int = field(default=0, validator=ge(0))
    pin_memory: bool = False


@frozen(kw_only=True)
class EMAConfig:
    """Exponential moving average of the weights, used for validation and sampling.

    :param decay: the EMA decay per step.
    :param warmup: ramp the decay up as ``min(decay, (1 + n) / (10 + n))``.
    """

    decay: float = field(default=0.999, validator=[ge(0.0), attrs.validators.le(1.0)])
    warmup: bool = True


@frozen(kw_only=True)
class CompileConfig:
    """``torch.compile`` of the model; any failure falls back to eager with one warning.

    :param enabled: compile the model.
    :param backend: the torch.compile backend.
    :param mode: the torch.compile mode.
    :param fullgraph: refuse graph breaks.
    """

    enabled: bool = False
    backend: str = "inductor"
    mode: str = "default"
    fullgraph: bool = False


@frozen(kw_only=True)
class TrainerConfig:
    """How the loop runs.

    :param epochs: epochs to train (per stage in a pipeline, unless the stage sets its own).
    :param max_steps: stop after this many optimizer steps; needed for endless streams.
    :param grad_clip: clip the gradient norm to this value; None disables clipping.
    :param precision: ``fp32``, ``bf16`` (autocast, CPU or CUDA) or ``fp16`` (CUDA, with a GradScaler).
    :param ema: keep an EMA of the weights; None disables it.
    :param compile: ``torch.compile`` settings.
    :param val_every_n_epochs: validate every N epochs.
    :param val_every_n_steps: also validate every N steps.
    :param log_every_n_steps: write training metrics every N steps.
    :param max_consecutive_skips: stop after this many non-finite steps in a row.
    :param device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``; None picks CUDA, then MPS, then CPU.
    """

    epochs: int | None = field(default=10, validator=optional(ge(1)))
    max_steps: int | None = field(default=None, validator=optional(ge(1)))
    grad_clip: float | None = field(default=None, validator=optional(gt(0.0)))
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    ema: EMAConfig | None = None
    compile: CompileConfig = CompileConfig()
    val_every_n_epochs: int = field(default=1, validator=ge(1))
    val_every_n_steps: int | None = field(default=None, validator=optional(ge(1)))
    log_every_n_steps: int = field(default=50, validator=ge(1))
    max_consecutive_skips: int = field(default=20, validator=ge(1))
    device: str | None = None


@frozen(kw_only=True)
class UntilConfig:
    """End a stage early once a metric crosses a threshold (checked after each epoch's validation).

    :param metric: a logged metric, e.g. ``train/recon`` or ``val/loss``.
    :param below: move on once the metric is below this value.
    :param above: move on once the metric is above this value.
    :param min_epochs: never move on before this many epochs of the stage.
    """

    metric: str
    below: float | None = None
    above: float | None = None
    min_epochs: int = field(default=0, validator=ge(0))

    def __attrs_post_init__(self) -> None:
        if (self.below is None) == (self.above is None):
            raise ValueError("give exactly one of 'below' and 'above'")


@frozen(kw_only=True)
class StageConfig:
    """One stage of a pipeline; what it names overrides the run's settings.

    :param name: the stage name (used for its checkpoint folder and metrics file).
    :param epochs: epochs of this stage.
    :param max_steps: optimizer steps of this stage.
    :param freeze: submodules (dotted names) whose parameters are frozen in this stage.
    :param unfreeze: submodules frozen by an earlier stage to train again.
    :param optimizer: this stage's optimizer; defaults to the run's.
    :param scheduler: this stage's scheduler; defaults to the run's.
    :param losses: this stage's loss terms; defaults to the run's.
    :param until: end the stage early on a metric threshold.
    """

    name: str
    epochs: int | None = field(default=None, validator=optional(ge(1)))
    max_steps: int | None = field(default=None, validator=optional(ge(1)))
    freeze: list[str] = field(factory=list)
    unfreeze: list[str] = field(factory=list)
    optimizer: ComponentSpec | None = None
    scheduler: ComponentSpec | None = None
    losses: list[LossSpec] | None = None
    until: UntilConfig | None = None


def _default_loggers() -> list[ComponentSpec]:
    return [ComponentSpec(name="console"), ComponentSpec(name="jsonl"), ComponentSpec(name="plots")]


@frozen(kw_only=True)
class RunConfig:
    """A whole training run.

    :param name: the run's name; the default run folder is ``runs/<name>/<timestamp>``.
    :param seed: seed of every random number generator.
    :param data: the data source and batching.
    :param model: the model.
    :param losses: the loss terms, summed with their weights.
    :param optimizer: the optimizer.
    :param scheduler: the learning-rate scheduler, if any.
    :param trainer: loop settings.
    :param callbacks: callbacks and controllers.
    :param loggers: metric sinks.
    :param metrics: evaluation metrics computed after each validation.
    :param stages: an optional pipeline of stages run one after another.
    """

    name: str = field(validator=attrs.validators.matches_re(r"[A-Za-z0-9][A-Za-z0-9._-]*"))
    seed: int = 0
    data: DataConfig
    model: ComponentSpec
    losses: list[LossSpec] = field(validator=attrs.validators.min_len(1))
    optimizer: ComponentSpec = ComponentSpec(name="adam")
    scheduler: ComponentSpec | None = None
    trainer: TrainerConfig = TrainerConfig()
    callbacks: list[ComponentSpec] = field(factory=list)
    loggers: list[ComponentSpec] = field(factory=_default_loggers)
    metrics: list[ComponentSpec] = field(factory=list)
    stages: list[StageConfig] = field(factory=list)


# -- A strict converter ---------------------------------------------------------


def _strict(kind: type, accepts: tuple[type, ...], name: str) -> Any:
    def structure(value: Any, _: Any) -> Any:
        if isinstance(value, bool) and kind is not bool:
            raise TypeError(f"expected {name}, got a boolean ({value!r})")
        if not isinstance(value, accepts):
            raise TypeError(f"expected {name}, got {_describe(value)}")
        return kind(value)

    return structure


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"a string ({value!r})"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} ({value!r})"


def _structure_literal(value: Any, literal: Any) -> Any:
    choices = typing.get_args(literal)
    if not any(type(c) is type(value) and c == value for c in choices):  # True is not 1 here
        listing = ", ".join(repr(c) for c in choices)
        hint = did_you_mean(value, [c for c in choices if isinstance(c, str)]) if isinstance(value, str) else ""
        raise ValueError(f"must be one of {listing}, got {value!r}{hint}")
    return value


def _validating_hook_factory(converter: cattrs.Converter) -> Any:
    """Structure attrs classes so that every failing field validator is reported, not only the first.

    cattrs reports structuring errors of all fields at once, but attrs runs
    validators in ``__init__`` and stops at the first failure (and never
    runs them when some field failed to structure). When structuring fails,
    this hook re-checks each field that did structure against its own
    validator, so one pass reports a wrong type in one field and a negative
    value in another, each under its own ``$.`` path.
    """

    def factory(cl: type) -> Any:
        base = make_dict_structure_fn(cl, converter)
        validated = [a for a in attrs.fields(cl) if a.validator is not None and a.init]

        def structure(obj: Any, _: Any) -> Any:
            try:
                return base(obj, cl)
            except ClassValidationError as exc:
                found = _validator_errors(converter, validated, obj, exc)
                if not found:
                    raise
                kept = [e for e in exc.exceptions if _has_note(e) or isinstance(e, ForbiddenExtraKeysError)]
                raise ClassValidationError(exc.message, [*kept, *found], cl) from None

        return structure

    return factory


def _has_note(exc: BaseException) -> bool:
    return any(isinstance(note, AttributeValidationNote) for note in getattr(exc, "__notes__", ()))


def _validator_errors(converter: cattrs.Converter, fields: Sequence[Any], obj: Any,
                      failure: ClassValidationError) -> list[Exception]:
    """Validator failures of the fields of ``obj`` that structured fine, each noted with its field."""
    if not isinstance(obj, Mapping):
        return []
    failed = {note.name for e in failure.exceptions for note in getattr(e, "__notes__", ())
              if isinstance(note, AttributeValidationNote)}
    found: list[Exception] = []
    for a in fields:
        if a.name in failed or a.name not in obj:
            continue
        try:
            value = converter.structure(obj[a.name], a.type) if a.type is not None else obj[a.name]
            a.validator(None, a, value)  # attrs' stock validators ignore the instance
        except (ValueError, TypeError) as exc:
            exc.__notes__ = [AttributeValidationNote(f"validating {a.name}", a.name, a.type)]
            found.append(exc)
        except Exception:  # noqa: S112 - a validator that needs the instance is checked in __init__
            continue
    return found


def make_converter() -> cattrs.Converter:
    """The strict converter every config class is structured with.

    Extra keys are errors; ``int``, ``float``, ``bool`` and ``str`` accept only
    their own YAML types (an int is a valid float; a quoted ``"1e-3"`` is not);
    a ``Literal`` lists its choices; every failing validator is reported.
    """
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(float, _strict(float, (int, float), "a number"))
    converter.register_structure_hook(int, _strict(int, (int,), "an integer"))
    converter.register_structure_hook(bool, _strict(bool, (bool,), "true or false"))
    converter.register_structure_hook(str, _strict(str, (str,), "a string"))
    converter.register_structure_hook(Any, lambda value, _: value)
    converter.register_structure_hook_func(lambda t: typing.get_origin(t) is Literal, _structure_literal)
    converter.register_structure_hook_factory(attrs.has, _validating_hook_factory(converter))
    return converter


CONVERTER = make_converter()


# -- YAML ------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads ``1e-3`` as a float (YAML 1.2), not a string."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?(?:\.\d*)?[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str, origin: str, path: str = "$") -> tuple[Any, dict[str, int]]:
    """Parse one YAML document safely; return it with a map of ``$.`` paths to line numbers.

    The text is composed into nodes first and checked before anything is
    constructed: an explicit tag the safe loader does not know (every
    ``!!python/...`` tag among them) and a key given twice in one mapping
    are errors, all reported together. ``path`` is where the document sits
    in the run config (``$`` for a whole file, the key path for an override).
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        problems: list[str] = []
        if node is not None:
            _check_nodes(node, path, lines, problems)
        if problems:
            raise ConfigError([f"{origin}:{problem}" for problem in problems])
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{origin}:{mark.line + 1}" if mark is not None else origin
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        context, context_mark = getattr(exc, "context", None), getattr(exc, "context_mark", None)
        if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
            problem += f" ({context} started on line {context_mark.line + 1})"
        raise ConfigError(f"{where}: {path}: invalid YAML: {problem}") from None
    finally:
        loader.dispose()
    return document, lines


_YAML_TAG_PREFIX = "tag:yaml.org,2002:"


def _check_nodes(node: yaml.Node, path: str, lines: dict[str, int], problems: list[str],
                 seen: set[int] | None = None, ancestors: tuple[int, ...] = ()) -> None:
    """Map ``$.`` paths to line numbers; collect ``line: path: problem`` for unsafe tags and duplicate keys.

    A node reached again through an alias is checked once (so nested aliases
    cannot make this exponential), and an alias to one of its own ancestors
    (a recursive document) is a problem.
    """
    seen = set() if seen is None else seen
    line = node.start_mark.line + 1
    if id(node) in ancestors:
        problems.append(f"{line}: {path}: a recursive alias; a config must be a tree")
        return
    if id(node) in seen:
        return
    seen.add(id(node))
    ancestors = (*ancestors, id(node))
    lines.setdefault(path, line)
    if node.tag not in _Loader.yaml_constructors:
        tag = node.tag.replace(_YAML_TAG_PREFIX, "!!")
        if tag.startswith("!!python/"):
            problems.append(f"{line}: {path}: Python tags are refused ({tag}); a config holds plain data only")
        else:
            problems.append(f"{line}: {path}: unknown YAML tag {tag}; a config holds plain data only")
        return
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[Any, int] = {}
        for key, value in node.value:
            key_line = key.start_mark.line + 1
            if isinstance(key, yaml.ScalarNode) and key.tag != _YAML_TAG_PREFIX + "merge":
                if key.value in first_seen:
                    problems.append(f"{key_line}: {path}.{key.value}: duplicate key "
                                    f"(first given on line {first_seen[key.value]})")
                first_seen.setdefault(key.value, key_line)
            lines.setdefault(f"{path}.{key.value}", key_line)
            _check_nodes(value, f"{path}.{key.value}", lines, problems, seen, ancestors)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _check_nodes(item, f"{path}[{index}]", lines, problems, seen, ancestors)


def dump_yaml(document: Any) -> str:
    """Block-style YAML in the order the config classes declare their fields."""
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=100)


# -- Sources and overrides ---------------------------------------------------------


_NO_LINE = 1 << 30


@attrs.define
class Source:
    """Where a config document came from, for error messages.

    :param origin: a file path or ``preset 'name'``.
    :param document: the parsed document.
    :param lines: ``$.`` path -> line number in the origin.
    :param overridden: ``$.`` path -> the override that set it.
    """

    origin: str
    document: Any
    lines: dict[str, int] = attrs.Factory(dict)
    overridden: dict[str, str] = attrs.Factory(dict)

    def where(self, path: str) -> str:
        """``file:line: $.path`` for the closest known location of ``path``."""
        override = self._override(path)
        if override is not None:
            return f"override {override!r}: {path}"
        line = self.line(path)
        return f"{self.origin}:{line}: {path}" if line < _NO_LINE else f"{self.origin}: {path}"

    def line(self, path: str) -> int:
        """The line of ``path`` or of its closest enclosing key; a large number for overrides and unknowns."""
        if self._override(path) is not None:
            return _NO_LINE + 1
        probe = path
        while probe:
            if probe in self.lines:
                return self.lines[probe]
            probe = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", probe) if probe != "$" else ""
        return _NO_LINE

    def _override(self, path: str) -> str | None:
        for known, override in self.overridden.items():
            if path == known or path.startswith(known + ".") or path.startswith(known + "["):
                return override
        return None


def read_source(target: str | Path, registry: Registry) -> Source:
    """Parse a config file, or the registered preset named ``target``."""
    path = Path(target)
    text: str | None = None
    origin = str(target)
    if path.is_file():
        text = _read_text(path)
    elif ("preset", str(target)) in registry:
        preset = registry.get("preset", str(target))
        source = preset.load()
        if isinstance(source, Mapping):
            return Source(origin=f"preset {preset.name!r}", document=dict(source))
        text, origin = _read_text(Path(source)), str(source)
    elif path.is_dir():
        raise ConfigError(f"{target}: $: a folder, not a config file")
    elif path.suffix in (".yaml", ".yml") or path.parent != Path("."):
        raise ConfigError(f"{target}: $: no such file")
    else:
        presets = registry.names("preset")
        raise ConfigError(
            f"{target}: $: neither a config file nor a preset{did_you_mean(str(target), presets)} "
            f"(presets: {', '.join(presets) or 'none'})"
        )
    document, lines = parse_yaml(text, origin)
    if document is None:  # no text, only comments, or a lone "~"
        raise ConfigError(f"{origin}: $: the file is empty; expected a mapping of run settings")
    if not isinstance(document, Mapping):
        raise ConfigError(
            f"{origin}:{lines.get('$', 1)}: $: expected a mapping of run settings, got {_describe(document)}"
        )
    return Source(origin=origin, document=document, lines=lines)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: $: not a text file (not valid UTF-8)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: $: cannot read: {exc.strerror}") from None


_KEY_PATH = re.compile(r"[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\[\d+\])*")
_KEY_PART = re.compile(r"([A-Za-z_][\w-]*)|\[(\d+)\]")


def parse_override_path(text: str) -> list[str | int]:
    """``losses[1].weight`` -> ``['losses', 1, 'weight']``; raises ValueError when malformed."""
    if not _KEY_PATH.fullmatch(text):
        raise ValueError(f"{text!r} is not a key path like trainer.epochs or losses[1].weight")
    return [name if name else int(index) for name, index in _KEY_PART.findall(text)]


def _format_path(parts: Sequence[str | int]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in parts)


def apply_overrides(source: Source, overrides: Sequence[str]) -> None:
    """Apply ``key.path=value`` overrides in place; values are parsed as YAML."""
    errors = []
    for override in overrides:
        key, sep, raw_value = override.partition("=")
        if not sep or not key.strip():
            errors.append(f"override {override!r}: expected key.path=value")
            continue
        try:
            parts = parse_override_path(key.strip())
        except ValueError as exc:
            errors.append(f"override {override!r}: {exc}")
            continue
        try:
            value = _override_value(raw_value, _format_path(parts))
        except ConfigError as exc:
            errors.extend(f"override {override!r}: {line}" for line in exc.lines)
            continue
        _seed_default(source.document, parts)
        problem = _set_path(source.document, parts, value)
        if problem:
            errors.append(f"override {override!r}: {_format_path(parts)}: {problem}")
        else:
            source.overridden[_format_path(parts)] = override
    if errors:
        raise ConfigError(errors)


def _override_value(raw: str, path: str) -> Any:
    """An override's value parsed as YAML (``3`` is an int, ``[1, 2]`` a list); empty means null."""
    if not raw.strip():
        return None
    try:
        return parse_yaml(raw, "value", path)[0]
    except ConfigError as exc:
        # "value:1: $.x: invalid YAML: ..." -> "$.x: invalid YAML value: ..."
        raise ConfigError([re.sub(r"^value(:\d+)?: ", "", line).replace("invalid YAML:", "invalid YAML value:")
                           for line in exc.lines]) from None


def _seed_default(document: Any, parts: Sequence[str | int]) -> None:
    """Before overriding inside a run setting the file leaves out, put in its default.

    ``optimizer.params.lr=0.01`` on a file without ``optimizer:`` then means
    the default optimizer with that learning rate, not an optimizer without a name.
    """
    top = parts[0]
    if isinstance(document, dict) and isinstance(top, str) and top not in document and len(parts) > 1:
        default = _run_default(top)
        if default is not None:
            document[top] = default


def _run_default(key: str) -> Any:
    """The default of RunConfig field ``key`` as plain data, or None when it has none."""
    field_ = getattr(attrs.fields(RunConfig), key, None)
    if field_ is None or field_.default is attrs.NOTHING:
        return None
    default = field_.default.factory() if isinstance(field_.default, attrs.Factory) else field_.default  # type: ignore[arg-type]
    return _plain(default) if default not in (None, []) else None


def _set_path(document: Any, parts: Sequence[str | int], value: Any) -> str | None:
    node = document
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = _format_path(parts[:depth]) if depth else "$"
        if isinstance(part, int):
            if not isinstance(node, list):
                return f"{here} is not a list"
            if not -len(node) <= part < len(node):
                return f"index {part} is out of range ({here} has {len(node)} items)"
        elif not isinstance(node, dict):
            return f"{here} is not a mapping"
        if last:
            node[part] = value
            return None
        if isinstance(part, str) and node.get(part) is None:
            node[part] = [] if isinstance(parts[depth + 1], int) else {}
        node = node[part]
    return None


# -- Structuring ------------------------------------------------------------------


_COMPONENT_FIELDS: dict[str, str] = {
    "model": "model",
    "optimizer": "optimizer",
    "scheduler": "scheduler",
    "callbacks": "callback",
    "loggers": "logger",
    "metrics": "metric",
}


def _component_sites(document: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """Every (kind, path, spec) in a raw run document, stages included."""
    sites: list[tuple[str, str, Any]] = []

    def add(kind: str, path: str, spec: Any) -> None:
        if isinstance(spec, list):
            sites.extend((kind, f"{path}[{i}]", item) for i, item in enumerate(spec))
        elif spec is not None:
            sites.append((kind, path, spec))

    data = document.get("data")
    if data is not None:
        sites.append(("data_source", "$.data", data))
    for key, kind in _COMPONENT_FIELDS.items():
        add(kind, f"$.{key}", document.get(key))
    add("loss", "$.losses", document.get("losses"))
    stages = document.get("stages")
    if isinstance(stages, list):
        for index, stage in enumerate(stages):
            if isinstance(stage, Mapping):
                for key in ("optimizer", "scheduler"):
                    add(key, f"$.stages[{index}].{key}", stage.get(key))
                add("loss", f"$.stages[{index}].losses", stage.get("losses"))
    return sites


def structure_params(config_cls: type | None, params: Any, path: str) -> tuple[Any, list[tuple[str, str]]]:
    """Structure raw ``params`` into ``config_cls``; return (instance, [(path, message)]).

    An instance of ``config_cls`` is returned as it is: a component spec
    shared through a YAML alias is resolved once and then seen again.
    """
    if config_cls is not None and isinstance(params, config_cls):
        return params, []
    if config_cls is None:
        if params:
            return None, [(path, "this component takes no parameters")]
        return None, []
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        return None, [(path, f"expected a mapping of parameters, got {_describe(params)}")]
    try:
        return CONVERTER.structure(dict(params), config_cls), []
    except Exception as exc:  # cattrs raises exception groups of many kinds
        return None, list(_flatten_errors(exc, path))


def _resolve_component(kind: str, path: str, spec: Any, registry: Registry) -> list[tuple[str, str]]:
    """Look one component up and structure its params in place (``spec['params']``)."""
    if not isinstance(spec, Mapping):
        return [(path, f"expected a mapping with 'name' and 'params', got {_describe(spec)}")]
    name = spec.get("name")
    if not isinstance(name, str):
        article = "an" if kind[0] in "aeiou" else "a"
        return [(f"{path}.name", f"required: the registered name of {article} {kind}")] if name is None else [
            (f"{path}.name", f"expected a string, got {_describe(name)}")]
    try:
        component = registry.get(kind, name)
    except (ComponentError, PluginError) as exc:
        return [(f"{path}.name", str(exc))]
    params, errors = structure_params(component.config, spec.get("params"), f"{path}.params")
    if not errors:  # keep what was written otherwise, so every alias of a bad spec reports it
        spec["params"] = params
    if kind == "loss" and isinstance(spec.get("weight"), Mapping):
        errors += _resolve_schedule(spec, f"{path}.weight", registry)
    elif kind == "loss" and "weight" in spec and not isinstance(spec["weight"], ScheduleSpec):
        weight = spec["weight"]
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            errors.append((f"{path}.weight",
                           f"expected a number or {{schedule: <name>, ...}}, got {_describe(weight)}"))
    return errors


def _resolve_schedule(spec: dict[str, Any], path: str, registry: Registry) -> list[tuple[str, str]]:
    raw = dict(spec["weight"])
    name = raw.pop("schedule", None)
    if not isinstance(name, str):
        return [(f"{path}.schedule", "required: the name of a weight schedule, e.g. linear")]
    try:
        component = registry.get("schedule", name)
    except (ComponentError, PluginError) as exc:
        return [(f"{path}.schedule", str(exc))]
    params, errors = structure_params(component.config, raw, path)
    if not errors:
        spec["weight"] = ScheduleSpec(name=name, params=params)
    return errors


def _flatten_errors(exc: BaseException, path: str) -> list[tuple[str, str]]:
    """cattrs' nested exception groups -> ``[(path, message)]``, one per problem."""
    if isinstance(exc, ClassValidationError):
        with_notes, without = exc.group_exceptions()
        out = [e for sub, note in with_notes for e in _flatten_errors(sub, f"{path}.{note.name}")]
        return out + [e for sub in without for e in _flatten_errors(sub, path)]
    if isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        out = [e for sub, note in with_notes for e in _flatten_errors(sub, f"{path}[{note.index}]")]
        return out + [e for sub in without for e in _flatten_errors(sub, path)]
    if isinstance(exc, ForbiddenExtraKeysError):
        known = [a.name for a in attrs.fields(exc.cl)] if attrs.has(exc.cl) else []
        return [
            (f"{path}.{key}", f"unknown key{did_you_mean(key, known)}"
             + ("" if did_you_mean(key, known) else f" (known keys: {', '.join(known)})"))
            for key in sorted(exc.extra_fields)
        ]
    if isinstance(exc, KeyError):
        return [(path, "required key missing")]
    if isinstance(getattr(exc, "exceptions", None), tuple):  # any other exception group (3.10: the backport)
        return [e for sub in exc.exceptions for e in _flatten_errors(sub, path)]
    return [(path, _message(exc))]


_ATTRS_MESSAGES: list[tuple[re.Pattern[str], str]] = [
    # attrs' stock validator messages -> "must ..., got <value>"
    (re.compile(r"'[^']+' must be in (.+?) \(got (.*)\)$"), r"must be one of \1, got \2"),
    (re.compile(r"'[^']+' must be (.+?): (.*)$"), r"must be \1, got \2"),
    (re.compile(r"'[^']+' must match regex '(.*)' \((.*) doesn't\)$"), r"must match the pattern \1, got \2"),
    (re.compile(r"Length of '[^']+' must be >= 1: (.*)$"), r"must have at least 1 item, got \1"),
    (re.compile(r"Length of '[^']+' must be (.+?): (.*)$"), r"length must be \1, got \2"),
]


def _message(exc: BaseException) -> str:
    """One line for one leaf error, with attrs validator messages reworded to ``must ..., got ...``."""
    raw = exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)
    text = " ".join(raw.split())
    if isinstance(exc, ValueError):
        for pattern, replacement in _ATTRS_MESSAGES:
            if pattern.match(text):
                return pattern.sub(replacement, text)
    return text or type(exc).__name__


def structure_run(source: Source, registry: Registry) -> RunConfig:
    """Resolve every component and structure the whole document, reporting all errors at once."""
    document = source.document
    errors: list[tuple[str, str]] = []
    for key in _COMPONENT_FIELDS:  # defaults such as the adam optimizer get their params structured too
        if key not in document and (default := _run_default(key)) is not None:
            document[key] = default
    for kind, path, spec in _component_sites(document):
        errors += _resolve_component(kind, path, spec, registry)
    config = None
    try:
        config = CONVERTER.structure(document, RunConfig)
    except Exception as exc:
        errors += [e for e in _flatten_errors(exc, "$") if not _is_component_echo(e, errors)]
    if errors:
        ordered = sorted(_dedupe(errors), key=lambda error: source.line(error[0]))  # stable: file order first
        raise ConfigError([f"{source.where(path)}: {message}" for path, message in ordered])
    assert config is not None
    return config


def _is_component_echo(error: tuple[str, str], earlier: list[tuple[str, str]]) -> bool:
    """True for a RunConfig error that only repeats an already reported component error."""
    path = error[0]
    return any(path == p or path.startswith(p + ".") for p, _ in earlier)


def _dedupe(errors: list[tuple[str, str]]) -> list[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    return [e for e in errors if not (e in seen or seen.add(e))]


def load_config(target: str | Path, registry: Registry, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a run config from a file or preset name, with overrides; raises ConfigError.

    An override that cannot be applied does not hide the other problems: the
    document is still structured, and all errors are raised together.
    """
    source = read_source(target, registry)
    problems: list[str] = []
    try:
        apply_overrides(source, overrides)
    except ConfigError as exc:
        problems = exc.lines
    hint = _missing_plugin_hint(target, source, registry)
    if hint is not None:
        raise ConfigError([*problems, hint])
    try:
        config = structure_run(source, registry)
    except ConfigError as exc:
        raise ConfigError([*problems, *exc.lines]) from None
    if problems:
        raise ConfigError(problems)
    return config


def _missing_plugin_hint(target: str | Path, source: Source, registry: Registry) -> str | None:
    """One line for a preset whose components come from an optional dependency that is not loaded.

    Applies when ``target`` is a registered preset (not a file), some component
    names the preset itself writes (not an override) are unknown, and the
    distribution of the preset's plugin declares an extra whose vaeforge plugin
    is not installed, was disabled, or failed to load. Otherwise None, and the
    usual per-component errors are reported.
    """
    if Path(target).is_file() or ("preset", str(target)) not in registry:
        return None
    missing: list[str] = []
    for kind, path, spec in _component_sites(source.document):
        name = spec.get("name") if isinstance(spec, Mapping) else None
        if (isinstance(name, str) and (kind, name) not in registry and source._override(path) is None
                and f"{kind} {name!r}" not in missing):
            missing.append(f"{kind.replace('_', ' ')} {name!r}")
    if not missing:
        return None
    preset = registry.get("preset", str(target))
    from vaeforge.plugins import unloaded_extras

    found = unloaded_extras(preset.plugin, registry)
    if found is None or not found[1]:
        return None
    distribution, extras = found
    needs = " and ".join([", ".join(missing[:-1]), missing[-1]] if len(missing) > 1 else missing)
    names = ",".join(sorted({extra for extra, _ in extras}))
    states = "; ".join(dict.fromkeys(state for _, state in extras))
    return (f"preset {preset.name!r} needs {needs}, which no loaded plugin provides; the preset's package "
            f"{distribution} has an optional dependency that is missing: pip install '{distribution}[{names}]' "
            f"({states})")


def config_from_dict(document: Mapping[str, Any], registry: Registry, origin: str = "<dict>") -> RunConfig:
    """Structure an in-memory document (e.g. one built in Python or read from a run folder)."""
    import copy

    return structure_run(Source(origin=origin, document=copy.deepcopy(dict(document))), registry)


# -- Back to plain data -----------------------------------------------------------


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The fully resolved config as plain data; it loads back to an equal config."""
    return _plain(config)


def _plain(value: Any) -> Any:
    if isinstance(value, ScheduleSpec):
        return {"schedule": value.name, **(_plain(value.params) or {})}
    if attrs.has(type(value)):
        return {a.name: _plain(getattr(value, a.name)) for a in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_to_yaml(config: RunConfig) -> str:
    """``vaeforge config show``: the resolved config as YAML."""
    return dump_yaml(to_dict(config))
