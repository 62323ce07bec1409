"""Task training of the tiny models and the end-to-end builder.

* :func:`train_task_model`: plain Adam + cross-entropy on odd-one-out data.
* :func:`task_accuracy`: odd-one-out accuracy of a model on a dataset.
* :func:`build_task_model`: build, optionally pretrain (see
  :mod:`sc_interp.tasks.pretraining`), and train a model on a task.

Everything is deterministic given ``seed`` (on CPU) and leaves the global RNG untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sc_interp.errors import ConfigError, DataError
from sc_interp.tasks._base import PARTS, CompoundTask, TaskData
from sc_interp.tasks.models import OddOneOut, build_language_model, build_vision_model
from sc_interp.tasks.pretraining import (
    pretrain_language_model,
    pretrain_vision_model,
    progress_bar,
    symmetries,
)

logger = logging.getLogger(__name__)

Arm = Literal["scratch", "pretrained"]
DEFAULT_TRAIN_ON: tuple[str, ...] = ("compound",)
# Per kind: task-training epochs summed over the parts trained on (so the default cost does
# not depend on train_on), learning rate, pretraining steps. Tuned for well under a minute
# of one CPU core per model.
_DEFAULTS = {"vision": (36, 2e-3, 300), "language": (12, 2e-3, 600)}


@torch.no_grad()
def task_accuracy(
    model: nn.Module,
    data: TaskData | tuple[Tensor, Tensor],
    split: str = "test",
    batch_size: int = 256,
) -> float:
    """Fraction of examples whose highest logit is the odd one out (model put in eval mode).

    Example:
        >>> from sc_interp.tasks import make_task, build_vision_model
        >>> task = make_task("inside-contact", n_train=4, n_test=8)
        >>> 0.0 <= task_accuracy(build_vision_model(0), task.a) <= 1.0
        True
    """
    inputs, labels = data.split(split) if isinstance(data, TaskData) else data  # type: ignore[arg-type]
    if len(labels) == 0:
        raise DataError("cannot compute accuracy on an empty dataset")
    model.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = model(inputs[start : start + batch_size])
        correct += int((logits.argmax(-1) == labels[start : start + batch_size]).sum())
    return correct / len(labels)


def _select(
    data: TaskData | CompoundTask | Sequence[TaskData], train_on: Sequence[str]
) -> list[TaskData]:
    if isinstance(data, TaskData):
        return [data]
    if isinstance(data, CompoundTask):
        unknown = [p for p in train_on if p not in PARTS]
        if unknown or not train_on:
            raise ConfigError(
                f"train_on must be a non-empty subset of {list(PARTS)}, got {list(train_on)}"
            )
        return [data.part(p) for p in train_on]
    parts = list(data)
    if not parts or not all(isinstance(p, TaskData) for p in parts):
        raise DataError("data must be a TaskData, a CompoundTask or a non-empty list of TaskData")
    return parts


def train_task_model(
    model: nn.Module,
    data: TaskData | CompoundTask | Sequence[TaskData],
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    train_on: Sequence[str] = DEFAULT_TRAIN_ON,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Train ``model`` in place with Adam and cross-entropy on odd-one-out labels.

    Args:
        model: An :class:`OddOneOut` (or any module mapping ``[B, 4, ...]`` to ``[B, 4]``).
        data: One dataset, several (mixed into one shuffled set), or a task whose parts
            ``train_on`` are mixed.
        epochs: Passes over the (mixed) training set.
        lr: Adam learning rate.
        batch_size: Examples per step.
        seed: Seed of the shuffling order (the model's init is the caller's).
        train_on: Parts of a :class:`CompoundTask` to train on: ``("compound",)`` as in
            the paper, or e.g. ``("a", "b", "compound")``.
        augment: Optional ``(candidates [n, ...], generator) -> candidates`` applied to
            every training batch's candidates (e.g. :func:`symmetries` for images).
        progress: Show a ``tqdm.auto`` bar over epochs.

    Returns:
        History: ``epoch``, ``loss`` (mean train loss) and ``test_acc/<name>`` per dataset.
        The model is left in eval mode.

    Example:
        >>> from sc_interp.tasks import make_task, build_vision_model
        >>> task = make_task("inside-contact", n_train=16, n_test=8)
        >>> hist = train_task_model(build_vision_model(0), task, epochs=1, progress=False)
        >>> sorted(hist)
        ['epoch', 'loss', 'test_acc/compound']
    """
    parts = _select(data, train_on)
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ConfigError(
            f"need epochs >= 1, batch_size >= 1, lr > 0; got {epochs}, {batch_size}, {lr}"
        )
    inputs = torch.cat([p.train[0] for p in parts])
    labels = torch.cat([p.train[1] for p in parts])
    if len(labels) == 0:
        raise DataError("no training examples")
    generator = torch.Generator().manual_seed(seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(trainable, lr=lr)
    history: dict[str, list[float]] = {"epoch": [], "loss": []}
    for epoch in progress_bar(range(epochs), progress, "train"):
        model.train()
        order = torch.randperm(len(labels), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            x = inputs[batch]
            if augment is not None:
                x = augment(x.flatten(0, 1), generator).reshape(x.shape)
            loss = F.cross_entropy(model(x), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        history["epoch"].append(epoch + 1)
        history["loss"].append(total / len(labels))
        for part in parts:
            history.setdefault(f"test_acc/{part.name}", []).append(task_accuracy(model, part))
        logger.info("epoch %d: %s", epoch + 1, {k: v[-1] for k, v in history.items()})
    model.eval()
    return history


def build_task_model(
    task: CompoundTask | TaskData,
    *,
    arm: Arm = "scratch",
    seed: int = 0,
    epochs: int | None = None,
    quick: bool = False,
    train_on: Sequence[str] = DEFAULT_TRAIN_ON,
    lr: float | None = None,
    pretrain_steps: int | None = None,
    progress: bool = False,
    corpus: Sequence[str] | Sequence[Sequence[str]] | Tensor | None = None,
    model: nn.Module | None = None,
    **sizes: Any,
) -> nn.Module:
    """Build a tiny model for ``task``, pretrain it (``arm="pretrained"``) and train it.

    Args:
        task: A task from :func:`~sc_interp.tasks.make_task`, or one dataset (e.g. your own
            problems from :func:`~sc_interp.tasks.odd_one_out`; trained on its train split).
        arm: ``"scratch"`` (random init) or ``"pretrained"`` (LM / SimCLR first).
        seed: Seed of initialisation, pretraining data and training order.
        epochs: Task-training epochs (default: vision 36, language 12, divided by the
            number of parts in ``train_on``). Vision training uses :func:`symmetries`.
        quick: CI mode: 2 epochs on at most 256 examples per part, 20 pretraining steps.
        train_on: Parts of a CompoundTask to train on (see :func:`train_task_model`).
        lr: Adam learning rate (default 2e-3).
        pretrain_steps: Pretraining steps (default: vision 300, language 600).
        progress: Show progress bars.
        corpus: Language pretraining text (sentences or a ``[N, T]`` token tensor) instead
            of the built-in grammar (needed when the task's vocabulary is not the built-in
            one); see :func:`pretrain_language_model`.
        model: An existing model (e.g. pretrained elsewhere) to train on the task instead
            of building one; it is not pretrained again.
        **sizes: Model size overrides: language ``TransformerBridgeConfig`` fields
            (``n_ctx``, ``d_model``, ``n_layers``, ``n_heads``...; ``n_ctx`` defaults to the
            inputs' length when that exceeds 16), vision ``channels`` and ``dim``.

    Returns:
        The trained model in eval mode.

    Example:
        >>> from sc_interp.tasks import make_task
        >>> task = make_task("sva", n_train=32, n_test=8)
        >>> build_task_model(task, arm="pretrained", quick=True)(task.a.test[0]).shape
        torch.Size([8, 4])
    """
    if arm not in ("scratch", "pretrained"):
        raise ConfigError(f"arm must be 'scratch' or 'pretrained', got {arm!r}")
    if isinstance(task, TaskData):
        parts, kind, meta = [task], _kind(task), task.meta
    else:
        parts, kind, meta = [task.part(p) for p in _select_names(train_on)], task.kind, task.meta
    epoch_budget, default_lr, default_steps = _DEFAULTS[kind]
    default_epochs = max(1, round(epoch_budget / len(parts)))
    epochs = epochs if epochs is not None else (2 if quick else default_epochs)
    steps = pretrain_steps if pretrain_steps is not None else (20 if quick else default_steps)
    if model is None:
        model = _build(kind, parts[0], meta, seed, sizes)
        if arm == "pretrained":
            _pretrain(model, kind, parts[0], meta, steps, seed, corpus, progress)
    if quick:
        parts = [TaskData(p.name, tuple(t[:256] for t in p.train), p.test) for p in parts]  # type: ignore[arg-type]
    train_task_model(
        model,
        parts,
        epochs=epochs,
        lr=lr or default_lr,
        seed=seed,
        augment=symmetries if kind == "vision" else None,
        progress=progress,
    )
    return model


def _kind(data: TaskData) -> str:
    inputs = data.train[0]
    if inputs.ndim == 3 and not inputs.is_floating_point():
        return "language"
    if inputs.ndim == 5 and inputs.is_floating_point():
        return "vision"
    raise DataError(
        f"cannot tell the model for inputs {inputs.dtype} {tuple(inputs.shape)}: expected "
        "token ids [N, 4, T] (language) or images [N, 4, 1, H, W] (vision)"
    )


def _build(kind: str, data: TaskData, meta: dict, seed: int, sizes: dict[str, Any]) -> OddOneOut:
    if kind == "vision":
        image_size = int(meta.get("image_size", data.train[0].shape[-1]))
        return build_vision_model(seed, image_size=image_size, **sizes)
    vocab, tokenizer = meta.get("vocab"), meta.get("tokenizer")
    if vocab is not None:
        vocab_size = len(vocab)
        pad_id = int(vocab["<pad>"])
    elif tokenizer is not None:
        vocab_size, pad_id = len(tokenizer), int(meta["pad_id"])
    else:
        vocab_size, pad_id = int(data.train[0].max()) + 1, int(meta.get("pad_id", 0))
    sizes = {"n_ctx": max(16, int(data.train[0].shape[-1])), **sizes}
    return build_language_model(vocab_size, seed, pad_id=pad_id, **sizes)


def _pretrain(
    model: OddOneOut, kind: str, data: TaskData, meta: dict, steps: int, seed: int,
    corpus: Any, progress: bool,
) -> None:  # fmt: skip
    if kind == "vision":
        size = int(meta.get("image_size", data.train[0].shape[-1]))
        pretrain_vision_model(model, steps, seed, image_size=size, progress=progress)
        return
    vocab = meta.get("vocab")
    pretrain_language_model(
        model, vocab, steps, seed, corpus=corpus, pad_id=meta.get("pad_id"), progress=progress
    )


def _select_names(train_on: Sequence[str]) -> list[str]:
    if not train_on or any(p not in PARTS for p in train_on):
        raise ConfigError(
            f"train_on must be a non-empty subset of {list(PARTS)}, got {list(train_on)}"
        )
    return list(train_on)
