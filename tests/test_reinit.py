"""Random-init copies use the architecture's own initialisation (TL 2/3, TL 4, HF, torch).

Each model is first "trained" (every parameter scaled and shifted, so nothing is at its
initial value), then re-initialised; the copy must look like a freshly constructed model of
the same config: norm weights 1, biases 0, weight standard deviations within 10%.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TL_CFG, make_bridge, make_hooked, needs_tl3, needs_tl4
from torch import nn

from sc_interp.reinit import reinitialize

BIG_TL = {**TL_CFG, "d_model": 64, "d_head": 16, "d_mlp": 128, "d_vocab": 200, "n_ctx": 32}


def _perturb(model: nn.Module) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0).add_(0.7)


def _is_norm(name: str) -> bool:
    return any(k in name for k in ("ln", "layernorm", "layer_norm", "norm"))


def _compare_to_fresh(clone: nn.Module, fresh: nn.Module) -> None:
    got, want = clone.state_dict(), fresh.state_dict()
    assert list(got) == list(want)
    checked = 0
    for name, value in got.items():
        ref = want[name]
        if not value.is_floating_point():
            continue
        if name.endswith("bias") or name.endswith(".b") or ".b_" in name:
            assert torch.all(value == 0), name
        elif _is_norm(name) and value.ndim == 1:
            assert torch.all(value == 1), name
        elif value.numel() >= 256 and float(ref.std()) > 0:
            ratio = float(value.float().std()) / float(ref.float().std())
            assert 0.9 <= ratio <= 1.1, f"{name}: std ratio {ratio:.3f}"
            checked += 1
    assert checked >= 4


@needs_tl4
def test_bridge_reinit_matches_a_fresh_bridge() -> None:
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    model = TransformerBridge.boot_native(TransformerBridgeConfig(**BIG_TL, seed=0))
    _perturb(model)
    state = torch.random.get_rng_state()
    clone, record = reinitialize(model, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    assert record.describe().startswith("TransformerBridge.init_weights")
    assert not record.fallback
    _compare_to_fresh(
        clone, TransformerBridge.boot_native(TransformerBridgeConfig(**BIG_TL, seed=9))
    )
    other, _ = reinitialize(model, seed=4)
    assert not torch.equal(
        clone.state_dict()["blocks.0.attn.q.weight"], other.state_dict()["blocks.0.attn.q.weight"]
    )
    again, _ = reinitialize(model, seed=3)
    assert torch.equal(
        clone.state_dict()["blocks.0.attn.q.weight"], again.state_dict()["blocks.0.attn.q.weight"]
    )
    assert float(model.state_dict()["blocks.0.ln1.weight"][0]) == pytest.approx(
        3.7
    )  # original kept


@pytest.mark.tl3
@needs_tl3
def test_hooked_transformer_reinit_matches_a_fresh_model() -> None:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    model = HookedTransformer(HookedTransformerConfig(**BIG_TL, seed=0))
    _perturb(model)
    clone, record = reinitialize(model, seed=3)
    assert record.describe().startswith("HookedTransformer(cfg) construction")
    assert not record.fallback
    _compare_to_fresh(clone, HookedTransformer(HookedTransformerConfig(**BIG_TL, seed=9)))
    assert make_hooked is not None


def test_hugging_face_reinit_matches_a_fresh_model_and_keeps_ties() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=300, n_positions=32)
    model = transformers.GPT2LMHeadModel(config)
    _perturb(model)
    clone, record = reinitialize(model, seed=3)
    assert record.describe().startswith("GPT2LMHeadModel.init_weights")
    assert not record.fallback
    assert clone.lm_head.weight is clone.transformer.wte.weight
    torch.manual_seed(9)
    _compare_to_fresh(clone, transformers.GPT2LMHeadModel(config))


def test_torch_modules_use_reset_parameters_and_the_rest_falls_back() -> None:
    class WithRaw(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(64, 64)
            self.norm = nn.LayerNorm(64)
            self.scale = nn.Parameter(torch.full((8, 8), 2.0) + torch.randn(8, 8))

    model = WithRaw()
    _perturb(model)
    clone, record = reinitialize(model, seed=0)
    assert record.by_method["reset_parameters"] == [
        "fc.weight",
        "fc.bias",
        "norm.weight",
        "norm.bias",
    ]
    assert record.fallback == ["scale"] and "scale" in record.describe()
    assert torch.all(clone.norm.weight == 1) and torch.all(clone.norm.bias == 0)
    bound = 1 / 8  # kaiming_uniform(a=sqrt(5)) on fan_in 64
    assert float(clone.fc.weight.detach().abs().max()) <= bound


@needs_tl4
def test_nested_bridge_is_initialised_by_its_own_initialiser() -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = make_bridge()
            self.head = nn.Linear(16, 4)

    model = Wrapper()
    _, record = reinitialize(model, seed=1)
    assert set(record.by_method) == {"TransformerBridge.init_weights", "reset_parameters"}
    assert record.by_method["reset_parameters"] == ["head.weight", "head.bias"]
