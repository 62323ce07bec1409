"""Data containers and the odd-one-out design shared by the vision and language tasks.

Every task is an odd-one-out among four candidates. Each candidate carries two binary
ground-truth properties ``(A, B)`` (for example ``(inside, contact)``); a task generator
first samples these properties for every candidate (:func:`sample_design`) and then
renders candidates that have exactly those properties.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Int
from torch import Tensor

from sc_interp.errors import ConfigError

N_CANDIDATES = 4
"""Candidates per odd-one-out example (chance accuracy = 1/4)."""

Part = Literal["a", "b", "compound"]
Rule = Literal["iff", "and"]
PARTS: tuple[Part, Part, Part] = ("a", "b", "compound")
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

    Example:
        >>> import torch
        >>> d = TaskData("toy", (torch.zeros(8, 4, 3), torch.zeros(8, dtype=torch.long)),
        ...              (torch.zeros(4, 4, 3), torch.zeros(4, dtype=torch.long)))
        >>> d.n_train, d.n_test
        (8, 4)
    """

    name: str
    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.train[1].shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return int(self.test[1].shape[0])

    def __repr__(self) -> str:
        return f"TaskData(name={self.name!r}, train={_describe(self.train)}, test={_describe(self.test)})"

    def split(self, split: str) -> tuple[Tensor, Tensor]:
        """Return ``(inputs, labels)`` of ``split`` (``"train"`` or ``"test"``)."""
        if split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
        return self.train if split == "train" else self.test


@dataclass(frozen=True, eq=False)
class CompoundTask:
    """A compound task: two subroutine datasets and the compound dataset.

    Attributes:
        name: Task name, e.g. ``"inside-contact"`` or ``"sva"``.
        a: Dataset where only property A decides (all four candidates share B).
        b: Dataset where only property B decides (all four candidates share A).
        compound: Dataset where the odd one out breaks the compound rule (needs A and B).
        kind: ``"vision"`` or ``"language"``.
        meta: Extra information: ``property_names``, ``rule``, ground-truth ``properties``
            (see :func:`properties`), ``vocab`` (language) or ``image_size`` (vision).

    Example:
        >>> from sc_interp.tasks import make_task
        >>> task = make_task("sva", n_train=8, n_test=4)
        >>> task.a.name, task.b.name, task.part("compound").n_test
        ('subject', 'verb', 4)
    """

    name: str
    a: TaskData
    b: TaskData
    compound: TaskData
    kind: Literal["vision", "language"]
    meta: dict[str, Any] = field(default_factory=dict)

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


def properties(task: CompoundTask, part: str = "compound", split: str = "test") -> Tensor:
    """Ground-truth binary properties of every candidate of one sub-dataset.

    Args:
        task: A task from :func:`~sc_interp.tasks.make_task`.
        part: ``"a"``, ``"b"``, ``"compound"`` or the sub-dataset's name.
        split: ``"train"`` or ``"test"``.

    Returns:
        Int64 tensor ``[N, 4, 2]``: ``[..., 0]`` is property A, ``[..., 1]`` property B,
        named by ``task.meta["property_names"]``.

    Example:
        >>> from sc_interp.tasks import make_task
        >>> task = make_task("anaphora", n_train=8, n_test=4)
        >>> properties(task, "a", "test").shape
        torch.Size([4, 4, 2])
    """
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    key = next(
        k
        for k, d in zip(PARTS, (task.a, task.b, task.compound), strict=True)
        if d is task.part(part)
    )
    return task.meta["properties"][key][split]


def balanced_labels(n: int, generator: torch.Generator) -> Int[Tensor, " n"]:
    """Labels ``0..3`` in random order, each position equally frequent up to rounding."""
    labels = torch.arange(n, dtype=torch.long) % N_CANDIDATES
    return labels[torch.randperm(n, generator=generator)]


def _bits(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.randint(0, 2, shape, generator=generator, dtype=torch.long)


# The six patterns of three regular candidates that use both satisfying tuples.
_MIXED = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]])


