"""Hugging Face `config.json` files as specs: each supported `model_type` is a table from spec fields to the
config keys they are read from. Local files only; nothing here imports torch or transformers or reaches the
network.

A config is read only when the spec it gives costs exactly what the `transformers` class of that model type
builds (tests/test_hf_transformers.py builds each class on the meta device and compares the parameter count).
So every key of the file must be accounted for: read into a field, consulted by a check that refuses values a
spec cannot state (a per-layer sliding-window pattern, biases on some projections only), on an explicit list of
keys that do not change cost (dropout, token ids, RoPE frequencies, norm epsilons), or on a list of keys whose
cost no spec states and which published files carry (a checkpoint's quantization_config, DeepSeek-V3's
multi-token prediction layers: fields.LeftOut), read and said as left out. Any other key is an error: a key
costplan does not know may change the cost, and it must not be dropped silently.

A key absent from the file takes the default of the `transformers` configuration class of its model type
(`configuration_<model_type>.py`), as `from_pretrained` would; the import says which defaults it took.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from costplan import sources
from costplan.errors import SpecError, printable, shown
from costplan.hf.families import ALIASES, FAMILIES, UNSUPPORTED
from costplan.hf.fields import COMMON_CHECKS, COMMON_DEFAULTS, COMMON_LEFT_OUT, Unsupported, read_key, same
from costplan.spec import ACTIVATIONS
from costplan.yamlio import MAX_DIGITS



# ---------------------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class Imported:
    """A config read as a spec mapping, with where each field came from."""

    model_type: str
    spec: dict[str, Any]
    notes: dict[str, str]                # spec path → the comment saying where it came from
    # spec path → the one config key a field was read from, and whether the file left it out (the class's
    # default): what an error about the field names
    sources: dict[str, tuple[str, bool]] = field(default_factory=dict)
    used: list[str] = field(default_factory=list)        # keys of the file read into fields or checks
    defaulted: list[str] = field(default_factory=list)   # keys absent from the file: the class's default
    ignored: list[str] = field(default_factory=list)     # keys of the file without cost
    left_out: list[str] = field(default_factory=list)    # "key: why" of the file's keys whose cost is left out


class _LongInteger(ValueError):
    """An integer literal too long to be a size or a count (its digits in args[0])."""


def load_json(config: Path) -> dict[str, Any]:
    label = str(config)
    if not config.exists():
        raise SpecError(label, ["no such file"])
    if not config.is_file():        # a device would be read without end, a pipe wait for a writer
        raise SpecError(label, ["is not a regular file (a device, a pipe or a socket)"])
    repeated: list[list[str]] = []      # per JSON object, innermost first: the file's own keys come last

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        # json (and so transformers) keeps a repeated key's last value without a word; a spec's YAML refuses one
        seen: dict[str, Any] = {}
        repeated.append([])
        for name, value in pairs:
            if name in seen and json.dumps(seen[name]) != json.dumps(value):     # true is not 1, nor 2.0 2
                repeated[-1].append(f"{printable(name)}: given twice ({_json(seen[name])}, then {_json(value)}); "
                                    "give it once")
            seen[name] = value
        return seen

    def integer(text: str) -> int:
        if len(text.lstrip("-")) > MAX_DIGITS:      # Python refuses past 4,300 digits, with a ValueError
            raise _LongInteger(text)
        return int(text)

    try:
        text = config.read_text(encoding="utf-8-sig")      # a byte-order mark, as some editors write
        data = json.loads(text, object_pairs_hook=unique, parse_int=integer)
    except _LongInteger as exc:
        key = re.search(r'"((?:[^"\\]|\\.)*)"\s*:\s*' + re.escape(exc.args[0]) + r"\b", text)
        where = f"{printable(key.group(1))}: " if key else ""
        raise SpecError(label, [f"{where}an integer of more than {MAX_DIGITS} digits"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(label, [f"cannot be read: {exc}"]) from None
    except json.JSONDecodeError as exc:
        raise SpecError(label, [f"line {exc.lineno}, column {exc.colno}: invalid JSON: {exc.msg}"]) from None
    except RecursionError:      # json nests by recursion; a spec's YAML stops at its own depth (yamlio) alike
        raise SpecError(label, ["invalid JSON: nested too deeply to read"]) from None
    if repeated and repeated[-1]:       # a top-level key (nested settings are read, if at all, as transformers does)
        raise SpecError(label, repeated[-1])
    if not isinstance(data, dict):
        raise SpecError(label, ["the top level must be a JSON object, as in a Hugging Face config.json"])
    return data


def read(config: Path) -> Imported:
    """The spec mapping of a Hugging Face config.json; every problem at once as a SpecError."""
    data = load_json(config)
    label, model_type = str(config), data.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise SpecError(label, [f"model_type: {_json(model_type)}: expected a name, e.g. \"llama\""])
    if model_type not in FAMILIES:
        supported = ", ".join(sorted(FAMILIES))
        if model_type is None and isinstance(data.get("model"), dict):     # a spec, written as JSON
            raise SpecError(label, ["a JSON file is read as a Hugging Face config.json, and this one has a "
                                    "costplan spec's `model` section: write the spec as YAML (.yaml)"])
        if model_type is None:
            raise SpecError(label, [f"model_type: missing; a Hugging Face config names its model type "
                                    f"(supported: {supported})"])
        why = f" ({UNSUPPORTED[model_type]})" if model_type in UNSUPPORTED else ""
        raise SpecError(label, [f"model_type: {shown(model_type)} is not supported{why}; supported: {supported}"])
    family = FAMILIES[model_type]
    data, problems = _unaliased(data, ALIASES.get(model_type, {}))
    heads = data.get("architectures") or []
    causal = ("ForCausalLM", "LMHeadModel", family.label)     # GPT-2's and GPT-J's is ...LMHeadModel
    if not isinstance(heads, list):     # a lone name had passed unchecked, a classifier's too
        problems.append(f"architectures: {_json(heads)}: expected a list of class names, e.g. "
                        f"[\"{family.label}\"]")
    elif heads and not any(str(h).endswith(causal) for h in heads):
        problems.append(f"architectures: {_json(heads)}: only the causal language model ({family.label}) is "
                        "modelled; another head (classification, reward) has other parameters")
    known = family.known() | {k for c in COMMON_CHECKS for k in c.keys} | {o.key for o in COMMON_LEFT_OUT}
    problems += [f"{printable(k)}: unknown to costplan for model_type {model_type}; it may change the cost, so it "
                 "is not ignored" for k in data if k not in known]
    defaults = {**COMMON_DEFAULTS, **family.defaults}
    values = {**defaults, **data}
    mistyped = _mistyped(data, defaults)
    problems += mistyped.values()
    for check in (*COMMON_CHECKS, *family.checks):
        if any(k in mistyped for k in check.keys):     # said already; the check would read it as another kind
            continue
        try:
            ok = check.ok(*(values.get(k) for k in check.keys))
        except (TypeError, ValueError, ArithmeticError):    # a kind no class default says (a null-default key)
            ok = False
        if not ok:
            value = values.get(check.keys[0])
            said = "" if isinstance(value, (dict, list)) else f"{_json(value)}: "
            problems.append(f"{check.keys[0]}: {said}{check.why}")
    spec: dict[str, Any] = {"name": sources.config_name(config)}
    notes: dict[str, str] = {}
    read_from: dict[str, tuple[str, bool]] = {}
    # keys of fields set from the class's defaults alone: none of the keys a field reads is in the file (BLOOM's
    # n_layer stands for num_hidden_layers; a head_dim left to the width sets no field)
    defaulted: set[str] = set()
    for path, f in family.fields.items():
        missing = [k for k in f.keys if k not in values]
        if missing:  # a key the table reads has no default: the table is incomplete
            raise KeyError(f"{model_type}: no default for {missing}")
        if any(k in mistyped for k in f.keys):
            continue
        key = f.keys[0] if f.keys else None
        if f.compute is same and not f.null and key in data and data[key] is None and defaults.get(key) is not None:
            # the class would take null as it is (an untied head, a layer it cannot build), not as its default,
            # and costplan's own default would stand in for it without a word
            problems.append(f"{key}: null: {_expected(defaults[key])}; give a value or leave the key out")
            continue
        try:
            value = f.compute(*(values[k] for k in f.keys))
        except Unsupported as exc:
            problems.append(f"{exc.key}: {exc.why}")
            continue
        except (TypeError, ValueError, ArithmeticError) as exc:   # a value _mistyped cannot judge by its default
            if not problems:
                problems.append(f"{', '.join(k for k in f.keys if k in data)}: {family.label} cannot read these "
                                f"values ({exc})")
            continue
        if value is None:
            continue
        section, _, name = path.partition(".")
        spec.setdefault(section, {})[name] = value
        notes[path] = f.note or f"from {', '.join(f.keys)}"
        left = bool(f.keys) and not any(k in data for k in f.keys)
        if left:
            defaulted.update(f.keys)
            notes[path] = f"{', '.join(f.keys)} not in the file: the class's default"
        read = read_key(f, values)
        if read is not None and (left or not f.note or len(f.keys) > 1):
            read_from[path] = (read, left)
        for name, part in f.parts:
            if isinstance(value, dict) and name in value:
                read_from[f"{path}.{name}"] = (part, part not in data)
    if problems:
        raise SpecError(label, problems)
    spec.setdefault("training", {})["modules"] = model_type
    notes["training.modules"] = "model_type: the transformers modules training.implementation sdpa / eager describes"
    mlp = family.fields.get("model.mlp")
    if mlp is not None and len(mlp.keys) == 1 and values[mlp.keys[0]] in ACTIVATIONS:
        spec["training"]["activation"] = values[mlp.keys[0]]
        notes["training.activation"] = f"from {mlp.keys[0]}: what the modules' activation saves (sdpa / eager)"
    read_keys = {k for f in family.fields.values() for k in f.keys} | {k for c in family.checks for k in c.keys}
    left_out = [o for o in (*COMMON_LEFT_OUT, *family.left_out) if o.key in data and o.applies(data[o.key])]
    return Imported(
        model_type=model_type, spec=spec, notes=notes, sources=read_from,
        used=sorted(k for k in data if k in read_keys | {"model_type"}),
        defaulted=sorted(defaulted),
        ignored=sorted(k for k in data if k not in read_keys | {"model_type"} | {o.key for o in left_out}),
        left_out=[f"{o.key}: {o.why}" for o in left_out],
    )



def _json(value: Any) -> str:
    """A config's value as a message echoes it: spelt as JSON, escaped and cut short (errors.printable)."""
    return printable(json.dumps(value))


