"""Errors whose message is meant for the user: the CLI prints them as `Error: ...` and exits with status 2."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class CostplanError(Exception):
    """A problem the user can fix; the message is shown as it is, without a traceback."""


class SpecError(CostplanError):
    """One or more problems in one input (a spec file, a hardware file, --set overrides)."""

    def __init__(self, source: str, problems: Iterable[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close. A choice that starts with
    the word wins over a merely similar one (`h100` → h100-sxm, not v100)."""
    choices = list(choices)
    prefixed = [c for c in choices if c.startswith(str(word))]
    close = prefixed or difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""
