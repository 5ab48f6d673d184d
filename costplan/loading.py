"""Reading a spec: a file path, a preset name, a Hugging Face config or a mapping, with `--set` overrides,
validated into a Spec; every problem of a file reported at once."""
from __future__ import annotations

import copy
import functools
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from costplan import yamlio
from costplan.errors import CostplanError, SpecError, did_you_mean, printable, shown
from costplan.spec import HardwareSpec, ModelSpec, ParallelismSpec, Spec, TrainingSpec
from costplan.spec_rules import (expert_data_step, model_parallel, model_rules, parallel_rules, recompute_rules,
                                 spec_rules)
from costplan.records import Record, set_private
from costplan.kinds import kind_of
from costplan.sections import InvalidInput, Section, field_sections, valid_field_getter
from costplan.validation import count_or_none


def load_spec(source: str | os.PathLike | Mapping[str, Any] | Spec, overrides: Iterable[str] | None = ()) -> Spec:
    """A validated Spec from a preset name, a YAML file, a Hugging Face config.json (or a folder holding one) or a
    mapping, with `--set`-style KEY=VALUE overrides applied; from a Spec, a validated copy with the overrides
    (defaults derived from other fields follow them, as with --set: head_dim from a new d_model). Problems of the
    input raise SpecError (its `source` and `problems`), a malformed override CostplanError."""
    if not isinstance(source, (str, os.PathLike, Mapping, Spec)):
        raise TypeError(f"load_spec() takes a preset name, a path, a mapping or a Spec, not {type(source).__name__}")
    overrides = _override_list(overrides)
    if isinstance(source, Spec):
        return with_overrides(source, overrides)
    if isinstance(source, Mapping):     # the spec keeps the mapping: the caller's later edits must not reach it
        source = copy.deepcopy(source)
    return read_source(source).validate(overrides)


def _override_list(overrides: Iterable[str] | None) -> list[str]:
    if overrides is None:
        return []
    if isinstance(overrides, (str, bytes)):
        raise TypeError("load_spec() takes its overrides as a list of KEY=VALUE strings, e.g. "
                        "[\"training.seq_len=2048\"], not one string")
    listed = list(overrides)
    odd = next((o for o in listed if not isinstance(o, str)), None)
    if odd is not None:
        raise TypeError(f"load_spec() takes each override as a KEY=VALUE string, e.g. \"training.seq_len=2048\", "
                        f"not {type(odd).__name__} ({odd!r:.60})")
    return listed


class RawSpec(Record):
    """A spec as read, before validation, with what validation needs to name and place it."""

    data: Any
    label: str
    default_name: str
    base_dir: str | None
    keys: dict[str, str] = {}       # a Hugging Face config's: spec path → the config key it was read from, said
    defaulted: tuple[str, ...] = ()  # ... and the keys it read that the file lacks: the class's defaults
    left_out: tuple[str, ...] = ()   # ... and "key: why" of its keys whose cost is left out (hf.Imported)

    def validate(self, overrides: Iterable[str] = ()) -> Spec:
        try:
            spec = validate(self.data, overrides, label=self.label, default_name=self.default_name,
                            base_dir=self.base_dir)
        except SpecError as exc:
            if not self.keys:
                raise
            raise SpecError(exc.source, [self._named(problem) for problem in exc.problems]) from None
        if self.defaulted:
            set_private(spec, "_config_defaults", self.defaulted)
        if self.left_out:
            set_private(spec, "_config_left_out", self.left_out)
        return spec

    @classmethod
    def of_config(cls, imported: Any, label: str, config: Path) -> RawSpec:
        """A Hugging Face config as read (hf.Imported), its fields' problems named by the keys they came from."""
        from costplan import sources

        keys = {path: f"config key {key}" + (", not in the file: the class's default" if left else "")
                for path, (key, left) in imported.sources.items()}
        return cls(imported.spec, label, sources.config_name(config), str(config.parent), keys,
                   tuple(imported.defaulted), tuple(imported.left_out))

    def _named(self, problem: str) -> str:
        """A problem with a field read from a config, naming the config's key: what its author wrote (the key of
        the section the field is in, where one key wrote the whole section: sliding_window → model.attention)."""
        path = problem.partition(": ")[0]
        while path and path not in self.keys:
            path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path) if re.search(r"[.\[]", path) else ""
        key = self.keys.get(path)
        return f"{problem} ({key})" if key else problem


