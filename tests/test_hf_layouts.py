"""Real layouts: tied parameters in bake, weight masks to units, bridge Conv1D, traces.

The expected units come from slices written here per family (``hf_zoo.head_weights``),
never from the library's UnitMaps.
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import needs_nnsight, needs_tl4
from hf_zoo import FAMILIES, MATRIX, run, tokens, wrap
from torch import nn

import sc_interp as sc

pytest.importorskip("transformers")
TIED = [f for f in MATRIX if FAMILIES[f].tied]


@pytest.mark.parametrize("family", TIED)
def test_bake_unties_the_unembedding_and_never_edits_the_embedding(family: str) -> None:
    f, x = FAMILIES[family], tokens()
    model = f.make()
    embed, unembed = (model.get_submodule(p) for p in f.tied)  # type: ignore[misc]
    assert unembed.weight is embed.weight  # tied, as the family ships
    original = embed.weight.detach().clone()
    target = f"{f.tied[1]}.weight"
    assert target in [s.name for s in sc.list_sites(model, "weight") if not s.default]
    cfg = sc.MaskConfig(unit="weight", targets=[target, f.at(f.weight, 0)])
    with sc.attach_masks(model, cfg) as masks:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in masks.logits.values():
                p.copy_(torch.randn(p.shape, generator=gen))
        masks.eval()
        expected = run(model, x)
        keep = masks.logits[target].detach() > 0
        baked = sc.bake(model, masks)
    b_embed, b_unembed = (baked.get_submodule(p) for p in f.tied)
    assert torch.equal(b_embed.weight, original), "bake edited the embedding"
    assert torch.equal(b_unembed.weight, original * keep)  # by hand: W * mask
    assert b_unembed.weight is not b_embed.weight and not baked.config.tie_word_embeddings
    assert torch.equal(embed.weight, original) and unembed.weight is embed.weight
    torch.testing.assert_close(run(baked, x), expected, rtol=1e-5, atol=1e-5)


def test_bake_unties_in_a_plain_torch_model_too() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 6)
            self.out = nn.Linear(6, 10)
            self.out.weight = self.embed.weight

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.relu(self.embed(x)))

    model, x = Tied(), torch.arange(10)
    original = model.embed.weight.detach().clone()
    with sc.attach_masks(model, sc.MaskConfig(unit="neuron", targets=["out"])) as masks:
        masks.eval()
        with torch.no_grad():
            masks.logits["out"][[1, 4]] = -1.0
        expected = model(x)
        baked = sc.bake(model, masks)
    assert torch.equal(baked.embed.weight, original)
    torch.testing.assert_close(baked(x), expected)
    assert torch.equal(baked.out.weight[[1, 4]], torch.zeros(2, 6))


def _head_weight_masks(family: str, model: nn.Module, layer: int, head: int) -> dict:
    """Weight masks keeping only ``head``'s slices (hand-written per family), all else off."""
    f = FAMILIES[family]
    masks = {
        s.name: torch.zeros(s.shape, dtype=torch.bool)
        for s in sc.list_sites(model, "weight")
        if s.default
    }
    layer_path = f.head.split("{L}")[0] + str(layer)  # e.g. model.layers.1
    for rel, where in f.head_weights.items():
        name = f"{layer_path}.{rel}.weight"
        masks[name][where(head)] = True
    return masks


@pytest.mark.parametrize("family", MATRIX)
def test_weight_masks_map_to_heads_by_the_real_layout(family: str) -> None:
    model = FAMILIES[family].make()
    masks = _head_weight_masks(family, model, layer=1, head=2)
    df = sc.compare(masks, ["a1.h2"], model=model)
    assert (df.loc[0, "iou"], df.loc[0, "n_sub"]) == (1.0, 1)
    # grouped-query attention: one key/value head kept keeps the query heads it serves
    if family in ("llama", "qwen2"):
        k = "model.layers.0.self_attn.k_proj.weight"
        masks = {k: torch.zeros(8, 16, dtype=torch.bool)}
        masks[k][4:8] = True  # key head 1 serves query heads 2 and 3
        assert sc.circuits._subnetwork.to_circuit(masks, model=model).units == {"a0.h2", "a0.h3"}


