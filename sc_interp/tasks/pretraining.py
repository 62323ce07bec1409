"""Pretraining arms for the tiny task models (DESIGN: "Pretraining regimens").

The paper compares models trained from scratch with pretrained ones (BERT-small,
SimCLR). Nothing is downloaded here, so the "pretrained" arm pretrains the tiny model
itself on generated data before task training:

* :func:`pretrain_language_model`: next-token language modelling of the bridge on
  grammatical sentences from the task grammar, or on your own corpus.
* :func:`pretrain_vision_model`: SimCLR-style contrastive learning on rendered images,
  two augmentations (:func:`augment`: shift, flip, rotation) of one image as a positive pair.

Both are deterministic given ``seed`` and leave the global RNG untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from sc_interp.errors import ConfigError, DataError
from sc_interp.tasks.language import PAD, build_vocab, encode, sample_grammatical
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
    vocab: dict[str, int] | None,
    steps: int = 600,
    seed: int = 0,
    *,
    corpus: Sequence[str] | Sequence[Sequence[str]] | Tensor | None = None,
    pad_id: int | None = None,
    batch_size: int = 64,
    lr: float = 2e-3,
    progress: bool = True,
) -> dict[str, list[float]]:
    """Next-token language modelling of ``model.encoder.bridge``.

    By default on grammatical sentences of the built-in grammar (both task grammars,
    always agreeing; needs the built-in vocabulary), generated from ``seed``; or on
    ``corpus``: sentences (strings or word lists, encoded with ``vocab`` as
    ``<bos> words <cls>``) or a ``[N, T]`` token tensor. The loss ignores predictions of
    padding.

    Args:
        model: an :class:`OddOneOut` over a :class:`LanguageEncoder`.
        vocab: the word -> id vocabulary (``None`` with a token-tensor corpus).
        steps: optimiser steps.
        seed: seeds the generated sentences and the batch order.
        corpus: your own pretraining text, instead of the built-in grammar.
        pad_id: the padding id of a token-tensor corpus (default: ``vocab["<pad>"]``).

    Returns:
        History with ``step`` and ``loss``.

    Raises:
        DataError: the built-in grammar's words are missing from ``vocab`` (pass a corpus),
            a corpus sentence has an unknown word or is longer than the model's context.

    Example:
        >>> from sc_interp.tasks import build_language_model, build_vocab
        >>> vocab = build_vocab()
        >>> model = build_language_model(len(vocab), seed=0)
        >>> hist = pretrain_language_model(model, vocab, steps=2, progress=False)
        >>> len(hist["loss"])
        2
        >>> mine = {"<pad>": 0, "<bos>": 1, "<cls>": 2, "a": 3, "zebra": 4, "runs": 5}
        >>> model = build_language_model(len(mine), seed=0)
        >>> len(pretrain_language_model(model, mine, 2, corpus=["a zebra runs"], progress=False)["loss"])
        2
    """
    bridge = _bridge(model)
    n_ctx = int(getattr(getattr(bridge, "cfg", None), "n_ctx", 0) or 0) or None
    pool = _corpus_tokens(
        vocab, corpus, n_ctx, seed, max(4 * batch_size, min(steps * batch_size, 8192))
    )
    pad = pad_id if pad_id is not None else (vocab or {}).get(PAD, 0)
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


def _corpus_tokens(
    vocab: dict[str, int] | None, corpus: object, n_ctx: int | None, seed: int, n_generated: int
) -> Int[Tensor, "n t"]:
    """The pretraining pool: generated sentences, encoded sentences or a token tensor."""
    if isinstance(corpus, Tensor):
        if corpus.ndim != 2 or corpus.is_floating_point() or len(corpus) == 0:
            raise DataError(
                f"a token corpus must be a non-empty [N, T] integer tensor, got "
                f"{corpus.dtype} {tuple(corpus.shape)}"
            )
        if n_ctx is not None and corpus.shape[1] > n_ctx:
            raise DataError(
                f"corpus rows of {corpus.shape[1]} tokens exceed the model's context "
                f"(n_ctx={n_ctx}); build the model with a larger n_ctx"
            )
        return corpus.long()
    if vocab is None:
        raise DataError("pretraining on sentences needs the vocabulary (vocab=...)")
    if corpus is None:
        missing = [w for w in build_vocab() if w not in vocab]
        if missing:
            raise DataError(
                f"the built-in grammar uses words this vocabulary lacks (e.g. {missing[0]!r}); "
                "pass corpus= (your sentences or a token tensor) to pretrain on your own text"
            )
        return sample_grammatical(n_generated, seed=seed, vocab=vocab)
    if isinstance(corpus, str) or not isinstance(corpus, Sequence) or not len(corpus):
        raise DataError("corpus must be a non-empty list of sentences or an [N, T] token tensor")
    longest = 2 + max(len(s.split() if isinstance(s, str) else s) for s in corpus)
    if n_ctx is not None and longest > n_ctx:
        raise DataError(
            f"the longest corpus sentence needs {longest} tokens with <bos> and <cls>, more "
            f"than the model's context (n_ctx={n_ctx}); build the model with a larger n_ctx"
        )
    return encode(list(corpus), vocab, longest)  # type: ignore[arg-type]


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
