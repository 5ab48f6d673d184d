"""The development install stays lean: `pip install -e '.[dev]'` must not resolve a torch newer than the one
the tests are measured with (the newest torch brings several GB of CUDA libraries on a CPU machine)."""
from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))


def _torch_specifiers(extra: str) -> list:
    reqs = [Requirement(text) for text in PYPROJECT["project"]["optional-dependencies"][extra]]
    return [r.specifier for r in reqs if r.name == "torch"]


def test_dev_extra_keeps_torch_at_the_tested_version():
    specifiers = _torch_specifiers("dev")
    assert specifiers, "the dev extra leaves torch to the newest release"
    for version, allowed in (("2.13.0", True), ("2.13.0+cpu", True), ("2.4.0", True), ("2.14.0", False),
                             ("2.15.0", False)):
        assert all(s.contains(version) for s in specifiers) is allowed, version


def test_profile_extra_accepts_a_users_newer_torch():
    assert all(s.contains("2.15.0") for s in _torch_specifiers("profile"))
