"""Pretraining arms for the tiny task models (DESIGN: "Pretraining regimens").

The paper compares models trained from scratch with pretrained ones (BERT-small,
SimCLR). Nothing is downloaded here, so the "pretrained" arm pretrains the tiny model
itself on generated data before task training:

* :func:`pretrain_language_model`: next-token language modelling of the bridge on
  grammatical sentences from the task grammar.
* :func:`pretrain_vision_model`: SimCLR-style contrastive learning on rendered images,
  two augmentations (:func:`augment`: shift, flip, rotation) of one image as a positive pair.

Both are deterministic given ``seed`` and leave the global RNG untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TypeVar

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from sc_interp.errors import ConfigError
from sc_interp.tasks.language import sample_grammatical
from sc_interp.tasks.models import OddOneOut
from sc_interp.tasks.vision import sample_images

logger = logging.getLogger(__name__)
_T = TypeVar("_T")


def progress_bar(iterable: Iterable[_T], enabled: bool, desc: str) -> Iterable[_T]:
    """Wrap ``iterable`` in a ``tqdm.auto`` bar when ``enabled``."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)


def _bridge(model: nn.Module) -> nn.Module:
    bridge = getattr(getattr(model, "encoder", None), "bridge", None)
    if not isinstance(bridge, nn.Module):
        raise ConfigError("language pretraining needs an OddOneOut whose encoder has a .bridge")
    return bridge


def pretrain_language_model(
    model: nn.Module,
    vocab: dict[str, int],
    steps: int = 600,
    seed: int = 0,
    *,
    batch_size: int = 64,
    lr: float = 2e-3,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Next-token language modelling of ``model.encoder.bridge`` on grammatical sentences.

    Sentences (both grammars, always agreeing) are generated from ``seed``; the loss
    ignores predictions of padding.

    Returns:
        History with ``step`` and ``loss``.

    Example:
        >>> from sc_interp.tasks import build_language_model, build_vocab
        >>> vocab = build_vocab()
        >>> model = build_language_model(len(vocab), seed=0)
        >>> hist = pretrain_language_model(model, vocab, steps=2, progress=False)
        >>> len(hist["loss"])
        2
    """
    bridge = _bridge(model)
    pad = vocab["<pad>"]
    pool = sample_grammatical(
        max(4 * batch_size, min(steps * batch_size, 8192)), seed=seed, vocab=vocab
    )
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam([p for p in bridge.parameters() if p.requires_grad], lr=lr)
    history: dict[str, list[float]] = {"step": [], "loss": []}
    bridge.train()
    for step in progress_bar(range(steps), progress, "pretrain LM"):
        tokens = pool[torch.randint(0, len(pool), (batch_size,), generator=generator)]
        logits = bridge(tokens)
        target = tokens[:, 1:].masked_fill(tokens[:, 1:] == pad, -100)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), target.reshape(-1))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history["step"].append(step + 1)
        history["loss"].append(loss.item())
    logger.info("LM pretraining: final loss %.3f", history["loss"][-1] if steps else float("nan"))
    model.eval()
    return history


def augment(images: Float[Tensor, "n 1 h w"], generator: torch.Generator, shift: int = 3) -> Tensor:
    """Random shift (zero fill) by up to ``shift`` pixels, flips and 90-degree rotations.

    Flips and rotations keep every task property; a shift may crop a shape at the border,
    which is harmless for contrastive pretraining (task training uses :func:`symmetries`).

    Example:
        >>> import torch
        >>> augment(torch.ones(2, 1, 8, 8), torch.Generator().manual_seed(0)).shape
        torch.Size([2, 1, 8, 8])
    """
    n, _, h, w = images.shape
    padded = F.pad(images, (shift, shift, shift, shift))
    dy = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * shift + 1, (n,), generator=generator)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]
    cols = (dx[:, None] + torch.arange(w))[:, None, :]
    out = padded[:, 0][torch.arange(n)[:, None, None], rows, cols][:, None]
    return symmetries(out, generator)


def symmetries(images: Float[Tensor, "n 1 h w"], generator: torch.Generator) -> Tensor:
    """Random flips and 90-degree rotations of square images (keep every task property).

    Example:
        >>> import torch
        >>> symmetries(torch.ones(3, 1, 8, 8), torch.Generator().manual_seed(0)).shape
        torch.Size([3, 1, 8, 8])
    """
    n = images.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.where(flip[:, None, None, None], images.flip(-1), images)
    turns = torch.randint(0, 4, (n,), generator=generator)
    for k in range(1, 4):
        out[turns == k] = torch.rot90(out[turns == k], k, (-2, -1))
    return out


def nt_xent(z1: Float[Tensor, "n d"], z2: Float[Tensor, "n d"], temperature: float = 0.5) -> Tensor:
    """SimCLR's normalised-temperature cross-entropy over ``2n`` views."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    sim = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    n = z1.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    return F.cross_entropy(sim, target)


def pretrain_vision_model(
    model: nn.Module,
    steps: int = 300,
    seed: int = 0,
    *,
    batch_size: int = 64,
    lr: float = 2e-3,
    image_size: int = 32,
    progress: bool = True,
) -> dict[str, list[float]]:
    """SimCLR-style contrastive pretraining of ``model.encoder`` on rendered images.

    A temporary projection head (discarded afterwards) maps embeddings for the NT-Xent
    loss; the two views are :func:`augment` of the same image.

    Returns:
        History with ``step`` and ``loss``.

    Example:
        >>> from sc_interp.tasks import build_vision_model
        >>> model = build_vision_model(0)
        >>> len(pretrain_vision_model(model, steps=2, progress=False)["loss"])
        2
    """
    encoder = model.encoder if isinstance(model, OddOneOut) else model
    generator = torch.Generator().manual_seed(seed)
    pool = sample_images(
        max(4 * batch_size, min(steps * batch_size, 4096)), generator=generator, size=image_size
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        dim = int(encoder(pool[:2]).shape[-1])
        head = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))
    params = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimiser = torch.optim.Adam(params, lr=lr)
    history: dict[str, list[float]] = {"step": [], "loss": []}
    encoder.train()
    for step in progress_bar(range(steps), progress, "pretrain SimCLR"):
        images = pool[torch.randint(0, len(pool), (batch_size,), generator=generator)]
        views = torch.cat([augment(images, generator), augment(images, generator)])
        z1, z2 = head(encoder(views)).chunk(2)
        loss = nt_xent(z1, z2)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history["step"].append(step + 1)
        history["loss"].append(loss.item())
    model.eval()
    return history
