"""sc-interp against NeuroSurgeon: weight-mask training and hard-mask evaluation, same model.

DESIGN.md §5 asks sc-interp to be faster than NeuroSurgeon (PyPI ``neurosurgeon``) on the
same model, unit and batch. Three models, all built from config (no download):

- a small Hugging Face GPT-2 (4 layers, d_model 128), masks on every attention and MLP
  ``Conv1D`` weight (``c_attn``, ``c_proj``, ``c_fc``); loss: the LM loss on random tokens;
- a plain torch CNN + MLP (two ``Conv2d``, three ``Linear``), masks on every weight;
  loss: cross-entropy on random labels;
- a plain MLP (six ``Linear(512, 512)`` and a head; the ``mlp`` shape of ``sc-interp
  bench``), masks on every weight; loss: cross-entropy on random labels.

Each library gets its own deep copy of the same model, the same logit init (0.05), the same
temperature (1.0), the same Adam and the same loss (task loss + 1e-8 * L0). Per step the
variants run interleaved (order rotated every step); medians are the headline, minima are
printed next to them because they are less sensitive to other load on a shared machine:

- *train step*: forward + loss + backward + Adam step on the mask logits;
- *hard forward, first*: the first evaluation forward after a training step (logits changed);
- *hard forward, again*: the next evaluation forward (sc-interp caches masked weights in eval).
- *train, sc fused Adam*: the sc-interp train step on a fourth copy with the Adam that
  ``train_masks`` runs (``Adam(fused=True)`` where torch has the kernel) against
  NeuroSurgeon with torch's default Adam (NeuroSurgeon has no training loop of its own).

A third, unmasked copy gives two references: a plain forward and a fine-tune step (Adam on
every weight). Ratios are ``sc-interp / NeuroSurgeon``: lower is better, < 1 means faster.

Run: python benchmarks/vs_neurosurgeon.py [--steps 30] [--batch 32] [--threads 1]
Needs: pip install --no-deps neurosurgeon==0.1.0   (it needs torch, transformers, matplotlib)
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import sc_interp as sc
from sc_interp.train import mask_optimizer

INSTALL_HINT = (
    "NeuroSurgeon is not installed. Install it without letting pip touch torch:\n"
    "    pip install --no-deps neurosurgeon==0.1.0\n"
    "(its own dependencies torch, transformers and matplotlib must already be installed)"
)

INIT = 0.05  # initial logit in both libraries (NeuroSurgeon's ``mask_init_value``)
TEMPERATURE = 1.0  # sc-interp ``beta`` == NeuroSurgeon ``temperature``
L0_WEIGHT = 1e-8
LR = 0.05


def _import_neurosurgeon() -> tuple[Any, Any, Any]:
    try:
        from NeuroSurgeon.Masking.mask_layer import MaskLayer
        from NeuroSurgeon.Models.circuit_model import CircuitModel
        from NeuroSurgeon.Models.model_configs import CircuitConfig
    except ImportError:
        sys.exit(INSTALL_HINT)
    return CircuitModel, CircuitConfig, MaskLayer


# ------------------------------------------------------------------------------ models
@dataclass
class Case:
    """One model with its inputs, loss and mask targets in each library's naming."""

    name: str
    model: nn.Module
    inputs: dict[str, Tensor]
    loss: Callable[[Any, dict[str, Tensor]], Tensor]  # (model or CircuitModel, inputs) -> loss
    sc_targets: list[str]  # glob patterns over sc-interp weight-site names
    ns_layers: list[str]  # NeuroSurgeon target_layers (module paths)


