"""Files shipped inside the package (data tables, presets): found beside this module, as pip installs a
package unzipped. importlib.resources would find them too, but importing its readers took longer than all of
an estimate's own reading."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent


def path(*parts: str) -> Path:
    return ROOT.joinpath(*parts)


def text(*parts: str) -> str:
    return path(*parts).read_text(encoding="utf-8")