def load_for_search(source: str | os.PathLike | Mapping[str, Any], overrides: Iterable[str] = ()) -> Spec:
    """A spec whose GPU count a search chooses (plan --deadline): a parallelism section's data degree and
    hardware.count are the search's, so neither is checked against the other degrees; the section is validated
    on the fewest GPUs it runs on (one replica, as many as its experts' folding needs, as many data ranks as its
    fixed micro-batches make of a fixed batch). A value that is not valid is left for validation to report."""
    raw = read_source(source)
    data = apply_overrides(raw.data, overrides) if isinstance(raw.data, Mapping) else raw.data
    section = data.get("parallelism") if isinstance(data, Mapping) else None
    hardware = (data.get("hardware") or {}) if isinstance(data, Mapping) else None    # `hardware:` empty: {}
    if isinstance(section, Mapping) and isinstance(hardware, Mapping) and count_or_none(hardware.get("count", 1)):
        training = data.get("training") if isinstance(data.get("training"), Mapping) else {}
        count = _searched_count(section, training)
        if count is not None:
            given = section.get("data", "auto")
            section = {**section, "data": "auto"} if given == "auto" or count_or_none(given) else section
            data = {**data, "parallelism": section, "hardware": {**hardware, "count": count}}
    return raw.model_copy(update={"data": data}).validate()


def _searched_count(section: Mapping[str, Any], training: Mapping[str, Any]) -> int | None:
    """The fewest GPUs a parallelism section runs on, as load_for_search validates it; None where a degree it
    reads is not a valid count."""
    read = {name: count_or_none(section.get(name, 1)) for name in ("tensor", "context", "pipeline", "expert")}
    given = {name: section.get(name) for name in ("expert_tensor", "micro_batches")}
    folded, micro_batches = (count_or_none(v) if v is not None else None for v in given.values())
    if None in read.values() or any(v is not None and count_or_none(v) is None for v in given.values()):
        return None
    batch = count_or_none(training.get("global_batch_size"))
    micro = count_or_none(training.get("micro_batch_size", 1))
    step = expert_data_step(read["tensor"], read["context"], read["expert"], folded)
    ranks = step
    if micro_batches is not None and batch and micro and batch % (micro * micro_batches) == 0:
        fixed = batch // (micro * micro_batches)    # the data ranks a fixed batch leaves those micro-batches
        ranks = fixed if fixed % step == 0 else step
    return model_parallel(read["tensor"], read["context"], read["pipeline"]) * ranks


def read_source(source: str | os.PathLike | Mapping[str, Any]) -> RawSpec:
    """The raw mapping of a file path, a preset name or a mapping; validation comes after."""
    from costplan import presets, sources

    if isinstance(source, Mapping):
        return RawSpec(source, "<spec>", "spec", None)
    if isinstance(source, str) and not source.strip():     # Path("") is the current folder
        raise SpecError(repr(source), ["no spec named: give a preset name, a YAML spec, a Hugging Face config.json "
                                       "or a folder holding one"])
    found = sources.find(source, presets.names())
    if found is None and (sources.config_file(Path(source)) is not None or Path(source).is_dir()):
        found = Path(source)     # a bare folder name: one holding a Hugging Face config.json, or said to lack it
    config = sources.config_file(found) if isinstance(found, Path) else None
    if config is not None:
        from costplan import hf   # its tables are read only for a config

        return RawSpec.of_config(hf.read(config), printable(source, cut=False), config)
    if found is None:
        raise SpecError(printable(source, cut=False), [
            f"no such file or preset{did_you_mean(str(source), presets.names())}; `costplan presets` lists "
            "the presets"])
    path = presets.path(found) if isinstance(found, str) else found
    label = found if isinstance(found, str) else printable(source, cut=False)
    if path.is_dir():   # before the YAML reader, whose message knows nothing of config.json
        wanted = sources.CONFIG_NAME
        raise SpecError(printable(path, cut=False), [f"is a folder without a {wanted}; give a YAML spec, a "
                                                     f"Hugging Face {wanted} or a folder holding one"])
    return RawSpec(yamlio.read(path), label, path.stem, str(path.parent))


