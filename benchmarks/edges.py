"""Edge-mask training step against the frozen floor: time and peak memory, one run each.

Model: a TL 4 bridge with 4 layers, d_model 256, 8 heads of 32, d_mlp 1024, vocabulary 500,
batch 16 of 32 tokens (the shape the edge-mask issue names). The frozen floor is the frozen
model's forward+backward with gradients flowing to activations only (as in
``sc-interp bench``); steps are interleaved and medians reported. Peak memory: each variant
in a fresh process, peak RSS growth over the model and batch (Linux).

Run: python benchmarks/edges.py [--steps 10] [--batch 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from sc_interp._demo import tiny_bridge
from sc_interp.bench._common import embed_requires_grad as _embed_requires_grad
from sc_interp.bench._common import tl_loss as _loss
from sc_interp.bench.memory import _status_kib
from sc_interp.masks import MaskConfig, attach_masks

SEQ = 32


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = tiny_bridge(
        0, d_model=256, d_head=32, n_heads=8, n_layers=4, n_ctx=SEQ, d_vocab=500, d_mlp=1024
    )
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def child(variant: str, batch: int, out: str, steps: int = 3) -> None:
    """Peak RSS growth of ``variant`` over the model and batch, written to ``out``."""
    model = _model()
    tokens = torch.randint(0, 500, (batch, SEQ), generator=torch.Generator().manual_seed(0))
    if variant == "frozen floor":
        _embed_requires_grad(model)

        def step() -> None:
            _loss(model, tokens).backward()

    else:
        masks = attach_masks(model, MaskConfig(unit="edge"))
        masks.train()
        opt = torch.optim.Adam(masks.parameters(), lr=1e-2)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with masks.step() as masks_step:
                loss = _loss(model, tokens) + 1e-8 * masks_step.l0()
            loss.backward()
            opt.step()

    base = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM)
    for _ in range(steps):
        step()
    Path(out).write_text(json.dumps({"extra": (_status_kib("VmHWM") - base) * 1024}))


def main(steps: int, batch: int) -> str:
    model = _model()
    tokens = torch.randint(0, 500, (batch, SEQ), generator=torch.Generator().manual_seed(0))
    masks = attach_masks(model, MaskConfig(unit="edge"))
    n_edges = sum(p.numel() for p in masks.parameters())
    opt = torch.optim.Adam(masks.parameters(), lr=1e-2)

    def edge_step() -> None:
        masks.train()
        opt.zero_grad(set_to_none=True)
        with masks.step() as step:
            loss = _loss(model, tokens) + 1e-8 * step.l0()
        loss.backward()
        opt.step()

    def frozen_step() -> None:
        with masks.disabled():
            handle = _embed_requires_grad(model)
            try:
                _loss(model, tokens).backward()
            finally:
                handle.remove()  # type: ignore[attr-defined]

    times: dict[str, list[float]] = {"frozen floor": [], "edge mask step": []}
    for i in range(steps + 1):
        for name, fn in (("frozen floor", frozen_step), ("edge mask step", edge_step)):
            start = time.perf_counter()
            fn()
            if i:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    masks.detach()
    med = {k: statistics.median(v) for k, v in times.items()}
    peaks = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "peak.json")
        for variant in times:
            code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
            code += f"from edges import child; child({variant!r}, {batch}, {out!r})"
            subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
            peaks[variant] = json.loads(Path(out).read_text())["extra"]
    rows = [
        f"edges masked: {n_edges}, batch {batch} x {SEQ} tokens",
        f"median ms: frozen floor {1000 * med['frozen floor']:.1f}, "
        f"edge mask step {1000 * med['edge mask step']:.1f}",
        f"edge mask step / frozen floor: {med['edge mask step'] / med['frozen floor']:.2f}",
        f"peak MiB over model: frozen floor {peaks['frozen floor'] / 2**20:.1f}, "
        f"edge mask step {peaks['edge mask step'] / 2**20:.1f}",
        f"peak memory edge / frozen: {peaks['edge mask step'] / peaks['frozen floor']:.2f}",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    print(main(args.steps, args.batch))
