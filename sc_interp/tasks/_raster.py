"""Batched rasterisation and constrained placement of binary shapes (torch only).

Shapes are star-convex regions (regular polygons, discs, wobbly blobs) rasterised on a
pixel grid. A shape has a *filled* region ``F``; an outline shape is drawn as its ring
``F & ~erode8(F)``, so its interior ``erode8(F)`` is never 8-adjacent to the outside.
Placement picks, for every image of a batch at once, a uniformly random position where a
stamp avoids a ``forbidden`` map and (optionally) overlaps a ``touch`` map.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

CIRCLE, BLOB = 0, 1
"""Shape kinds besides polygons; a polygon kind ``m >= 3`` has ``m`` sides."""

_HARMONICS = 3
_BINS = 720


def uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> Tensor:
    """Uniform floats in ``[low, high)``."""
    return low + (high - low) * torch.rand(shape, generator=generator)


def choice(options: list[int], n: int, generator: torch.Generator) -> Tensor:
    """``n`` int64 values drawn uniformly from ``options``."""
    return torch.tensor(options)[torch.randint(0, len(options), (n,), generator=generator)]


def star_shapes(
    grid: int,
    centre: Float[Tensor, "n 2"],
    radius: Float[Tensor, " n"],
    kind: Int[Tensor, " n"],
    generator: torch.Generator,
) -> Bool[Tensor, "n grid grid"]:
    """Rasterise filled star-convex shapes on a ``grid x grid`` canvas.

    A pixel (at integer coordinates) is in a shape when its distance to ``centre`` is at
    most the shape's radial function at that angle: ``radius`` for a circle, the regular
    polygon with circumradius ``radius`` (random rotation) for ``kind >= 3``, and
    ``radius * (1 + sum of random low harmonics)`` (at most ``radius``) for a blob.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> star_shapes(7, torch.tensor([[3.0, 3.0]]), torch.tensor([2.0]),
        ...             torch.tensor([CIRCLE]), g)[0, 3].int().tolist()
        [0, 1, 1, 1, 1, 1, 0]
    """
    n = centre.shape[0]
    coords = torch.arange(grid, dtype=torch.float32)
    dy = coords[None, :, None] - centre[:, 0, None, None]
    dx = coords[None, None, :] - centre[:, 1, None, None]
    dist = torch.sqrt(dy**2 + dx**2)
    # The radial function is tabulated on _BINS angles and looked up per pixel.
    theta = torch.linspace(-math.pi, math.pi, _BINS + 1)[None, :-1] + math.pi / _BINS
    rotation = uniform((n, 1), 0.0, 2 * math.pi, generator)
    sides = kind.clamp(min=3).float()[:, None]
    sector = 2 * math.pi / sides
    local = torch.remainder(theta - rotation, sector) - sector / 2
    polygon = torch.cos(math.pi / sides) / torch.cos(local)
    amp = uniform((n, _HARMONICS, 1), 0.0, 0.12, generator)
    phase = uniform((n, _HARMONICS, 1), 0.0, 2 * math.pi, generator)
    freq = torch.arange(2, 2 + _HARMONICS, dtype=torch.float32)[None, :, None]
    blob = (1 + (amp * torch.cos(freq * theta[:, None] + phase)).sum(1)) / (1 + amp.sum((1, 2)))[
        :, None
    ]
    rel = torch.where((kind >= 3)[:, None], polygon, torch.ones_like(polygon))
    rel = torch.where((kind == BLOB)[:, None], blob, rel)
    angle = torch.atan2(dy, dx)
    index = ((angle + math.pi) * (_BINS / (2 * math.pi))).long().clamp(0, _BINS - 1)
    rel = rel.gather(1, index.flatten(1)).view(n, grid, grid)
    return dist <= radius[:, None, None] * rel + 1e-6


def _shift_or(mask: Tensor, dim: int, pad: bool) -> Tensor:
    """OR of ``mask`` with its copies shifted by one pixel both ways along ``dim``.

    Pixels beyond the border count as ``pad``.
    """
    n = mask.shape[dim]
    out = mask.clone()
    out.narrow(dim, 1, n - 1).logical_or_(mask.narrow(dim, 0, n - 1))
    out.narrow(dim, 0, n - 1).logical_or_(mask.narrow(dim, 1, n - 1))
    if pad:
        out.narrow(dim, 0, 1).fill_(True)
        out.narrow(dim, n - 1, 1).fill_(True)
    return out


def dilate(
    mask: Bool[Tensor, "n h w"], steps: int = 1, *, cross: bool = False
) -> Bool[Tensor, "n h w"]:
    """Grow ``mask`` by ``steps`` pixels (8-neighbourhood, or 4-neighbourhood if ``cross``).

    Example:
        >>> m = torch.zeros(1, 3, 3, dtype=torch.bool); m[0, 1, 1] = True
        >>> int(dilate(m).sum()), int(dilate(m, cross=True).sum())
        (9, 5)
    """
    out = mask
    for _ in range(steps):
        if cross:
            out = _shift_or(out, -1, False) | _shift_or(out, -2, False)
        else:
            out = _shift_or(_shift_or(out, -1, False), -2, False)
    return out


def erode(mask: Bool[Tensor, "n h w"]) -> Bool[Tensor, "n h w"]:
    """Shrink ``mask`` by one pixel in the 8-neighbourhood (the image border counts as outside)."""
    return ~_shift_or(_shift_or(~mask, -1, True), -2, True)


def ring(filled: Bool[Tensor, "n h w"]) -> Bool[Tensor, "n h w"]:
    """The closed outline of a filled region: its pixels 8-adjacent to the outside."""
    return filled & ~erode(filled)


def place(
    stamps: Bool[Tensor, "n k k"],
    forbidden: Bool[Tensor, "n h w"],
    touch: Bool[Tensor, "n h w"] | None,
    generator: torch.Generator,
) -> tuple[Bool[Tensor, " n"], Bool[Tensor, "n h w"]]:
    """Put each stamp at a uniformly random position allowed by the constraints.

    A position is allowed when the stamp lies inside the canvas, covers no ``forbidden``
    pixel and, if ``touch`` is given, covers at least one ``touch`` pixel.

    Returns:
        ``(ok, placed)``: whether a position existed, and the stamp pasted on an empty
        canvas (all False where ``ok`` is False).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> ok, placed = place(torch.ones(1, 2, 2, dtype=torch.bool),
        ...                    torch.zeros(1, 4, 4, dtype=torch.bool), None, g)
        >>> bool(ok[0]), int(placed.sum())
        (True, 4)
    """
    n, k = stamps.shape[0], stamps.shape[-1]
    h, w = forbidden.shape[-2:]
    weight = stamps.float()[:, None]

    def correlate(mask: Tensor) -> Tensor:
        return F.conv2d(mask.float()[None], weight, groups=n)[0]

    valid = correlate(forbidden) < 0.5
    if touch is not None:
        valid &= correlate(touch) > 0.5
    scores = torch.rand(valid.shape, generator=generator).masked_fill(~valid, -1.0)
    best = scores.flatten(1).argmax(1)
    ok = valid.flatten(1).any(1)
    top, left = best // (w - k + 1), best % (w - k + 1)
    rows = top[:, None, None] + torch.arange(k)[None, :, None]
    cols = left[:, None, None] + torch.arange(k)[None, None, :]
    placed = torch.zeros(n, h, w, dtype=torch.bool)
    placed[torch.arange(n)[:, None, None], rows, cols] = stamps
    placed &= ok[:, None, None]
    return ok, placed
