"""DESIGN §5 step ratios on several model shapes and batch sizes.

For each model shape and batch size, seven copies of the same model (same seed) run
interleaved, one step each in a rotating order:

- *fine-tune floor*: torch's default Adam on every weight (a plain user's fine-tune step);
  *weight mask step*: Adam on weight-mask logits as ``train_masks`` runs it (fused where
  torch has the kernel: :func:`sc_interp.train.mask_optimizer`), loss plus the L0 penalty
  (``MaskSet.step``); the fine-tune step with ``Adam(fused=True)`` is timed too, so the
  mask step is also reported against a floor that uses the same Adam;
- *frozen floor*: frozen weights, gradient to activations from the embedding output (or
  the input) on; *neuron mask step*: neuron masks on every neuron site;
- *plain forward* and *hard-mask forward*: no-grad forwards, unmasked and with hard weight
  masks (steady state: the masked weights are cached in eval).

Every variant runs on its own copy of the model, so none finds another's weights in cache.

Ratios are medians over the steps. Shapes: ``mlp`` (6 x Linear(512, 512)), ``cnn`` (two
Conv2d and three Linear on 3x16x16 images), ``bridge`` (a 4-layer TransformerLens 4 bridge,
d_model 128, sequence 32; needs ``[tl]``), ``hooked`` (the same sizes as a TransformerLens
2/3 ``HookedTransformer``; needs ``transformer-lens<4``), ``gpt2`` (a 4-layer Hugging Face
GPT-2 built from its config, d_model 128, sequence 32; needs ``[hf]``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from sc_interp.bench._common import interleaved_medians, tl_loss
from sc_interp.errors import ConfigError
from sc_interp.masks import MaskConfig, attach_masks
from sc_interp.train import mask_optimizer

SEQ = 32
TARGETS = {
    "weight mask step / fine-tune floor": 1.15,
    "neuron mask step / frozen floor": 1.15,
    "hard-mask forward / plain forward": 1.05,
    "peak memory, less mask state: weight / fine-tune": 1.3,
    "peak memory, less mask state: neuron / frozen": 1.3,
}


@dataclass
class Shape:
    """A model shape: how to build it (same weights every call), its batch and loss."""

    name: str
    build: Callable[[], nn.Module]
    batch: Callable[[int], Any]  # batch size -> inputs
    loss: Callable[[nn.Module, Any], Tensor]
    embed: str | None  # module whose output starts the frozen floor's gradient; None: input


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i in range(6):
        layers += [nn.Linear(512, 512)] + ([nn.ReLU()] if i < 5 else [])
    return nn.Sequential(*layers)


class ConvNet(nn.Module):
    """Conv2d x2 -> Linear x3 on 3x16x16 images (the NeuroSurgeon comparison's CNN)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc1 = nn.Linear(64 * 4 * 4, 512)
        self.fc2 = nn.Linear(512, 512)
        self.fc3 = nn.Linear(512, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)
        h = nn.functional.max_pool2d(torch.relu(self.conv2(h)), 2).flatten(1)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(h)))))


def _classify(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)


def _images(n: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 16, 16, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _vectors(n: int) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 512, generator=gen), torch.randint(0, 512, (n,), generator=gen)


def _tokens(n: int) -> Tensor:
    return torch.randint(0, 500, (n, SEQ), generator=torch.Generator().manual_seed(0))


def _bridge() -> nn.Module:
    from sc_interp._demo import tiny_bridge

    return tiny_bridge(
        0, d_model=128, d_head=32, n_heads=4, n_layers=4, n_ctx=SEQ, d_vocab=500, d_mlp=512
    )