def gpt2_case(batch: int, seq: int = 32, seed: int = 0) -> Case:
    import transformers

    transformers.logging.set_verbosity_error()
    n_layer = 4
    cfg = transformers.GPT2Config(
        n_layer=n_layer,
        n_embd=128,
        n_head=4,
        vocab_size=500,
        n_positions=64,
        bos_token_id=0,
        eos_token_id=0,
        # no dropout: NeuroSurgeon keeps every non-mask module in eval mode anyway
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    tokens = torch.randint(0, 500, (batch, seq), generator=torch.Generator().manual_seed(seed))
    layers = [
        f"transformer.h.{i}.{m}"
        for i in range(n_layer)
        for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    ]
    return Case(
        name=f"GPT-2 4L d128 (batch {batch}x{seq})",
        model=model,
        inputs={"input_ids": tokens, "labels": tokens},
        loss=lambda m, inputs: m(**inputs).loss,
        sc_targets=["transformer.h.*.attn.c_*.weight", "transformer.h.*.mlp.c_*.weight"],
        ns_layers=layers,
    )


class ConvNet(nn.Module):
    """Conv2d x2 -> Linear x3 on 3x16x16 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, 512)
        self.fc2 = nn.Linear(512, 512)
        self.fc3 = nn.Linear(512, 10)

    def forward(self, x: Tensor, return_dict: bool = True) -> Tensor:
        # ``return_dict``: NeuroSurgeon's CircuitModel always passes it; ignored here
        h = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        h = nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2).flatten(1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(h)))))


def _classifier_case(
    name: str, build: Callable[[], nn.Module], x_shape: tuple[int, ...], layers: list[str],
    batch: int, seed: int,
) -> Case:  # fmt: skip
    """A classifier on random inputs and labels, weight masks on ``layers``."""
    torch.manual_seed(seed)
    model = build().eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *x_shape, generator=gen)
    y = torch.randint(0, 10, (batch,), generator=gen)
    return Case(
        name=f"{name} (batch {batch})",
        model=model,
        inputs={"x": x},
        loss=lambda m, inputs: nn.functional.cross_entropy(m(**inputs), y),
        sc_targets=[f"{layer}.weight" for layer in layers],
        ns_layers=layers,
    )


def convnet_case(batch: int, seed: int = 0) -> Case:
    layers = ["conv1", "conv2", "fc1", "fc2", "fc3"]
    return _classifier_case("CNN+MLP 2 conv + 3 linear", ConvNet, (3, 16, 16), layers, batch, seed)


class MLP(nn.Module):
    """Six Linear(512, 512) with ReLU, then Linear(512, 10): the ``mlp`` shape of sc-interp bench."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(512, 512) for _ in range(6))
        self.head = nn.Linear(512, 10)

    def forward(self, x: Tensor, return_dict: bool = True) -> Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x))
        return self.head(x)


def mlp_case(batch: int, seed: int = 0) -> Case:
    layers = [f"layers.{i}" for i in range(6)] + ["head"]
    return _classifier_case("MLP 6 x Linear(512, 512)", MLP, (512,), layers, batch, seed)


# ------------------------------------------------------------------------------ timing
def run_case(case: Case, steps: int, warmup: int = 3) -> dict[str, Any]:
    """Median and minimum milliseconds of every variant, plus a hard-mask parity check."""
    circuit_model, circuit_config, mask_layer = _import_neurosurgeon()

    sc_model = copy.deepcopy(case.model)
    ns_model = copy.deepcopy(case.model)
    ref_model = copy.deepcopy(case.model)

    masks = sc.attach_masks(
        sc_model,
        sc.MaskConfig(unit="weight", targets=case.sc_targets, relaxation="continuous", init=INIT),
    )
    masks.beta = TEMPERATURE
    sc_opt = torch.optim.Adam(masks.parameters(), lr=LR)
    # a second copy trained with the Adam that train_masks runs (fused where torch has it)
    fused_model = copy.deepcopy(case.model)
    fused_masks = sc.attach_masks(
        fused_model,
        sc.MaskConfig(unit="weight", targets=case.sc_targets, relaxation="continuous", init=INIT),
    )
    fused_masks.beta = TEMPERATURE
    fused_opt = mask_optimizer(fused_masks.parameters(), lr=LR)

    circuit = circuit_model(
        circuit_config(
            mask_method="continuous_sparsification",
            mask_hparams={
                "ablation": "none",
                "mask_unit": "weight",
                "mask_bias": False,
                "mask_init_value": INIT,
            },
            target_layers=case.ns_layers,
            freeze_base=True,
            add_l0=False,  # L0 is added explicitly below, as for sc-interp
        ),
        ns_model,
    )
    circuit.temperature = TEMPERATURE
    ns_layers = [m for m in circuit.modules() if isinstance(m, mask_layer)]
    ns_params = [p for p in circuit.parameters() if p.requires_grad]
    ns_opt = torch.optim.Adam(ns_params, lr=LR)
    n_sc = sum(p.numel() for p in masks.parameters())
    n_ns = sum(p.numel() for p in ns_params)
    if n_sc != n_ns:
        raise RuntimeError(f"mask sizes differ: sc-interp {n_sc}, NeuroSurgeon {n_ns}")

    ref_params = list(ref_model.parameters())
    ref_opt = torch.optim.Adam(ref_params, lr=1e-4)
    inputs = case.inputs

    def sc_step() -> None:
        sc_opt.zero_grad(set_to_none=True)
        with masks.step() as step:  # as train_masks does: L0 reuses the forward's soft masks
            loss = case.loss(sc_model, inputs) + L0_WEIGHT * step.l0()
        loss.backward()
        sc_opt.step()

    def fused_step() -> None:
        fused_opt.zero_grad(set_to_none=True)
        with fused_masks.step() as step:
            loss = case.loss(fused_model, inputs) + L0_WEIGHT * step.l0()
        loss.backward()
        fused_opt.step()

    def ns_step() -> None:
        ns_opt.zero_grad(set_to_none=True)
        l0 = sum(layer.calculate_l0() for layer in ns_layers)
        (case.loss(circuit, inputs) + L0_WEIGHT * l0).backward()
        ns_opt.step()

    def sc_forward() -> Tensor:
        with torch.no_grad():
            return case.loss(sc_model, inputs)

    def ns_forward() -> Tensor:
        with torch.no_grad():
            return case.loss(circuit, inputs)

    def ref_step() -> None:
        ref_opt.zero_grad(set_to_none=True)
        case.loss(ref_model, inputs).backward()
        ref_opt.step()

    def ref_forward() -> None:
        with torch.no_grad():
            case.loss(ref_model, inputs)

    times: dict[str, list[float]] = {}

    def timed(key: str, fn: Callable[[], object]) -> None:
        start = time.perf_counter()
        fn()
        times.setdefault(key, []).append(time.perf_counter() - start)

    # Each library: one training step, then the first and a second hard-mask forward.
    # Mode switches happen outside the timers.
    def sc_round() -> None:
        masks.train()
        timed("sc train step", sc_step)
        fused_masks.train()
        timed("sc train step, train_masks' Adam", fused_step)
        masks.eval()
        timed("sc hard forward, first", sc_forward)
        timed("sc hard forward, again", sc_forward)

    def ns_round() -> None:
        circuit.train()
        timed("ns train step", ns_step)
        circuit.eval()
        timed("ns hard forward, first", ns_forward)
        timed("ns hard forward, again", ns_forward)

    def ref_round() -> None:
        for p in ref_params:
            p.requires_grad_(True)
        timed("ref fine-tune step", ref_step)
        for p in ref_params:
            p.requires_grad_(False)
        timed("ref plain forward", ref_forward)

    rounds = [sc_round, ns_round, ref_round]
    for _ in range(warmup):
        for fn in rounds:
            fn()
    times.clear()
    for step in range(steps):
        shift = step % len(rounds)
        for fn in rounds[shift:] + rounds[:shift]:
            fn()

    # Both libraries saw the same data from the same init: their logits and hard-mask
    # outputs should still agree (float noise aside), so the timings compare one computation.
    masks.eval()
    circuit.eval()
    with torch.no_grad():
        parity = float((sc_forward() - ns_forward()).abs())
    return {
        "name": case.name,
        "median": {k: 1000 * statistics.median(v) for k, v in times.items()},
        "min": {k: 1000 * min(v) for k, v in times.items()},
        "parity": parity,
        "mask_units": n_sc,
    }


