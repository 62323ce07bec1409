"""Subtasks: named data sets with a readout, a loss and a metric.

A :class:`Subtask` is what a mask is learned for ("subject number", "inside") and what
accuracies are measured on. Data may be ``(inputs, labels)`` tensors, a torch
``Dataset``/``DataLoader``, or a callable that returns an iterable of batches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from sc_interp import _validate
from sc_interp._run import guarded
from sc_interp.errors import ConfigError, DataError

Batch = tuple[Tensor, Tensor]
Data = tuple[Tensor, Tensor] | Dataset | DataLoader | Callable[[], Iterable[Batch]]


def default_readout(output: Any) -> Float[Tensor, "batch classes"]:
    """Class logits from a model's output.

    Tensors ``[batch, classes]`` pass through; sequence outputs ``[batch, pos, classes]``
    give their last position; tuples give their first element; objects with ``.logits``
    (Hugging Face outputs) give that.
    """
    if hasattr(output, "logits") and isinstance(output.logits, Tensor):
        output = output.logits
    if isinstance(output, tuple | list):
        output = output[0]
    if not isinstance(output, Tensor):
        raise DataError(
            f"the model returned {type(output).__name__}; give the Subtask a readout that "
            "turns it into [batch, classes] logits"
        )
    if output.ndim == 3:
        return output[:, -1, :]
    if output.ndim != 2:
        raise DataError(
            f"cannot read class logits from an output of shape {tuple(output.shape)}; "
            "give the Subtask a readout returning [batch, classes]"
        )
    return output


def accuracy(logits: Float[Tensor, "batch classes"], labels: Int[Tensor, " batch"]) -> float:
    """Fraction of rows whose arg-max is the label."""
    return float((logits.argmax(-1) == labels).float().mean())


@dataclass
class Subtask:
    """A named subtask: train/test data, chance level, readout, loss and metric.

    Args:
        name: what the subtask is ("subject", "inside").
        train: training data: ``(inputs, labels)`` tensors, a Dataset, a DataLoader, or a
            callable returning an iterable of ``(inputs, labels)`` batches.
        test: held-out data in the same forms.
        chance: accuracy of guessing (0.25 for 4-way odd-one-out), in (0, 1).
        readout: model output -> ``[batch, classes]`` logits (default
            :func:`default_readout`).
        loss: ``(logits, labels) -> scalar`` (default cross-entropy).
        metric: ``(logits, labels) -> float`` or a ``[batch]`` tensor of per-example scores
            (default accuracy). :func:`sc_interp.test_compositionality` needs the per-example
            form, since it resamples test examples.
        batch_size: batch size used for tensor data and Datasets.

    Example:
        >>> x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
        >>> Subtask("toy", train=(x, y), test=(x, y), chance=0.5).name
        'toy'
    """

    name: str
    train: Any
    test: Any
    chance: float = 0.25
    readout: Callable[[Any], Tensor] | None = None
    loss: Callable[[Tensor, Tensor], Tensor] | None = None
    metric: Callable[[Tensor, Tensor], float] | None = None
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name={self.name!r}: a subtask needs a non-empty name (str)")
        self.chance = _validate.number("chance", self.chance, above=0, below=1, error=DataError)
        self.batch_size = _validate.integer("batch_size", self.batch_size, minimum=1)
        for fn in ("readout", "loss", "metric"):
            _validate.optional_callable(fn, getattr(self, fn))
        for split in ("train", "test"):
            _check(getattr(self, split), f"{self.name}.{split}")

    def batches(
        self,
        split: str = "train",
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[Batch]:
        """Iterate over ``(inputs, labels)`` batches of ``split``."""
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        data = getattr(self, split)
        yielded = False
        batches = _iterate(data, self.batch_size, shuffle, generator)
        what = f"subtask {self.name!r}: reading the {split} data"
        while True:
            batch: Batch | None = guarded(what, _next_or_none, batches)
            if batch is None:
                break
            yielded = True
            yield batch
        if not yielded:
            raise DataError(f"subtask {self.name!r}: the {split} data yielded no batch")

    def logits(self, output: Any) -> Tensor:
        """Apply the readout."""
        return guarded(
            f"subtask {self.name!r}: the readout", self.readout or default_readout, output
        )

    def compute_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Apply the loss, checking labels against the number of classes."""
        labels = labels.to(logits.device)
        if self.loss is None:
            check_labels(labels, logits.shape[-1], self.name)
            return F.cross_entropy(logits.float(), labels)
        return guarded(f"subtask {self.name!r}: the loss", self.loss, logits, labels)

    def compute_metric(self, logits: Tensor, labels: Tensor) -> float:
        """Apply the metric (default accuracy); a per-example metric is averaged."""
        labels = labels.to(logits.device)
        if self.metric is None:
            check_labels(labels, logits.shape[-1], self.name)
            return accuracy(logits, labels)
        value = guarded(f"subtask {self.name!r}: the metric", self.metric, logits, labels)
        return float(value.float().mean()) if isinstance(value, Tensor) else float(value)

    def example_scores(
        self, logits: Float[Tensor, "batch classes"], labels: Int[Tensor, " batch"]
    ) -> Float[Tensor, " batch"]:
        """Per-example scores: 0/1 correctness, or the metric's per-example values.

        The compositionality analysis resamples test examples, so it needs one score per
        example: a custom ``metric`` must return a ``[batch]`` tensor for it.
        """
        labels = labels.to(logits.device)
        if self.metric is None:
            check_labels(labels, logits.shape[-1], self.name)
            return (logits.argmax(-1) == labels).float()
        value = guarded(f"subtask {self.name!r}: the metric", self.metric, logits, labels)
        if not isinstance(value, Tensor) or value.shape != labels.shape:
            raise ConfigError(
                f"subtask {self.name!r}: the analysis needs a score per example, but its metric "
                f"returned {type(value).__name__}"
                + (f" of shape {tuple(value.shape)}" if isinstance(value, Tensor) else "")
                + f"; give a metric returning a [batch] tensor (shape {tuple(labels.shape)}, "
                "e.g. per-example 0/1 correctness), or metric=None for accuracy"
            )
        return value.detach().float()


