"""Reading YAML for specs and hardware files: safe, `2e12` is a number, duplicate keys are errors."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from costplan.errors import SpecError


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A SafeLoader with the two fixes specs need."""


# PyYAML follows YAML 1.1, where `2e12` and `2.0e12` (no sign in the exponent) are strings. YAML 1.2 and every
# user read them as numbers. This resolver is consulted after the built-in ones, so ints stay ints.
Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def loads(text: str) -> Any:
    """Parse YAML text with the spec loader (for --set values and tests)."""
    return yaml.load(text, Loader=Loader)  # noqa: S506 - Loader is a SafeLoader


def value(text: str) -> Any:
    """A value given on the command line (`--set`, `--vary`), read as YAML: numbers, booleans, null; text YAML
    cannot read stays text, for validation to judge."""
    try:
        return loads(text)
    except yaml.YAMLError:
        return text


def read(path: Path) -> Any:
    """Parse a YAML file, turning every way it can fail into a one-line SpecError naming the file."""
    if not path.exists():
        raise SpecError(str(path), ["no such file"])
    if path.is_dir():
        raise SpecError(str(path), ["is a directory, not a YAML file"])
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [f"cannot be read: {exc}"]) from None
    try:
        return loads(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(str(path), [f"{where}invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError(str(path), [f"invalid YAML: {exc}"]) from None


def dumps(data: Any, header: str = "") -> str:
    """A mapping as block YAML in its own key order, after `# ` comment lines for the header."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