@functools.lru_cache(maxsize=1024)   # sweeps apply the same few keys at every point
def field_path(key: str) -> tuple[str, ...]:
    """A dotted field path as written in a spec, checked against the format: `model.n_layers`. The `model.`
    prefix may be left out (`moe.n_experts`, `n_layers`). An unknown field is a CostplanError."""
    parts = key.split(".")
    if any(not part for part in parts):
        raise CostplanError(f"{shown(key)} is not a dotted field path such as model.n_layers")
    top = [name for name, f in Spec.model_fields.items() if not f.exclude]
    # A first part that is not a section is a model field, unless it is a misspelt section (`trainng.tokens`).
    if parts[0] not in top and (parts[0] in ModelSpec.model_fields or len(parts) == 1
                                or not did_you_mean(parts[0], top)):
        parts = ["model", *parts]
    sections: list[type[Section]] = [Spec]
    for depth, part in enumerate(parts):
        names = {name for cls in sections for name, f in cls.model_fields.items() if not f.exclude}
        if part not in names:
            where = ".".join(parts[:depth]) or "a spec"
            raise CostplanError(f"{printable('.'.join(parts[:depth + 1]))}: unknown field"
                                f"{did_you_mean(part, names)}; "
                                f"{where} has {', '.join(sorted(names))}")
        sections = [inner for cls in sections if part in cls.model_fields
                    for inner in field_sections(cls.model_fields[part].annotation)]
        if not sections and depth < len(parts) - 1:
            raise CostplanError(f"{'.'.join(parts[:depth + 1])}: is a value, not a section with fields")
    return tuple(parts)


def validate(data: Any, overrides: Iterable[str], *, label: str, default_name: str,
             base_dir: str | None) -> Spec:
    """Validate a raw mapping, reporting every problem at once as a SpecError."""
    if data is None:
        raise SpecError(label, ["the file is empty; a spec needs at least a `model` section"])
    if not isinstance(data, Mapping):
        raise SpecError(label, [f"the top level must be a mapping with a `model` section, "
                                f"not {kind_of(data)}"])
    if "model" not in data and data and not any(str(k) in Spec.model_fields or did_you_mean(str(k), ["model"])
                                                for k in data):
        # some other YAML file (a compose file, a CI config): one line, not an unknown field per key; a key that
        # may be a misspelt `model` leaves each key to be named
        keys = [printable(str(k)) for k in list(data)[:4]]
        raise SpecError(label, ["not a costplan spec: no `model` section, and none of its top-level keys ("
                                + ", ".join(keys) + (", …" if len(data) > 4 else "") + ") is a spec's"])
    data = apply_overrides(data, overrides)
    context = {"default_name": default_name, "base_dir": base_dir}
    try:
        spec = Spec.model_validate(data, context=context)
    except InvalidInput as exc:
        messages = exc.messages + [m for m in _rules_on_raw(data, base_dir) if m not in exc.messages]
        raise SpecError(label, messages) from None
    set_private(spec, "_label", label)
    return spec


def with_overrides(spec: Spec, overrides: Iterable[str]) -> Spec:
    """A validated copy of a spec with `--set`-style overrides applied (errors name its file), from the mapping
    it was validated from where it holds one, so that defaults derived from other fields follow them as with
    --set (head_dim from a new d_model); else from its fields, derived ones included."""
    data = spec._raw if spec._raw is not None else spec.model_dump(exclude={"base_dir"})
    return spec.with_config_notes(validate(data, overrides, label=spec.label, default_name=spec.name,
                                           base_dir=spec.base_dir))


