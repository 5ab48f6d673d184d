"""Bundled preset specs (costplan/presets/*.yaml), usable by name wherever a spec file is."""
from __future__ import annotations

import functools
from pathlib import Path

from costplan import bundled


@functools.cache
def _folder() -> Path:
    return bundled.path("presets")


def _order(name: str) -> tuple[str, float]:
    """Family, then size: gpt2-small < gpt2-medium < ... < llama2-7b < llama2-13b."""
    family, _, variant = name.partition("-")
    sizes = {"small": 1, "medium": 2, "large": 3, "xl": 4}
    digits = "".join(c for c in variant.split("x")[-1] if c.isdigit() or c == ".")
    return family, sizes.get(variant, float(digits) if digits else 0.0)


@functools.cache
def names() -> tuple[str, ...]:
    return tuple(sorted((p.stem for p in _folder().glob("*.yaml")), key=_order))


def path(name: str) -> Path:
    return _folder() / f"{name}.yaml"


def source(name: str, citation_only: bool = False) -> str:
    """The `# source:` comment of a preset, with the comment lines that continue it (notes on what the sources
    leave out), or its first line alone (the citation): where its hyperparameters come from."""
    found: list[str] = []
    for line in path(name).read_text(encoding="utf-8").splitlines():
        if line.startswith("# source:"):
            found.append(line.removeprefix("# source:").strip())
            if citation_only:
                break
        elif found and line.startswith("#"):
            found.append(line.removeprefix("#").strip())
        elif found:
            break
    if len(found) < 2:
        return "".join(found)
    # the citation is its own line, the notes after it wrapped prose
    citation, notes = found[0], " ".join(found[1:])
    return f"{citation}{'' if citation.endswith('.') else '.'} {notes}"
