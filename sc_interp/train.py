"""Learning a subnetwork for a subtask: TrainConfig, train_masks, evaluate.

Continuous sparsification as in the paper: mask logits start at ``init``; the training
mask is ``sigmoid(beta * s)``; the loss is the task loss plus ``l0`` times the mean (the
paper: the sum) of the training mask; Adam updates the logits only; after every epoch ``beta *= beta_max **
(1 / epochs)`` so it reaches ``beta_max`` at the end; the mask at the end is kept. The base
model is frozen and in eval mode (BatchNorm statistics and dropout frozen) throughout.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch

from sc_interp import _trace_path, _validate
from sc_interp._distributed import Sync, current, has_sharded_parameters
from sc_interp._run import forward
from sc_interp._state import preserved
from sc_interp.adapters import resolve
from sc_interp.data import Subtask, floor_at_chance
from sc_interp.errors import DataError, TrainingError
from sc_interp.masks import MaskConfig, MaskSet, attach_masks
from sc_interp.sites import model_fingerprint
from sc_interp.subnetwork import Subnetwork

log = logging.getLogger(__name__)
# an upper bound so that a typo (epochs=1e9 as an int) fails at once instead of running forever
MAX_EPOCHS = 100_000
# device types with a fused Adam kernel in every torch version sc-interp supports
_FUSED_ADAM_DEVICES = ("cpu", "cuda", "mps", "xpu")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of mask training (the paper's, but fewer epochs and a mean L0).

    The L0 penalty is ``l0 * mean(training mask)`` by default: its scale does not depend on
    how many units are masked, so one value works for 16 neurons and for a million weights,
    and it stays below the task loss (``mean <= 1``), so it prunes what the task does not
    need without pruning what it does. The paper penalises the raw sum with ``l0=1e-8``:
    ``TrainConfig(l0=1e-8, l0_mean=False)``; on the raw sum the right ``l0`` shrinks as the
    mask grows, and 1e-8 barely prunes models of a few thousand units (measured on the tiny
    tasks: see the README).

    Args:
        epochs: passes over the training data (paper: 90).
        lr: Adam learning rate on mask logits (paper: 1e-2 or 1e-4).
        l0: weight of the L0 penalty: on the mean of the training mask (default 0.1), or on
            its sum with ``l0_mean=False`` (paper: 1e-8).
        l0_mean: penalise the mean (default) rather than the sum of the training mask.
        beta_max: final temperature of continuous sparsification (paper: 200).
        batch_size: overrides the Subtask's batch size when set.
        seed: seeds shuffling and hard-concrete sampling; same seed, same masks on CPU.
        progress: show a tqdm progress bar.
        eval_every: evaluate the hard mask on the test split (and the val split, when the
            Subtask has one) every this many epochs (0: never; history then has no test or
            val accuracy). Choose hyper-parameters on ``val_accuracy`` and density, never on
            test accuracies or on a compositionality verdict.
        distributed: train across the processes of the ``torch.distributed`` process group
            (see :func:`train_masks`); ``None`` (default) does so when a group of two or
            more processes is initialised, ``False`` never.

    Example:
        >>> TrainConfig(epochs=5, lr=0.05).beta_max
        200.0
    """

    epochs: int = 20
    lr: float = 1e-2
    l0: float = 0.1
    l0_mean: bool = True
    beta_max: float = 200.0
    batch_size: int | None = None
    seed: int = 0
    progress: bool = True
    eval_every: int = 1
    distributed: bool | None = None

    def __post_init__(self) -> None:
        checked = {
            "epochs": _validate.integer("epochs", self.epochs, minimum=1, maximum=MAX_EPOCHS),
            "lr": _validate.number("lr", self.lr, above=0, maximum=1e3),
            "l0": _validate.number("l0", self.l0, minimum=0, maximum=1e6),
            "l0_mean": _validate.boolean("l0_mean", self.l0_mean),
            "beta_max": _validate.number("beta_max", self.beta_max, minimum=1, maximum=1e4),
            "batch_size": None if self.batch_size is None else _validate.integer(
                "batch_size", self.batch_size, minimum=1),
            "seed": _validate.integer("seed", self.seed, minimum=0, maximum=2**63 - 1),
            "progress": _validate.boolean("progress", self.progress),
            "eval_every": _validate.integer("eval_every", self.eval_every, minimum=0),
            "distributed": None if self.distributed is None else _validate.boolean(
                "distributed", self.distributed),
        }  # fmt: skip
        for name, value in checked.items():
            object.__setattr__(self, name, value)


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

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> x, y = torch.randn(6, 2), torch.randint(0, 2, (6,))
        >>> result = evaluate(net, Subtask("t", (x, y), (x, y), chance=0.5))
        >>> result.n, result.floored >= 0.5
        (6, True)
    """

    task: str
    split: str
    accuracy: float
    loss: float
    floored: float
    n: int
    logit_diff: float | None = None


@torch.no_grad()
def evaluate(
    model: object, task: Subtask, split: str = "test", *, remote: bool | str = False
) -> Evaluation:
    """Evaluate ``model`` (with whatever masks are attached) on ``task``'s ``split``.

    The model is run in eval mode; its train/eval flags are restored afterwards.

    Inside ``sc.ablate(..., remote=...)`` / ``sc.isolate(..., remote=...)`` on an nnsight
    model every batch runs as one ``model.trace(..., remote=...)`` with the ablation's
    interventions. ``remote`` here does the same for the model as it is (no ablation open):
    ``True`` (NDIF), ``"local"`` (nnsight's serverless dry run) or a host URL.

    Example:
        >>> net = torch.nn.Linear(2, 2)
        >>> x, y = torch.randn(6, 2), torch.randint(0, 2, (6,))
        >>> 0.0 <= evaluate(net, Subtask("t", (x, y), (x, y), chance=0.5)).accuracy <= 1.0
        True
    """
    root = resolve(model)
    _validate.instance(
        "task", task, Subtask, "a Subtask (sc.Subtask(name, train=(x, y), test=(x, y)))"
    )
    remote = _trace_path.check_remote(remote)
    if remote is not False and _trace_path.active(model) is None:
        with _trace_path.planned(
            model, {}, {}, keep_subnetwork=True, method="zero", inputs=None, seed=0, remote=remote
        ):
            return evaluate(model, task, split)
    with preserved(root):
        root.eval()
        total_metric = total_loss = 0.0
        diffs: list[torch.Tensor] = []
        applicable = True  # every batch has class-id labels
        n = 0
        for x, y in task.batches(split):
            logits = finite_logits(task, forward(model, x), split, x)
            total_loss += float(task.compute_loss(logits, y)) * len(y)
            total_metric += task.compute_metric(logits, y) * len(y)
            n += len(y)
            diff = task.logit_diffs(logits, y)
            applicable = applicable and diff is not None
            if diff is not None:
                diffs.append(diff.cpu())
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

    Several processes (``torch.distributed``): launch one process per device (``torchrun``,
    ``accelerate launch`` or ``torch.multiprocessing.spawn`` plus ``init_process_group``;
    gloo on CPU, NCCL on GPUs), give every process the same model, task and
    ``TrainConfig`` (same seed), and call ``train_masks`` on each. The global batch
    (``batch_size``) is the same on every rank and is cut into one shard per rank; each
    rank's loss is weighted by its share and the mask-logit gradients are summed with one
    ``all_reduce`` per step, so every rank ends with the same masks as one process training
    on the global batch (up to float summation order; exact for mean-reduced losses such as
    the default cross-entropy). Held-out evaluations run on every rank.

    The model needs no ``DistributedDataParallel`` wrapper: its weights are frozen and the
    mask logits live in the MaskSet. With accelerate, ``Accelerator()`` initialises the
    process group; ``accelerator.prepare(model)`` is not needed either, and a model it
    wrapped in DDP may be passed as is: the wrapper is unwrapped (``.module``), so site
    names and mask files are the plain model's. Do not ``prepare`` the Subtask's data:
    ``train_masks`` shards each global batch itself.

    FSDP2 (``torch.distributed.fsdp.fully_shard``): neuron, head and weight masks work on
    the sharded model (same masks as one process). A weight mask all-gathers its weight
    with ``DTensor.full_tensor()`` on every forward and keeps the full weight of each
    masked layer for the backward pass, so weight masks give up FSDP's memory saving on
    the masked layers. Attaching weight masks runs FSDP2's initialisation (an all-gather)
    and every forward is collective, so every global batch (the last included) needs at
    least one example per rank. FSDP1 (``FullyShardedDataParallel``, also with
    ``use_orig_params=True``) is refused: it keeps parameters as flat 1-D shards outside
    its forward, so sites cannot be read and parametrizations break its unsharding.

    Returns:
        The learned :class:`Subnetwork` (hard masks, logits, history).

    Raises:
        TrainingError: the loss became NaN or infinite (on any rank, when distributed).
        ConfigError: ``distributed=True`` without an initialised process group, or a
            global batch smaller than the number of ranks on an FSDP2 model.
        UnsupportedModelError: the model is wrapped in FSDP1 ``FullyShardedDataParallel``.

    Example:
        >>> from sc_interp.toy import planted_mlp, planted_tasks
        >>> task_a, _ = planted_tasks(n_train=64, n_test=64)
        >>> sub = train_masks(planted_mlp(), MaskConfig(unit="neuron", targets=["0"]), task_a,
        ...                   TrainConfig(epochs=20, lr=0.05, progress=False))
        >>> sub.masks["0"].tolist() == [True] * 8 + [False] * 8  # A's planted units
        True
    """
    root = resolve(model)
    _validate.instance("mask", mask, MaskConfig, "a MaskConfig")
    _validate.instance("task", task, Subtask, "a Subtask")
    train = TrainConfig() if train is None else train
    _validate.instance("train", train, TrainConfig, "a TrainConfig or None")
    if train.batch_size is not None:
        from dataclasses import replace

        task = replace(task, batch_size=train.batch_size)
    sync = current(train.distributed, sharded=has_sharded_parameters(root))
    generator = torch.Generator().manual_seed(train.seed)
    history: list[dict[str, float]] = []
    with preserved(root):
        root.eval()  # frozen base: BatchNorm statistics and dropout off
        masks = attach_masks(root, mask, seed=train.seed)
        try:
            result = _train(masks, model, root, mask, task, train, generator, history, sync)
        finally:
            masks.detach()
    log.info("trained %s mask for %r: density %.3f", mask.unit, task.name, result.density())
    return result


def mask_optimizer(params: Iterable[torch.Tensor], lr: float) -> torch.optim.Adam:
    """The Adam that :func:`train_masks` runs on mask logits: fused where torch has a kernel.

    ``torch.optim.Adam(fused=True)`` updates each tensor in one pass (torch's default on
    the CPU is seven: ``lerp_``, ``mul_``, ``addcmul_``, ``sqrt``, ``div``, ``add_``,
    ``addcdiv_``); a weight mask has one logit per weight, so on small batches that is a
    large part of a training step. Same update, same determinism; logits on a device
    without a fused kernel get the default Adam.

    Example:
        >>> opt = mask_optimizer([torch.nn.Parameter(torch.zeros(3))], lr=0.01)
        >>> opt.defaults["fused"]
        True
    """
    params = list(params)
    fused = bool(params) and all(
        p.device.type in _FUSED_ADAM_DEVICES and p.is_floating_point() for p in params
    )
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


def _train(
    masks: MaskSet, model: object, root: torch.nn.Module, mask: MaskConfig, task: Subtask,
    train: TrainConfig, generator: torch.Generator, history: list[dict[str, float]], sync: Sync,
) -> Subnetwork:  # fmt: skip
    optimizer = mask_optimizer(masks.parameters(), lr=train.lr)
    bar = _progress(train, task.name) if sync.rank == 0 else None
    try:
        return _epochs(
            masks, model, root, mask, task, train, generator, history, optimizer, bar, sync
        )
    finally:
        if bar is not None:
            bar.close()


def _epochs(
    masks: MaskSet, model: object, root: torch.nn.Module, mask: MaskConfig, task: Subtask,
    train: TrainConfig, generator: torch.Generator, history: list[dict[str, float]],
    optimizer: torch.optim.Optimizer, bar: object, sync: Sync,
) -> Subnetwork:  # fmt: skip
    growth = train.beta_max ** (1.0 / train.epochs)
    masks.eval()  # epoch 0: the starting point (every unit kept when init > 0)
    history.append(
        {"epoch": 0.0, "loss": math.nan, "task_loss": math.nan, "train_accuracy": math.nan,
         "density": masks.density(), "soft_density": float(masks.l0(normalize=True).detach()),
         "beta": masks.beta, **_held_out(model, task)}
    )  # fmt: skip
    for epoch in range(train.epochs):
        row = _epoch(masks, model, task, train, optimizer, generator, epoch, sync)
        masks.beta = min(masks.beta * growth, train.beta_max)
        row["beta"] = masks.beta
        if train.eval_every and ((epoch + 1) % train.eval_every == 0 or epoch + 1 == train.epochs):
            masks.eval()
            row.update(_held_out(model, task))
        history.append(row)
        if bar is not None:
            bar.update(1)  # type: ignore[attr-defined]
            bar.set_postfix(  # type: ignore[attr-defined]
                loss=f"{row['loss']:.3f}",
                acc=f"{row.get('test_accuracy', float('nan')):.2f}",
                density=f"{row['density']:.3f}",
            )
    masks.eval()
    result = Subnetwork(
        logits={k: v.detach().cpu().clone() for k, v in masks.logits.items()},
        config=mask,
        train_config=asdict(train),
        task=task.name,
        records=history,
        fingerprint=model_fingerprint(root),
        units={k: s.units for k, s in masks.sites.items() if s.units is not None},
        edges={k: s.edges for k, s in masks.sites.items() if s.edges},
    )
    return result


def finite_logits(task: Subtask, output: object, split: str, inputs: object = None) -> torch.Tensor:
    """The readout's logits, or a DataError if they hold NaN or infinite values."""
    logits = task.logits(output, inputs)
    if logits.is_floating_point() and not bool(torch.isfinite(logits).all()):
        raise DataError(
            f"subtask {task.name!r}: the model's logits on the {split} data contain NaN or "
            "infinite values (check the inputs and the model's weights)"
        )
    return logits


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
    sync: Sync,
) -> dict[str, float]:
    masks.train()
    total = task_total = correct = 0.0
    n = 0
    device = next(iter(masks.parameters())).device
    for step, (batch_x, batch_y) in enumerate(
        task.batches("train", shuffle=True, generator=generator)
    ):
        x, y, share = sync.shard(batch_x, batch_y)
        loss = task_loss = logits = None
        if len(y):
            with masks.step() as step_masks:
                logits = task.logits(forward(model, x), x)
                task_loss = task.compute_loss(logits, y)
                loss = task_loss + train.l0 * step_masks.l0(normalize=train.l0_mean)
        finite = loss is None or bool(torch.isfinite(loss))
        if not sync.all_true(finite, device):
            shown = "" if loss is None or finite else f"{float(loss.detach())} "
            detail = "" if task_loss is None else f" (task loss {float(task_loss.detach()):.4g})"
            raise TrainingError(
                f"the loss became {shown or 'non-finite '}at epoch {epoch}, step {step}"
                f"{detail}; try a lower lr (now {train.lr:g})"
            )
        optimizer.zero_grad(set_to_none=True)
        if loss is not None:
            (loss * share if sync.active else loss).backward()
        sync.sum_grads(masks.parameters())
        optimizer.step()
        if loss is not None and task_loss is not None and logits is not None:
            total += float(loss.detach()) * len(y)
            task_total += float(task_loss.detach()) * len(y)
            correct += task.compute_metric(logits.detach(), y) * len(y)
            n += len(y)
    total, task_total, correct, n_all = sync.sum([total, task_total, correct, float(n)], device)
    n_all = max(n_all, 1.0)
    return {
        "epoch": float(epoch + 1),
        "loss": total / n_all,
        "task_loss": task_total / n_all,
        "train_accuracy": correct / n_all,
        "density": masks.density(),
        "soft_density": float(masks.l0(normalize=True).detach()),
    }


def _progress(train: TrainConfig, name: str):
    if not train.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=train.epochs, desc=f"mask[{name}]", unit="epoch", leave=False)
