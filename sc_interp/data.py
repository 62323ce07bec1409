"""Subtasks: named data sets with a readout, a loss and a metric.

A :class:`Subtask` is what a mask is learned for ("subject number", "inside") and what
accuracies are measured on. Data may be ``(inputs, labels)`` tensors, a torch
``Dataset``/``DataLoader``, a callable that returns an iterable of batches, or a
:class:`~sc_interp.tasks.TaskData` (its split of the same name is used). Prompt subtasks
(:meth:`Subtask.from_prompts`) hold a :class:`~sc_interp.prompts.PromptBatch` as
inputs: each batch carries its prompts' readout positions and answer candidates.
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
from sc_interp._prompt_batch import PromptBatch, cat_prompts
from sc_interp._run import guarded
from sc_interp.errors import ConfigError, DataError

Batch = tuple[Any, Tensor]
Data = tuple[Tensor, Tensor] | Dataset | DataLoader | Callable[[], Iterable[Batch]]
SPLITS = ("train", "test", "val")


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
        train: training data: ``(inputs, labels)`` tensors, a Dataset, a DataLoader, a
            callable returning an iterable of ``(inputs, labels)`` batches, or a
            :class:`~sc_interp.tasks.TaskData` (its ``train`` split).
        test: held-out data in the same forms (a TaskData gives its ``test`` split). It may
            come from another distribution than ``train``: the paper trains a mask on a
            "+A/-B" set and scores it on a compound-task partition.
        chance: accuracy of guessing (0.25 for 4-way odd-one-out), in (0, 1).
        readout: model output -> ``[batch, classes]`` logits (default
            :func:`default_readout`; prompt inputs read themselves out).
        loss: ``(logits, labels) -> scalar`` (default cross-entropy).
        metric: ``(logits, labels) -> float`` or a ``[batch]`` tensor of per-example scores
            (default accuracy). :func:`sc_interp.test_compositionality` needs the per-example
            form, since it resamples test examples.
        batch_size: batch size used for tensor data and Datasets.
        val: optional validation data in the same forms (a TaskData gives its ``val``
            split). :func:`sc_interp.test_compositionality` judges ``solves_target`` on it
            when present, and :func:`sc_interp.train_masks` records its accuracy per epoch:
            choose hyper-parameters on it, never on the verdict.
        source: where the data comes from, for reports: one description, or one per split
            (``{"train": "+subject/-verb set", "test": "compound partition ..."}``).
            TaskData inputs describe themselves.

    Example:
        >>> x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
        >>> Subtask("toy", train=(x, y), test=(x, y), chance=0.5).name
        'toy'
        >>> Subtask("toy", (x, y), (x, y), 0.5, source={"test": "held-out toys"}).describe("test")
        'held-out toys'
    """

    name: str
    train: Any
    test: Any
    chance: float = 0.25
    readout: Callable[[Any], Tensor] | None = None
    loss: Callable[[Tensor, Tensor], Tensor] | None = None
    metric: Callable[[Tensor, Tensor], float] | None = None
    batch_size: int = 64
    val: Any = None
    source: str | dict[str, str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"name={self.name!r}: a subtask needs a non-empty name (str)")
        self.chance = _validate.number("chance", self.chance, above=0, below=1, error=DataError)
        self.batch_size = _validate.integer("batch_size", self.batch_size, minimum=1)
        for fn in ("readout", "loss", "metric"):
            _validate.optional_callable(fn, getattr(self, fn))
        if self.source is not None and not isinstance(self.source, str | dict):
            raise ConfigError(
                f"source={self.source!r}: must be a str, a {{split: description}} dict or None"
            )
        self._take_task_data()
        for split in ("train", "test"):
            _check(getattr(self, split), f"{self.name}.{split}")
        if self.val is not None:
            _check(self.val, f"{self.name}.val")

    def _take_task_data(self) -> None:
        """Replace TaskData arguments by their split and remember their descriptions."""
        from sc_interp.tasks._base import TaskData

        given = self.source
        sources = dict(given) if isinstance(given, dict) else {}
        if isinstance(given, str):
            sources = {split: f"{given}, {split} split" for split in SPLITS}
        for split in SPLITS:
            data = getattr(self, split)
            if not isinstance(data, TaskData):
                continue
            if split == "val" and data.val is None:
                raise DataError(
                    f"subtask {self.name!r}: val={data.name!r} has no val split; generate it "
                    "with one (e.g. make_task(..., n_val=200)) or pass val=None"
                )
            setattr(self, split, data.split(split))
            sources.setdefault(split, data.describe(split))
        unknown = sorted(set(sources) - set(SPLITS))
        if unknown:
            raise ConfigError(f"source names unknown split(s) {unknown}; allowed: {list(SPLITS)}")
        self.source = sources or None

    def describe(self, split: str) -> str:
        """Where ``split``'s data comes from (its ``source``, or the subtask and split names)."""
        if isinstance(self.source, dict) and split in self.source:
            return self.source[split]
        return f"{self.name}, {split} split"

    def has_split(self, split: str) -> bool:
        """Whether the subtask has data for ``split`` (``val`` is optional)."""
        return split in SPLITS and getattr(self, split) is not None

    @classmethod
    def from_prompts(cls, name: str, model: object, train: Any, test: Any, **kw: Any) -> Subtask:
        """A next-token subtask for a language model; see :func:`sc_interp.prompts.from_prompts`."""
        from sc_interp.prompts import from_prompts

        return from_prompts(name, model, train, test, **kw)

    def batches(
        self,
        split: str = "train",
        *,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[Batch]:
        """Iterate over ``(inputs, labels)`` batches of ``split`` (``train``, ``test``, ``val``)."""
        if split not in SPLITS:
            raise ConfigError(f"split must be 'train', 'test' or 'val', got {split!r}")
        if not self.has_split(split):
            raise ConfigError(f"subtask {self.name!r} has no {split} data")
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

    def logits(self, output: Any, inputs: Any = None) -> Tensor:
        """Apply the readout; prompt inputs (a PromptBatch) read their own positions."""
        if self.readout is None and isinstance(inputs, PromptBatch):
            return guarded(
                f"subtask {self.name!r}: reading the prompts' answers", inputs.read, output
            )
        return guarded(
            f"subtask {self.name!r}: the readout", self.readout or default_readout, output
        )

    def logit_diffs(self, logits: Tensor, labels: Tensor) -> Tensor | None:
        """Per-example logit of the label minus the best other class's (``None`` if labels
        are not class ids of ``logits``, e.g. with a custom loss).

        For a prompt subtask this is the answer's logit minus the best wrong token's.
        """
        labels = labels.to(logits.device)
        k = logits.shape[-1] if logits.ndim == 2 else 0
        if k < 2 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            return None
        if labels.shape != logits.shape[:1] or int(labels.min()) < 0 or int(labels.max()) >= k:
            return None
        logits = logits.detach().float()
        own = logits.gather(1, labels[:, None])[:, 0]
        others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
        return own - others

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
        if (
            len(data) != 2
            or not isinstance(data[0], Tensor | PromptBatch)
            or not isinstance(data[1], Tensor)
        ):
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
        if isinstance(x, Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
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


def cat_inputs(inputs: list[Any]) -> Any:
    """Concatenate input batches: tensors with ``torch.cat``, prompts padded to one length."""
    if inputs and all(isinstance(x, PromptBatch) for x in inputs):
        return cat_prompts(inputs)
    return torch.cat(inputs)


def as_subtask(data: Any, chance: float | None = None) -> Subtask:
    """A Subtask as it is, or one made from a :class:`~sc_interp.tasks.TaskData`.

    A TaskData gives its train, test and (if present) val splits; chance is one over the
    number of candidates.
    """
    if isinstance(data, Subtask):
        return data
    from sc_interp.tasks._base import TaskData

    if not isinstance(data, TaskData):
        raise ConfigError(
            f"expected a Subtask or a TaskData, got {type(data).__name__}; wrap (inputs, "
            "labels) data in sc.Subtask(name, train=..., test=..., chance=...)"
        )
    k = data.n_candidates
    return Subtask(
        data.name, train=data, test=data, val=data if data.val is not None else None,
        chance=chance if chance is not None else 1.0 / k,
    )  # fmt: skip


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
