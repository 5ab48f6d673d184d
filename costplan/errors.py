"""Errors whose message is meant for the user: the CLI prints them as `Error: ...` and exits with status 2."""
from __future__ import annotations

import reprlib
import unicodedata
from collections.abc import Iterable

MAX_SHOWN = 60   # characters of a user's value echoed in a message; a value can be megabytes long

class _AsWritten(reprlib.Repr):
    """Python's repr, but null, true and false as a YAML spec or a JSON config spells them."""

    def repr_NoneType(self, value: None, level: int) -> str:  # noqa: N802 - reprlib's dispatch by type name
        return "null"

    def repr_bool(self, value: bool, level: int) -> str:
        return "true" if value else "false"

    def repr_date(self, value: object, level: int) -> str:  # YAML reads 2000-01-01 as a date: echoed as written
        return value.isoformat()  # type: ignore[attr-defined]

    repr_datetime = repr_date


_REPR = _AsWritten()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 2, 4, 4, 4
_REPR.maxstring = _REPR.maxlong = _REPR.maxother = MAX_SHOWN


def install_hint(extra: str) -> str:
    """How to add one of costplan's extras: it is installed from its checkout (README), not from an index."""
    return f"pip install -e '.[{extra}]' in costplan's checkout"


class CostplanError(Exception):
    """A problem the user can fix; the message is shown as it is, without a traceback."""


class SpecError(CostplanError):
    """One or more problems in one input (a spec file, a hardware file, --set overrides)."""

    def __init__(self, source: str, problems: Iterable[str]):
        self.source = source
        self.problems = list(problems)
        shown_source = printable(source, cut=False)      # a file's name can hold a line break
        super().__init__("\n".join(f"{shown_source}: {p}" for p in self.problems))

    def __reduce__(self):  # noqa: ANN204 - pickled from a worker process (forked.py) as it was made
        return type(self), (self.source, self.problems)


# Names people bring from elsewhere for the spec's own: Hugging Face config.json fields, Megatron-LM and
# GPT-NeoX arguments, and common spellings of values. Keys are compared as _folded writes them.
SPELLINGS: dict[str, str] = {
    "numattentionheads": "n_heads", "numheads": "n_heads", "nhead": "n_heads", "heads": "n_heads",
    "numkeyvalueheads": "n_kv_heads", "numkvheads": "n_kv_heads", "numquerygroups": "n_kv_heads",
    "hiddensize": "d_model", "nembd": "d_model", "dim": "d_model", "embeddim": "d_model",
    "numhiddenlayers": "n_layers", "numlayers": "n_layers", "nlayer": "n_layers", "layers": "n_layers",
    "intermediatesize": "d_ff", "ffnhiddensize": "d_ff", "ninner": "d_ff", "ffndim": "d_ff",
    "vocabsize": "vocab_size", "paddedvocabsize": "vocab_size", "vocab": "vocab_size",
    "maxpositionembeddings": "max_seq_len", "npositions": "max_seq_len", "nctx": "max_seq_len",
    "seqlength": "max_seq_len", "contextlength": "max_seq_len", "maxseqlength": "max_seq_len",
    "headdim": "head_dim", "kvchannels": "head_dim",
    "tiewordembeddings": "tie_embeddings", "untieembeddingsandoutputweights": "tie_embeddings",
    "numlocalexperts": "n_experts", "nroutedexperts": "n_experts", "numexperts": "n_experts",
    "numexpertspertok": "top_k", "moeroutertopk": "top_k", "expertspertoken": "top_k",
    "moeintermediatesize": "d_ff_expert", "nsharedexperts": "n_shared_experts",
    "slidingwindow": "window", "attentionwindow": "window",
    "globalbatchsize": "global_batch_size", "microbatchsize": "micro_batch_size", "batchsize": "micro_batch_size",
    "trainingtokens": "tokens", "numtokens": "tokens", "ngpus": "count", "numgpus": "count", "gpus": "count",
    "tensorparallel": "tensor", "tensormodelparallelsize": "tensor", "tp": "tensor",
    "pipelineparallel": "pipeline", "pipelinemodelparallelsize": "pipeline", "pp": "pipeline",
    "dataparallel": "data", "dp": "data", "expertmodelparallelsize": "expert", "ep": "expert",
    "experttensorparallelsize": "expert_tensor", "etp": "expert_tensor",
    "zerostage": "zero",
    "silu": "swiglu", "swish": "swiglu", "gelunew": "gelu", "gelupytorchtanh": "gelu",
    "layernormalization": "layernorm", "ln": "layernorm", "rms": "rmsnorm", "llamarmsnorm": "rmsnorm",
    "rotary": "rope", "absolute": "learned", "bfloat16": "bf16", "float16": "fp16", "half": "fp16",
    "float32": "fp32", "float": "fp32", "flashattention": "flash", "flashattention2": "flash", "sdpa": "flash",
    "eager": "dense", "fullattention": "dense", "swa": "sliding_window",
}


def _folded(word: object) -> str:
    """A spelling with case and separators ignored: `Num_Attention-Heads` → `numattentionheads`."""
    return "".join(ch for ch in str(word).casefold() if ch not in "_- .")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close. Case and separators are
    ignored (`BF16` → bf16, `RMS_Norm` → rmsnorm), a known other name wins (`num_attention_heads` →
    n_heads, `silu` → swiglu), then a choice that starts with the word (`H100` → h100-sxm, not v100), then a
    merely similar one."""
    choices = [str(c) for c in choices]
    folded = {_folded(c): c for c in reversed(choices)}   # the first choice wins among equal foldings
    key = _folded(word)
    alias = SPELLINGS.get(key)
    exact = folded.get(key) or (alias if alias in choices else None)
    prefixed = [c for c in choices if key and _folded(c).startswith(key)]
    import difflib   # here: only a misspelling needs it, and importing it costs every start

    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    best = exact or (prefixed[0] if prefixed else folded[close[0]] if close else None)
    return f" (did you mean '{best}'?)" if best else ""


def _cut(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 1] + "…"


# control and format characters, and the line and paragraph separators (U+2028, U+2029) that end a line too
UNPRINTED = ("Cc", "Cf", "Zl", "Zp")


def shown(value: object) -> str:
    """A value as a message echoes it: its repr, short (`[[1, 1, 1, 1, ...], ...]`, `'abc…'`). Every message
    that repeats a user's input goes through this, so no input makes a long or multi-line error."""
    return _cut(_REPR.repr(value))


def printable(text: object, cut: bool = True) -> str:
    """Text from the user (a field name, a file name) as a message shows it: control and format characters
    escaped, so that they cannot move the cursor or recolour the terminal, and cut short unless asked not to
(a file's path is shown whole)."""
    text = str(text)[:MAX_SHOWN * 4] if cut else str(text)
    escaped = "".join(ch.encode("unicode_escape").decode() if unicodedata.category(ch) in UNPRINTED else ch
                      for ch in text)
    return _cut(escaped) if cut else escaped
