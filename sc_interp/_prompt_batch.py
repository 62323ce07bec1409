"""PromptBatch: padded next-token prompts that carry their own readout.

A prompt subtask (:meth:`sc_interp.Subtask.from_prompts`) stores its inputs as one
:class:`PromptBatch`. Every field has the batch on its first axis, so indexing a
PromptBatch (as the data loop does with ``x[idx]``) keeps the tokens, the attention mask,
each prompt's readout position and its candidate token ids together: the per-example
side information travels with the batch, and the readout (:meth:`PromptBatch.read`)
needs nothing else. ``sc_interp._run.forward`` knows how to call each model family on
one (attention mask and, where the model needs them, position ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from sc_interp.errors import DataError

PaddingSide = Literal["left", "right"]


@dataclass(frozen=True, eq=False)
class PromptBatch:
    """Padded prompts with each prompt's readout position and answer candidates.

    Attributes:
        tokens: ``[batch, pos]`` token ids, padded on ``padding_side``.
        attention_mask: ``[batch, pos]``, 1 on real tokens, 0 on padding.
        position: ``[batch]`` index of each prompt's last real token (the readout).
        candidates: ``[batch, k]`` token ids the readout compares (the label indexes them).
        padding_side: ``"left"`` or ``"right"``.
        pad_id: the token id on padded positions.

    Example:
        >>> b = PromptBatch(torch.tensor([[5, 6, 0], [7, 8, 9]]), torch.tensor([[1, 1, 0], [1, 1, 1]]),
        ...                 torch.tensor([1, 2]), torch.tensor([[1, 2], [3, 4]]), "right")
        >>> b[torch.tensor([1])].tokens.tolist(), len(b)
        ([[7, 8, 9]], 2)
        >>> b.read(torch.zeros(2, 3, 10)).shape
        torch.Size([2, 2])
    """

    tokens: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]
    position: Int[Tensor, " batch"]
    candidates: Int[Tensor, "batch k"]
    padding_side: PaddingSide = "right"
    pad_id: int = 0

    def __post_init__(self) -> None:
        n = len(self.tokens)
        if self.tokens.ndim != 2 or self.attention_mask.shape != self.tokens.shape:
            raise DataError(
                f"PromptBatch: tokens {tuple(self.tokens.shape)} and attention_mask "
                f"{tuple(self.attention_mask.shape)} must both be [batch, pos]"
            )
        if self.position.shape != (n,) or self.candidates.ndim != 2 or len(self.candidates) != n:
            raise DataError(
                f"PromptBatch: position {tuple(self.position.shape)} must be [{n}] and "
                f"candidates {tuple(self.candidates.shape)} [{n}, k]"
            )
        if self.padding_side not in ("left", "right"):
            raise DataError(f"padding_side must be 'left' or 'right', got {self.padding_side!r}")

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: Any) -> PromptBatch:
        if isinstance(index, int):
            index = slice(index, index + 1)
        return PromptBatch(
            self.tokens[index],
            self.attention_mask[index],
            self.position[index],
            self.candidates[index],
            self.padding_side,
            self.pad_id,
        )

    def __repr__(self) -> str:
        return (
            f"PromptBatch({len(self)} prompts x {self.tokens.shape[1]} tokens, "
            f"{self.candidates.shape[1]} candidates, padded {self.padding_side})"
        )

    @property
    def shape(self) -> torch.Size:
        """Shape of ``tokens`` (``[batch, pos]``)."""
        return self.tokens.shape

    def to(self, device: torch.device | str) -> PromptBatch:
        """The same batch on ``device``."""
        return PromptBatch(
            self.tokens.to(device),
            self.attention_mask.to(device),
            self.position.to(device),
            self.candidates.to(device),
            self.padding_side,
            self.pad_id,
        )

    def position_ids(self) -> Int[Tensor, "batch pos"]:
        """Each token's position counted from the prompt's first real token (0 on padding)."""
        return (self.attention_mask.long().cumsum(-1) - 1).clamp(min=0)

    def padded_to(self, length: int) -> PromptBatch:
        """The same prompts padded to ``length`` tokens on ``padding_side``.

        Extra padding changes no real token's output: the attention mask hides it and
        position ids count from each prompt's first real token.
        """
        extra = length - self.tokens.shape[1]
        if extra < 0:
            raise DataError(f"cannot pad {self.tokens.shape[1]} tokens down to {length}")
        if extra == 0:
            return self
        pad = self.tokens.new_full((len(self), extra), self.pad_id)
        zeros = self.attention_mask.new_zeros((len(self), extra))
        if self.padding_side == "right":
            tokens = torch.cat([self.tokens, pad], 1)
            mask = torch.cat([self.attention_mask, zeros], 1)
            return PromptBatch(tokens, mask, self.position, self.candidates, "right", self.pad_id)
        tokens = torch.cat([pad, self.tokens], 1)
        mask = torch.cat([zeros, self.attention_mask], 1)
        return PromptBatch(
            tokens, mask, self.position + extra, self.candidates, "left", self.pad_id
        )

    def read(self, output: Any) -> Float[Tensor, "batch k"]:
        """Candidate logits at each prompt's last real token.

        Takes the model's output (a ``[batch, pos, vocab]`` tensor, a tuple starting with one,
        or an object with ``.logits``), selects position ``position[i]`` of row ``i`` and
        then the columns ``candidates[i]``.
        """
        logits = getattr(output, "logits", output)
        if isinstance(logits, tuple | list):
            logits = logits[0]
        if not isinstance(logits, Tensor) or logits.ndim != 3 or len(logits) != len(self):
            shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise DataError(
                f"a prompt subtask reads [batch={len(self)}, pos, vocab] logits from the "
                f"model's output, got {shape}"
            )
        vocab = logits.shape[-1]
        if int(self.candidates.max()) >= vocab:
            raise DataError(
                f"candidate token id {int(self.candidates.max())} is outside the model's "
                f"vocabulary of {vocab}; was the subtask built with this model's tokenizer?"
            )
        rows = torch.arange(len(self), device=logits.device)
        last = logits[rows, self.position.to(logits.device)]
        return last.gather(1, self.candidates.to(logits.device))


def cat_prompts(batches: Sequence[PromptBatch]) -> PromptBatch:
    """Concatenate PromptBatches (padded to the longest, all on one padding side).

    Example:
        >>> one = PromptBatch(torch.tensor([[5]]), torch.tensor([[1]]), torch.tensor([0]),
        ...                   torch.tensor([[1, 2]]))
        >>> cat_prompts([one, one.padded_to(3)]).tokens.tolist()
        [[5, 0, 0], [5, 0, 0]]
    """
    if not batches:
        raise DataError("no prompts to concatenate")
    sides = {b.padding_side for b in batches}
    if len(sides) > 1:
        raise DataError("cannot concatenate prompts padded on different sides")
    ks = {b.candidates.shape[1] for b in batches}
    if len(ks) > 1:
        raise DataError(f"cannot concatenate prompts with different numbers of candidates {ks}")
    length = max(b.tokens.shape[1] for b in batches)
    padded = [b.padded_to(length) for b in batches]
    return PromptBatch(
        torch.cat([b.tokens for b in padded]),
        torch.cat([b.attention_mask for b in padded]),
        torch.cat([b.position for b in padded]),
        torch.cat([b.candidates for b in padded]),
        padded[0].padding_side,
        padded[0].pad_id,
    )
