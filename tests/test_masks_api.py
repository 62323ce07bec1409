"""MaskSet behaviour beyond the matrix: files, bad input, relaxations, modes, imports."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import TinyNet, make_torch, needs_nnsight, needs_tl4, token_input, torch_input
from torch import nn

import sc_interp as sc
from sc_interp.relax import get_relaxation


def _state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _same(module: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    now = module.state_dict()
    return list(now) == list(state) and all(torch.equal(now[k], v) for k, v in state.items())


def test_save_load_round_trip(tmp_path) -> None:
    model = make_torch()
    x = torch_input()
    with sc.attach_masks(model, sc.MaskConfig(unit="weight", targets=["fc*"])) as masks:
        with torch.no_grad():
            for p in masks.logits.values():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
        masks.eval()
        expected = model(x)
        path = masks.save(tmp_path / "m.safetensors")
    meta = json.loads(json.dumps(_metadata(path)))
    assert meta["config"]["unit"] == "weight" and meta["sites"] == ["fc1.weight", "fc2.weight"]
    assert "fingerprint" in meta and "version" in meta
    loaded = sc.load_masks(model, path)
    loaded.eval()
    assert torch.equal(model(x), expected)
    for name, p in loaded.logits.items():
        assert torch.equal(p, masks.logits[name])
    loaded.detach()


def _metadata(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}


def test_load_onto_other_shapes_fails_clearly_and_leaves_model(tmp_path) -> None:
    with sc.attach_masks(make_torch(), sc.MaskConfig(unit="neuron")) as masks:
        path = masks.save(tmp_path / "m.safetensors")
    other = nn.Sequential(nn.Linear(16, 9), nn.ReLU(), nn.Linear(9, 4))
    before = _state(other)
    with pytest.raises(sc.MaskFileError, match="another model"):
        sc.load_masks(other, path)
    assert _same(other, before)
    assert all(p.requires_grad for p in other.parameters())


def test_pickle_and_garbage_files_are_refused(tmp_path) -> None:
    pkl = tmp_path / "m.pt"
    with pkl.open("wb") as f:
        pickle.dump({"x": 1}, f)
    with pytest.raises(sc.MaskFileError, match="never unpickles"):
        sc.load_masks(make_torch(), pkl)
    torch.save({"a": torch.ones(2)}, tmp_path / "t.pt")
    with pytest.raises(sc.MaskFileError, match="never unpickles"):
        sc.load_masks(make_torch(), tmp_path / "t.pt")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(sc.MaskFileError):
        sc.load_masks(make_torch(), junk)
    with pytest.raises(sc.MaskFileError, match="no such"):
        sc.load_masks(make_torch(), tmp_path / "missing.safetensors")


def test_valid_file_whose_header_length_starts_like_a_pickle_loads(tmp_path) -> None:
    """A safetensors header length whose low byte is 0x80 is not a pickle (1 in 32 files)."""
    from safetensors.torch import save_file

    from sc_interp._persist import read_safetensors

    path = tmp_path / "m.safetensors"
    for pad in range(64):  # headers are padded to 8 bytes: some pad gives a low byte of 0x80
        save_file({"x": torch.ones(2)}, str(path), {"pad": json.dumps("p" * pad)})
        if path.read_bytes()[0] == 0x80:
            break
    else:
        pytest.fail("no padding gave a header length with low byte 0x80")
    tensors, meta = read_safetensors(path)
    assert torch.equal(tensors["x"], torch.ones(2)) and meta["pad"].startswith("p")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"unit": "layer"}, sc.ConfigError, "allowed units: weight, neuron, head"),
        ({"relaxation": "gumbel"}, sc.ConfigError, "continuous"),
        ({"init": float("nan")}, sc.ConfigError, "finite"),
        ({"targets": []}, sc.ConfigError, "glob"),
    ],
)
def test_bad_config(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        sc.MaskConfig(**kwargs)


def test_pattern_matching_nothing_lists_sites_and_leaves_model() -> None:
    model = make_torch()
    before = _state(model)
    with pytest.raises(sc.TargetError, match=r"\['blocks\.\*'\].*available sites: conv, fc1, fc2"):
        sc.attach_masks(model, sc.MaskConfig(unit="neuron", targets=["blocks.*"]))
    assert _same(model, before) and all(p.requires_grad for p in model.parameters())


def test_unit_without_sites_is_a_clear_error() -> None:
    with pytest.raises(sc.ConfigError, match=r"no 'head' sites.*weight"):
        sc.attach_masks(make_torch(), sc.MaskConfig(unit="head"))


def test_attaching_twice_to_a_site_fails_and_keeps_first() -> None:
    model, x = make_torch(), torch_input()
    first = sc.attach_masks(model, sc.MaskConfig(unit="neuron", targets=["fc1"], init=-1.0))
    first.eval()
    out = model(x)
    with pytest.raises(sc.AttachError, match="fc1"):
        sc.attach_masks(model, sc.MaskConfig(unit="neuron", targets=["fc*"]))
    assert torch.equal(model(x), out)
    # a second MaskSet on other sites is fine; flags come back only when both are gone
    second = sc.attach_masks(model, sc.MaskConfig(unit="weight", targets=["conv.weight"]))
    first.detach()
    assert not any(p.requires_grad for p in model.parameters())
    second.detach()
    assert all(p.requires_grad for p in model.parameters())


def test_unsupported_model_family() -> None:
    with pytest.raises(sc.UnsupportedModelError, match="supported"):
        sc.attach_masks(object(), sc.MaskConfig())
    with pytest.raises(sc.ConfigError, match="MaskConfig"):
        sc.attach_masks(make_torch(), {"unit": "weight"})  # type: ignore[arg-type]


def test_model_eval_does_not_flip_mask_mode_and_edits_take_effect() -> None:
    model, x = make_torch(), torch_input()
    with sc.attach_masks(model, sc.MaskConfig(unit="neuron", targets=["fc1"])) as masks:
        masks.eval()
        model.train()
        assert not masks.training
        on = model(x)
        with torch.no_grad():
            masks.logits["fc1"].fill_(-1.0)  # in place, after a cached eval forward
        off = model(x)
        assert not torch.equal(on, off)
        assert torch.equal(off, model.fc2.bias.expand_as(off))


def test_hard_and_density() -> None:
    with sc.attach_masks(make_torch(), sc.MaskConfig(unit="neuron")) as masks:
        with torch.no_grad():
            masks.logits["fc1"][:4] = -1.0
        hard = masks.hard()
        assert hard["fc1"].dtype == torch.bool and int(hard["fc1"].sum()) == 4
        assert masks.density() == pytest.approx((3 + 4 + 4) / (3 + 8 + 4))
        assert "MaskSet(unit='neuron'" in repr(masks) and "fc1: (8,) kept 4/8" in repr(masks)


@pytest.mark.parametrize("name", ["continuous", "hard_concrete", "straight_through"])
def test_relaxations_soft_in_train_hard_in_eval(name: str) -> None:
    r = get_relaxation(name)
    logits = torch.tensor([-2.0, -0.01, 0.01, 2.0], requires_grad=True)
    hard = r.mask(logits, training=False, beta=5.0)
    assert torch.equal(hard, torch.tensor([0.0, 0.0, 1.0, 1.0]))
    soft = r.mask(logits, training=True, beta=5.0, generator=torch.Generator().manual_seed(0))
    assert soft.min() >= 0 and soft.max() <= 1
    soft.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    if name == "continuous":
        assert torch.allclose(soft, torch.sigmoid(5.0 * logits))
    if name == "straight_through":
        assert torch.equal(soft.detach(), hard)
    density = r.density(logits.detach(), 5.0)
    assert torch.all(density[1:] >= density[:-1])  # monotone in the logit


def test_beta_sharpens_continuous_mask() -> None:
    r = get_relaxation("continuous")
    s = torch.tensor([0.05])
    assert r.mask(s, training=True, beta=200.0) > r.mask(s, training=True, beta=1.0)
    assert float(r.mask(s, training=True, beta=200.0)) > 0.99


def test_l0_penalty_sum_and_mean() -> None:
    with sc.attach_masks(TinyNet(), sc.MaskConfig(unit="neuron", init=0.0)) as masks:
        assert float(masks.l0().detach()) == pytest.approx(0.5 * 15)
        assert float(masks.l0(normalize=True).detach()) == pytest.approx(0.5)


def test_masks_follow_model_dtype() -> None:
    model = make_torch().double()
    with sc.attach_masks(model, sc.MaskConfig(unit="weight")) as masks:
        assert all(p.dtype == torch.float32 for p in masks.logits.values())
        masks.eval()
        assert model(torch_input().double()).dtype == torch.float64


@needs_tl4
def test_bridge_site_names_are_tl_names(bridge) -> None:
    assert [s.name for s in sc.list_sites(bridge, "head")] == [
        "blocks.0.attn.hook_z",
        "blocks.1.attn.hook_z",
    ]
    weights = [s.name for s in sc.list_sites(bridge, "weight")]
    assert weights[:6] == [
        "blocks.0.attn.q.weight",
        "blocks.0.attn.k.weight",
        "blocks.0.attn.v.weight",
        "blocks.0.attn.o.weight",
        "blocks.0.mlp.in.weight",
        "blocks.0.mlp.out.weight",
    ]
    assert all(s.shape == (32,) for s in sc.list_sites(bridge, "neuron"))
    bridge(token_input())


@needs_tl4
def test_nested_bridge_gets_prefixed_names(bridge) -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = nn.Module()
            self.encoder.bridge = bridge
            self.head = nn.Linear(20, 2)

    names = [s.name for s in sc.list_sites(Wrapper(), "neuron")]
    assert names == [
        "encoder.bridge.blocks.0.mlp.hook_post",
        "encoder.bridge.blocks.1.mlp.hook_post",
        "head",
    ]


def test_import_isolation() -> None:
    code = (
        "import sys, sc_interp\n"
        "heavy = ('transformer_lens', 'nnsight', 'matplotlib', 'pandas', 'transformers')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_all_names_import() -> None:
    for name in sc.__all__:
        assert getattr(sc, name) is not None, name


@needs_tl4
def test_nnsight_trace_interventions_match_attached_masks() -> None:
    pytest.importorskip("nnsight")
    from conftest import make_bridge
    from nnsight import NNsight

    model = NNsight(make_bridge())
    x = token_input()
    for unit in ("neuron", "head"):
        masks = sc.attach_masks(model, sc.MaskConfig(unit=unit))
        with torch.no_grad():
            for p in masks.logits.values():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(4)))
        masks.eval()
        with model.trace(x):
            attached = model.output.save()
        with pytest.raises(sc.ConfigError, match="detach"), model.trace(x):
            sc.apply_in_trace(model, masks)
        masks.detach()
        with model.trace(x):
            sc.apply_in_trace(model, masks)
            traced = model.output.save()
        with model.trace(x):
            plain = model.output.save()
        assert torch.equal(traced, attached)
        assert not torch.allclose(plain, attached)


def test_hf_conv1d_weight_and_neuron_sites() -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=30, n_positions=8)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    x = torch.randint(0, 30, (2, 5), generator=torch.Generator().manual_seed(0))
    weights = [s.name for s in sc.list_sites(model, "weight")]
    assert (
        "transformer.h.0.attn.c_attn.weight" in weights
        and "transformer.h.0.mlp.c_fc.weight" in weights
    )
    # neurons are the MLP hidden units: the input of mlp.c_proj (the Hugging Face adapter)
    fc = next(s for s in sc.list_sites(model, "neuron") if s.name == "transformer.h.0.mlp.c_proj")
    assert fc.shape == (64,) and fc.io == "input"
    plain = model(x).logits
    manual = copy.deepcopy(model)
    with torch.no_grad():  # Conv1D weight is [in, out]: unit 3 is column 3; gelu(0) = 0
        manual.transformer.h[0].mlp.c_fc.weight[:, 3] = 0
        manual.transformer.h[0].mlp.c_fc.bias[3] = 0
    expected = manual(x).logits
    assert not torch.allclose(expected, plain)
    with sc.attach_masks(model, sc.MaskConfig(unit="neuron", targets=[fc.name])) as masks:
        masks.eval()
        with torch.no_grad():
            masks.logits[fc.name][3] = -1.0
        torch.testing.assert_close(model(x).logits, expected)
        baked = sc.bake(model, masks)
        torch.testing.assert_close(baked(x).logits, expected)
    assert torch.equal(model(x).logits, plain)


@needs_nnsight
def test_nnsight_language_model_offline() -> None:
    transformers = pytest.importorskip("transformers")
    from nnsight import LanguageModel
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    words = ["[UNK]", "[PAD]", "the", "cat", "dog", "runs", "sleeps"]
    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]"
    )
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(
        n_layer=1, n_embd=16, n_head=2, vocab_size=len(words), n_positions=16
    )
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    with pytest.warns(Warning):  # nnsight 0.8 deprecates LanguageModel but it still works
        lm = LanguageModel(hf, tokenizer=tok)
    site = "transformer.h.0.mlp.c_proj"  # its input: the MLP's hidden units

    def run() -> torch.Tensor:
        with lm.trace("the cat runs"):
            out = lm.output.logits.save()
        return out.detach()

    plain = run()
    manual = copy.deepcopy(hf)
    with torch.no_grad():
        manual.transformer.h[0].mlp.c_fc.weight[:, :32] = 0
        manual.transformer.h[0].mlp.c_fc.bias[:32] = 0
    expected = manual(tok("the cat runs", return_tensors="pt")["input_ids"]).logits.detach()
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    with sc.attach_masks(lm, sc.MaskConfig(unit="neuron", targets=[site])) as masks:
        masks.eval()
        with torch.no_grad():
            masks.logits[site][:32] = -1.0
        torch.testing.assert_close(run(), expected)
    assert torch.equal(run(), plain)
    assert all(torch.equal(hf.state_dict()[k], v) for k, v in state.items())
    with lm.trace("the cat runs"):
        sc.apply_in_trace(lm, masks)
        traced = lm.output.logits.save()
    torch.testing.assert_close(traced.detach(), expected)


def test_failed_save_leaves_the_previous_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "m.safetensors"
    with sc.attach_masks(make_torch(), sc.MaskConfig(unit="neuron")) as masks:
        masks.save(path)
        before = path.read_bytes()

        def boom(*args, **kwargs):
            raise OSError("disk full")

        monkeypatch.setattr("safetensors.torch.save_file", boom)
        with pytest.raises(sc.MaskFileError, match="disk full"):
            masks.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_eval_cache_follows_a_dtype_change_of_the_model() -> None:
    model, x = make_torch(), torch_input()
    with sc.attach_masks(model, sc.MaskConfig(unit="weight", targets=["fc1.weight"])) as masks:
        masks.eval()
        model(x)  # fills the cache in float32
        model.double()
        assert model(x.double()).dtype == torch.float64


@pytest.mark.parametrize("relaxation", ["continuous", "hard_concrete", "straight_through"])
def test_step_l0_equals_l0_value_and_gradient(relaxation: str) -> None:
    model, x = make_torch(), torch_input()
    with sc.attach_masks(model, sc.MaskConfig(unit="weight", relaxation=relaxation)) as masks:
        with torch.no_grad():
            for p in masks.logits.values():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
        masks.train()
        masks.beta = 3.0
        with masks.step() as step:
            model(x)
            reused = step.l0(normalize=True)
        (grad_reused,) = torch.autograd.grad(reused, masks.logits["fc1.weight"])
        fresh = masks.l0(normalize=True)
        (grad_fresh,) = torch.autograd.grad(fresh, masks.logits["fc1.weight"])
        torch.testing.assert_close(reused, fresh)
        torch.testing.assert_close(grad_reused, grad_fresh)
        if relaxation == "continuous":  # the forward's masks were reused, not recomputed
            assert len(step.recorded) == 3


@pytest.mark.parametrize("unit", ["weight", "neuron"])
def test_edits_through_data_take_effect_in_eval(unit: str) -> None:
    # ``.data`` edits do not bump the version counter; the eval cache must notice anyway
    model, x = make_torch(), torch_input()
    target = "fc1.weight" if unit == "weight" else "fc1"
    with sc.attach_masks(model, sc.MaskConfig(unit=unit, targets=[target])) as masks:
        masks.eval()
        on = model(x)
        assert torch.equal(model(x), on)  # served from the cache
        masks.logits[target].data.fill_(-1.0)
        off = model(x)
        assert torch.equal(
            off,
            model.fc2(torch.relu(torch.zeros(5, 8) + (model.fc1.bias if unit == "weight" else 0))),
        )
        masks.logits[target].data.fill_(1.0)
        assert torch.equal(model(x), on)
