"""One rule for an argument that names a bundled entry or a file: specs (presets), --gpu (the hardware
catalogue) and --law (the bundled scaling laws).

- Text with a path separator or a .yaml, .yml or .json suffix is a path, looked up from the current folder and
  then from the folder of the spec that names it (`./gpt2-small` is the file, even beside a preset).
- Otherwise a bundled name wins, matched without regard to case when only one matches (`H100-SXM`).
- Otherwise a regular file of that name is a path. A folder is never one: a folder called `gpt2-small` in the
  current folder does not hide the preset. (For specs alone, a folder holding a Hugging Face `config.json`
  stands for that file when no preset has its name: see loading.read_source.)
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from costplan.errors import CostplanError, printable
from costplan.files import too_long

SUFFIXES = (".yaml", ".yml", ".json")


def looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.lower().endswith(SUFFIXES)


def check_name_length(option: str, path: Path) -> None:
    """A CostplanError for a path, or a component of it, longer than the file system holds, before the OS raises."""
    problem = too_long(path)
    if problem:
        raise CostplanError(f"{option}{printable(path)}: {problem}")


def is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:      # a name too long, a loop of links: not a file we can read
        return False


def find(name: str | os.PathLike, bundled: Iterable[str], base_dirs: Sequence[str | None] = (),
         option: str = "") -> str | Path | None:
    """The bundled name `name` stands for, or the path of the file it names, or None when it is neither. A
    path that looks like one is returned even when missing, for the reader to report."""
    if isinstance(name, os.PathLike):
        return Path(name)
    text = str(name)
    if not looks_like_path(text):
        check_name_length(option, Path(text))
    candidates = [Path(text)] + [Path(base) / text for base in base_dirs if base]
    if looks_like_path(text):
        for path in candidates:
            check_name_length(option, path)
        return next((path for path in candidates if is_file(path)), candidates[0])
    names = list(bundled)
    if text in names:
        return text
    same = [key for key in names if key.casefold() == text.casefold()]
    if len(same) == 1:
        return same[0]
    return next((path for path in candidates if is_file(path)), None)


CONFIG_NAME = "config.json"   # a Hugging Face checkpoint's model configuration


def config_file(path: Path) -> Path | None:
    """The Hugging Face config.json a spec argument names: a .json file, or a folder's config.json; None for
    others (a folder without one is then reported as a folder, not a YAML file)."""
    check_name_length("", path)
    if path.is_dir():
        return path / CONFIG_NAME if (path / CONFIG_NAME).is_file() else None
    return path if path.suffix.lower() == ".json" else None     # X.JSON too, as the path check reads it


def config_name(config: Path) -> str:
    """A folder's name for its config.json (as checkpoints are laid out), otherwise the file's stem; in a Hugging
    Face hub cache (models--ORG--NAME/snapshots/REVISION/config.json), the model's NAME, not the revision's hash."""
    if config.name != CONFIG_NAME:
        return config.stem
    folder = config.parent.resolve()
    repo = folder.parent.parent.name
    if folder.parent.name == "snapshots" and repo.startswith("models--"):
        return repo.removeprefix("models--").split("--", 1)[-1]
    return folder.name
