"""Data containers shared by the vision and language tasks: TaskData and CompoundTask.

Every task is an odd-one-out among four candidates. Each candidate carries two binary
ground-truth properties ``(A, B)`` (for example ``(inside, contact)``); how they are
sampled is in :mod:`sc_interp.tasks._design`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor

from sc_interp.errors import ConfigError

N_CANDIDATES = 4
"""Candidates per odd-one-out example (chance accuracy = 1/4)."""

Part = Literal["a", "b", "compound"]
Design = Literal["a", "b", "compound", "partition-a", "partition-b"]
Rule = Literal["iff", "and"]
PARTS: tuple[Part, Part, Part] = ("a", "b", "compound")
PARTITIONS = ("partition-a", "partition-b")
RULES: tuple[Rule, Rule] = ("iff", "and")


def _describe(pair: tuple[Tensor, Tensor]) -> str:
    inputs = pair[0]
    return (
        f"{inputs.shape[0]} x {tuple(inputs.shape[1:])} {str(inputs.dtype).replace('torch.', '')}"
    )


@dataclass(frozen=True, eq=False)
class TaskData:
    """One odd-one-out dataset (a subroutine's "+A/-B" set, or the compound set).

    Attributes:
        name: What decides the odd one out, e.g. ``"inside"``, ``"contact"``, ``"compound"``.
        train: ``(inputs, labels)``; inputs ``[N, 4, ...candidate]``, labels ``[N]`` int64
            in ``0..3`` (index of the odd one out, balanced over positions).
        test: Held-out ``(inputs, labels)`` of the same form.
        val: Optional validation ``(inputs, labels)`` (for ``solves_target`` and choosing
            hyper-parameters).
        source: What the data is, for reports (``"+subject/-verb set"``).
        meta: Extra information (``vocab``, ``max_len``, ``pad_id`` for sentences).

    Example:
        >>> import torch
        >>> d = TaskData("toy", (torch.zeros(8, 4, 3), torch.zeros(8, dtype=torch.long)),
        ...              (torch.zeros(4, 4, 3), torch.zeros(4, dtype=torch.long)))
        >>> d.n_train, d.n_test, d.n_val, d.describe("test")
        (8, 4, 0, 'toy, test split')
    """

    name: str
    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    val: tuple[Tensor, Tensor] | None = None
    source: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.train[1].shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return int(self.test[1].shape[0])

    @property
    def n_val(self) -> int:
        """Number of validation examples (0 without a val split)."""
        return 0 if self.val is None else int(self.val[1].shape[0])

    @property
    def n_candidates(self) -> int:
        """Candidates per example (chance accuracy is one over this)."""
        return int(self.train[0].shape[1])

    def __repr__(self) -> str:
        val = f", val={_describe(self.val)}" if self.val is not None else ""
        return (
            f"TaskData(name={self.name!r}, train={_describe(self.train)}, "
            f"test={_describe(self.test)}{val})"
        )

    def split(self, split: str) -> tuple[Tensor, Tensor]:
        """Return ``(inputs, labels)`` of ``split`` (``"train"``, ``"test"`` or ``"val"``)."""
        if split not in ("train", "test", "val"):
            raise ConfigError(f"split must be 'train', 'test' or 'val', got {split!r}")
        data = {"train": self.train, "test": self.test, "val": self.val}[split]
        if data is None:
            raise ConfigError(f"{self.name!r} has no {split} split")
        return data

    def describe(self, split: str) -> str:
        """Where ``split`` comes from, e.g. ``"+subject/-verb set, test split"``."""
        return f"{self.source or self.name}, {split} split"


@dataclass(frozen=True, eq=False)
class CompoundTask:
    """A compound task: two subroutine datasets and the compound dataset.

    Attributes:
        name: Task name, e.g. ``"inside-contact"`` or ``"sva"``.
        a: Dataset where only property A decides (the "+A/-B" set).
        b: Dataset where only property B decides (the "-A/+B" set).
        compound: Dataset where the odd one out breaks the compound rule (needs A and B).
        kind: ``"vision"`` or ``"language"``.
        meta: Extra information: ``property_names``, ``rule``, ground-truth ``properties``
            (see :func:`properties`), ``vocab`` (language) or ``image_size`` (vision).
        sampler: draws a further dataset of the task's design (used by :meth:`partition`):
            ``(design, sizes, generator) -> (TaskData, properties per split)``.

    Example:
        >>> from sc_interp.tasks import make_task
        >>> task = make_task("sva", n_train=8, n_test=4)
        >>> task.a.name, task.b.name, task.part("compound").n_test
        ('subject', 'verb', 4)
        >>> task.partition("subject").source
        'compound partition where only subject decides'
    """

    name: str
    a: TaskData
    b: TaskData
    compound: TaskData
    kind: Literal["vision", "language"]
    meta: dict[str, Any] = field(default_factory=dict)
    sampler: Callable[..., tuple[TaskData, dict[str, Tensor]]] | None = field(
        default=None, repr=False
    )
    _partitions: dict[str, TaskData] = field(default_factory=dict, init=False, repr=False)

    def __repr__(self) -> str:
        parts = ",\n  ".join(repr(d) for d in (self.a, self.b, self.compound))
        return f"CompoundTask(name={self.name!r}, kind={self.kind!r}, rule={self.meta.get('rule')!r},\n  {parts})"

    def part(self, part: str) -> TaskData:
        """Return a sub-dataset by key (``"a"``, ``"b"``, ``"compound"``) or by its name."""
        for key, data in zip(PARTS, (self.a, self.b, self.compound), strict=True):
            if part in (key, data.name):
                return data
        names = [self.a.name, self.b.name, self.compound.name]
        raise ConfigError(
            f"task {self.name!r} has no part {part!r}; use one of {list(PARTS)} or {names}"
        )

    def partition(self, part: str) -> TaskData:
        """The compound task's partition where only A (``"a"``) or only B (``"b"``) decides.

        The regular candidates satisfy the compound rule alike and the odd one breaks it in
        the named property only: the paper scores masks trained on the "+A/-B" sets on
        these. Generated on first use (seeded from the task's seed, so always the same) with
        ``meta["partition_sizes"]`` examples per split: test and val as the task's, and, as
        in the paper, no training examples (the train split is empty). Also accepts the
        property's name or ``"partition-a"``.
        """
        import torch

        keys = {"a": "a", "b": "b", self.a.name: "a", self.b.name: "b"}
        keys.update({f"partition-{k}": k for k in ("a", "b")})
        if part not in keys:
            raise ConfigError(
                f"task {self.name!r} has partitions 'a' ({self.a.name}) and 'b' "
                f"({self.b.name}); got {part!r}"
            )
        key = f"partition-{keys[part]}"
        if key not in self._partitions:
            if self.sampler is None:
                raise ConfigError(f"task {self.name!r} was built without a sampler for partitions")
            seed = int(self.meta.get("seed", 0)) + 1_000_003 * (1 + PARTITIONS.index(key))
            default = {"train": 0, "test": self.a.n_test, "val": self.a.n_val}
            sizes = self.meta.get("partition_sizes", default)
            data, truth = self.sampler(key, sizes, torch.Generator().manual_seed(seed))
            self.meta.setdefault("properties", {})[key] = truth
            self._partitions[key] = data
        return self._partitions[key]


def properties(task: CompoundTask, part: str = "compound", split: str = "test") -> Tensor:
    """Ground-truth binary properties of every candidate of one sub-dataset.

    Args:
        task: A task from :func:`~sc_interp.tasks.make_task`.
        part: ``"a"``, ``"b"``, ``"compound"``, the sub-dataset's name, or
            ``"partition-a"``/``"partition-b"``.
        split: ``"train"``, ``"test"`` or ``"val"``.

    Returns:
        Int64 tensor ``[N, 4, 2]``: ``[..., 0]`` is property A, ``[..., 1]`` property B,
        named by ``task.meta["property_names"]``.

    Example:
        >>> from sc_interp.tasks import make_task
        >>> task = make_task("anaphora", n_train=8, n_test=4)
        >>> properties(task, "a", "test").shape
        torch.Size([4, 4, 2])
    """
    if split not in ("train", "test", "val"):
        raise ConfigError(f"split must be 'train', 'test' or 'val', got {split!r}")
    if part in PARTITIONS:
        task.partition(part)
        key = part
    else:
        key = next(
            k
            for k, d in zip(PARTS, (task.a, task.b, task.compound), strict=True)
            if d is task.part(part)
        )
    truth = task.meta["properties"][key]
    if split not in truth:
        raise ConfigError(f"task {task.name!r} part {part!r} has no {split} split")
    return truth[split]
