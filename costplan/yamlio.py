"""Reading YAML for specs and hardware files: safe, numbers as YAML 1.2 and people read them (`2e12` is a
number, `064` is sixty-four), duplicate keys are errors, and aliases cannot expand a small file into a huge one."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from costplan.errors import SpecError, printable, shown
from costplan.files import too_long

# A spec has a few dozen values; aliases (`*a`) may repeat a subtree, and nested ones multiply it (nine levels
# of nine copies are 387 million values from 514 bytes). More values than this, counted as expanded, are refused.
MAX_VALUES = 100_000
MAX_DIGITS = 100         # a longer integer is no size or count; Python refuses to read past 4,300 digits anyway

_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A SafeLoader with the fixes specs need."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML's readers of explicit tags fail as Python does (`!!int abc`: ValueError, `!!bool maybe`:
        # KeyError, `!!timestamp x`: AttributeError, `!!float` with no value: IndexError); as YAML errors they get
        # the node's line and column
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, KeyError, AttributeError, TypeError, OverflowError, IndexError):
            tag = node.tag.rpartition(":")[2]
            value = shown(node.value) if isinstance(node, yaml.ScalarNode) else (
                "a list" if isinstance(node, yaml.SequenceNode) else "a mapping")
            raise yaml.constructor.ConstructorError(None, None, f"{value} cannot be read as !!{tag}",
                                                    node.start_mark) from None


# PyYAML follows YAML 1.1: `064` is octal (52), `0x40` hex, `1:30` base 60 (90), while `2e12` (no sign in the
# exponent) is text. People, YAML 1.2 and the command line (`--gpus 064`) read decimal. So integers are decimal
# digits only (leading zeros allowed, `_` as a separator) and floats need a point or an exponent.
Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_INT_TEXT = re.compile(r"^[-+]?[0-9][0-9_]*$")
_FLOAT_TEXT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*\.[0-9_]*|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?
                             |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
                             |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X)
Loader.add_implicit_resolver(_INT, _INT_TEXT, list("-+0123456789"))
Loader.add_implicit_resolver(_FLOAT, _FLOAT_TEXT, list("-+0123456789."))


def _decimal_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    if len(text.lstrip("+-")) > MAX_DIGITS:
        raise yaml.constructor.ConstructorError(None, None, f"an integer of more than {MAX_DIGITS} digits",
                                                node.start_mark)
    return int(text, 10)


Loader.add_constructor(_INT, _decimal_int)


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            raise yaml.constructor.ConstructorError(None, None, "a merge key (<<) is not read: write the keys out "
                                                    "(an alias of a whole value, *name, is)", key_node.start_mark)
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:       # a list, mapping or set: PyYAML's own mapping reader refuses it too
            raise yaml.constructor.ConstructorError(None, None, "a key must be a plain value, not a list or mapping",
                                                    key_node.start_mark) from None
        if key in mapping:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {shown(key)}", key_node.start_mark)
        mapping[key] = loader.construct_object(value_node, deep=deep)
    return mapping


Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def loads(text: str, bundled: bool = False) -> Any:
    """Parse YAML text with the spec loader. `bundled`: costplan's own data tables, which have no aliases
    (tests/test_input.py checks), so the walk that bounds their expansion is skipped: it took a third of the
    parse."""
    loader = Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if not bundled:
            _check_expansion(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose values, with every alias expanded, number more than MAX_VALUES (an alias bomb, or
    a file that is simply that large), or that contains itself. An alias is the same node object composed twice,
    so sizes are counted once per node."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else \
            node.value if isinstance(node, yaml.SequenceNode) else []
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_VALUES:
                raise yaml.constructor.ConstructorError(
                    None, None, f"this document holds more than {MAX_VALUES:,} values, aliases expanded",
                    node.start_mark)
            continue
        if key in open_nodes:
            raise yaml.constructor.ConstructorError(None, None, "an alias refers to a value that contains it",
                                                    node.start_mark)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def value(text: str) -> Any:
    """A value given on the command line (`--set`, `--vary`), read as YAML: numbers, booleans, null; text YAML
    cannot read stays text, for validation to judge."""
    plain = text.strip()
    # The common case, a plain number, by the resolvers' own patterns without a YAML parse (sweeps read
    # thousands); float() reads every form _FLOAT_TEXT matches except YAML's `.inf` and `.nan`.
    if _INT_TEXT.match(plain) and len(plain) <= MAX_DIGITS:
        return int(plain.replace("_", ""), 10)
    if _FLOAT_TEXT.match(plain) and "n" not in plain.lower():
        return float(plain.replace("_", ""))
    try:
        return loads(text)
    except yaml.YAMLError:
        return text


def read(path: Path) -> Any:
    """Parse a YAML file, turning every way it can fail into a one-line SpecError naming the file."""
    problem = too_long(path)
    if problem:
        raise SpecError(printable(path), [problem])
    try:
        if not path.exists():
            raise SpecError(printable(path, cut=False), ["no such file"])
        if path.is_dir():
            raise SpecError(printable(path, cut=False), ["is a directory, not a YAML file"])
        if not path.is_file():      # a device would be read without end, a pipe wait for a writer
            raise SpecError(printable(path, cut=False), ["is not a regular file (a device, a pipe or a socket)"])
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(printable(path, cut=False), [f"cannot be read: {exc}"]) from None
    try:
        return loads(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise SpecError(printable(path, cut=False),
                        [f"{where}invalid YAML: {exc.problem or exc.context}"]) from None
    except yaml.reader.ReaderError as exc:    # a character YAML forbids: its position, not a mark
        before = text[:exc.position]
        where = f"line {before.count(chr(10)) + 1}, column {exc.position - before.rfind(chr(10))}: "
        raise SpecError(printable(path, cut=False), [f"{where}invalid YAML: unacceptable character "
                                                     f"#x{exc.character:04x}: {exc.reason}"]) from None
    except yaml.YAMLError as exc:
        raise SpecError(printable(path, cut=False), [f"invalid YAML: {exc}"]) from None


_TOP_LEVEL_KEY = re.compile(r"^([A-Za-z0-9_.-]+):", re.M)


def sections(text: str) -> dict[str, str]:
    """A mapping document cut at its top-level keys into one YAML text per entry, so that a reader of a large
    bundled table parses only the entries it needs. For costplan's own data files: an alias across entries or a
    top-level key written other than as a plain word is not supported (the cut would not see it)."""
    starts = [(m.start(), m.group(1)) for m in _TOP_LEVEL_KEY.finditer(text)]
    found: dict[str, str] = {}
    for (start, key), (end, _) in zip(starts, [*starts[1:], (len(text), "")]):
        if key in found:
            raise ValueError(f"duplicate top-level key {key!r}")
        found[key] = text[start:end]
    return found


def dumps(data: Any, header: str = "") -> str:
    """A mapping as block YAML in its own key order, after `# ` comment lines for the header."""
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    return comments + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)
