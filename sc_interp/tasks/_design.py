"""The odd-one-out design: which properties each candidate has, and sampling whole datasets.

A task generator first samples the binary properties ``(A, B)`` of every candidate
(:func:`sample_design`) and then renders candidates that have exactly those properties
(:func:`sample_part` with the task's ``render``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Int
from torch import Tensor

from sc_interp.errors import ConfigError
from sc_interp.tasks._base import (
    N_CANDIDATES,
    PARTITIONS,
    PARTS,
    RULES,
    Design,
    Rule,
    TaskData,
)

Render = Callable[[Tensor, int, torch.Generator], Tensor]
"""``(properties [n * 4, 2], n, generator) -> inputs [n, 4, ...]`` draws the candidates."""


@dataclass(frozen=True)
class DesignSpec:
    """How a task's sets are built (see :func:`sample_design`)."""

    rule: Rule = "iff"
    base: int = 1
    vary_other: bool = False


def balanced_labels(n: int, generator: torch.Generator) -> Int[Tensor, " n"]:
    """Labels ``0..3`` in random order, each position equally frequent up to rounding."""
    labels = torch.arange(n, dtype=torch.long) % N_CANDIDATES
    return labels[torch.randperm(n, generator=generator)]


def _bits(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.randint(0, 2, shape, generator=generator, dtype=torch.long)


# The six patterns of three regular candidates that use both satisfying tuples.
_MIXED = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1], [1, 0, 1], [1, 1, 0]])


def _regular_pattern(n: int, labels: Tensor, generator: torch.Generator) -> Tensor:
    """``[n, 4]`` values whose three non-odd slots use both 0 and 1 (odd slot: any)."""
    pattern = _MIXED[torch.randint(0, len(_MIXED), (n,), generator=generator)]
    # Fill the three non-odd slots in order with the pattern's values.
    slot = torch.arange(N_CANDIDATES)[None, :]
    order = slot - (slot > labels[:, None]).long()
    return pattern.gather(1, order.clamp(max=2))


def sample_design(
    n: int,
    part: Design,
    generator: torch.Generator,
    rule: Rule = "iff",
    *,
    base: int = 1,
    vary_other: bool = False,
) -> tuple[Int[Tensor, "n 4 2"], Int[Tensor, " n"]]:
    """Sample the binary properties ``(A, B)`` of all candidates and the odd one's position.

    * ``"a"``: the three regular candidates share an A value, the odd one has the other.
      With ``vary_other=False`` all four share one random B value and the regular A value
      is random. With ``vary_other=True`` (the paper's mask-training sets) the regular
      candidates use both B values, so B cannot single out the odd one, and the odd one
      has ``B =`` the regular A value; under rule ``"and"`` the regular A value is ``base``
      (the odd one is then ``(1 - base, base)``), under ``"iff"`` it is random.
    * ``"b"``: the same with A and B swapped.
    * ``"compound"``, rule ``"iff"`` (default): regular candidates satisfy ``A == B`` and
      use both ``(0, 0)`` and ``(1, 1)``; the odd one has ``A != B``. Neither property alone
      singles it out (for language tasks this is grammaticality).
      Rule ``"and"``: regular candidates are ``(base, base)``; the odd one flips A or B
      (``(1 - base, base)`` or ``(base, 1 - base)``, half each on average). The paper's
      singular experiment is ``base=0``, its plural one ``base=1``.
    * ``"partition-a"``: the compound set's part where only A decides: regular candidates
      are ``(r, r)``, the odd one ``(1 - r, r)``, with ``r = base`` under ``"and"`` and
      random under ``"iff"``. ``"partition-b"``: the odd one is ``(r, 1 - r)``.

    Args:
        n: Number of examples.
        part: ``"a"``, ``"b"``, ``"compound"``, ``"partition-a"`` or ``"partition-b"``.
        generator: Source of randomness.
        rule: Compound rule, ``"iff"`` or ``"and"``.
        base: The regular value under rule ``"and"`` (0 or 1).
        vary_other: Let the other property vary among the regular candidates of the
            ``"a"``/``"b"`` sets (the paper's design).

    Returns:
        ``(props, labels)``: props int64 ``[n, 4, 2]``, labels int64 ``[n]``.

    Example:
        >>> import torch
        >>> props, labels = sample_design(8, "a", torch.Generator().manual_seed(0))
        >>> bool((props[:, :, 1] == props[:, :1, 1]).all())  # B shared in the "a" set
        True
        >>> props, labels = sample_design(8, "partition-b", torch.Generator(), "and", base=0)
        >>> props[0, labels[0]].tolist()
        [0, 1]
    """
    if part not in (*PARTS, *PARTITIONS):
        raise ConfigError(f"part must be one of {[*PARTS, *PARTITIONS]}, got {part!r}")
    if rule not in RULES:
        raise ConfigError(f"rule must be one of {list(RULES)}, got {rule!r}")
    if base not in (0, 1):
        raise ConfigError(f"base must be 0 or 1, got {base!r}")
    labels = balanced_labels(n, generator)
    rows = torch.arange(n)
    props = torch.zeros(n, N_CANDIDATES, 2, dtype=torch.long)
    if part in ("a", "b") and not vary_other:  # the simple design: both values random
        decide, other = (0, 1) if part == "a" else (1, 0)
        regular = _bits((n,), generator)
        props[:, :, decide] = regular[:, None]
        props[rows, labels, decide] = 1 - regular
        props[:, :, other] = _bits((n,), generator)[:, None]
        return props, labels
    if part != "compound":
        decide, other = (0, 1) if part in ("a", "partition-a") else (1, 0)
        regular = torch.full((n,), base) if rule == "and" else _bits((n,), generator)
        props[:, :, decide] = regular[:, None]
        props[rows, labels, decide] = 1 - regular
        if part in PARTITIONS:
            props[:, :, other] = regular[:, None]
        else:  # the paper's sets: the other property varies among the regular candidates
            props[:, :, other] = _regular_pattern(n, labels, generator)
            props[rows, labels, other] = regular
        return props, labels
    odd_a = _bits((n,), generator)
    if rule == "and":
        props[:] = base
    else:
        values = _regular_pattern(n, labels, generator)
        props[:, :, 0] = values
        props[:, :, 1] = values
    props[rows, labels, 0] = odd_a
    props[rows, labels, 1] = 1 - odd_a
    return props, labels


