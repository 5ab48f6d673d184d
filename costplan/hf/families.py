"""One table per supported `model_type`: spec field → config keys, checks, defaults of its `transformers`
configuration class (llama_style.py and gpt_style.py); and the model types refused, with why."""
from __future__ import annotations

from costplan.hf.fields import Family
from costplan.hf.gpt_style import GPT_STYLE
from costplan.hf.llama_style import LLAMA_STYLE

FAMILIES: dict[str, Family] = {**LLAMA_STYLE, **GPT_STYLE}

# Model types costplan knows it cannot state exactly, with the reason, so the error says more than "no".
UNSUPPORTED = {
    "olmo2": "its norms follow the attention and MLP blocks (post-norm); not modelled yet",
}