def sample_design(
    n: int, part: Part, generator: torch.Generator, rule: Rule = "iff"
) -> tuple[Int[Tensor, "n 4 2"], Int[Tensor, " n"]]:
    """Sample the binary properties ``(A, B)`` of all candidates and the odd one's position.

    * ``"a"``: the three regular candidates share a random A value, the odd one has the
      other; all four share one random B value.
    * ``"b"``: the same with A and B swapped.
    * ``"compound"``, rule ``"iff"`` (default): regular candidates satisfy ``A == B`` and
      use both ``(0, 0)`` and ``(1, 1)``; the odd one has ``A != B``. Neither property alone
      singles it out (for language tasks this is grammaticality).
      Rule ``"and"``: regular candidates are ``(1, 1)``; the odd one is ``(0, 1)`` or ``(1, 0)``.

    Args:
        n: Number of examples.
        part: ``"a"``, ``"b"`` or ``"compound"``.
        generator: Source of randomness.
        rule: Compound rule, ``"iff"`` or ``"and"``.

    Returns:
        ``(props, labels)``: props int64 ``[n, 4, 2]``, labels int64 ``[n]``.

    Example:
        >>> import torch
        >>> props, labels = sample_design(8, "a", torch.Generator().manual_seed(0))
        >>> bool((props[:, :, 1] == props[:, :1, 1]).all())  # B shared in the "a" set
        True
    """
    if part not in PARTS:
        raise ConfigError(f"part must be one of {list(PARTS)}, got {part!r}")
    if rule not in RULES:
        raise ConfigError(f"rule must be one of {list(RULES)}, got {rule!r}")
    labels = balanced_labels(n, generator)
    rows = torch.arange(n)
    props = torch.zeros(n, N_CANDIDATES, 2, dtype=torch.long)
    if part in ("a", "b"):
        decide, shared = (0, 1) if part == "a" else (1, 0)
        regular = _bits((n,), generator)
        props[:, :, decide] = regular[:, None]
        props[rows, labels, decide] = 1 - regular
        props[:, :, shared] = _bits((n,), generator)[:, None]
        return props, labels
    odd_a = _bits((n,), generator)
    if rule == "and":
        props[:] = 1
    else:
        pattern = _MIXED[torch.randint(0, len(_MIXED), (n,), generator=generator)]
        # Fill the three non-odd slots in order with the pattern's values.
        slot = torch.arange(N_CANDIDATES)[None, :]
        order = slot - (slot > labels[:, None]).long()
        values = pattern.gather(1, order.clamp(max=2))
        props[:, :, 0] = values
        props[:, :, 1] = values
    props[rows, labels, 0] = odd_a
    props[rows, labels, 1] = 1 - odd_a
    return props, labels


def assemble_parts(
    names: tuple[str, str, str],
    n_train: int,
    n_test: int,
    generator: torch.Generator,
    rule: Rule,
    render: Callable[[Tensor, int], Tensor],
) -> tuple[dict[str, TaskData], dict[str, dict[str, Tensor]]]:
    """Sample the A, B and compound sub-datasets of a task.

    Args:
        names: the names of the A, B and compound parts.
        render: ``(properties [n * 4, 2], n) -> inputs [n, 4, ...]`` draws the candidates.

    Returns:
        The three :class:`TaskData` keyed by part, and the ground-truth properties
        ``[n, 4, 2]`` keyed by part and split.
    """
    datasets: dict[str, TaskData] = {}
    truth: dict[str, dict[str, Tensor]] = {}
    for part, part_name in zip(PARTS, names, strict=True):
        splits: dict[str, tuple[Tensor, Tensor]] = {}
        truth[part] = {}
        for split, n in (("train", n_train), ("test", n_test)):
            props, labels = sample_design(n, part, generator, rule)
            splits[split] = (render(props.reshape(-1, 2), n), labels)
            truth[part][split] = props
        datasets[part] = TaskData(part_name, splits["train"], splits["test"])
    return datasets, truth
