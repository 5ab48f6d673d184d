"""Every tiny Hugging Face config against its transformers class, under each training.implementation and autocast:
parameters and eager FLOPs (exact or not), saved activations and the peak of a training step (relative error).

    python bench/against_transformers.py --markdown bench/transformers_results.md

Validation data only: no constant in costplan is fitted to it (costs/implementation/ derives each tensor from
the modules' code; this table is how well the derivation holds per family). Needs the `hf` extra.
"""
from __future__ import annotations

import argparse
import platform
from pathlib import Path

import costplan
from costplan.errors import CostplanError, SpecError
from costplan.profiling import against
from costplan.profiling.compare import DEFAULT_TOLERANCES

TINY = Path(__file__).parents[1] / "specs" / "ci" / "hf" / "tiny"
SETTINGS = [("sdpa", False), ("eager", False), ("sdpa", True), ("eager", True)]


def row(config: Path) -> list[str]:
    cells = []
    for implementation, autocast in SETTINGS:
        try:
            spec = costplan.load_spec(config, [f"training.implementation={implementation}",
                                               f"training.autocast={str(autocast).lower()}"])
            checks = {c.metric if c.metric != "flops" else c.item: c
                      for c in against.checks(spec, against.measure(config, spec), DEFAULT_TOLERANCES)}
        except SpecError as exc:          # a rule of the spec: what costplan does not model under this setting
            cells.append("not modelled: " + exc.problems[0].split(": ", 2)[-1].split(";")[0].split(" (")[0])
            continue
        except CostplanError as exc:      # the class itself refuses the attention implementation
            cells.append(f"the class has no {implementation} attention"
                         if "does not support an attention implementation" in str(exc) else str(exc))
            continue
        exact = all(c.status == "ok" for c in checks.values() if c.metric in ("params", "flops"))
        saved, peak = checks["activations"], checks["peak"]
        cells.append(f"{'exact' if exact else 'DIFFERS'}; {saved.relative_error:+.2%} / {peak.relative_error:+.2%}")
    return [config.stem, *cells]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="write the table here (the whole file)")
    args = parser.parse_args()
    header = ["config", *(f"{i}{' + autocast' if a else ''}" for i, a in SETTINGS)]
    rows = [row(config) for config in sorted(TINY.glob("*.json"))]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join([
        "# Tiny Hugging Face configs against their transformers classes",
        "",
        f"Measured with `python bench/against_transformers.py --markdown bench/transformers_results.md` on "
        f"{platform.machine()} CPU tensors, bf16 (fp32 weights under autocast), batch 1 × 128 tokens. Each "
        "cell: parameters and eager forward/training FLOPs (`exact` when all equal the class), then the saved "
        "activations / the peak of two training steps, measured − estimated relative to the estimate "
        "(tolerances 5% / 10%). Validation data: nothing in costplan is fitted to it.",
        "",
        *lines, ""])
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
