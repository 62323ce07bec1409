"""Where each Hugging Face transformer family keeps its attention and MLP matrices.

One :class:`Family` per ``config.model_type``. Sizes (layers, heads, key/value heads,
``head_dim``, MLP width) always come from the model's config and are checked against the
modules' shapes; a family entry only says where the matrices are. To support another
family, add an entry to :data:`FAMILIES` (for example
``FAMILIES["olmo"] = FAMILIES["llama"]`` when the module names agree).

Example:
    >>> FAMILIES["gpt2"].attn["o"], FAMILIES["llama"].mlp["down"]
    ('attn.c_proj', 'mlp.down_proj')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["q", "k", "v", "qkv", "o", "gate", "up", "down"]


def _intermediate(cfg: Any) -> int:
    return int(cfg.intermediate_size)


@dataclass(frozen=True)
class Family:
    """The module paths of one family's transformer layer.

    Attributes:
        layer: regular expression for a layer's module path (its end), capturing the
            layer index, e.g. ``r"layers\\.(\\d+)"``.
        attn: attention matrices by role, paths relative to the layer. ``o`` (the output
            projection) is required: its input holds the heads. ``qkv`` is a fused
            projection, laid out as ``qkv_layout`` says.
        mlp: MLP matrices by role (``gate``, ``up``, ``down``), relative to the layer;
            ``down`` is required: its input holds the MLP's hidden units (neurons).
        qkv_layout: ``"blocks"`` (``[q | k | v]``, GPT-2's ``c_attn``) or ``"interleaved"``
            (``[q_h k_h v_h]`` per head, GPT-NeoX's ``query_key_value``).
        d_mlp: reads the MLP width from the config.
    """

    layer: str
    attn: Mapping[str, str]
    mlp: Mapping[str, str]
    qkv_layout: Literal["blocks", "interleaved"] = "blocks"
    d_mlp: Callable[[Any], int] = field(default=_intermediate)


_LLAMA = Family(
    r"layers\.(\d+)",
    {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
     "o": "self_attn.o_proj"},
    {"gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"},
)  # fmt: skip
_BERT = Family(
    r"encoder\.layer\.(\d+)",
    {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
     "o": "attention.output.dense"},
    {"up": "intermediate.dense", "down": "output.dense"},
)  # fmt: skip

FAMILIES: dict[str, Family] = {
    "gpt2": Family(
        r"h\.(\d+)",
        {"qkv": "attn.c_attn", "o": "attn.c_proj"},
        {"up": "mlp.c_fc", "down": "mlp.c_proj"},
        d_mlp=lambda cfg: int(cfg.n_inner or 4 * cfg.hidden_size),
    ),
    "gpt_neox": Family(
        r"layers\.(\d+)",
        {"qkv": "attention.query_key_value", "o": "attention.dense"},
        {"up": "mlp.dense_h_to_4h", "down": "mlp.dense_4h_to_h"},
        qkv_layout="interleaved",
    ),
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "qwen3": _LLAMA,
    "gemma": _LLAMA,
    "gemma2": _LLAMA,
    "phi": Family(
        r"layers\.(\d+)",
        {
            "q": "self_attn.q_proj",
            "k": "self_attn.k_proj",
            "v": "self_attn.v_proj",
            "o": "self_attn.dense",
        },
        {"up": "mlp.fc1", "down": "mlp.fc2"},
    ),
    "opt": Family(
        r"decoder\.layers\.(\d+)",
        {
            "q": "self_attn.q_proj",
            "k": "self_attn.k_proj",
            "v": "self_attn.v_proj",
            "o": "self_attn.out_proj",
        },
        {"up": "fc1", "down": "fc2"},
        d_mlp=lambda cfg: int(cfg.ffn_dim),
    ),
    "bert": _BERT,
    "roberta": _BERT,
}