# ------------------------------------------------------------------------------ report
MEASURES = ("train step", "hard forward, first", "hard forward, again")


def table(results: list[dict[str, Any]], steps: int) -> str:
    """Medians (the headline) and minima (robust to other load on the machine), in ms."""
    lines = [
        f"sc-interp vs NeuroSurgeon over {steps} interleaved steps; ms, lower is better; "
        "ratio = sc-interp / NeuroSurgeon"
    ]
    header = (
        f"{'measure':22s} {'sc median':>10s} {'NS median':>10s} {'ratio':>6s}"
        f" {'sc min':>9s} {'NS min':>9s} {'ratio':>6s}"
    )
    for res in results:
        med, low = res["median"], res["min"]
        lines += ["", f"{res['name']}  ({res['mask_units']:,} mask logits)", header]
        for measure in MEASURES:
            a, b = med[f"sc {measure}"], med[f"ns {measure}"]
            c, d = low[f"sc {measure}"], low[f"ns {measure}"]
            lines.append(
                f"{measure:22s} {a:10.2f} {b:10.2f} {a / b:6.3f} {c:9.2f} {d:9.2f} {c / d:6.3f}"
            )
        a, c = med["sc train step, train_masks' Adam"], low["sc train step, train_masks' Adam"]
        b, d = med["ns train step"], low["ns train step"]
        lines.append(
            f"{'train, sc fused Adam':22s} {a:10.2f} {b:10.2f} {a / b:6.3f} {c:9.2f} {d:9.2f} {c / d:6.3f}"
        )
        for key in ("ref fine-tune step", "ref plain forward"):
            label = "no masks: " + key.removeprefix("ref ")
            lines.append(f"{label:22s} {med[key]:10.2f} {'':17s} {low[key]:9.2f}")
        lines.append(
            f"hard-mask loss |sc-interp - NeuroSurgeon| after training: {res['parity']:.2e} "
            "(0 unless summation order differs: the first step's gradients agree to ~1e-11, but "
            "Adam turns such differences on near-zero gradients into different trajectories)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--batch", type=int, default=32, help="batch size for both models")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared 2-core machine multi-threaded medians swing "
        "by several x from other load; the libraries differ in elementwise work, not in "
        "threading; 0 keeps torch's default)",
    )
    args = parser.parse_args()
    _import_neurosurgeon()  # fail early, with the install hint
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    results = [
        run_case(gpt2_case(args.batch), args.steps),
        run_case(convnet_case(args.batch), args.steps),
        run_case(mlp_case(args.batch), args.steps),
    ]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after "
        "(other load inflates medians; minima are less affected)"
    )
    print(table(results, args.steps))


if __name__ == "__main__":
    main()
