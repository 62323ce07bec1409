"""Learning a subnetwork for a subtask: TrainConfig, train_masks, evaluate.

Continuous sparsification as in the paper: mask logits start at ``init``; the training
mask is ``sigmoid(beta * s)``; the loss is the task loss plus ``l0`` times the sum of the
training mask; Adam updates the logits only; after every epoch ``beta *= beta_max **
(1 / epochs)`` so it reaches ``beta_max`` at the end; the mask at the end is kept. The base
model is frozen and in eval mode (BatchNorm statistics and dropout frozen) throughout.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch

from sc_interp._run import forward
from sc_interp.adapters import resolve
from sc_interp.data import Subtask, floor_at_chance
from sc_interp.errors import ConfigError, TrainingError
from sc_interp.masks import MaskConfig, MaskSet, attach_masks
from sc_interp.sites import model_fingerprint
from sc_interp.subnetwork import Subnetwork

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of mask training (defaults: the paper's, with fewer epochs).

    Args:
        epochs: passes over the training data (paper: 90).
        lr: Adam learning rate on mask logits (paper: 1e-2 or 1e-4).
        l0: weight of the L0 penalty. On the raw sum (paper: 1e-8) its scale depends on how
            many units are masked; ``l0_mean=True`` uses the mean instead (scale-free).
        l0_mean: penalise the mean rather than the sum of the training mask.
        beta_max: final temperature of continuous sparsification (paper: 200).
        batch_size: overrides the Subtask's batch size when set.
        seed: seeds shuffling and hard-concrete sampling; same seed, same masks on CPU.
        progress: show a tqdm progress bar.
        eval_every: evaluate the hard mask on the test split (and the val split, when the
            Subtask has one) every this many epochs (0: never; history then has no test or
            val accuracy). Choose hyper-parameters on ``val_accuracy`` and density, never on
            test accuracies or on a compositionality verdict.

    Example:
        >>> TrainConfig(epochs=5, lr=0.05).beta_max
        200.0
    """

    epochs: int = 20
    lr: float = 1e-2
    l0: float = 1e-8
    l0_mean: bool = False
    beta_max: float = 200.0
    batch_size: int | None = None
    seed: int = 0
    progress: bool = True
    eval_every: int = 1

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.l0 < 0:
            raise ConfigError(f"l0 must be >= 0, got {self.l0}")
        if self.beta_max < 1:
            raise ConfigError(f"beta_max must be >= 1, got {self.beta_max}")


@dataclass(frozen=True)
class Evaluation:
    """Accuracy (metric) and loss of a model on one split of a subtask.

    Attributes:
        accuracy: the subtask's metric (accuracy by default).
        loss: mean loss.
        floored: ``max(accuracy, chance)``, as the paper reports.
        n: number of examples.
        logit_diff: mean logit of the correct class minus the best other class (for a
            prompt subtask: the answer's logit minus the best wrong token's); ``None`` when
            labels are not class ids (a custom loss).
    """

    task: str
    split: str
    accuracy: float
    loss: float
    floored: float
    n: int
    logit_diff: float | None = None


@torch.no_grad()
def evaluate(model: object, task: Subtask, split: str = "test") -> Evaluation:
    """Evaluate ``model`` (with whatever masks are attached) on ``task``'s ``split``.

    The model is run in eval mode; its train/eval flags are restored afterwards.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> x, y = torch.randn(6, 2), torch.randint(0, 2, (6,))
        >>> 0.0 <= evaluate(net, Subtask("t", (x, y), (x, y), chance=0.5)).accuracy <= 1.0
        True
    """
    root = resolve(model)
    flags = {m: m.training for m in root.modules()}
    root.eval()
    try:
        total_metric = total_loss = 0.0
        diffs: list[torch.Tensor] = []
        applicable = True  # every batch has class-id labels
        n = 0
        for x, y in task.batches(split):
            logits = task.logits(forward(model, x), x)
            total_loss += float(task.compute_loss(logits, y)) * len(y)
            total_metric += task.compute_metric(logits, y) * len(y)
            n += len(y)
            diff = task.logit_diffs(logits, y)
            applicable = applicable and diff is not None
            if diff is not None:
                diffs.append(diff.cpu())
    finally:
        for m, flag in flags.items():
            m.training = flag
    acc = total_metric / n
    logit_diff = float(torch.cat(diffs).mean()) if applicable and diffs else None
    return Evaluation(
        task.name, split, acc, total_loss / n, floor_at_chance(acc, task.chance), n, logit_diff
    )