def on_one_gpu(spec: Spec) -> Spec:
    """The spec trained whole on one GPU, as the reference model is built: no parallelism section, hardware.count
    1 (the estimate of several GPUs without a section would be of the layout the search chooses for them)."""
    if spec.parallelism is None and spec.hardware.count == 1:
        return spec
    return with_overrides(spec, ["parallelism=null", "hardware.count=1"])


def at_seq_len(spec: Spec, seq_len: int) -> Spec:
    """The spec trained at another context length; max_seq_len grows with it when needed (never shrinks, so
    position tables keep their size)."""
    return with_overrides(spec, [f"training.seq_len={seq_len}",
                                 f"model.max_seq_len={max(seq_len, spec.model.max_seq_len)}"])


def sets_field(path: list[str], value: object, field: list[str]) -> bool:
    """Whether an override of `path` to `value` sets `field`: that field itself, or a section holding it
    (`hardware={count: 4}` sets hardware.count)."""
    if path == field:
        return True
    if field[:len(path)] != path:
        return False
    for name in field[len(path):]:
        if not isinstance(value, dict) or name not in value:
            return False
        value = value[name]
    return True


def parse_override(text: str, option: str = "--set") -> tuple[list[str], Any]:
    """`model.n_layers=48` → (['model', 'n_layers'], 48); the key is read by field_path, like --vary's (so
    `n_layers=48` works too), the value as YAML (numbers, booleans, null). Errors name `option`."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise CostplanError(f"{option} {printable(text)}: expected KEY=VALUE with a dotted key, e.g. "
                            "model.n_layers=48")
    try:
        path = field_path(key)
    except CostplanError as exc:
        raise CostplanError(f"{option} {printable(text)}: {exc}") from None
    return list(path), yamlio.value(raw)


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of a raw spec mapping with dotted-path overrides applied; validation happens afterwards."""
    result: dict[str, Any] = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            # `attention: flash` is shorthand for a mapping; expand it so `attention.window=…` can be set.
            if isinstance(child, str) and part == "attention":
                child = {"type": child}
            if isinstance(child, list):   # a per-layer attention pattern: its entries have no dotted names
                raise CostplanError(f"--set {printable(text)}: {'.'.join(path[:path.index(part) + 1])} is a list; "
                                    f"set it whole, e.g. --set '{'.'.join(path[:path.index(part) + 1])}=[flash, "
                                    "{type: sliding_window, window: 4096}]'")
            child = dict(child) if isinstance(child, Mapping) else {}
            node[part] = child
            node = child
        node[path[-1]] = value
    return result


def _rules_on_raw(data: Mapping[str, Any], base_dir: str | None) -> list[str]:
    """The cross-field rules applied to a raw spec that failed validation, on its individually valid fields."""
    raw_model = data.get("model") if isinstance(data.get("model"), Mapping) else {}
    raw_model = ModelSpec._fill_defaults(raw_model)
    training = data.get("training") if isinstance(data.get("training"), Mapping) else {}
    hw = data.get("hardware") if isinstance(data.get("hardware"), Mapping) else {}
    model_value = valid_field_getter(ModelSpec, raw_model)
    seq_len = training.get("seq_len", raw_model.get("max_seq_len"))
    problems = [(f"model.{field}", msg) for field, msg in model_rules(model_value)]
    training_value = valid_field_getter(TrainingSpec, {**training, "seq_len": seq_len})
    hw_value = valid_field_getter(HardwareSpec, hw, context={"base_dir": base_dir})
    problems += spec_rules(model_value("max_seq_len"), training_value)
    problems += recompute_rules(model_value, training_value)
    if isinstance(data.get("parallelism"), Mapping):
        problems += parallel_rules(valid_field_getter(ParallelismSpec, data["parallelism"]), model_value,
                                   training_value, hw_value)
    return [f"{field}: {msg}" for field, msg in problems]
