"""Tiny odd-one-out models: a candidate encoder plus the paper's cosine-similarity head.

:class:`OddOneOut` embeds each of the four candidates separately with its ``encoder``
and scores candidate ``i`` by ``-scale * sum_{j != i} cos(e_i, e_j)``: the candidate least
similar to the others gets the highest logit. Masks are learned over ``encoder``.

Site names of the language model follow TransformerLens: the bridge lives at
``encoder.bridge``, so its MLP neurons are ``encoder.bridge.blocks.0.mlp.hook_post``.
``transformer_lens`` is imported only when a language model is built.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from sc_interp._optional import require
from sc_interp.errors import ConfigError, DataError
from sc_interp.tasks._base import N_CANDIDATES

DEFAULT_SCALE = 10.0
EMBED_DIM = 32
# bounds on the tiny task models' sizes (a typo must not allocate a giant model)
_MAX_SIZE = {"n_layers": 48, "n_heads": 64, "d_head": 1024, "d_model": 4096, "d_mlp": 16384,
             "n_ctx": 8192, "d_vocab": 1_000_000}  # fmt: skip


class OddOneOut(nn.Module):
    """Odd-one-out head over a candidate encoder (as in the paper's code).

    ``forward(x)`` takes ``[B, 4, ...]`` candidates, embeds the ``B * 4`` candidates with
    ``encoder`` (which maps ``[n, ...]`` to ``[n, D]``), and returns logits ``[B, 4]`` with
    ``logit_i = -scale * sum_{j != i} cos(e_i, e_j)``. Softmax / cross-entropy against the
    odd one's index trains it. ``scale`` is a fixed constant, not a parameter.

    Args:
        encoder: Module mapping one candidate batch ``[n, ...]`` to embeddings ``[n, D]``.
        scale: Fixed temperature multiplying the scores.

    Example:
        >>> import torch
        >>> model = OddOneOut(torch.nn.Identity())
        >>> x = torch.tensor([[[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [1.0, -0.1]]])
        >>> model(x).argmax(-1).item()
        2
    """

    def __init__(self, encoder: nn.Module, scale: float = DEFAULT_SCALE) -> None:
        super().__init__()
        self.encoder = encoder
        self.scale = float(scale)

    def embed(self, x: Tensor) -> Float[Tensor, "batch 4 d"]:
        """Embeddings ``[B, 4, D]`` of the candidates ``x`` (``[B, 4, ...]``)."""
        if x.dim() < 2 or x.shape[1] != N_CANDIDATES:
            raise DataError(
                f"expected inputs [batch, {N_CANDIDATES}, ...], got shape {tuple(x.shape)}"
            )
        batch = x.shape[0]
        flat = self.encoder(x.reshape(batch * N_CANDIDATES, *x.shape[2:]))
        return flat.reshape(batch, N_CANDIDATES, -1)

    def forward(self, x: Tensor) -> Float[Tensor, "batch 4"]:
        """Logits ``[B, 4]``: high for the candidate least similar to the other three."""
        unit = F.normalize(self.embed(x), dim=-1, eps=1e-8)
        cos = unit @ unit.transpose(1, 2)
        others = cos.sum(-1) - cos.diagonal(dim1=1, dim2=2)
        return -self.scale * others

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class VisionEncoder(nn.Module):
    """Tiny CNN: four Conv-BatchNorm-ReLU stages (three strided) and a two-layer MLP to ``dim``.

    Resolution goes 32 -> 16 -> 8 -> 8 -> 4 for 32x32 inputs. The first convolution
    (4x4, stride 2) sees every pixel, so one-pixel gaps between shapes stay visible;
    strided convolutions instead of pooling keep it fast on CPU.

    Example:
        >>> import torch
        >>> VisionEncoder()(torch.zeros(2, 1, 32, 32)).shape
        torch.Size([2, 32])
    """

    def __init__(self, image_size: int = 32, channels: int = 16, dim: int = EMBED_DIM) -> None:
        super().__init__()
        if image_size % 8:
            raise ConfigError(f"image_size must be a multiple of 8, got {image_size}")
        wide = 2 * channels
        self.conv1 = nn.Conv2d(1, channels, 4, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, wide, 3, stride=2, padding=1)
        self.bn2 = nn.BatchNorm2d(wide)
        self.conv3 = nn.Conv2d(wide, wide, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(wide)
        self.conv4 = nn.Conv2d(wide, wide, 3, stride=2, padding=1)
        self.bn4 = nn.BatchNorm2d(wide)
        self.fc1 = nn.Linear(wide * (image_size // 8) ** 2, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)

    def forward(self, x: Float[Tensor, "n 1 h w"]) -> Float[Tensor, "n d"]:
        stages = (
            (self.conv1, self.bn1),
            (self.conv2, self.bn2),
            (self.conv3, self.bn3),
            (self.conv4, self.bn4),
        )
        for conv, bn in stages:
            x = F.relu(bn(conv(x)))
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class LanguageEncoder(nn.Module):
    """Sentence embedding from a TransformerLens bridge: the final residual stream averaged
    over the sentence's non-pad positions.

    Sentences are right-padded with ``pad_id``; the bridge is causal, so padding changes
    nothing at the positions averaged over. (The mean, rather than the ``<cls>`` position
    alone, varies more between sentences at initialisation, which lets the cosine head
    start learning several epochs earlier.) The residual is read with a temporary raw
    torch hook on ``ln_final.hook_out``, removed in ``finally``.

    Example:
        >>> import torch
        >>> enc = build_language_model(20, seed=0).encoder
        >>> enc(torch.tensor([[1, 5, 2, 0]])).shape
        torch.Size([1, 32])
    """

    def __init__(self, bridge: nn.Module, pad_id: int = 0) -> None:
        super().__init__()
        self.bridge = bridge
        self.pad_id = pad_id

    def residual(self, tokens: Int[Tensor, "n t"]) -> Float[Tensor, "n t d"]:
        """Final (layer-normed) residual stream at every position."""
        store: dict[str, Tensor] = {}

        def grab(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
            store["resid"] = output

        handle = self.bridge.hook_dict["ln_final.hook_out"].register_forward_hook(grab)  # type: ignore[index,union-attr]
        try:
            self.bridge(tokens, return_type=None)
        finally:
            handle.remove()
        return store["resid"]

    def forward(self, tokens: Int[Tensor, "n t"]) -> Float[Tensor, "n d"]:
        n_ctx = getattr(getattr(self.bridge, "cfg", None), "n_ctx", None)
        if isinstance(n_ctx, int) and tokens.shape[-1] > n_ctx:
            raise DataError(
                f"inputs of {tokens.shape[-1]} tokens exceed the model's context (n_ctx={n_ctx}); "
                f"build it with n_ctx >= {tokens.shape[-1]} (build_language_model(..., "
                f"n_ctx={tokens.shape[-1]}) or build_task_model(..., n_ctx=...))"
            )
        keep = (tokens != self.pad_id).unsqueeze(-1).to(torch.float32)
        return (self.residual(tokens) * keep).sum(1) / keep.sum(1).clamp(min=1.0)


def build_vision_model(
    seed: int = 0, *, image_size: int = 32, channels: int = 16, dim: int = EMBED_DIM
) -> OddOneOut:
    """A freshly initialised :class:`OddOneOut` over a :class:`VisionEncoder`.

    The global torch RNG is left untouched; weights depend only on ``seed``.

    Example:
        >>> import torch
        >>> build_vision_model(0)(torch.zeros(3, 4, 1, 32, 32)).shape
        torch.Size([3, 4])
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return OddOneOut(VisionEncoder(image_size, channels, dim))


def build_bridge(vocab_size: int, seed: int = 0, **overrides: Any) -> nn.Module:
    """A tiny TransformerLens 4 ``TransformerBridge`` built from config (no download).

    Defaults: 2 layers, ``d_model`` 32, 4 heads of 8, ``d_mlp`` 64, ReLU, ``n_ctx`` 16.
    Any ``TransformerBridgeConfig`` field can be overridden (``n_ctx``, ``d_model``,
    ``n_layers``, ``n_heads``...); with a new ``d_model`` or ``n_heads``, ``d_head`` becomes
    ``d_model // n_heads`` and ``d_mlp`` ``2 * d_model`` unless given.

    Example:
        >>> build_bridge(20).cfg.n_layers
        2
        >>> build_bridge(20, d_model=48, n_ctx=24).cfg.d_head
        12
    """
    require("transformer_lens", "the language task models")
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    settings: dict[str, Any] = dict(
        d_model=EMBED_DIM, d_head=8, n_heads=4, n_layers=2, n_ctx=16, d_mlp=64
    )
    settings.update(act_fn="relu", **overrides)
    if {"d_model", "n_heads"} & set(overrides):
        settings.setdefault("d_head", 8)
        if "d_head" not in overrides:
            settings["d_head"] = max(1, settings["d_model"] // settings["n_heads"])
        if "d_mlp" not in overrides:
            settings["d_mlp"] = 2 * settings["d_model"]
    bad = {k: v for k, v in settings.items() if isinstance(v, int) and not isinstance(v, bool)
           and not 1 <= v <= _MAX_SIZE.get(k, v)}  # fmt: skip
    if bad:
        raise ConfigError(
            f"model sizes out of range: {bad}; these tiny task models allow "
            + ", ".join(f"{k} in 1..{v}" for k, v in _MAX_SIZE.items())
        )
    cfg = TransformerBridgeConfig(d_vocab=vocab_size, seed=seed, **settings)
    with torch.random.fork_rng(devices=[]):
        boot: Any = getattr(TransformerBridge, "boot_native")  # noqa: B009 - attached at import by TL
        return boot(cfg)


def build_language_model(
    vocab_size: int, seed: int = 0, *, pad_id: int = 0, **overrides: Any
) -> OddOneOut:
    """A freshly initialised :class:`OddOneOut` over a :class:`LanguageEncoder`.

    Args:
        vocab_size: Number of token ids (``len(task.meta["vocab"])``).
        seed: Initialisation seed.
        pad_id: Padding id (sentences are right-padded).
        **overrides: ``TransformerBridgeConfig`` fields to change (e.g. ``n_layers=3``,
            ``n_ctx=32`` for longer sentences, ``d_model=64``).

    Example:
        >>> import torch
        >>> model = build_language_model(20, seed=0)
        >>> model(torch.ones(2, 4, 5, dtype=torch.long)).shape
        torch.Size([2, 4])
    """
    return OddOneOut(LanguageEncoder(build_bridge(vocab_size, seed, **overrides), pad_id))
