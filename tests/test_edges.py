"""Edge masks (unit="edge") on TransformerLens models, checked against hand-written TL hooks.

The references below use only TransformerLens' own hooks (``run_with_cache`` /
``run_with_hooks``) and its weights (``W_O``, ``W_Q``...), never sc-interp code: a path
ablation of edge ``src->dst`` changes only ``dst``'s input, by ``replacement - out(src)``.
"""

from __future__ import annotations

import glob

import pytest
import torch
from conftest import make_bridge, make_hooked, needs_nnsight, needs_tl3, needs_tl4, token_input
from torch import nn

import sc_interp as sc
from sc_interp.errors import CircuitError, ConfigError, ScInterpError, TargetError

FAMILIES = [
    pytest.param(make_bridge, id="tl4", marks=needs_tl4),
    pytest.param(make_hooked, id="tl3", marks=[needs_tl3, pytest.mark.tl3]),
]


def _model(make: object) -> nn.Module:
    model = make()  # type: ignore[operator]
    model.eval()
    with torch.no_grad():
        model(token_input())  # the bridge wires its own capture hooks at its first forward
    return model


def _source_out(model: nn.Module, cache: object, src: str) -> torch.Tensor:
    """``src``'s output in a TL cache: embeddings, ``z_h @ W_O[h]`` or the MLP output."""
    if src == "input":
        return cache["blocks.0.hook_resid_pre"]  # type: ignore[index]
    layer = int(src[1 : src.index(".")] if "." in src else src[1:])
    if src.startswith("m"):
        return cache[f"blocks.{layer}.hook_mlp_out"]  # type: ignore[index]
    head = int(src.split(".h")[1])
    z = cache[f"blocks.{layer}.attn.hook_z"][:, :, head]  # type: ignore[index]
    return z @ model.blocks[layer].attn.W_O[head]


def path_patched(
    model: nn.Module, x: torch.Tensor, src: str, dst: str, corrupt: torch.Tensor | None = None
) -> torch.Tensor:
    """Logits with edge ``src->dst`` carrying 0 (or ``src``'s output on ``corrupt``)."""
    _, cache = model.run_with_cache(x)
    out = _source_out(model, cache, src)
    if corrupt is None:
        change = -out
    else:
        _, corrupt_cache = model.run_with_cache(corrupt)
        change = _source_out(model, corrupt_cache, src) - out
    n_layers = model.cfg.n_layers
    if dst == "logits":
        name = f"blocks.{n_layers - 1}.hook_resid_post"  # read only by the unembedding

        def hook(value, hook):
            return value + change

    elif dst.startswith("m"):
        layer = int(dst[1:])
        if hasattr(model, "set_use_hook_mlp_in"):  # HookedTransformer: the MLP's own input
            model.set_use_hook_mlp_in(True)
            name = f"blocks.{layer}.hook_mlp_in"
        else:  # the bridge's hook_resid_mid is ln2's input, read only by the MLP
            name = f"blocks.{layer}.hook_resid_mid"

        def hook(value, hook):
            return value + change

    else:
        head_name, kind = dst[:-3], dst[-2]
        layer, head = (int(p[1:]) for p in head_name.split("."))
        attn = model.blocks[layer].attn
        w, b = getattr(attn, f"W_{kind.upper()}")[head], getattr(attn, f"b_{kind.upper()}")[head]
        resid = cache[f"blocks.{layer}.hook_resid_pre"]
        name = f"blocks.{layer}.attn.hook_{kind}"

        def hook(value, hook):
            value = value.clone()
            value[:, :, head] = model.blocks[layer].ln1(resid + change) @ w + b
            return value

    try:
        return model.run_with_hooks(x, fwd_hooks=[(name, hook)])
    finally:
        if name.endswith("hook_mlp_in"):
            model.set_use_hook_mlp_in(False)


def _only(model: nn.Module, edge: str, keep: bool) -> dict[str, torch.Tensor]:
    """Bool masks over every edge site: ``edge`` alone ``keep``, every other edge not."""
    out = {}
    for site in sc.list_sites(model, "edge"):
        mask = torch.full(site.shape, not keep)
        if edge in site.edges:
            mask[site.edges.index(edge)] = keep
        out[site.name] = mask
    return out


