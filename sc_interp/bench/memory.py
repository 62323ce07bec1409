"""Peak-memory benchmark: each variant in a fresh process, peak RSS growth over its floor.

Linux only (reads ``/proc/self/status`` and resets the peak through ``clear_refs``). The
measure is the peak resident memory during a few steps minus the resident memory once the
model and batch exist; mask training is compared with the matching floor (neuron/head:
frozen model with gradients to activations; weight: fine-tuning every weight).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

_VARIANTS = (
    "frozen floor",
    "neuron mask step",
    "head mask step",
    "finetune floor",
    "weight mask step",
)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _setup(shape: str | None, batch: int, seq: int) -> tuple[Any, Any, Any, Any]:
    """``(model, inputs, loss, frozen)``: ``frozen(model, inputs)`` freezes the model and
    returns the inputs that let gradients flow from the embedding (or the input) on."""
    import torch

    if shape is not None:
        from sc_interp.bench.shapes import SHAPES, _frozen_input

        spec = SHAPES[shape]

        def frozen_shape(model: Any, inputs: Any) -> Any:
            model.requires_grad_(False)
            return _frozen_input(spec, model, inputs)[0]

        return spec.build(), spec.batch(batch), spec.loss, frozen_shape
    from sc_interp._demo import tiny_bridge
    from sc_interp.bench._common import embed_requires_grad, tl_loss

    def frozen_tl(model: Any, inputs: Any) -> Any:
        model.requires_grad_(False)
        embed_requires_grad(model)
        return inputs

    torch.manual_seed(0)
    model = tiny_bridge(
        0, d_model=128, d_head=32, n_heads=4, n_layers=4, n_ctx=seq, d_vocab=500, d_mlp=512
    )
    tokens = torch.randint(0, 500, (batch, seq), generator=torch.Generator().manual_seed(0))
    return model, tokens, tl_loss, frozen_tl


def child(
    variant: str, batch: int, seq: int, out: str, steps: int = 3, shape: str | None = None
) -> None:
    """Run ``variant``; write its peak memory growth and mask/optimiser bytes to ``out`` (JSON).

    ``shape``: a model shape of :mod:`sc_interp.bench.shapes`; ``None``: the 4-layer TL
    bridge of the overhead table.
    """
    import torch

    from sc_interp.masks import MaskConfig, attach_masks
    from sc_interp.train import mask_optimizer

    model, inputs, loss_fn, frozen = _setup(shape, batch, seq)
    params = list(model.parameters())
    state_bytes = 0
    if variant == "finetune floor":
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=1e-4)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(model, inputs).backward()
            opt.step()
    elif variant == "frozen floor":
        frozen_inputs = frozen(model, inputs)

        def step() -> None:
            loss_fn(model, frozen_inputs).backward()
    else:
        masks = attach_masks(model, MaskConfig(unit=variant.split()[0]))
        masks.train()
        opt = mask_optimizer(masks.parameters(), lr=1e-2)  # as train_masks
        # the logits, their gradients and Adam's two moments: allowed on top of the floor
        state_bytes = 4 * 4 * sum(p.numel() for p in masks.parameters())

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with masks.step() as masks_step:
                loss = loss_fn(model, inputs) + 1e-8 * masks_step.l0()
            loss.backward()
            opt.step()

    base = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    for _ in range(steps):
        step()
    peak = _status_kib("VmHWM")
    Path(out).write_text(json.dumps({"extra": (peak - base) * 1024, "state": state_bytes}))


def memory_ratios(batch: int = 32, seq: int = 32, shape: str | None = None) -> dict[str, float]:
    """Peak-memory ratios of mask training to the matching floor (fresh process each).

    ``shape``: a model shape of :mod:`sc_interp.bench.shapes` (head masks only where the
    shape has heads); ``None``: the TL bridge of the overhead table.
    """
    extra: dict[str, dict[str, int]] = {}
    variants = [v for v in _VARIANTS if v != "head mask step" or shape in (None, "bridge", "gpt2")]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.json")
        for variant in variants:
            code = (
                "from sc_interp.bench.memory import child; "
                f"child({variant!r}, {batch}, {seq}, {out!r}, shape={shape!r})"
            )
            subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
            extra[variant] = json.loads(Path(out).read_text())
    ratios = {}
    for variant, floor in (("neuron mask step", "frozen floor"), ("head mask step", "frozen floor"),
                           ("weight mask step", "finetune floor")):  # fmt: skip
        if variant not in extra:
            continue
        e, f = extra[variant], extra[floor]["extra"]
        ratios[f"peak memory: {variant} / {floor}"] = e["extra"] / f
        label = (
            f"  {variant.split()[0]}, less mask + optimiser state ({e['state'] / 2**20:.1f} MiB)"
        )
        ratios[label] = (e["extra"] - e["state"]) / f
    for variant, e in extra.items():
        ratios[f"peak MiB over model: {variant}"] = e["extra"] / 2**20
    return ratios