def check_labels(labels: Tensor, n_classes: int, name: str) -> None:
    """Raise :class:`DataError` unless labels are integers in ``[0, n_classes)``."""
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DataError(f"subtask {name!r}: labels must be integer class ids, got {labels.dtype}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise DataError(
            f"subtask {name!r}: labels must lie in [0, {n_classes}) (the readout gives "
            f"{n_classes} classes); found values {int(labels.min())}..{int(labels.max())}"
        )


def _check(data: Any, where: str) -> None:
    if isinstance(data, tuple | list):
        if len(data) != 2 or not all(isinstance(t, Tensor) for t in data):
            raise DataError(
                f"{where}: expected (inputs, labels) tensors, got {type(data).__name__}"
            )
        x, y = data
        if len(x) == 0:
            raise DataError(f"{where}: the data is empty")
        if len(x) != len(y):
            raise DataError(f"{where}: {len(x)} inputs but {len(y)} labels")
        if y.ndim != 1:
            raise DataError(f"{where}: labels must be 1-D [batch], got shape {tuple(y.shape)}")
        if y.dtype.is_floating_point:
            raise DataError(f"{where}: labels must be integer class ids, got {y.dtype}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            bad = (
                int((~torch.isfinite(x)).flatten(1).any(1).sum())
                if x.ndim > 1
                else int((~torch.isfinite(x)).sum())
            )
            raise DataError(f"{where}: {bad} of {len(x)} inputs contain NaN or infinite values")
        return
    if isinstance(data, Dataset) and hasattr(data, "__len__") and len(data) == 0:  # type: ignore[arg-type]
        raise DataError(f"{where}: the data is empty")
    if not isinstance(data, Dataset | DataLoader) and not callable(data):
        raise DataError(
            f"{where}: unsupported data {type(data).__name__}; allowed: (inputs, labels) "
            "tensors, a torch Dataset or DataLoader, or a callable returning batches"
        )


def _iterate(
    data: Any, batch_size: int, shuffle: bool, generator: torch.Generator | None
) -> Iterator[Batch]:
    if isinstance(data, tuple | list):
        x, y = data
        order = torch.randperm(len(x), generator=generator) if shuffle else torch.arange(len(x))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]
        return
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)
    iterable = data if isinstance(data, DataLoader) else data()
    for batch in iterable:
        if not isinstance(batch, tuple | list) or len(batch) != 2:
            raise DataError(f"each batch must be (inputs, labels), got {type(batch).__name__}")
        yield batch[0], batch[1]


def n_examples(task: Subtask, split: str) -> int:
    """Number of examples in ``split`` (counted by iterating when it is not a tensor pair)."""
    data = getattr(task, split)
    if isinstance(data, tuple | list):
        return len(data[0])
    return sum(len(y) for _, y in task.batches(split))


def floor_at_chance(value: float, chance: float) -> float:
    """``max(value, chance)``: accuracies below chance carry no information (the paper's rule)."""
    return value if math.isnan(value) else max(value, chance)


def _next_or_none(batches: Iterator[Batch]) -> Batch | None:
    return next(batches, None)