def _snapshot(model: nn.Module) -> dict[str, object]:
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "grad": [(n, p.requires_grad) for n, p in model.named_parameters()],
        "hooks": [
            (n, len(m._forward_hooks), len(m._forward_pre_hooks)) for n, m in model.named_modules()
        ],
        "training": [m.training for m in model.modules()],
    }


def _same(a: dict[str, object], b: dict[str, object]) -> bool:
    sa, sb = a["state"], b["state"]
    assert isinstance(sa, dict) and isinstance(sb, dict)
    same_state = list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    return same_state and all(a[k] == b[k] for k in ("grad", "hooks", "training"))


# ----------------------------------------------------------------- the graph and sites
@pytest.mark.parametrize("make", FAMILIES)
def test_edge_sites_name_every_edge_of_the_graph(make):
    model = _model(make)
    sites = sc.list_sites(model, "edge")
    edges = [e for s in sites for e in s.edges]
    n, h = model.cfg.n_layers, model.cfg.n_heads
    sources = 1 + n * (h + 1)
    # q, k, v of every head read every earlier source; each MLP reads the heads of its layer too
    expected = sum(3 * h * (1 + layer * (h + 1)) + (1 + layer * (h + 1) + h) for layer in range(n))
    assert len(edges) == len(set(edges)) == expected + sources
    assert "a0.h1->a1.h2<v>" in edges and "m1->logits" in edges and "input->m0" in edges
    assert "a1.h0->a1.h2<q>" not in edges  # a head never reads its own layer's heads
    assert [s.numel for s in sites] == [len(s.edges) for s in sites]


# ----------------------------------------------------------------- all on / one off
@pytest.mark.parametrize("make", FAMILIES)
def test_all_edges_on_equals_unmasked_model(make):
    model, x = _model(make), token_input()
    with torch.no_grad():
        reference = model(x)
    with sc.attach_masks(model, sc.MaskConfig(unit="edge", init=1.0)) as masks:
        masks.eval()
        assert torch.equal(model(x), reference)  # hard masks keeping everything: untouched
        # soft masks of exactly 1 recompute every destination from the split residual
        masks.train()
        masks.beta = 200.0
        assert bool((masks.mask("blocks.1.hook_q_input") == 1).all())
        out = model(x)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=0)


EDGES = ["a0.h1->a1.h2<v>", "a0.h3->a1.h0<q>", "input->a1.h1<k>", "m0->a1.h3<v>",
         "a0.h2->m0", "a1.h1->m1", "input->m1", "a0.h0->logits", "m1->logits", "input->a0.h2<q>"]  # fmt: skip


