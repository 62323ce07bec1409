"""The smallest end-to-end example: masks on a tiny TransformerLens model, checked and removed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from sc_interp.masks import MaskConfig, attach_masks


def tiny_bridge(seed: int = 0, **overrides: int) -> torch.nn.Module:
    """A tiny TL 4 ``TransformerBridge`` built from config (no download)."""
    from sc_interp._optional import require

    require("transformer_lens")
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    cfg: dict[str, Any] = dict(
        d_model=32, d_head=8, n_heads=4, n_layers=2, n_ctx=16, d_vocab=50, d_mlp=64, act_fn="relu"
    )
    cfg.update(overrides)
    boot: Any = getattr(TransformerBridge, "boot_native")  # noqa: B009 - attached at import by TL
    return boot(TransformerBridgeConfig(**cfg, seed=seed))


def attach_demo(quick: bool = False) -> Iterator[str]:
    """Yield the lines of the attach/detach demo (the CLI prints them)."""
    model = tiny_bridge()
    tokens = torch.randint(
        0, 50, (4 if quick else 16, 12), generator=torch.Generator().manual_seed(0)
    )
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reference = model(tokens)
    yield "sc-interp demo: neuron masks on a 2-layer TransformerLens model (built from config)"
    config = MaskConfig(unit="neuron", targets=["blocks.*.mlp.hook_post"])
    with attach_masks(model, config) as masks:
        masks.eval()
        yield f"  attached: {len(masks.logits)} sites, {sum(p.numel() for p in masks.logits.values())} neurons"
        same = torch.equal(model(tokens), reference)
        yield f"  all masks on  -> logits identical to the unmasked model: {same}"
        with torch.no_grad():
            masks.logits["blocks.1.mlp.hook_post"][:32] = -1.0
        change = (model(tokens) - reference).abs().max().item()
        yield f"  half of layer 1's neurons off -> max logit change {change:.4f}"
    restored = all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    yield f"  detached: parameters bit-identical to before: {restored}"
    if not (same and restored and change > 0):
        raise SystemExit("demo check failed")
