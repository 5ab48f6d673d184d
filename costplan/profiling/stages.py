"""Progress of one spec's measurement: each stage told as it starts, with the seconds since the first (a
full-size model's, or a distributed run's, can take minutes)."""
from __future__ import annotations

from collections.abc import Callable
from time import perf_counter


class Stages:
    """say(f"{name}: {what} ({seconds} s)") as each stage starts, and a last line when done; nothing without
    `progress`."""

    def __init__(self, name: str, progress: Callable[[str], None] | None):
        self.name, self.say, self.started = name, progress or (lambda line: None), perf_counter()

    def __call__(self, what: str) -> None:
        self.say(f"{self.name}: {what} ({perf_counter() - self.started:.0f} s)")

    def done(self) -> None:
        self.say(f"{self.name}: measured in {perf_counter() - self.started:.0f} s")
