"""Tests of sc_interp.circuits: names, readers/writers, compare, plot and the CLI body.

Fixtures in tests/fixtures/ come from the real tools (see tests/fixtures/README.md); each
``*_expected.json`` holds what the tool itself reported when the fixture was made.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sc_interp.circuits as circuits
from sc_interp.circuits import Circuit, compare, load, to_eap_json
from sc_interp.circuits._metrics import auprc, auroc
from sc_interp.circuits.cli import compare_command
from sc_interp.circuits.naming import acdc_node, autocircuit_edge, parse_edge, parse_node
from sc_interp.errors import CircuitError

FIXTURES = Path(__file__).parent / "fixtures"


def expected(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}_expected.json").read_text())


def hook_node(module: str, head: int | None) -> str:
    """The canonical node of a TransformerLens hook (independent of the library's mappers)."""
    if module.endswith("hook_resid_pre"):
        return "input"
    if module.endswith("hook_resid_post"):
        return "logits"
    layer = int(re.search(r"blocks\.(\d+)\.", module)[1])  # type: ignore[index]
    return f"m{layer}" if "mlp" in module else f"a{layer}.h{head}"


@pytest.fixture(scope="session")
def bridge():
    pytest.importorskip("transformer_lens.model_bridge")
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    sizes = dict(d_model=16, d_head=4, n_heads=4, n_layers=2, n_ctx=8, d_vocab=20, d_mlp=32)
    return TransformerBridge.boot_native(TransformerBridgeConfig(**sizes, act_fn="relu", seed=0))


# ------------------------------------------------------------------------ fixtures


def test_eap_fixture_matches_what_eap_ig_reported():
    exp = expected("eap")
    circ = load(FIXTURES / "eap_graph.json")
    assert circ.source == "eap-ig"
    assert sorted(circ.nodes) == exp["nodes_in_graph"]
    assert sorted(circ.edges) == exp["edges_in_graph"]
    assert len(circ.scores) == exp["n_edges"]
    assert (circ.n_layers, circ.n_heads) == (2, 4)


@pytest.mark.parametrize("variant", ["qkv", "attn_in"])
def test_autocircuit_fixture_top_k_matches_auto_circuit(variant):
    exp = expected(f"autocircuit_{variant}")
    circ = load(FIXTURES / f"autocircuit_{variant}_prune_scores.json")
    assert circ.source == "auto-circuit"
    assert len(circ.edges) == len(circ.scores) == exp["n_edges"]  # bare scores: all in
    top = circ.top(exp["top_k"])
    assert top.edges == {autocircuit_edge(e) for e in exp["top_edges"]}
    tool_nodes = {
        hook_node(n["module_name"], n["head_idx"])
        for n in exp["top_src_nodes"] + exp["top_dest_nodes"]
    }
    assert top.nodes == tool_nodes
    assert top.threshold(exp["threshold"]).edges == top.edges


def test_acdc_fixture_matches_acdc_present_nodes():
    exp = expected("acdc")
    circ = load(FIXTURES / "acdc_edges.json", n_layers=exp["model_config"]["n_layers"])
    tool_nodes = set()
    for printed in exp["present_nodes_printed"]:
        name, index = re.fullmatch(r"(.+?)\[(.*)\]", printed).groups()  # type: ignore[union-attr]
        head = index.split(",")[-1].strip()
        tool_nodes.add(hook_node(name, int(head) if head.isdigit() else None))
    assert circ.nodes == tool_nodes
    assert circ.source == "acdc"
    assert len(circ.edges) > 0 and set(circ.scores) == set(circ.edges)


def _fixture_circuits():
    return {
        "eap": load(FIXTURES / "eap_graph.json"),
        "autocircuit": load(FIXTURES / "autocircuit_qkv_prune_scores.json"),
        "autocircuit_top": load(FIXTURES / "autocircuit_qkv_prune_scores.json").top(12),
        "acdc": load(FIXTURES / "acdc_edges.json"),
    }


@pytest.mark.parametrize("name", ["eap", "autocircuit", "autocircuit_top", "acdc"])
def test_round_trip_through_eap_json(tmp_path, name):
    circ = _fixture_circuits()[name]
    path = to_eap_json(circ, tmp_path / "c.json", n_layers=2, n_heads=4)
    data = json.loads(path.read_text())
    assert set(data) == {"cfg", "nodes", "edges"}
    assert data["cfg"]["n_layers"] == 2 and "d_model" in data["cfg"]
    back = load(path)
    assert back.nodes == circ.nodes
    assert back.edges == circ.edges
    assert back.scores == pytest.approx(circ.scores)


def test_edges_without_qkv_are_written_as_q_k_and_v(tmp_path):
    circ = load({"A0.1->A1.0": 0.5})
    back = load(to_eap_json(circ, tmp_path / "c.json", n_layers=2, n_heads=4))
    assert back.edges == {f"a0.h1->a1.h0<{x}>" for x in "qkv"}


def test_to_eap_json_of_node_circuit_and_subnetwork(tmp_path, bridge):
    heads = load([(0, 1), (1, 2)])
    back = load(to_eap_json(heads, tmp_path / "h.json", model=bridge))
    assert back.units == heads.units
    assert "a0.h1->a1.h2<q>" in back.edges and "a0.h0->m0" not in back.edges
    masks = {"blocks.1.attn.hook_z": torch.tensor([False, True, False, False])}
    assert load(to_eap_json(masks, tmp_path / "m.json", model=bridge)).units == {"a1.h1"}
    with pytest.raises(CircuitError, match="n_layers"):
        to_eap_json(heads, tmp_path / "x.json")


# ------------------------------------------------------------------------ names


def test_canonical_names_and_mappers():
    assert parse_node("m3.n17").kind == "neuron"
    assert parse_edge("input->a0.h0<v>").qkv == "v"
    assert autocircuit_edge("Resid Start->A0.3.Q") == "input->a0.h3<q>"
    assert autocircuit_edge("MLP 1->Resid End") == "m1->logits"
    assert acdc_node("blocks.0.attn.hook_result", [None, None, 3]) == ("a0.h3", None)
    assert acdc_node("blocks.1.attn.hook_q_input", [None, None, 3]) == ("a1.h3", "q")
    assert acdc_node("blocks.3.hook_resid_post", (None,), n_layers=4) == ("logits", None)
    for bad in ("logits->m0", "m1->a0.h0<q>", "input->m0<q>", "a0.h1->a0.h2<k>"):
        with pytest.raises(CircuitError):
            parse_edge(bad)


@pytest.mark.parametrize(
    "obj, nodes",
    [
        ([(9, 9), (10, 7)], {"a9.h9", "a10.h7"}),
        (["a9.h9", "m3.n17", "m2"], {"a9.h9", "m3.n17", "m2"}),
        (["A9.9", "MLP 2"], {"a9.h9", "m2"}),
        ({"a0.h1": True, "a0.h2": False}, {"a0.h1"}),
        ({"a0.h0->m0": 0.1}, {"a0.h0", "m0"}),
        (
            [["blocks.1.hook_resid_post", [None], "blocks.0.hook_mlp_out", [None]]],
            {"m0", "logits"},
        ),
        (
            {("blocks.1.hook_v_input", (None, None, 2), "blocks.0.hook_resid_pre", (None,)): True},
            {"input", "a1.h2"},
        ),
        (["blocks.0.attn.hook_result[:, :, 3]->blocks.1.hook_mlp_in[:]"], {"a0.h3", "m1"}),
        ("[[0, 1]]", {"a0.h1"}),
        ([], set()),
    ],
)
def test_load_formats(obj, nodes):
    assert load(obj).nodes == nodes


def test_circuit_selection_and_node_scores():
    circ = Circuit.from_scores({"input->a0.h0<q>": 0.5, "a0.h0->logits": -2.0, "a0.h1->m0": 1.0})
    assert circ.top(1).edges == {"a0.h0->logits"}
    assert circ.top(1, absolute=False).edges == {"a0.h1->m0"}
    assert circ.threshold(0.9).edges == {"a0.h0->logits", "a0.h1->m0"}
    assert circ.top(2).scores == circ.scores  # every score is kept
    assert circ.node_scores()["a0.h0"] == pytest.approx(2.5)
    assert "3 edges" in repr(circ) and "a0.h0" in repr(circ)


# ------------------------------------------------------------------------ errors


def test_malformed_json_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"cfg": {"n_layers": 2,')
    with pytest.raises(CircuitError, match="not valid JSON"):
        load(path)
    with pytest.raises(CircuitError, match="does not exist"):
        load(tmp_path / "missing.json")


def test_pickles_are_refused(tmp_path):
    path = tmp_path / "graph.pt"
    path.write_bytes(b"\x80\x04not really")
    with pytest.raises(CircuitError, match="never loads"):
        load(path)


@pytest.mark.parametrize("bad", ["a0.hx", "foo"])
def test_unknown_node_names_are_named(bad):
    with pytest.raises(CircuitError, match=re.escape(repr(bad))):
        load(["a0.h1", bad])
    with pytest.raises(CircuitError, match=re.escape(repr(bad))):
        load({f"{bad}->logits": 1.0})


def test_eap_json_with_unknown_names_is_named(tmp_path):
    data = json.loads((FIXTURES / "eap_graph.json").read_text())
    data["nodes"]["a0.hx"] = {"in_graph": True}
    data["edges"]["foo->logits"] = {"score": 1.0, "in_graph": True}
    with pytest.raises(CircuitError) as info:
        load(data)
    assert "a0.hx" in str(info.value) and "foo" in str(info.value)
    with pytest.raises(CircuitError, match="missing"):
        load({"cfg": {}, "nodes": {}})


def test_more_layers_or_heads_than_the_model(bridge):
    with pytest.raises(CircuitError) as info:
        load(["a5.h0", "a1.h9", "a0.h1"], n_layers=2, n_heads=4)
    assert "a5.h0" in str(info.value) and "a1.h9" in str(info.value)
    assert "a0.h1 " not in str(info.value)
    with pytest.raises(CircuitError, match=r"m0\.n40"):
        compare(["a0.h1"], ["m0.n40"], bridge)
    data = json.loads((FIXTURES / "eap_graph.json").read_text())
    data["cfg"]["n_layers"] = 12
    with pytest.raises(CircuitError, match="n_layers=12"):
        compare(["a0.h1"], data, bridge)
    with pytest.raises(CircuitError, match=r"a1\.h7"):
        compare({"blocks.1.attn.hook_z": torch.ones(8, dtype=torch.bool)}, ["a0.h1"], bridge)


_names = st.sampled_from(
    "a0.h1|a0.hx|foo|m1|m0.n3|input|logits|A0.1|MLP 0|Resid End|a0.h0->m0|A0.1->A1.2.Q|"
    "m1->a0.h0<q>|blocks.0.hook_mlp_out|(|('a',)|cfg|nodes|edges|"
    "blocks.0.attn.hook_result[:, :, 1]->blocks.1.hook_mlp_in[:]".split("|")
)
_leaf = st.none() | st.booleans() | st.integers(-3, 30) | st.floats() | st.text(max_size=8) | _names
_json = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.tuples(inner, inner)
        | st.dictionaries(_names | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=20,
)
_eap_like = st.fixed_dictionaries(
    {
        "cfg": st.dictionaries(st.sampled_from(["n_layers", "n_heads", "d_model"]), _leaf),
        "nodes": st.dictionaries(_names, _json, max_size=4),
        "edges": st.dictionaries(_names, _json, max_size=4),
    }
)
_acdc_like = st.lists(
    st.tuples(
        _names | st.text(max_size=5),
        st.lists(st.none() | st.integers(-2, 5), max_size=4),
        _names,
        st.lists(st.none() | st.integers(-2, 5), max_size=4),
    ),
    max_size=4,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json | _eap_like | _acdc_like | st.dictionaries(_names, _leaf))
def test_only_circuit_errors_escape_load(obj):
    try:
        result = load(obj, n_layers=3, n_heads=4)
    except CircuitError:
        return
    assert isinstance(result, Circuit)


# ------------------------------------------------------------------------ compare


def _head_masks(heads: set[str], n_layers: int = 2, n_heads: int = 4) -> dict[str, torch.Tensor]:
    return {
        f"blocks.{layer}.attn.hook_z": torch.tensor(
            [f"a{layer}.h{h}" in heads for h in range(n_heads)]
        )
        for layer in range(n_layers)
    }


def test_compare_equal_and_disjoint(bridge):
    circ = load(FIXTURES / "eap_graph.json")
    heads = {n for n in circ.units if n.startswith("a")}
    same = compare(_head_masks(heads), circ, bridge)
    assert same.loc[0, "layer"] == "all"
    assert same["iou"].tolist() == [1.0, 1.0, 1.0]
    assert same.loc[0, "n_circuit_outside"] == 1  # m1: no MLP is masked
    all_heads = {f"a{layer}.h{h}" for layer in range(2) for h in range(4)}
    other = compare(_head_masks(all_heads - heads), circ, bridge)
    assert other["iou"].tolist() == [0.0, 0.0, 0.0]
    assert compare(circ, circ).loc[0, "iou"] == 1.0
    assert set(same["aggregation"]) == {"any"}


def test_compare_columns_and_per_layer_rows():
    df = compare(["a0.h1", "a1.h2", "m1"], [(0, 1), (1, 3)])
    assert list(df["layer"]) == ["all", 0, 1]
    wanted = "iou precision recall f1 auroc auprc n_sub n_circuit n_both aggregation scored_by"
    assert set(wanted.split()) <= set(df.columns)
    all_row = df.iloc[0]
    assert (all_row["n_sub"], all_row["n_circuit"], all_row["n_both"]) == (3, 2, 1)
    assert all_row["precision"] == pytest.approx(1 / 3) and all_row["recall"] == 0.5
    assert all_row["f1"] == pytest.approx(0.4) and math.isnan(all_row["auroc"])


def test_auroc_of_planted_heads_from_mask_logits():
    gen = torch.Generator().manual_seed(0)
    n_layers, n_heads = 4, 8
    planted = {(0, 3), (1, 1), (1, 6), (2, 0), (3, 5), (3, 7)}
    logits = {}
    for layer in range(n_layers):
        values = torch.randn(n_heads, generator=gen) * 0.7 - 2.0
        for layer_, head in planted:
            if layer_ == layer:
                values[head] = 2.0 + 0.7 * torch.randn((), generator=gen)
        logits[f"blocks.{layer}.attn.hook_z"] = values

    class Learned:  # the shape of a Subnetwork: .masks and .logits
        def __init__(self) -> None:
            self.logits = logits
            self.masks = {k: v > 0 for k, v in logits.items()}

    df = compare(Learned(), sorted(planted), {"n_layers": n_layers, "n_heads": n_heads})
    assert df.loc[0, "scored_by"] == "subnetwork"
    assert df.loc[0, "auroc"] >= 0.95 and df.loc[0, "auprc"] >= 0.9


def test_auroc_from_circuit_scores_when_the_subnetwork_has_none():
    circ = load(FIXTURES / "autocircuit_qkv_prune_scores.json")
    df = compare(circ.top(12), circ)
    assert df.loc[0, "scored_by"] == "subnetwork"
    df = compare(["a0.h0", "a0.h3"], circ)
    assert df.loc[0, "scored_by"] == "circuit" and not math.isnan(df.loc[0, "auroc"])


def _bridge_weights(n_heads: int = 4, d_head: int = 2, d_model: int = 4) -> dict:
    """Head 0 all kept, head 1 one weight kept, head 2 about 70% kept, head 3 none."""
    q = torch.zeros(n_heads * d_head, d_model, dtype=torch.bool)
    o = torch.zeros(d_model, n_heads * d_head, dtype=torch.bool)
    q[0:d_head] = True
    o[:, 0:d_head] = True
    q[d_head, 0] = True
    q[2 * d_head : 3 * d_head, :3] = True
    o[:3, 2 * d_head : 3 * d_head] = True
    return {"blocks.0.attn.q.weight": q, "blocks.0.attn.o.weight": o}


@pytest.mark.parametrize(
    "aggregation, kept",
    [("any", {"a0.h0", "a0.h1", "a0.h2"}), ("majority", {"a0.h0", "a0.h2"}), ("all", {"a0.h0"})],
)
def test_weight_mask_aggregation(aggregation, kept, bridge):
    masks = _bridge_weights()
    df = compare(masks, sorted(kept), aggregation=aggregation, n_heads=4)
    assert df.loc[0, "iou"] == 1.0 and df.loc[0, "aggregation"] == aggregation
    assert (
        circuits._subnetwork.to_circuit(masks, model=bridge, aggregation=aggregation).units == kept
    )
    w_q = torch.stack([masks["blocks.0.attn.q.weight"][2 * h : 2 * h + 2].T for h in range(4)])
    tl3 = circuits._subnetwork.to_circuit({"blocks.0.attn.W_Q": w_q}, aggregation=aggregation)
    assert tl3.units == kept  # TL 2/3 layout [n_heads, d_model, d_head], same heads


def test_bridge_weights_need_n_heads():
    with pytest.raises(CircuitError, match="n_heads"):
        compare(_bridge_weights(), ["a0.h0"])


def test_neuron_masks_lift_to_mlp_or_compare_neurons():
    post = torch.zeros(32, dtype=torch.bool)
    post[[3, 7]] = True
    masks = {"blocks.1.mlp.hook_post": post, "blocks.0.mlp.hook_post": torch.zeros(32).bool()}
    lifted = compare(masks, ["m1", "a0.h0"])
    assert lifted.loc[0, "n_both"] == 1 and lifted.loc[0, "iou"] == 1.0
    assert lifted.attrs["mlp_granularity"] == {0: "mlp", 1: "mlp"}
    neurons = compare(masks, ["m1.n3", "m1.n9"])
    assert neurons.loc[0, ["n_sub", "n_circuit", "n_both"]].tolist() == [2, 2, 1]
    w_in = torch.zeros(16, 32, dtype=torch.bool)
    w_in[:, 3] = True
    assert circuits._subnetwork.to_circuit({"x.blocks.1.mlp.W_in": w_in}).nodes == {"m1", "m1.n3"}


def test_real_maskset_and_subnetwork_like_objects(bridge):
    import sc_interp as sc

    with sc.attach_masks(bridge, sc.MaskConfig(unit="head", targets=["blocks.*.attn*"])) as masks:
        with torch.no_grad():  # keep heads 0 and 3 of layer 0, nothing in layer 1
            masks.logits["blocks.0.attn.hook_z"].copy_(torch.tensor([1.0, -1.0, -1.0, 2.0]))
            masks.logits["blocks.1.attn.hook_z"].fill_(-1.0)
        df = compare(masks, ["a0.h0", "a0.h3"], bridge)
    assert df.loc[0, "iou"] == 1.0 and df.loc[0, "auroc"] == 1.0

    class HardOnly:
        def hard(self):
            return _head_masks({"a1.h1"})

    assert compare(HardOnly(), ["a1.h1"], bridge).loc[0, "iou"] == 1.0


def test_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 12))
        scores = rng.integers(0, 4, n).astype(float)  # many ties
        labels = rng.integers(0, 2, n).astype(bool)
        if labels.all() or not labels.any():
            continue
        pairs = [(p, q) for p in scores[labels] for q in scores[~labels]]
        brute = np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for p, q in pairs])
        assert auroc(scores, labels) == pytest.approx(brute)
        ap = 0.0
        for t in sorted(set(scores), reverse=True):
            chosen = scores >= t
            recall_step = (labels[chosen].sum() - labels[scores > t].sum()) / labels.sum()
            ap += recall_step * labels[chosen].sum() / chosen.sum()
        assert auprc(scores, labels) == pytest.approx(ap)


