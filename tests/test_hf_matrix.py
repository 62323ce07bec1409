"""{GPT-2, NeoX, Llama (GQA), Qwen2, Gemma, BERT} x {plain HF, nnsight, TL4 bridge} x units.

Every expected value is computed without sc-interp: a torch pre-hook written here that
zeroes a head's slice (or a neuron) of the projection's input, TransformerLens' own
``run_with_hooks`` on the bridge, or a zeroed weight entry in a copy of the model.
"""

from __future__ import annotations

import copy
import functools

import pytest
import torch
from conftest import HAS_NNSIGHT, TL_MAJOR
from hf_zoo import FAMILIES, MATRIX, module_of, run, tokens, wrap
from torch import nn
from torch.nn.utils import parametrize

import sc_interp as sc

pytest.importorskip("transformers")
LAYER, HEAD, NEURON = 1, 2, 5
WRAPPERS = ["hf"] + (["nnsight"] if HAS_NNSIGHT else []) + (["tl4"] if TL_MAJOR >= 4 else [])
CASES = [(f, w, u) for f in MATRIX for w in WRAPPERS for u in ("weight", "neuron", "head")]
IDS = [f"{f}-{w}-{u}" for f, w, u in CASES]


@functools.cache
def _shared(family: str, wrapper: str) -> object:
    """One model per family and wrapper for the tests that leave it as they found it."""
    return wrap(FAMILIES[family], wrapper)


def site(family: str, wrapper: str, unit: str) -> str:
    f = FAMILIES[family]
    if wrapper == "tl4":  # TransformerLens' own names (see sc.list_sites)
        return {"head": "blocks.{L}.attn.hook_z", "neuron": "blocks.{L}.mlp.hook_post",
                "weight": "blocks.{L}.attn.o.weight"}[unit].format(L=LAYER)  # fmt: skip
    return f.at({"head": f.head, "neuron": f.neuron, "weight": f.weight}[unit], LAYER)


def index(family: str, wrapper: str, unit: str) -> tuple:
    if unit == "weight":
        return (3, 5) if wrapper == "tl4" else FAMILIES[family].entry
    return (HEAD,) if unit == "head" else (NEURON,)


def hand_ablation(family: str, wrapper: str, unit: str, model: object) -> torch.Tensor:
    """Logits with the test unit switched off, written without sc-interp."""
    f, x, name = FAMILIES[family], tokens(), site(family, wrapper, unit)
    module = module_of(model)
    if unit == "weight":
        with torch.no_grad():
            run(model, x)  # the bridge keeps its last attention pattern, which must be a leaf
        clone = copy.deepcopy(module)
        with torch.no_grad():
            clone.state_dict(keep_vars=True)[name][index(family, wrapper, unit)] = 0.0
        return run(clone, x)
    if wrapper == "tl4":

        def zero(act: torch.Tensor, hook: object) -> torch.Tensor:
            act = act.clone()
            if unit == "head":
                act[:, :, HEAD, :] = 0.0  # run_with_hooks shows hook_z as [b, p, head, d_head]
            else:
                act[..., NEURON] = 0.0
            return act

        return module.run_with_hooks(x, fwd_hooks=[(name, zero)]).detach()  # type: ignore[operator]
    lo, hi = (
        (HEAD * f.head_dim, (HEAD + 1) * f.head_dim) if unit == "head" else (NEURON, NEURON + 1)
    )

    def pre_hook(mod: nn.Module, args: tuple) -> tuple:
        inp = args[0].clone()
        inp[..., lo:hi] = 0.0
        return (inp, *args[1:])

    handle = module.get_submodule(name).register_forward_pre_hook(pre_hook)
    try:
        return run(model, x)
    finally:
        handle.remove()


@pytest.mark.parametrize(("family", "wrapper", "unit"), CASES, ids=IDS)
def test_all_on_is_exact(family: str, wrapper: str, unit: str) -> None:
    model, x = _shared(family, wrapper), tokens()
    reference = run(model, x)
    with sc.attach_masks(model, sc.MaskConfig(unit=unit, init=0.5)) as masks:
        masks.eval()
        assert site(family, wrapper, unit) in masks.logits
        assert torch.equal(run(model, x), reference)
        masks.train()  # soft masks sigmoid(beta * init) < 1: not the unmasked model
        assert not torch.equal(run(model, x), reference)