def train_masks(
    model: object,
    mask: MaskConfig,
    task: Subtask,
    train: TrainConfig | None = None,
) -> Subnetwork:
    """Learn a sparse mask over ``model`` that keeps ``task`` working.

    The model is left exactly as it was (masks detached, flags restored), also on errors.

    Args:
        model: a torch module, TransformerLens model or nnsight wrapper.
        mask: what to mask (:class:`MaskConfig`).
        task: the subtask to keep (:class:`Subtask`).
        train: hyper-parameters (:class:`TrainConfig`).

    Returns:
        The learned :class:`Subnetwork` (hard masks, logits, history).

    Raises:
        TrainingError: the loss became NaN or infinite.
    """
    train = train or TrainConfig()
    root = resolve(model)
    if train.batch_size is not None:
        from dataclasses import replace

        task = replace(task, batch_size=train.batch_size)
    flags = {m: m.training for m in root.modules()}
    generator = torch.Generator().manual_seed(train.seed)
    history: list[dict[str, float]] = []
    root.eval()  # frozen base: BatchNorm statistics and dropout off
    masks = attach_masks(root, mask, seed=train.seed)
    try:
        optimizer = torch.optim.Adam(masks.parameters(), lr=train.lr)
        growth = train.beta_max ** (1.0 / train.epochs)
        bar = _progress(train, task.name)
        masks.eval()  # epoch 0: the starting point (every unit kept when init > 0)
        history.append(
            {"epoch": 0.0, "loss": math.nan, "task_loss": math.nan, "train_accuracy": math.nan,
             "density": masks.density(), "soft_density": float(masks.l0(normalize=True).detach()),
             "beta": masks.beta, **_held_out(model, task)}
        )  # fmt: skip
        for epoch in range(train.epochs):
            row = _epoch(masks, model, task, train, optimizer, generator, epoch)
            masks.beta = min(masks.beta * growth, train.beta_max)
            row["beta"] = masks.beta
            if train.eval_every and (
                (epoch + 1) % train.eval_every == 0 or epoch + 1 == train.epochs
            ):
                masks.eval()
                row.update(_held_out(model, task))
            history.append(row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{row['loss']:.3f}",
                    acc=f"{row.get('test_accuracy', float('nan')):.2f}",
                    density=f"{row['density']:.3f}",
                )
        if bar is not None:
            bar.close()
        masks.eval()
        result = Subnetwork(
            logits={k: v.detach().cpu().clone() for k, v in masks.logits.items()},
            config=mask,
            train_config=asdict(train),
            task=task.name,
            records=history,
            fingerprint=model_fingerprint(root),
        )
    finally:
        masks.detach()
        for m, flag in flags.items():
            m.training = flag
    log.info("trained %s mask for %r: density %.3f", mask.unit, task.name, result.density())
    return result


def _held_out(model: object, task: Subtask) -> dict[str, float]:
    """Test accuracy, and val accuracy when the subtask has a val split."""
    row = {"test_accuracy": evaluate(model, task, "test").accuracy}
    if task.has_split("val"):
        row["val_accuracy"] = evaluate(model, task, "val").accuracy
    return row


def _epoch(
    masks: MaskSet,
    model: object,
    task: Subtask,
    train: TrainConfig,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    epoch: int,
) -> dict[str, float]:
    masks.train()
    total = task_total = correct = 0.0
    n = 0
    for step, (x, y) in enumerate(task.batches("train", shuffle=True, generator=generator)):
        with masks.step() as step_masks:
            logits = task.logits(forward(model, x), x)
            task_loss = task.compute_loss(logits, y)
            loss = task_loss + train.l0 * step_masks.l0(normalize=train.l0_mean)
        if not torch.isfinite(loss):
            raise TrainingError(
                f"the loss became {float(loss.detach())} at epoch {epoch}, step {step} "
                f"(task loss {float(task_loss.detach()):.4g}); try a lower lr (now {train.lr:g})"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(y)
        task_total += float(task_loss.detach()) * len(y)
        correct += task.compute_metric(logits.detach(), y) * len(y)
        n += len(y)
    return {
        "epoch": float(epoch + 1),
        "loss": total / n,
        "task_loss": task_total / n,
        "train_accuracy": correct / n,
        "density": masks.density(),
        "soft_density": float(masks.l0(normalize=True).detach()),
    }


def _progress(train: TrainConfig, name: str):
    if not train.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=train.epochs, desc=f"mask[{name}]", unit="epoch", leave=False)
