"""CVR-style vision tasks on rendered binary shapes: Inside-Contact, Inside-Number, Number-Contact.

Each image (grayscale, ``[1, H, W]`` float32 in ``{0, 1}``) shows a few shapes:

* **inside-contact**: a large closed outline and one small filled shape. *Inside*: the small
  shape lies in the outline's interior (1) or outside it (0). *Contact*: it touches the
  outline (a pixel 4-adjacent to an outline pixel, no overlap) (1) or keeps a gap of at
  least ``gap`` empty pixels (0).
* **inside-number**: a large outline and two or three small filled shapes, all inside (1)
  or all outside (0) it, none touching anything (at least one empty pixel between shapes,
  whatever ``gap`` is). *Number*: three small shapes (1) or two (0).
* **number-contact**: two or three medium outlines (*number* 1 = three). *Contact*: the
  first two touch (1) or all keep a gap of ``gap`` pixels (0); the third never touches.

Compound sets (rule ``"iff"``): the three regular images have ``A == B`` and the odd one
``A != B``; for inside-contact, regular images show a shape inside and touching or outside
and apart, the odd one inside but apart or outside but touching.

Positions, sizes, rotations and shape kinds (discs, wobbly blobs, polygons) are random.
Property values per candidate come from :func:`~sc_interp.tasks._design.sample_design`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from sc_interp.errors import ConfigError, DataError
from sc_interp.tasks._base import CompoundTask, Rule
from sc_interp.tasks._design import DesignSpec, assemble_parts, describe_parts, sample_part
from sc_interp.tasks._raster import (
    BLOB,
    CIRCLE,
    choice,
    dilate,
    place,
    ring,
    star_shapes,
    uniform,
)

VISION_TASKS: dict[str, tuple[str, str]] = {
    "inside-contact": ("inside", "contact"),
    "inside-number": ("inside", "number"),
    "number-contact": ("number", "contact"),
}
"""Task name -> names of its properties ``(A, B)``."""

MAX_OBJECTS = 4
_MAX_ROUNDS = 200


@dataclass(frozen=True, eq=False)
class Scenes:
    """Rendered images with the geometry that produced them.

    Attributes:
        images: ``[m, 1, H, W]`` float32 images (union of the drawn objects).
        objects: ``[m, 4, H, W]`` drawn pixels of each object in placement order
            (object 0 is the large outline in the inside-* tasks); unused slots are empty.
        filled: ``[m, 4, H, W]`` filled region of each object (equal to ``objects`` for
            filled shapes; outline plus interior for outlines).
        n_objects: ``[m]`` number of objects in each image.

    Example:
        >>> s = sample_scenes("inside-contact", torch.tensor([[1, 1]]),
        ...                   generator=torch.Generator().manual_seed(0))
        >>> tuple(s.images.shape), tuple(s.objects.shape)
        ((1, 1, 32, 32), (1, 4, 32, 32))
    """

    images: Float[Tensor, "m 1 h w"]
    objects: Bool[Tensor, "m 4 h w"]
    filled: Bool[Tensor, "m 4 h w"]
    n_objects: Int[Tensor, " m"]


def _centred(n: int, k: int, radius: Tensor, kinds: list[int], g: torch.Generator) -> Tensor:
    centre = (k - 1) / 2 + torch.stack(
        [uniform((n,), -0.4, 0.4, g), uniform((n,), -0.4, 0.4, g)], 1
    )
    return star_shapes(k, centre, radius, choice(kinds, n, g), g)


def _outline(
    n: int, size: int, g: torch.Generator, low: float = 0.26, high: float = 0.35
) -> Tensor:
    radius = uniform((n,), low * size, high * size, g)
    lo, hi = radius + 1, size - 2 - radius
    centre = torch.stack([lo + (hi - lo) * torch.rand(n, generator=g) for _ in range(2)], 1)
    return star_shapes(size, centre, radius, choice([CIRCLE, BLOB, 4, 5, 6], n, g), g)


def _small(n: int, size: int, g: torch.Generator) -> Tensor:
    scale = size / 32
    k = 2 * round(3 * scale) + 1
    return _centred(n, k, uniform((n,), 1.6 * scale, 3.0 * scale, g), [CIRCLE, 3, 4, 5], g)


def _medium(n: int, size: int, g: torch.Generator) -> Tensor:
    scale = size / 32
    k = 2 * round(6 * scale) + 1
    return _centred(n, k, uniform((n,), 3.0 * scale, 5.5 * scale, g), [CIRCLE, BLOB, 3, 4, 5, 6], g)


def _everywhere(n: int, size: int) -> Tensor:
    return torch.ones(n, size, size, dtype=torch.bool)


_Out = tuple[Tensor, list[Tensor], list[Tensor]]


def _inside_contact(props: Tensor, size: int, gap: int, g: torch.Generator) -> _Out:
    n = props.shape[0]
    inside, contact = props[:, 0].bool()[:, None, None], props[:, 1].bool()[:, None, None]
    outline = _outline(n, size, g)
    edge = ring(outline)
    forbidden = torch.where(inside, edge | ~outline, outline)
    forbidden |= ~contact & dilate(edge, gap)
    touch = torch.where(contact, dilate(edge, cross=True), _everywhere(n, size))
    ok, small = place(_small(n, size, g), forbidden, touch, g)
    return ok, [edge, small], [outline, small]


def _inside_number(props: Tensor, size: int, gap: int, g: torch.Generator) -> _Out:
    # Contact is not a property here: one empty pixel keeps shapes apart, and a larger
    # outline leaves room for three shapes inside it (fewer rejected draws, less bias).
    del gap
    gap = 1
    n = props.shape[0]
    inside, count = props[:, 0].bool()[:, None, None], 2 + props[:, 1]
    outline = _outline(n, size, g, 0.30, 0.40)
    edge = ring(outline)
    forbidden = torch.where(inside, edge | ~outline, outline) | dilate(edge, gap)
    ok = torch.ones(n, dtype=torch.bool)
    drawn, filled = [edge], [outline]
    for t in range(1, 4):
        active = count >= t
        placed_ok, small = place(_small(n, size, g), forbidden, None, g)
        small &= active[:, None, None]
        ok &= placed_ok | ~active
        forbidden = forbidden | dilate(small, gap)
        drawn.append(small)
        filled.append(small)
    return ok, drawn, filled


def _number_contact(props: Tensor, size: int, gap: int, g: torch.Generator) -> _Out:
    n = props.shape[0]
    count, contact = 2 + props[:, 0], props[:, 1].bool()[:, None, None]
    empty = torch.zeros(n, size, size, dtype=torch.bool)
    ok, first = place(_medium(n, size, g), empty, None, g)
    forbidden = torch.where(contact, first, dilate(first, gap))
    touch = torch.where(contact, dilate(ring(first), cross=True), _everywhere(n, size))
    second_ok, second = place(_medium(n, size, g), forbidden, touch, g)
    third_ok, third = place(_medium(n, size, g), dilate(first | second, gap), None, g)
    third &= (count == 3)[:, None, None]
    ok &= second_ok & (third_ok | (count == 2))
    filled = [first, second, third]
    return ok, [ring(f) for f in filled], filled


_SCENES: dict[str, Callable[[Tensor, int, int, torch.Generator], _Out]] = {
    "inside-contact": _inside_contact,
    "inside-number": _inside_number,
    "number-contact": _number_contact,
}


def sample_scenes(
    task: str,
    props: Int[Tensor, "m 2"],
    *,
    generator: torch.Generator,
    size: int = 32,
    gap: int = 2,
) -> Scenes:
    """Render one image per row of ``props`` with exactly those property values.

    Args:
        task: ``"inside-contact"``, ``"inside-number"`` or ``"number-contact"``.
        props: ``[m, 2]`` binary values of the task's properties ``(A, B)``.
        generator: Source of randomness (same state -> identical scenes).
        size: Image height and width in pixels (at least 24).
        gap: Minimum number of empty pixels between shapes that do not touch.

    Returns:
        The images and the per-object masks used to draw them.

    Example:
        >>> import torch
        >>> s = sample_scenes("inside-contact", torch.tensor([[1, 1], [0, 0]]),
        ...                   generator=torch.Generator().manual_seed(0))
        >>> s.images.shape, s.n_objects.tolist()
        (torch.Size([2, 1, 32, 32]), [2, 2])
    """
    if task not in _SCENES:
        raise ConfigError(f"unknown vision task {task!r}; available: {sorted(_SCENES)}")
    if size < 24 or gap < 1:
        raise ConfigError(f"need size >= 24 and gap >= 1, got size={size}, gap={gap}")
    m = props.shape[0]
    objects = torch.zeros(m, MAX_OBJECTS, size, size, dtype=torch.bool)
    filled = torch.zeros_like(objects)
    pending = torch.arange(m)
    for _ in range(_MAX_ROUNDS):
        if len(pending) == 0:
            break
        ok, drawn, full = _SCENES[task](props[pending], size, gap, generator)
        done = pending[ok]
        objects[done, : len(drawn)] = torch.stack(drawn, 1)[ok]
        filled[done, : len(full)] = torch.stack(full, 1)[ok]
        pending = pending[~ok]
    if len(pending):
        raise DataError(
            f"could not place shapes for {len(pending)} {task} scenes; use a larger size"
        )
    images = objects.any(1, keepdim=True).float()
    return Scenes(images, objects, filled, objects.flatten(2).any(2).sum(1))


def sample_images(
    n: int, *, generator: torch.Generator, size: int = 32
) -> Float[Tensor, "n 1 h w"]:
    """Random images from all three vision tasks with random properties (for pretraining).

    Example:
        >>> import torch
        >>> sample_images(6, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([6, 1, 32, 32])
    """
    names = list(_SCENES)
    which = torch.randint(0, len(names), (n,), generator=generator)
    props = torch.randint(0, 2, (n, 2), generator=generator)
    images = torch.zeros(n, 1, size, size)
    for i, name in enumerate(names):
        rows = (which == i).nonzero().flatten()
        if len(rows):
            images[rows] = sample_scenes(name, props[rows], generator=generator, size=size).images
    return images


def make_vision_task(
    name: str,
    *,
    n_train: int = 2000,
    n_test: int = 500,
    n_val: int = 0,
    seed: int = 0,
    size: int = 32,
    gap: int = 2,
    rule: Rule = "iff",
    vary_other: bool = False,
) -> CompoundTask:
    """Generate one vision compound task with its "A", "B" and compound datasets.

    Args:
        name: ``"inside-contact"``, ``"inside-number"`` or ``"number-contact"``.
        n_train: Training examples per dataset (each has 4 images).
        n_test: Test examples per dataset.
        n_val: Validation examples per dataset (0: no val split).
        seed: Seed of the ``torch.Generator`` (same seed -> identical tensors).
        size: Image side in pixels.
        gap: Minimum empty pixels between non-touching shapes.
        rule: Compound rule (see :func:`~sc_interp.tasks._design.sample_design`; under
            ``"and"`` the regular images have both properties, as in CVR).
        vary_other: Let the other property vary among the regular images of the A and B
            sets (the paper's design); by default all four share it.

    Returns:
        A :class:`CompoundTask` with inputs ``[N, 4, 1, size, size]`` float32;
        ``task.partition("a")`` draws the compound partitions on first use.

    Example:
        >>> task = make_vision_task("inside-contact", n_train=8, n_test=4)
        >>> task.a.name, task.a.train[0].shape
        ('inside', torch.Size([8, 4, 1, 32, 32]))
    """
    if name not in VISION_TASKS:
        raise ConfigError(f"unknown vision task {name!r}; available: {sorted(VISION_TASKS)}")
    generator = torch.Generator().manual_seed(seed)
    spec = DesignSpec(rule, 1, vary_other)
    sources = describe_parts(VISION_TASKS[name], spec)
    names = (*VISION_TASKS[name], "compound")
    data = tuple((n, sources[k]) for n, k in zip(names, ("a", "b", "compound"), strict=True))

    def render(props: Tensor, n: int, gen: torch.Generator) -> Tensor:
        scenes = sample_scenes(name, props, generator=gen, size=size, gap=gap)
        return scenes.images.reshape(n, 4, 1, size, size)

    def sampler(key: str, sizes: dict[str, int], gen: torch.Generator) -> tuple:
        named = (f"{VISION_TASKS[name][key[-1] == 'b']}-partition", sources[key])
        return sample_part(key, named, sizes, gen, spec, render)  # type: ignore[arg-type]

    sizes = {"train": n_train, "test": n_test, "val": n_val}
    datasets, truth = assemble_parts(data, sizes, generator, spec, render)  # type: ignore[arg-type]
    meta = {
        "property_names": VISION_TASKS[name],
        "rule": rule,
        "image_size": size,
        "gap": gap,
        "seed": seed,
        "properties": truth,
        "partition_sizes": {"train": 0, "test": n_test, "val": n_val},
    }
    a, b, compound = datasets["a"], datasets["b"], datasets["compound"]
    return CompoundTask(name, a, b, compound, "vision", meta, sampler)