@needs_tl4
def test_gpt2_bridge_conv1d_weights_map_to_the_right_units() -> None:
    bridge = wrap(FAMILIES["gpt2"], "tl4")
    o = torch.zeros(16, 16, dtype=torch.bool)  # attn.o wraps Conv1D: [in = heads * d_head, out]
    o[0:4] = True  # head 0's rows
    mlp_in = torch.zeros(16, 32, dtype=torch.bool)  # mlp.in wraps Conv1D: [d_model, d_mlp]
    mlp_in[:, 7] = True  # neuron 7's column
    masks = {"blocks.0.attn.o.weight": o, "blocks.0.mlp.in.weight": mlp_in}
    circuit = sc.circuits._subnetwork.to_circuit(masks, model=bridge)
    assert circuit.units == {"a0.h0", "m0", "m0.n7"}
    neurons = sc.compare(masks, ["m0.n7", "a0.h0"], model=bridge)
    assert neurons.loc[0, "iou"] == 1.0 and neurons.loc[0, "n_units"] == 4 + 32


@needs_tl4
def test_bridge_bake_after_a_training_forward() -> None:
    bridge, x = wrap(FAMILIES["gpt2"], "tl4"), tokens()
    with sc.attach_masks(bridge, sc.MaskConfig(unit="weight")) as masks:
        masks.train()
        bridge(x).sum().backward()  # the bridge keeps this forward's attention pattern
        masks.eval()
        baked = sc.bake(bridge, masks)  # a deep copy meets that non-leaf tensor
        expected = bridge(x).detach()
    torch.testing.assert_close(baked(x).detach(), expected, rtol=1e-5, atol=1e-5)


def test_compare_warns_when_the_sides_share_no_unit_kind() -> None:
    model = FAMILIES["llama"].make()
    neurons = {
        s.name: torch.ones(s.shape, dtype=torch.bool) for s in sc.list_sites(model, "neuron")
    }
    with pytest.warns(UserWarning, match="share no unit kind"):
        sc.compare(neurons, ["a0.h1"], model=model)


def test_mean_ablation_of_a_head_records_the_projection_input() -> None:
    f, x = FAMILIES["qwen2"], tokens()
    model = f.make()
    proj = model.get_submodule(f.at(f.head, 1))
    seen: list[torch.Tensor] = []
    handle = proj.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach()))
    run(model, x)
    handle.remove()
    mean = seen[0][..., 8:12].mean(dim=(0, 1))  # head 2's slice, mean over batch and positions

    def replace(mod: nn.Module, args: tuple) -> tuple:
        inp = args[0].clone()
        inp[..., 8:12] = mean
        return (inp,)

    handle = proj.register_forward_pre_hook(replace)
    expected = run(model, x)
    handle.remove()
    keep = torch.ones(4, dtype=torch.bool)
    keep[2] = False
    with sc.isolate(model, {f.at(f.head, 1): keep}, method="mean", data=x):
        torch.testing.assert_close(run(model, x), expected, rtol=1e-5, atol=1e-5)


@needs_nnsight
@pytest.mark.parametrize("family", ["llama", "bert"])
def test_apply_in_trace_masks_hf_heads(family: str, tmp_path) -> None:
    f, x = FAMILIES[family], tokens()
    model = wrap(f, "nnsight")
    plain = copy.deepcopy(model._module)  # type: ignore[attr-defined]
    lo, hi = f.head_dim, 2 * f.head_dim
    handle = plain.get_submodule(f.at(f.head, 0)).register_forward_pre_hook(
        lambda m, a: (torch.cat([a[0][..., :lo], 0 * a[0][..., lo:hi], a[0][..., hi:]], -1),)
    )
    expected = run(plain, x)
    handle.remove()
    with sc.attach_masks(model, sc.MaskConfig(unit="head", targets=[f.at(f.head, 0)])) as masks:
        with torch.no_grad():
            masks.logits[f.at(f.head, 0)][1] = -1.0
        masks.eval()
    with model.trace(x):  # type: ignore[attr-defined]
        sc.apply_in_trace(model, masks)
        out = model.output.save()  # type: ignore[attr-defined]
    torch.testing.assert_close(out.logits.detach(), expected, rtol=1e-5, atol=1e-5)


def test_cli_compare_reads_hf_layouts_from_the_mask_files(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from sc_interp.cli import app

    model = FAMILIES["gpt2"].make()  # fused Conv1D c_attn: names alone cannot be read
    circuit = tmp_path / "circuit.json"
    circuit.write_text(json.dumps(["a1.h3"]))
    with sc.attach_masks(model, sc.MaskConfig(unit="weight", init=-1.0)) as masks:
        masks.logits["transformer.h.1.attn.c_attn.weight"].data[:, 12:16] = 1.0  # q of head 3
        saved = masks.save(tmp_path / "masks.safetensors")
    result = CliRunner().invoke(app, ["compare", str(saved), str(circuit)])
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[1].split()
    assert first[0] == "all" and first[5] == "1.000"  # layer, ..., iou