@pytest.mark.parametrize("make", FAMILIES)
@pytest.mark.parametrize("edge", EDGES)
def test_one_edge_off_equals_hand_written_path_ablation(make, edge):
    model, x = _model(make), token_input()
    src, dst = edge.split("->")
    with torch.no_grad():
        expected = path_patched(model, x, src, dst)
        plain = model(x)
        with sc.attach_masks(model, sc.MaskConfig(unit="edge", init=1.0)) as masks:
            masks.eval()
            for site in masks.sites.values():
                if edge in site.edges:
                    masks.logits[site.name][site.edges.index(edge)] = -1.0
            got = model(x)
    assert (expected - plain).abs().max() > 1e-4  # the edge matters: the test can fail
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("make", FAMILIES)
def test_edge_targets_mask_only_the_named_edges(make):
    model, x = _model(make), token_input()
    edge = "a0.h1->a1.h2<v>"
    with torch.no_grad():
        expected = path_patched(model, x, "a0.h1", "a1.h2<v>")
        with sc.attach_masks(model, sc.MaskConfig(unit="edge", targets=[edge], init=-1.0)) as m:
            m.eval()
            assert {n: s.edges for n, s in m.sites.items()} == {"blocks.1.hook_v_input": (edge,)}
            got = model(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    with sc.attach_masks(model, sc.MaskConfig(unit="edge", targets=["a0.h1->*"])) as m:
        assert all(e.startswith("a0.h1->") for s in m.sites.values() for e in s.edges)
        assert (
            sum(s.numel for s in m.sites.values()) == 3 * 4 + 2 + 1
        )  # q/k/v of 4 heads, m0, m1, logits
    with sc.attach_masks(model, sc.MaskConfig(unit="edge", targets=["blocks.0.*"])) as m:
        assert all(n.startswith("blocks.0.") for n in m.sites)


def _attn_only(make: object) -> nn.Module:
    from conftest import TL_CFG

    if make is make_bridge:
        from transformer_lens.config import TransformerBridgeConfig
        from transformer_lens.model_bridge import TransformerBridge

        model = TransformerBridge.boot_native(TransformerBridgeConfig(**TL_CFG, attn_only=True))
    else:
        from transformer_lens import HookedTransformer, HookedTransformerConfig

        model = HookedTransformer(HookedTransformerConfig(**TL_CFG, attn_only=True))
    return model.eval()


@pytest.mark.parametrize("make", FAMILIES)
def test_attention_only_models_have_no_mlp_edges(make):
    model, x = _attn_only(make), token_input()
    sites = sc.list_sites(model, "edge")
    edges = [e for s in sites for e in s.edges]
    assert not any(node.startswith("m") for e in edges for node in e.split("->"))
    assert sum(s.numel for s in sites) == 3 * 4 * 1 + 3 * 4 * 5 + 9  # layer 0, layer 1, logits
    with torch.no_grad():
        reference = model(x)
        with sc.attach_masks(model, sc.MaskConfig(unit="edge", init=1.0)) as masks:
            masks.train()
            masks.beta = 200.0
            torch.testing.assert_close(model(x), reference, atol=1e-5, rtol=0)
        for edge in ("a0.h1->a1.h2<v>", "a0.h2->logits", "input->a1.h0<q>"):
            expected = path_patched(model, x, *edge.split("->"))
            config = sc.MaskConfig(unit="edge", targets=[edge], init=-1.0)
            with sc.attach_masks(model, config) as masks:
                masks.eval()
                torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=0)


# ----------------------------------------------------------------- detach and training
@pytest.mark.parametrize("make", FAMILIES)
def test_detach_restores_the_model_bit_identically(make):
    model, x = _model(make), token_input()
    with torch.no_grad():
        reference = model(x)  # the bridge wires its own capture hooks at its first forward
    before = _snapshot(model)
    masks = sc.attach_masks(model, sc.MaskConfig(unit="edge", init=0.05))
    model.reset_hooks()  # TransformerLens' own reset leaves our hooks in place
    loss = model(x).logsumexp(-1).mean() + 1e-3 * masks.l0()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in masks.logits.values())
    masks.detach()
    masks.detach()  # twice is harmless
    assert _same(before, _snapshot(model))
    with torch.no_grad():
        assert torch.equal(model(x), reference)


@needs_tl4
def test_failed_attach_leaves_the_model_unchanged(monkeypatch):
    from sc_interp import _edge_runtime

    model = _model(make_bridge)
    before = _snapshot(model)
    calls = {"n": 0}
    original = _edge_runtime.EdgeRuntime.install_destination

    def failing(self, site):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return original(self, site)

    monkeypatch.setattr(_edge_runtime.EdgeRuntime, "install_destination", failing)
    with pytest.raises(KeyboardInterrupt):
        sc.attach_masks(model, sc.MaskConfig(unit="edge"))
    assert _same(before, _snapshot(model))


@needs_tl4
def test_every_relaxation_trains_edge_masks():
    model, x = _model(make_bridge), token_input()
    for relaxation in ("continuous", "hard_concrete", "straight_through"):
        with sc.attach_masks(model, sc.MaskConfig(unit="edge", relaxation=relaxation)) as masks:
            with masks.step() as step:
                loss = model(x).logsumexp(-1).mean() + 1e-3 * step.l0()
            loss.backward()
            grads = [p.grad for p in masks.logits.values()]
            assert all(g is not None and torch.isfinite(g).all() for g in grads), relaxation
            assert sum(float(g.abs().sum()) for g in grads if g is not None) > 0, relaxation