# ------------------------------------------------------------------------ plot, CLI, imports


def test_plot_compare_returns_a_figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sc_interp import plot

    post = torch.zeros(32, dtype=torch.bool)
    post[[1, 2]] = True
    fig = plot.compare(
        {"blocks.0.mlp.hook_post": post, **_head_masks({"a0.h1"})}, ["a0.h1", "a1.h2", "m0.n2"]
    )
    assert isinstance(fig, matplotlib.figure.Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "1/2/1" in texts  # both/subnetwork/circuit neurons of m0
    _, ax = plt.subplots()
    assert plot.compare(["a0.h0"], ["a0.h0"], ax=ax) is ax.figure
    plt.close("all")


def test_compare_command(tmp_path):
    from safetensors.torch import save_file

    def path(name: str) -> str:
        return str(tmp_path / name)

    logits = {"blocks.0.attn.hook_z": torch.tensor([2.0, -1.0, -3.0, 0.5])}
    save_file({**logits, "blocks.1.attn.hook_z": -torch.ones(4)}, path("sub.safetensors"))
    save_file({"blocks.0.attn.hook_z": torch.tensor([1, 0, 0, 1]).byte()}, path("hard.safetensors"))
    Path(path("circ.json")).write_text(json.dumps([[0, 0], [0, 3]]))
    Path(path("cfg.json")).write_text(json.dumps({"n_layers": 2, "n_heads": 4, "d_mlp": 32}))
    df = compare_command(path("sub.safetensors"), path("circ.json"), path("cfg.json"))
    assert df.loc[0, "iou"] == 1.0 and df.loc[0, "auroc"] == 1.0
    df = compare_command(path("hard.safetensors"), path("circ.json"), None)
    assert df.loc[0, "iou"] == 1.0 and df.loc[0, "scored_by"] == "none"
    Path(path("small.json")).write_text(json.dumps({"n_layers": 1, "n_heads": 2}))
    with pytest.raises(CircuitError, match=r"a0\.h3"):
        compare_command(path("circ.json"), path("circ.json"), path("small.json"))
    Path(path("bad.safetensors")).write_bytes(b"nope")
    with pytest.raises(CircuitError):
        compare_command(path("bad.safetensors"), path("circ.json"), None)


def test_importing_circuits_imports_no_heavy_optional_dependency():
    code = (
        "import sys, sc_interp; before = set(sys.modules); import sc_interp.circuits; "
        "import sc_interp.plot; new = set(sys.modules) - before; "
        "print(sorted(m for m in new if m.split('.')[0] in "
        "('transformer_lens', 'matplotlib', 'pandas', 'nnsight')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