def sample_part(
    part: Design,
    data: tuple[str, str],
    sizes: dict[str, int],
    generator: torch.Generator,
    spec: DesignSpec,
    render: Render,
) -> tuple[TaskData, dict[str, Tensor]]:
    """Sample one dataset (train, test and, if ``sizes["val"]``, val) of ``part``.

    Args:
        part: which design (see :func:`sample_design`).
        data: the dataset's name and its description (its ``source``).
        sizes: examples per split.
        render: draws the candidates of given properties.

    Returns:
        The :class:`TaskData` and its ground-truth properties ``[n, 4, 2]`` per split.
    """
    splits: dict[str, tuple[Tensor, Tensor]] = {}
    truth: dict[str, Tensor] = {}
    for split in ("train", "test", "val"):
        n = sizes.get(split, 0)
        if split == "val" and not n:
            continue
        props, labels = sample_design(
            n, part, generator, spec.rule, base=spec.base, vary_other=spec.vary_other
        )
        splits[split] = (render(props.reshape(-1, 2), n, generator), labels)
        truth[split] = props
    name, source = data
    return TaskData(name, splits["train"], splits["test"], splits.get("val"), source), truth


def assemble_parts(
    data: tuple[tuple[str, str], tuple[str, str], tuple[str, str]],
    sizes: dict[str, int],
    generator: torch.Generator,
    spec: DesignSpec,
    render: Render,
) -> tuple[dict[str, TaskData], dict[str, dict[str, Tensor]]]:
    """Sample the A, B and compound sub-datasets of a task, in this order.

    Args:
        data: name and description of the A, B and compound parts.
        sizes: examples per split.

    Returns:
        The three :class:`TaskData` keyed by part, and the ground-truth properties
        ``[n, 4, 2]`` keyed by part and split.
    """
    datasets: dict[str, TaskData] = {}
    truth: dict[str, dict[str, Tensor]] = {}
    for part, named in zip(PARTS, data, strict=True):
        datasets[part], truth[part] = sample_part(part, named, sizes, generator, spec, render)
    return datasets, truth


def describe_parts(names: tuple[str, str], spec: DesignSpec, number: str = "") -> dict[str, str]:
    """Descriptions of a task's sets, keyed ``a``, ``b``, ``compound``, ``partition-a/-b``."""
    a, b = names
    rule = f"{spec.rule} rule" + (f", {number} experiment" if number else "")
    return {
        "a": f"+{a}/-{b} set",
        "b": f"-{a}/+{b} set",
        "compound": f"compound set ({rule})",
        "partition-a": f"compound partition where only {a} decides",
        "partition-b": f"compound partition where only {b} decides",
    }
