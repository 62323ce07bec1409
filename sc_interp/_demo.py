"""A tiny TransformerLens 4 bridge built from config, shared by the benchmarks and toy models."""

from __future__ import annotations

from typing import Any

import torch


def tiny_bridge(seed: int = 0, **overrides: int) -> torch.nn.Module:
    """A tiny TL 4 ``TransformerBridge`` built from config (no download)."""
    from sc_interp._optional import require

    require("transformer_lens", "the tiny TransformerLens models (planted_bridge, demo, bench)")
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg: dict[str, Any] = dict(
        d_model=32, d_head=8, n_heads=4, n_layers=2, n_ctx=16, d_vocab=50, d_mlp=64, act_fn="relu"
    )
    cfg.update(overrides)
    boot: Any = getattr(TransformerBridge, "boot_native")  # noqa: B009 - attached at import by TL
    return boot(TransformerBridgeConfig(**cfg, seed=seed))
