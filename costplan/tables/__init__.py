"""What each command prints, as `report.Table`s: raw records for JSON and CSV, and blocks of cells written with
report.py's formatters for people. The CLI calls the library, builds a table here and prints
`report.render(table, fmt)`; this package never formats a number itself.
"""
from __future__ import annotations

import importlib

# Each table's module is imported when a command first asks for it: `costplan estimate` does not load the
# tables of profile or plan.
_WHERE = {
    "calibration": "measurements", "check_failures": "measurements", "checks": "measurements",
    "column_names": "estimate", "compare": "estimate", "estimates": "estimate", "seq_len": "estimate",
    "sweep": "estimate", "assumed_inputs": "estimate", "warnings": "estimate", "seq_len_warnings": "estimate",
    "defaulted_seq_len": "estimate", "accuracy_warnings": "estimate",
    "hardware": "listings", "presets": "listings", "deadline": "plan",
    "proposal": "plan", "proposal_warnings": "plan", "deadline_warnings": "plan",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"costplan.tables.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'costplan.tables' has no attribute {name!r}")
