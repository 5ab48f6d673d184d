"""One table per supported `model_type`: spec field → config keys, checks, defaults of its `transformers`
configuration class (llama_style.py and gpt_style.py); and the model types refused, with why."""
from __future__ import annotations

from costplan.hf.fields import Family
from costplan.hf.gpt_style import GPT_STYLE
from costplan.hf.llama_style import LLAMA_STYLE

FAMILIES: dict[str, Family] = {**LLAMA_STYLE, **GPT_STYLE}

# Other names a config file may give a key the tables read: the `attribute_map` of each transformers
# configuration class (5.x), where either name sets the same attribute, and the name 5.x saves Gemma 3's window
# pattern under. A file written by one transformers version and one written by another cost the same.
ALIASES: dict[str, dict[str, str]] = {
    "deepseek_v2": {"num_experts": "n_routed_experts"},
    "deepseek_v3": {"num_local_experts": "n_routed_experts", "num_mtp_layers": "num_nextn_predict_layers"},
    "gpt2": {"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head",
             "num_hidden_layers": "n_layer"},
    "gptj": {"hidden_size": "n_embd", "max_position_embeddings": "n_positions", "num_attention_heads": "n_head",
             "num_hidden_layers": "n_layer"},
    "gpt_oss": {"num_experts": "num_local_experts"},
    "mixtral": {"num_experts": "num_local_experts"},
    "olmoe": {"num_local_experts": "num_experts"},
    "qwen3_moe": {"num_local_experts": "num_experts"},
    "gemma3_text": {"_sliding_window_pattern": "sliding_window_pattern"},
}

# Model types costplan knows it cannot state exactly, with the reason, so the error says more than "no".
WRAPPER = "a multimodal wrapper: its language model is the text_config inside it; save that as a config.json of its own"
UNSUPPORTED = {
    "olmo2": "its norms follow the attention and MLP blocks (post-norm); not modelled yet",
    "gemma3": f"{WRAPPER} (model_type gemma3_text)",
    "llama4": f"{WRAPPER} (model_type llama4_text)",
}