# ----------------------------------------------------------------- ablate / isolate
@pytest.mark.parametrize("make", FAMILIES)
def test_ablate_one_edge_zero_equals_path_ablation(make):
    model, x = _model(make), token_input()
    edge = "a0.h1->a1.h2<v>"
    before = _snapshot(model)
    with torch.no_grad():
        expected = path_patched(model, x, "a0.h1", "a1.h2<v>")
        with sc.ablate(model, _only(model, edge, keep=True), "zero"):
            got = model(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert _same(before, _snapshot(model))


@pytest.mark.parametrize("make", FAMILIES)
@pytest.mark.parametrize("edge", ["a0.h1->a1.h2<v>", "input->a1.h0<k>", "a1.h3->logits", "m0->m1"])
def test_resample_equals_hand_written_path_patch(make, edge):
    model = _model(make)
    x = token_input()[:2]
    corrupt = x.flip(0)  # with data=x, each example's only other input is the other one
    src, dst = edge.split("->")
    with torch.no_grad():
        expected = path_patched(model, x, src, dst, corrupt=corrupt)
        zeroed = path_patched(model, x, src, dst)
        with sc.ablate(model, _only(model, edge, keep=True), "resample", data=x):
            got = model(x)
    assert (expected - zeroed).abs().max() > 1e-4  # the corrupted input matters
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@needs_tl4
def test_mean_ablation_feeds_the_source_mean():
    model, x = _model(make_bridge), token_input()
    edge = "a0.h1->a1.h2<v>"
    with torch.no_grad():
        _, cache = model.run_with_cache(x)
        mean = _source_out(model, cache, "a0.h1").mean(dim=(0, 1))
        corrupt_like = mean.expand_as(_source_out(model, cache, "a0.h1"))
        # a path patch whose "corrupted" source output is the mean everywhere
        out = _source_out(model, cache, "a0.h1")
        w, b = model.blocks[1].attn.W_V[2], model.blocks[1].attn.b_V[2]
        resid = cache["blocks.1.hook_resid_pre"]

        def hook(value, hook):
            value = value.clone()
            value[:, :, 2] = model.blocks[1].ln1(resid - out + corrupt_like) @ w + b
            return value

        expected = model.run_with_hooks(x, fwd_hooks=[("blocks.1.attn.hook_v", hook)])
        with sc.ablate(model, _only(model, edge, keep=True), "mean", data=x):
            got = model(x)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@needs_tl4
def test_isolate_keeps_only_the_subnetwork_edges():
    model, x = _model(make_bridge), token_input()
    edge = "a0.h1->a1.h2<v>"
    with torch.no_grad():
        full = sc.Subnetwork.from_masks(model, _only(model, edge, keep=False))
        with sc.ablate(model, full, "zero"):
            ablated = model(x)  # every edge but one removed
        with sc.isolate(model, _only(model, edge, keep=False), "zero"):
            isolated = model(x)  # every edge but one kept
        expected = path_patched(model, x, "a0.h1", "a1.h2<v>")
    torch.testing.assert_close(isolated, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(ablated, isolated)


@needs_tl4
def test_subnetwork_learned_on_edge_targets_round_trips(tmp_path):
    model, x = _model(make_bridge), token_input()
    config = sc.MaskConfig(unit="edge", targets=["a0.*->a1.h2<v>", "*->logits"], init=-1.0)
    with sc.attach_masks(model, config) as masks:
        masks.eval()
        with torch.no_grad():
            expected = model(x)
        path = masks.save(tmp_path / "edges.safetensors")
        sub = sc.Subnetwork(
            {k: v.detach().clone() for k, v in masks.logits.items()}, config, fingerprint=""
        )
    with sc.load_masks(model, path) as loaded, torch.no_grad():
        loaded.eval()
        torch.testing.assert_close(model(x), expected)
    with sub.attach(model) as attached, torch.no_grad():
        torch.testing.assert_close(model(x), expected)
        assert {n: s.edges for n, s in attached.sites.items()} == {
            n: s.edges for n, s in masks.sites.items()
        }
    with sc.isolate(model, sub), torch.no_grad():
        torch.testing.assert_close(model(x), expected)


# ----------------------------------------------------------------- errors
def test_edges_need_a_transformer_lens_model():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(ConfigError, match="no 'edge' sites"):
        sc.attach_masks(net, sc.MaskConfig(unit="edge"))


@needs_tl4
def test_bad_edge_input_raises_and_leaves_the_model_unchanged():
    model = _model(make_bridge)
    before = _snapshot(model)
    with pytest.raises(TargetError, match="match no edge") as info:
        sc.attach_masks(model, sc.MaskConfig(unit="edge", targets=["a9.h0->*"]))
    assert "a0.h1->*" in str(info.value)  # says what is allowed
    with pytest.raises(ConfigError, match="random"):
        with sc.ablate(model, _only(model, "input->m0", keep=True), "random"):
            pass
    with pytest.raises(ConfigError, match="needs data"):
        with sc.ablate(model, _only(model, "input->m0", keep=True), "resample"):
            pass
    with sc.attach_masks(model, sc.MaskConfig(unit="edge")) as masks:
        with pytest.raises(ConfigError, match="bake cannot"):
            sc.bake(model, masks)
    with pytest.raises(ScInterpError, match="positions"):
        with sc.ablate(model, _only(model, "input->m0", keep=True), "resample", data=token_input()):
            model(token_input()[:, :4])
    assert _same(before, _snapshot(model))


@needs_tl4
def test_unsupported_transformer_lens_models_are_refused():
    from conftest import TL_CFG
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    gqa = TransformerBridge.boot_native(
        TransformerBridgeConfig(**{**TL_CFG, "n_key_value_heads": 2})
    )
    with pytest.raises(sc.UnsupportedModelError, match="grouped-query"):
        sc.attach_masks(gqa, sc.MaskConfig(unit="edge"))
    assert sc.list_sites(gqa, "head")  # other units still work


def test_exact_edge_names_are_escaped():
    assert glob.escape("a0.h1->a1.h2<q>") == "a0.h1->a1.h2<q>"


# ----------------------------------------------------------------- circuits at edge level
FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


@needs_tl4
def test_edge_subnetwork_to_eap_json_and_compare_at_edge_level(tmp_path):
    model = _model(make_bridge)  # the fixtures' graph: 2 layers, 4 heads, 110 edges
    reference = sc.circuits.load(FIXTURES / "eap_graph.json")
    keep = {
        site.name: torch.tensor([e in reference.edges for e in site.edges])
        for site in sc.list_sites(model, "edge")
    }
    sub = sc.Subnetwork.from_masks(model, keep)
    path = sc.circuits.to_eap_json(sub, tmp_path / "sub.json", model=model)
    written = sc.circuits.load(path)
    assert written.edges == reference.edges
    assert set(written.scores) == {e for s in sc.list_sites(model, "edge") for e in s.edges}
    row = sc.compare(sub, FIXTURES / "eap_graph.json", model=model).iloc[0]
    n = len(reference.edges)
    assert n > 5
    assert (row["n_units"], row["n_sub"], row["n_circuit"]) == (110, n, n)
    assert row["iou"] == row["precision"] == row["recall"] == 1.0
    assert row["aggregation"] == "edge"
    # one edge dropped, one added: counts move as they must
    dropped = sorted(reference.edges)[0]
    extra = next(e for e in sorted(written.scores) if e not in reference.edges)
    changed = sc.Subnetwork.from_masks(
        model,
        {
            site.name: torch.tensor(
                [(e in reference.edges and e != dropped) or e == extra for e in site.edges]
            )
            for site in sc.list_sites(model, "edge")
        },
    )
    frame = sc.compare(changed, FIXTURES / "eap_graph.json", model=model)
    row = frame.iloc[0]
    assert (row["n_both"], row["n_sub"], row["n_circuit"]) == (n - 1, n, n)
    assert row["iou"] == pytest.approx((n - 1) / (n + 1))
    assert list(frame["layer"]) == ["all", 0, 1, "logits"]
    assert frame["n_units"].iloc[1:].sum() == 110


@needs_tl4
def test_edge_subnetwork_compares_at_node_level_too(tmp_path):
    model = _model(make_bridge)
    sub = sc.Subnetwork.from_masks(model, _only(model, "a0.h1->a1.h2<v>", keep=True))
    nodes = sc.compare(sub, ["a0.h1", "a1.h2", "a1.h3"], model=model)  # a head list: nodes
    row = nodes.iloc[0]
    assert nodes.attrs["level"] == "node"
    assert (row["n_sub"], row["n_both"], row["n_circuit"]) == (2, 2, 3)
    forced = sc.compare(sub, FIXTURES / "eap_graph.json", model=model, level="node")
    assert forced.attrs["level"] == "node"
    with pytest.raises(CircuitError, match="level='edge' needs edges"):
        sc.compare(sub, ["a0.h1"], model=model, level="edge")
    with pytest.raises(CircuitError, match="level must be"):
        sc.compare(sub, ["a0.h1"], model=model, level="edges")
    # a saved Subnetwork keeps its edge names: no model needed to read it as a graph
    path = sub.save(tmp_path / "sub.safetensors")
    loaded = sc.Subnetwork.load(path)
    assert loaded.edges == sub.edges
    row = sc.compare(loaded, ["a0.h1->a1.h2<v>"]).iloc[0]
    assert (row["n_units"], row["n_sub"], row["iou"]) == (110, 1, 1.0)


@needs_tl4
def test_learned_edge_mask_recovers_the_planted_path(tmp_path):
    from sc_interp.toy import planted_bridge

    bridge, task_a, task_b = planted_bridge()
    # A's planted path: head 0 reads a (value) from position 0 (query/key: the markers), the
    # MLP's neurons 0-7 turn it into A's logits; nothing else reaches A's logits
    planted = ["input->a0.h0<q>", "input->a0.h0<k>", "input->a0.h0<v>", "a0.h0->m0", "m0->logits"]
    sub = sc.train_masks(
        bridge,
        sc.MaskConfig(unit="edge"),
        task_a,
        sc.TrainConfig(epochs=12, lr=0.05, progress=False),
    )
    kept = {
        e
        for site, names in sub.edges.items()
        for e, k in zip(names, sub.masks[site].tolist(), strict=True)
        if k
    }
    assert len(kept & set(planted)) / len(kept | set(planted)) >= 0.9
    path = sc.circuits.to_eap_json(
        sc.circuits.load(planted), tmp_path / "planted.json", model=bridge
    )
    row = sc.compare(sub, path, model=bridge).iloc[0]
    assert row["aggregation"] == "edge" and row["n_units"] == 23
    assert row["iou"] >= 0.9
    with sc.isolate(bridge, sub):
        assert sc.evaluate(bridge, task_a).accuracy > 0.95
        assert sc.evaluate(bridge, task_b).accuracy < 0.6


PLANTED_PATH = ["input->a0.h0<v>", "a0.h0->a1.h0<v>", "a1.h0->m1", "m1->logits"]


@needs_tl4
@pytest.mark.parametrize(("model_seed", "mask_seed"), [(0, 0), (1, 2)])
def test_learned_edge_mask_recovers_a_two_head_path(tmp_path, model_seed, mask_seed):
    """Two heads and an MLP: a0.h0 -> a1.h0 (value) -> m1 -> logits, planted by hand."""
    from sc_interp.toy import planted_path_bridge

    bridge, task_a, task_b = planted_path_bridge(seed=model_seed)
    sub = sc.train_masks(
        bridge, sc.MaskConfig(unit="edge"), task_a,
        sc.TrainConfig(epochs=12, lr=0.05, progress=False, seed=mask_seed),
    )  # fmt: skip
    kept = {
        e
        for site, names in sub.edges.items()
        for e, k in zip(names, sub.masks[site].tolist(), strict=True)
        if k
    }
    planted = set(PLANTED_PATH)
    assert len(kept & planted) / len(kept | planted) >= 0.9, sorted(kept ^ planted)
    path = sc.circuits.to_eap_json(
        sc.circuits.load(PLANTED_PATH), tmp_path / "path.json", model=bridge
    )
    row = sc.compare(sub, path, model=bridge).iloc[0]
    assert row["aggregation"] == "edge" and row["n_units"] == 110
    assert row["iou"] >= 0.9
    with sc.isolate(bridge, sub):
        assert sc.evaluate(bridge, task_a).accuracy > 0.95
        assert sc.evaluate(bridge, task_b).accuracy < 0.6


@needs_tl4
def test_compositionality_runs_on_edge_masks():
    from sc_interp.toy import planted_bridge

    bridge, task_a, task_b = planted_bridge()
    report = sc.test_compositionality(
        bridge, task_a, task_b, mask=sc.MaskConfig(unit="edge", targets=["*->m0", "*->logits", "blocks.0.hook_v_input"]),
        train=sc.TrainConfig(epochs=8, lr=0.05, progress=False), seeds=1,
        controls=("random_subnetwork",), n_boot=50,
    )  # fmt: skip
    sites = set(report.overlap["site"])
    assert {"blocks.0.hook_mlp_in", "blocks.0.hook_resid_post", "blocks.0.hook_v_input"} <= sites
    # A and B share the MLP and its edge to the logits, not their heads' value inputs
    values = report.overlap[report.overlap["site"] == "blocks.0.hook_v_input"]["iou"]
    assert values.notna().all() and (values < 0.5).all()


@needs_tl3
@pytest.mark.tl3
def test_learned_edge_mask_against_the_auto_circuit_fixture():
    # the model and data auto-circuit ran on (tests/fixtures/make_autocircuit.py): predict the
    # token at position 2 from the last position; auto-circuit scored edges by attribution
    model = _model(make_hooked)
    clean = torch.randint(0, 20, (16, 6), generator=torch.Generator().manual_seed(0))
    task = sc.Subtask(
        "copy", train=(clean, clean[:, 2]), test=(clean, clean[:, 2]), chance=0.05,
        readout=lambda out: out[:, -1, :],
    )  # fmt: skip
    sub = sc.train_masks(
        model, sc.MaskConfig(unit="edge"), task, sc.TrainConfig(epochs=10, lr=0.05, progress=False)
    )
    top = sc.circuits.load(FIXTURES / "autocircuit_qkv_prune_scores.json").top(12)
    frame = sc.compare(sub, top, model=model)
    row = frame.iloc[0]
    assert (row["n_units"], row["n_circuit"], row["n_circuit_outside"]) == (110, 12, 0)
    assert 0 < row["n_sub"] < 110 and 0.0 <= row["iou"] <= 1.0
    assert frame.attrs["level"] == "edge" and list(frame["layer"]) == ["all", 0, 1, "logits"]


@needs_tl4
@needs_nnsight
def test_edge_masks_act_inside_an_nnsight_trace():
    from nnsight import NNsight

    model, x = _model(make_bridge), token_input()
    wrapped = NNsight(model)
    config = sc.MaskConfig(unit="edge", targets=["a0.h1->a1.h2<v>"], init=-1.0)
    with torch.no_grad():
        expected = path_patched(model, x, "a0.h1", "a1.h2<v>")
        with sc.attach_masks(wrapped, config) as masks:
            masks.eval()
            with wrapped.trace(x):
                out = wrapped.output.save()
    got = out if isinstance(out, torch.Tensor) else out.value
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@needs_tl4
def test_ablating_an_attached_edge_maskset_equals_ablating_its_hard_masks():
    model, x = _model(make_bridge), token_input()
    masks = sc.attach_masks(model, sc.MaskConfig(unit="edge", init=1.0))
    try:
        masks.eval()
        with torch.no_grad():
            masks.logits["blocks.1.hook_v_input"][::3] = -1.0
            masks.logits["blocks.1.hook_resid_post"][1::2] = -1.0
            hard = masks.hard()
            own = model(x)
            with sc.ablate(model, masks):
                stacked = model(x)
            assert torch.equal(model(x), own)
    finally:
        masks.detach()
    with torch.no_grad(), sc.ablate(model, hard):
        torch.testing.assert_close(stacked, model(x))
