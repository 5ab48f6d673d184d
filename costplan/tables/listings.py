"""Tables of `costplan presets` and `costplan hardware`."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from costplan.hardware import PRECISIONS
from costplan.report import Block, Table, count, human, percent, price, size
from costplan.spec_attention import describe

if TYPE_CHECKING:
    from costplan.hardware import GPU
    from costplan.spec import Spec

PRESET_HEADERS = ["name", "parameters", "layers", "d_model", "heads", "context", "attention", "source"]


def presets(specs: Mapping[str, Spec], params: Mapping[str, int], sources: Mapping[str, str],
            citations: Mapping[str, str]) -> Table:
    """The bundled presets: raw parameter counts, head counts as numbers and whole sources in JSON and CSV (a
    spreadsheet reads "12/12" as a date); counts, heads as query/key-value and citations (the source's first line)
    for people."""
    records = [{"name": name, "parameters": params[name], "layers": s.model.n_layers, "d_model": s.model.d_model,
                "n_heads": s.model.n_heads, "n_kv_heads": s.model.n_kv_heads, "context": s.model.max_seq_len,
                "attention": describe(s.model.attention), "source": sources[name]}
               for name, s in specs.items()]
    body = [[r["name"], count(r["parameters"]), r["layers"], r["d_model"], f"{r['n_heads']}/{r['n_kv_heads']}",
             r["context"], r["attention"], citations[r["name"]]] for r in records]
    return Table([Block(PRESET_HEADERS, body)], records)


def hardware(gpus: Mapping[str, GPU], precisions: tuple[str, ...] = PRECISIONS) -> Table:
    """The catalogue: dense peaks by precision, memory, bandwidth, the MFU that sizes `plan --budget` proposals
    (estimates time steps with the kernel tables instead) and price."""
    # the catalogue name (what --gpu takes) and the device's, under the keys JSON and CSV give them
    headers = ["key", "name", *(f"{p} TFLOP/s" for p in precisions), "memory", "usable", "bandwidth", "budget MFU",
               "$/GPU-hour", "price date"]
    # usable: what a framework can have of the memory (PyTorch's total), what steps must fit in
    body = [[key, gpu.name, *(human(gpu.peak_tflops.get(p), "number") for p in precisions),
             size(gpu.stated_memory_bytes), size(gpu.memory_bytes), f"{human(gpu.memory_bandwidth_gbs, 'number')} GB/s",
             percent(gpu.mfu), price(gpu.usd_per_gpu_hour), gpu.price_date]
            for key, gpu in gpus.items()]
    # every precision's peak in one place of the CSV header, whichever device comes first
    columns = ["key", "name", *(f"peak_tflops.{p}" for p in precisions)]
    return Table([Block(headers, body)], [{"key": key, **gpu.model_dump()} for key, gpu in gpus.items()],
                 columns=columns)
