"""What each command prints, as `report.Table`s: raw records for JSON and CSV, and blocks of cells written with
report.py's formatters for people. The CLI calls the library, builds a table here and prints
`report.render(table, fmt)`; this package never formats a number itself.
"""
from __future__ import annotations

from costplan.tables.measurements import calibration, check_failures, checks
from costplan.tables.estimate import compare, estimates, seq_len, sweep, warnings
from costplan.tables.listings import hardware, presets
from costplan.tables.plan import deadline, proposal

__all__ = ["calibration", "check_failures", "checks", "compare", "deadline", "estimates", "hardware", "presets",
           "proposal", "seq_len", "sweep", "warnings"]
