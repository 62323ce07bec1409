"""Site discovery for Hugging Face models: names, shapes and layouts from the config.

Every family of :mod:`hf_zoo` (Phi, OPT, Mistral and Gemma2 included) lists its heads,
neurons and weights under its own module paths, the same under nnsight; all-on masks are
exact and one head / neuron off equals a pre-hook written here. Unknown families fall back
to the generic torch adapter with a warning that names the entry to write.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import needs_nnsight
from hf_zoo import DISCOVERY, FAMILIES, MATRIX, N_HEADS, N_LAYERS, run, tokens, wrap
from torch import nn

import sc_interp as sc

transformers = pytest.importorskip("transformers")
ALL = MATRIX + DISCOVERY


@pytest.mark.parametrize("family", ALL)
def test_sites_follow_the_config(family: str) -> None:
    f = FAMILIES[family]
    model = f.make()
    heads, neurons = sc.list_sites(model, "head"), sc.list_sites(model, "neuron")
    assert [s.name for s in heads] == [f.at(f.head, layer) for layer in range(N_LAYERS)]
    assert [s.name for s in neurons] == [f.at(f.neuron, layer) for layer in range(N_LAYERS)]
    assert all(s.shape == (N_HEADS,) and s.group == f.head_dim and s.io == "input" for s in heads)
    assert all(s.shape == (f.d_mlp,) and s.io == "input" for s in neurons)
    weights = sc.list_sites(model, "weight")
    default = [s.name for s in weights if s.default]
    assert f.at(f.weight, 1) in default
    # attention and MLP matrices only: no embeddings, norms or lm_head unless targeted
    assert all(".layers." in n or ".h." in n or ".layer." in n for n in default)
    layers = [model.get_submodule(s.module) for s in weights if s.default]
    assert all(type(m).__name__ == ("Conv1D" if f.conv1d else "Linear") for m in layers)
    optional = [s.name for s in weights if not s.default]
    assert optional and all("embed" in n or "wte" in n or "wpe" in n or "lm_head" in n
                            or "decoder" in n for n in optional)  # fmt: skip


@pytest.mark.parametrize("family", ALL)
@pytest.mark.parametrize("unit", ["head", "neuron"])
def test_all_on_and_one_unit_off_by_hand(family: str, unit: str) -> None:
    f, x = FAMILIES[family], tokens()
    model = f.make()
    plain = run(model, x)
    with sc.attach_masks(model, sc.MaskConfig(unit=unit, init=0.3)) as masks:
        masks.eval()
        assert torch.equal(run(model, x), plain)
    path = f.at(f.head if unit == "head" else f.neuron, 0)
    lo, hi = (1 * f.head_dim, 2 * f.head_dim) if unit == "head" else (7, 8)

    def pre_hook(mod: nn.Module, args: tuple) -> tuple:
        inp = args[0].clone()
        inp[..., lo:hi] = 0.0
        return (inp, *args[1:])

    handle = model.get_submodule(path).register_forward_pre_hook(pre_hook)
    expected = run(model, x)
    handle.remove()
    assert not torch.allclose(expected, plain)
    with sc.attach_masks(model, sc.MaskConfig(unit=unit, targets=[path])) as masks:
        masks.eval()
        with torch.no_grad():
            masks.logits[path][1 if unit == "head" else 7] = -1.0
        torch.testing.assert_close(run(model, x), expected, rtol=1e-5, atol=1e-5)


@needs_nnsight
@pytest.mark.parametrize("family", ["gpt2", "llama", "bert"])
def test_same_sites_plain_and_under_nnsight(family: str) -> None:
    f = FAMILIES[family]
    plain, wrapped = f.make(), wrap(f, "nnsight")
    for unit in ("weight", "neuron", "head"):
        assert sc.list_sites(plain, unit) == sc.list_sites(wrapped, unit)


def test_gated_mlp_neurons_are_after_the_gate() -> None:
    f, x = FAMILIES["llama"], tokens()
    model = f.make()
    mlp = model.model.layers[0].mlp  # type: ignore[union-attr]
    with torch.no_grad():  # by hand: act(gate) * up with unit 4's gate and up rows zeroed
        saved = mlp.up_proj.weight[4].clone()
        mlp.up_proj.weight[4] = 0.0
        expected = run(model, x)
        mlp.up_proj.weight[4] = saved
    site = "model.layers.0.mlp.down_proj"
    with sc.attach_masks(model, sc.MaskConfig(unit="neuron", targets=[site])) as masks:
        masks.eval()
        with torch.no_grad():
            masks.logits[site][4] = -1.0
        torch.testing.assert_close(run(model, x), expected, rtol=1e-5, atol=1e-5)


def test_grouped_query_heads_are_query_heads() -> None:
    model = FAMILIES["llama"].make()  # 4 query heads, 2 key/value heads
    (site,) = [s for s in sc.list_sites(model, "head") if s.name.endswith("0.self_attn.o_proj")]
    assert site.shape == (4,) and site.group == 4
    k = next(
        s for s in sc.list_sites(model, "weight") if s.name.endswith("0.self_attn.k_proj.weight")
    )
    assert k.units is not None and k.units.share == 2  # each key head serves 2 query heads
    entries = dict((u, e.tolist()) for u, e in k.units.split(torch.arange(8 * 16).reshape(8, 16)))
    assert entries[0] == entries[1] == list(range(0, 64)) and entries[3] == list(range(64, 128))


def test_unknown_family_falls_back_with_a_warning_naming_the_entry() -> None:
    cfg = transformers.GPTJConfig(n_embd=16, n_layer=1, n_head=4, vocab_size=50, n_positions=16,
                                  rotary_dim=4)  # fmt: skip
    model = transformers.GPTJForCausalLM(cfg).eval()
    with pytest.warns(UserWarning, match=r"FAMILIES\['gptj'\].*hf_families"):
        weights = sc.list_sites(model, "weight")
    assert "transformer.h.0.attn.q_proj.weight" in [s.name for s in weights]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert sc.list_sites(model, "head") == []


def test_a_model_that_contradicts_its_config_falls_back() -> None:
    model = FAMILIES["llama"].make()
    model.config.num_attention_heads = 8  # type: ignore[union-attr]  # the modules disagree
    with pytest.warns(UserWarning, match="config implies"):
        assert sc.list_sites(model, "head") == []


def test_hf_model_nested_in_a_plain_module_keeps_its_prefix() -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = FAMILIES["bert"].make()

    names = [s.name for s in sc.list_sites(Wrapper(), "head")]
    assert names == [f"encoder.bert.encoder.layer.{i}.attention.output.dense" for i in range(2)]


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_sites_are_the_same_while_masks_are_attached(family: str) -> None:
    model = FAMILIES[family].make()
    before = {unit: sc.list_sites(model, unit) for unit in ("weight", "neuron", "head")}
    with sc.attach_masks(model, sc.MaskConfig(unit="weight")) as masks:  # parametrized Conv1D
        assert {u: sc.list_sites(model, u) for u in before} == before
        masks.eval()
        with sc.ablate(model, masks):  # stacks a second MaskSet on the same weights
            pass


@needs_nnsight
def test_nnsight_transformers_model_works_like_language_model() -> None:
    from hf_zoo import load_tokenizer
    from nnsight.modeling.transformers import TransformersModel

    f, x = FAMILIES["llama"], tokens()
    plain = f.make()
    wrapped = TransformersModel(f.make(), tokenizer=load_tokenizer(), task="text-generation")
    assert sc.list_sites(wrapped, "head") == sc.list_sites(plain, "head")
    reference = run(wrapped, x)
    with sc.attach_masks(wrapped, sc.MaskConfig(unit="head", init=0.2)) as masks:
        masks.eval()
        assert torch.equal(run(wrapped, x), reference)
        with torch.no_grad():
            masks.logits["model.layers.0.self_attn.o_proj"][0] = -1.0
        assert not torch.allclose(run(wrapped, x), reference)