@pytest.mark.parametrize(("family", "wrapper", "unit"), CASES, ids=IDS)
def test_one_unit_off_and_its_bake_equal_a_hand_ablation(
    family: str, wrapper: str, unit: str
) -> None:
    model, x = _shared(family, wrapper), tokens()
    name = site(family, wrapper, unit)
    expected, unmasked = hand_ablation(family, wrapper, unit, model), run(model, x)
    assert not torch.allclose(expected, unmasked), "the test unit has no effect"
    with sc.attach_masks(model, sc.MaskConfig(unit=unit, targets=[name], init=1.0)) as masks:
        masks.eval()
        with torch.no_grad():
            masks.logits[name][index(family, wrapper, unit)] = -1.0
        torch.testing.assert_close(run(model, x), expected, rtol=1e-5, atol=1e-5)
        baked = sc.bake(model, masks)
    torch.testing.assert_close(run(baked, x), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(run(model, x), unmasked)


@pytest.mark.parametrize(("family", "wrapper", "unit"), CASES, ids=IDS)
def test_bake_equals_the_masked_model(family: str, wrapper: str, unit: str) -> None:
    model, x = _shared(family, wrapper), tokens()
    module = module_of(model)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with sc.attach_masks(model, sc.MaskConfig(unit=unit)) as masks:
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in masks.logits.values():
                p.copy_(torch.randn(p.shape, generator=gen))
        masks.eval()
        expected = run(model, x)
        baked = sc.bake(model, masks)
    assert not any(parametrize.is_parametrized(m) for m in baked.modules())
    assert list(baked.state_dict()) == list(module.state_dict())
    torch.testing.assert_close(run(baked, x), expected, rtol=1e-5, atol=1e-5)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), f"bake changed the original's {k}"


def _snapshot(module: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
        "keys": list(module.state_dict()),
        "params": dict(module.named_parameters()),
        "grad": {n: p.requires_grad for n, p in module.named_parameters()},
        "training": {n: m.training for n, m in module.named_modules()},
        "hooks": sum(
            len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
            for m in module.modules()
        ),
    }


def _assert_same(after: dict[str, object], before: dict[str, object]) -> None:
    assert after["keys"] == before["keys"]
    for k, v in before["state"].items():  # type: ignore[union-attr]
        assert torch.equal(after["state"][k], v), k  # type: ignore[index]
    assert after["params"].keys() == before["params"].keys()  # type: ignore[union-attr]
    assert all(after["params"][n] is p for n, p in before["params"].items())  # type: ignore[index, union-attr]
    assert after["grad"] == before["grad"] and after["training"] == before["training"]
    assert after["hooks"] == before["hooks"]


@pytest.mark.parametrize(("family", "wrapper", "unit"), CASES, ids=IDS)
def test_detach_is_bit_identical(family: str, wrapper: str, unit: str) -> None:
    model, x = wrap(FAMILIES[family], wrapper), tokens()
    module = module_of(model)
    next(iter(module.parameters())).requires_grad_(False)  # a user flag that must survive
    run(model, x)  # the bridge wires its own hooks on its first forward
    before = _snapshot(module)
    with sc.attach_masks(model, sc.MaskConfig(unit=unit)) as masks:
        masks.train()
        run(model, x)
    _assert_same(_snapshot(module), before)
    with (
        pytest.raises(RuntimeError, match="boom"),
        sc.attach_masks(model, sc.MaskConfig(unit=unit)),
    ):
        raise RuntimeError("boom")
    _assert_same(_snapshot(module), before)


@pytest.mark.parametrize(("family", "wrapper", "unit"), CASES, ids=IDS)
def test_save_and_load_round_trip(family: str, wrapper: str, unit: str, tmp_path) -> None:
    model, x = _shared(family, wrapper), tokens()
    with sc.attach_masks(model, sc.MaskConfig(unit=unit)) as masks:
        with torch.no_grad():
            for p in masks.logits.values():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)))
        masks.eval()
        expected, saved = run(model, x), {k: v.detach().clone() for k, v in masks.logits.items()}
        path = masks.save(tmp_path / "m.safetensors")
    loaded = sc.load_masks(model, path)
    try:
        loaded.eval()
        assert list(loaded.logits) == list(saved)
        assert all(torch.equal(loaded.logits[k], v) for k, v in saved.items())
        assert torch.equal(run(model, x), expected)
    finally:
        loaded.detach()


@pytest.mark.parametrize(
    ("family", "wrapper"), [(f, w) for f in MATRIX for w in WRAPPERS], ids=lambda v: str(v)
)
def test_compare_one_head_mask_with_its_circuit(family: str, wrapper: str, tmp_path) -> None:
    model = _shared(family, wrapper)
    with sc.attach_masks(model, sc.MaskConfig(unit="head", init=-1.0)) as masks:
        with torch.no_grad():
            masks.logits[site(family, wrapper, "head")][HEAD] = 1.0
        sub = sc.Subnetwork(
            {k: v.detach().clone() for k, v in masks.logits.items()},
            masks.config,
            units={k: s.units for k, s in masks.sites.items() if s.units},
        )
        assert sc.compare(masks, [f"a{LAYER}.h{HEAD}"]).loc[0, "iou"] == 1.0
    back = sc.Subnetwork.load(sub.save(tmp_path / "sub.safetensors"))  # no model needed
    for side in (sub, back):
        row = sc.compare(side, [f"a{LAYER}.h{HEAD}"], model=model).loc[0]
        assert (row["iou"], row["n_sub"], row["n_units"]) == (1.0, 1, 2 * 4)
    bare = {k: v > 0 for k, v in sub.logits.items()}  # a dict of masks needs the model
    assert sc.compare(bare, [f"a{LAYER}.h{HEAD}"], model=model).loc[0, "iou"] == 1.0
    path = sc.circuits.to_eap_json(back, tmp_path / "eap.json", model=model)
    assert sc.circuits.load(path).units == {f"a{LAYER}.h{HEAD}"}