def _mistyped(data: dict[str, Any], defaults: dict[str, Any]) -> dict[str, str]:
    """Keys whose value is not of the kind of the class's default, with the problem: a number where it defaults
    to one (a string "0.25" would be read as text, or repeated), true or false where it defaults to one (a string
    "false" or a 1 would read as true; transformers refuses both), a list where it defaults to one. A null is
    judged by the field that reads it (read: the class may resolve it, or take it as it is)."""
    problems = {}
    for name, value in data.items():
        default = defaults.get(name)
        if value is None or default is None:
            continue
        flag = isinstance(default, bool)
        number = isinstance(default, (int, float)) and not flag
        if (number and (isinstance(value, bool) or not isinstance(value, (int, float)))
                or flag and not isinstance(value, bool)
                or isinstance(default, list) and not isinstance(value, list)):
            problems[name] = f"{name}: {_json(value)}: {_expected(default)}"
    return problems


def _expected(default: Any) -> str:
    """What a key takes, by the kind of the class's default: "expected a number (the class's default is 0.25)"."""
    kind = ("true or false" if isinstance(default, bool) else "a number" if isinstance(default, (int, float))
            else "a list" if isinstance(default, list) else "a value")
    return f"expected {kind} (the class's default is {json.dumps(default)})"


def _unaliased(data: dict[str, Any], aliases: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The config with each alias renamed to the key the table reads (families.ALIASES), and a problem where a
    file gives both names different values."""
    renamed, problems = dict(data), []
    for alias, name in aliases.items():
        if alias not in data:
            continue
        value = renamed.pop(alias)
        if name in data and data[name] != value:
            problems.append(f"{alias}: {_json(value)}, and {name}: {_json(data[name])}: the two name one "
                            "setting; give one")
        renamed.setdefault(name, value)
    return renamed, problems


# ---------------------------------------------------------------------------------------------- writing
def to_yaml(imported: Imported, source: str) -> str:
    """The spec as YAML with a comment per field saying which config key it came from."""
    label = FAMILIES[imported.model_type].label
    lines = [f"# source: {source} (model_type {imported.model_type}, {label}), imported by costplan import",
             # what the config costs that no estimate of this spec counts: said here, as it is no longer warned of
             *(f"# left out (not modelled): {printable(said, cut=False)}" for said in imported.left_out),
             _scalar("name", imported.spec["name"])]
    for section, values in imported.spec.items():
        if section == "name":
            continue
        lines.append(f"{section}:")
        for name, value in values.items():
            note = imported.notes[f"{section}.{name}"]
            if isinstance(value, dict):  # a section read from several keys: one comment for them all
                lines.append(f"  {name + ':':<38} # {note}")
                lines += [f"    {_scalar(sub, v)}" for sub, v in value.items()]
            elif isinstance(value, list):  # a per-layer pattern: one entry per line
                lines.append(f"  {name + ':':<38} # {note}")
                lines += [f"    - {_flow(v)}" for v in value]
            else:
                lines.append(f"  {_scalar(name, value):<38} # {note}")
    return "\n".join(lines) + "\n"


def _flow(value: Any) -> str:
    """A value in YAML's flow style, keys as the table writes them (an attention's type first)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False)
    return text.strip().removesuffix("\n...").strip()


def _scalar(name: str, value: Any) -> str:
    """`name: value` as YAML writes it (quoting strings that would read as something else)."""
    return yaml.safe_dump({name: value}, default_flow_style=True, width=1000).strip()[1:-1]