def _hooked() -> nn.Module:
    from sc_interp._optional import require

    # Any: pyright checks against transformer-lens 4; this shape runs with 2/3
    transformer_lens: Any = require("transformer_lens", "the HookedTransformer benchmark shape")
    try:  # transformer-lens 4 raises ImportError on the removed name
        hooked_transformer = transformer_lens.HookedTransformer
    except (AttributeError, ImportError):
        raise ConfigError(
            "the 'hooked' benchmark shape needs transformer-lens < 4 (HookedTransformer); "
            "transformer-lens 4 has the 'bridge' shape instead"
        ) from None
    cfg = transformer_lens.HookedTransformerConfig(
        n_layers=4, d_model=128, d_head=32, n_heads=4, d_mlp=512, n_ctx=SEQ, d_vocab=500,
        act_fn="gelu", seed=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return hooked_transformer(cfg)


def _gpt2() -> nn.Module:
    from sc_interp._optional import require

    require("transformers", "the GPT-2 benchmark shape")
    import transformers

    transformers.logging.set_verbosity_error()
    cfg = transformers.GPT2Config(
        n_layer=4, n_embd=128, n_head=4, vocab_size=500, n_positions=64,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg)


def _lm_loss(model: nn.Module, tokens: Tensor) -> Tensor:
    return model(input_ids=tokens, labels=tokens).loss


SHAPES: dict[str, Shape] = {
    "mlp": Shape("mlp", _mlp, _vectors, _classify, None),
    "cnn": Shape("cnn", ConvNet, _images, _classify, None),
    "bridge": Shape("bridge", _bridge, _tokens, tl_loss, "hook_embed"),
    "hooked": Shape("hooked", _hooked, _tokens, tl_loss, "hook_embed"),
    "gpt2": Shape("gpt2", _gpt2, _tokens, _lm_loss, "transformer.wte"),
}


def _frozen_input(shape: Shape, model: nn.Module, batch: Any) -> tuple[Any, object | None]:
    """The frozen floor's batch and hook: gradients flow from the embedding (or input) on."""
    if shape.embed is None:
        x, y = batch
        return (x.detach().requires_grad_(True), y), None
    module = model.get_submodule(shape.embed)
    hook = module.register_forward_hook(lambda m, i, o: o.detach().requires_grad_(True))
    return batch, hook


def shape_ratios(shape: Shape, batch_size: int, steps: int) -> dict[str, float]:
    """The §5 step ratios of ``shape`` at ``batch_size`` (medians over ``steps``)."""
    batch = shape.batch(batch_size)
    # one model per variant: a variant that shared another's model would find its weights
    # still in cache (the plain forward ran 1.25-1.4x faster on the MLP at batch 8 when it
    # shared the frozen floor's model), and the frozen floor's gradient hook would run in it
    finetune, fused_finetune, frozen, weight, neuron, plain, hard = (
        shape.build().eval() for _ in range(7)
    )
    for p in (*finetune.parameters(), *fused_finetune.parameters()):
        p.requires_grad_(True)
    # the floor is a plain user's fine-tune step: torch's default Adam
    finetune_opt = torch.optim.Adam(finetune.parameters(), lr=1e-4)
    fused_opt = torch.optim.Adam(fused_finetune.parameters(), lr=1e-4, fused=True)
    frozen.requires_grad_(False)
    plain.requires_grad_(False)
    frozen_batch, hook = _frozen_input(shape, frozen, batch)
    weight_masks = attach_masks(weight, MaskConfig(unit="weight"))
    neuron_masks = attach_masks(neuron, MaskConfig(unit="neuron"))
    hard_masks = attach_masks(hard, MaskConfig(unit="weight"))
    hard_masks.eval()
    mask_opts = {  # the optimiser train_masks uses
        id(m): mask_optimizer(m.parameters(), lr=1e-2) for m in (weight_masks, neuron_masks)
    }

    def finetune_step(model: nn.Module, opt: torch.optim.Optimizer) -> Callable[[], None]:
        def step() -> None:
            opt.zero_grad(set_to_none=True)
            shape.loss(model, batch).backward()
            opt.step()

        return step

    def frozen_step() -> None:
        shape.loss(frozen, frozen_batch).backward()

    def mask_step(model: nn.Module, masks: Any) -> Callable[[], None]:
        opt = mask_opts[id(masks)]
        masks.train()
        masks.beta = 3.0  # a mid-training temperature (beta != 1 costs a pass)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            with masks.step() as s:
                loss = shape.loss(model, batch) + 0.1 * s.l0(normalize=True)
            loss.backward()
            opt.step()

        return step

    def forward(model: nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                shape.loss(model, batch)

        return run

    try:
        med = interleaved_medians(
            {
                "fine-tune floor": finetune_step(finetune, finetune_opt),
                "fine-tune floor, fused Adam": finetune_step(fused_finetune, fused_opt),
                "weight mask step": mask_step(weight, weight_masks),
                "frozen floor": frozen_step,
                "neuron mask step": mask_step(neuron, neuron_masks),
                "plain forward": forward(plain),
                "hard-mask forward": forward(hard),
            },
            steps=steps,
        )
    finally:
        for masks in (weight_masks, neuron_masks, hard_masks):
            masks.detach()
        if hook is not None:
            hook.remove()  # type: ignore[attr-defined]
    return {
        "weight mask step / fine-tune floor": med["weight mask step"] / med["fine-tune floor"],
        "weight mask step / fused-Adam fine-tune": med["weight mask step"]
        / med["fine-tune floor, fused Adam"],
        "neuron mask step / frozen floor": med["neuron mask step"] / med["frozen floor"],
        "hard-mask forward / plain forward": med["hard-mask forward"] / med["plain forward"],
        "fine-tune floor ms": 1000 * med["fine-tune floor"],
        "frozen floor ms": 1000 * med["frozen floor"],
    }


def shape_rows(
    shapes: Sequence[str], batches: Sequence[int], steps: int = 15, repeats: int = 1,
    memory: bool = False,
) -> list[dict[str, Any]]:  # fmt: skip
    """One row per shape and batch size; with ``repeats`` > 1 each ratio is the median.

    ``memory``: also the peak-memory ratios (each variant in a fresh process; Linux), with
    the mask logits, their gradients and Adam's moments left out as DESIGN §5 allows.
    """
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        raise ConfigError(f"unknown benchmark shape(s) {unknown}; choose from {list(SHAPES)}")
    rows = []
    for name in shapes:
        for batch in batches:
            runs = [shape_ratios(SHAPES[name], batch, steps) for _ in range(repeats)]
            row: dict[str, Any] = {"shape": name, "batch": batch}
            for key in runs[0]:
                values = sorted(r[key] for r in runs)
                row[key] = values[len(values) // 2]
            if memory:
                row.update(_memory_columns(name, batch))
            rows.append(row)
    return rows


def _memory_columns(shape: str, batch: int) -> dict[str, float]:
    from sc_interp.bench.memory import memory_ratios

    ratios = memory_ratios(batch=batch, seq=SEQ, shape=shape)
    out = {}
    for unit, floor, key in (("weight", "fine-tune", "weight mask step / finetune floor"),
                             ("neuron", "frozen", "neuron mask step / frozen floor")):  # fmt: skip
        state = next(k for k in ratios if k.startswith(f"  {unit}, less mask"))
        out[f"peak memory: {unit} / {floor}"] = ratios[f"peak memory: {key}"]
        out[f"peak memory, less mask state: {unit} / {floor}"] = ratios[state]
    return out


def to_markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table; a ratio over its DESIGN §5 target is marked ``!``."""
    keys = [k for k in rows[0] if k not in ("shape", "batch")]
    header = "| shape | batch | " + " | ".join(keys) + " |"
    lines = [header, "|" + "---|" * (len(keys) + 2)]
    for row in rows:
        cells = []
        for key in keys:
            value = row[key]
            over = key in TARGETS and value > TARGETS[key]
            ratio = " / " in key
            cells.append(f"{value:.2f}{' !' if over else ''}" if ratio else f"{value:.1f}")
        lines.append(f"| {row['shape']} | {row['batch']} | " + " | ".join(cells) + " |")
    targets = ", ".join(f"{k} <= {v}" for k, v in TARGETS.items())
    lines.append(f"\nTargets (DESIGN §5): {targets}; `!` marks a ratio above its target.")
    return "\n".join(lines)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The rows as CSV text."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
