"""Next-token prompt subtasks for language models (:meth:`sc_interp.Subtask.from_prompts`).

The everyday subtask of TransformerLens and nnsight studies (IOI, agreement): prompts
whose next token should be an answer rather than some wrong tokens. The prompts are
tokenized with the model's own tokenizer (TransformerLens' ``to_tokens`` for TL models,
so its BOS convention applies), padded to one length on either side, and stored as a
:class:`~sc_interp.prompts.PromptBatch`: each prompt's last real token and its
candidate ids ``[answer, *wrong]`` travel with every batch, and the readout takes the
candidates' logits there. Accuracy is the metric; :func:`sc_interp.evaluate` also
reports the logit difference (answer minus the best wrong token).

How padding is handled, per family (``sc_interp._run.prompt_arguments``):

* TransformerLens 4 ``TransformerBridge`` and TL 2/3 ``HookedTransformer``: the attention
  mask is passed; TransformerLens derives position ids from it, so left and right padding
  both give each prompt's unpadded logits.
* Hugging Face models (plain or under nnsight): ``attention_mask`` and ``position_ids``
  counted from each prompt's first real token are passed, so both sides work.
* Other modules get the tokens alone: only right padding is correct there (for a causal
  model the last real token never sees the padding), so prompts are padded on the right.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from sc_interp._prompt_batch import PaddingSide, PromptBatch, cat_prompts
from sc_interp._run import accepts_mask
from sc_interp.adapters import resolve
from sc_interp.adapters.transformer_lens import is_transformer_lens
from sc_interp.data import SPLITS, Subtask
from sc_interp.errors import ConfigError, DataError

log = logging.getLogger(__name__)

__all__ = ["PromptBatch", "PromptData", "cat_prompts", "from_prompts", "pad_alike"]

PromptData = tuple[Sequence[str], Sequence[str], Sequence[str | Sequence[str]]]
"""``(prompts, answers, wrong)``: one answer and one or several wrong tokens per prompt."""


def from_prompts(
    name: str,
    model: object,
    train: PromptData,
    test: PromptData,
    *,
    val: PromptData | None = None,
    chance: float | None = None,
    padding_side: PaddingSide | None = None,
    tokenizer: Any = None,
    prepend_bos: bool | None = None,
    shuffle: bool = True,
    seed: int = 0,
    batch_size: int = 64,
    source: str | dict[str, str] | None = None,
) -> Subtask:
    """A next-token subtask: which of ``[answer, *wrong]`` does the model predict next?

    Args:
        name: the subtask's name.
        model: a TL 4 ``TransformerBridge``, TL 2/3 ``HookedTransformer``, nnsight
            ``LanguageModel``, or Hugging Face causal LM (pass ``tokenizer=`` if it has none).
        train, test, val: ``(prompts, answers, wrong)``: lists of prompt strings, of answer
            strings and of wrong continuations (one string or a list per prompt; every
            prompt needs the same number). Answers and wrong tokens must each be one token
            of the model's tokenizer (mind leading spaces: ``" Paris"``).
        chance: accuracy of guessing (default ``1 / (1 + number of wrong tokens)``).
        padding_side: ``"left"`` or ``"right"`` (default: the tokenizer's). Models that
            cannot take an attention mask are padded on the right.
        tokenizer: a Hugging Face tokenizer, when the model carries none.
        prepend_bos: override the BOS convention (TransformerLens' ``prepend_bos``; for
            other models, whether to put the tokenizer's BOS token first).
        shuffle: place the answer at a seeded, balanced position among the candidates
            (labels record it). With ``False`` the answer is candidate 0: then a model whose
            logits tie (e.g. with everything ablated) scores 100%, since ``argmax`` picks the
            first of equal values.
        seed: seeds the candidate order.
        batch_size: prompts per batch.
        source: where the prompts come from, for reports (see :class:`Subtask`).

    Returns:
        A :class:`Subtask` whose inputs are :class:`~sc_interp.prompts.PromptBatch`.

    Raises:
        DataError: mismatched lengths, an empty set, an answer or wrong token that is not
            exactly one token (naming the prompt and the tokens), a prompt longer than the
            model's context.
        ConfigError: no tokenizer, or left padding for a model that takes no attention mask.

    Example:
        >>> task = sc.Subtask.from_prompts(  # doctest: +SKIP
        ...     "agreement", model,
        ...     train=(["The keys to the cabinet"], [" are"], [" is"]),
        ...     test=(["The key to the cabinets"], [" is"], [" are"]))
    """
    root = resolve(model)
    tok = tokenizer or getattr(model, "tokenizer", None) or getattr(root, "tokenizer", None)
    if tok is None:
        raise ConfigError(
            f"from_prompts needs the model's tokenizer, and this {type(root).__name__} has "
            "none; pass tokenizer= (a Hugging Face tokenizer)"
        )
    side = _padding_side(root, tok, padding_side)
    encode = _Encoder(root, tok, prepend_bos)
    splits = {"train": train, "test": test, "val": val}
    encoded = {s: _encode_split(encode, data, s) for s, data in splits.items() if data is not None}
    ks = {s: len(rows[0][1]) for s, rows in encoded.items()}
    if len(set(ks.values())) > 1:
        raise DataError(f"{name}: every split needs the same number of candidates, got {ks}")
    length = max(len(ids) for rows in encoded.values() for ids, _ in rows)
    pad_id = _pad_id(tok)
    data: dict[str, tuple[PromptBatch, Tensor]] = {}
    for i, (split, rows) in enumerate(encoded.items()):
        gen = torch.Generator().manual_seed(seed * len(SPLITS) + i)
        data[split] = _batch(rows, length, side, pad_id, gen if shuffle else None)
    k = next(iter(ks.values()))
    return Subtask(
        name, train=data["train"], test=data["test"], val=data.get("val"),
        chance=chance if chance is not None else 1.0 / k, batch_size=batch_size, source=source,
    )  # fmt: skip


def pad_alike(*tasks: Subtask) -> tuple[Subtask, ...]:
    """Prompt subtasks with every split padded to the longest of them all.

    Resampled activations (``method="resample"``) line up position by position only when
    donors and recipients have one length; extra padding changes no prompt's output.
    Subtasks that are not all prompt subtasks come back unchanged.

    Example:
        >>> pad_alike()
        ()
    """

    def prompts(task: Subtask) -> dict[str, tuple[PromptBatch, Tensor]] | None:
        data = {s: getattr(task, s) for s in SPLITS if task.has_split(s)}
        ok = all(
            isinstance(d, tuple | list) and isinstance(d[0], PromptBatch) for d in data.values()
        )
        return data if ok else None

    splits = [prompts(t) for t in tasks]
    if not tasks or any(s is None for s in splits):
        return tuple(tasks)
    n = max(d[0].shape[1] for s in splits for d in s.values())  # type: ignore[union-attr]
    return tuple(
        replace(t, **{k: (d[0].padded_to(n), d[1]) for k, d in s.items()})  # type: ignore[union-attr]
        for t, s in zip(tasks, splits, strict=True)
    )


class _Encoder:
    """Token ids of prompts (with the model's BOS convention) and of single continuations."""

    def __init__(self, root: nn.Module, tokenizer: Any, prepend_bos: bool | None):
        self.tokenizer = tokenizer
        self.prepend_bos = prepend_bos
        # TransformerLens models tokenize with their own conventions (BOS, padding side)
        self.tl = root if is_transformer_lens(root) and hasattr(root, "to_tokens") else None
        if self.tl is not None and getattr(root, "tokenizer", None) is None:
            self.tl = None
        self.n_ctx = _context_length(root)

    def prompt(self, text: str) -> list[int]:
        if self.tl is not None:
            kw = {} if self.prepend_bos is None else {"prepend_bos": self.prepend_bos}
            return self.tl.to_tokens(text, **kw)[0].tolist()  # type: ignore[operator]
        if self.prepend_bos is False:
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        ids = list(self.tokenizer(text)["input_ids"])
        bos = getattr(self.tokenizer, "bos_token_id", None)
        if self.prepend_bos and bos is not None and (not ids or ids[0] != bos):
            ids = [bos, *ids]
        return ids

    def continuation(self, text: str) -> list[int]:
        if self.tl is not None:
            return self.tl.to_tokens(text, prepend_bos=False)[0].tolist()  # type: ignore[operator]
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def pieces(self, ids: list[int]) -> list[str]:
        convert = getattr(self.tokenizer, "convert_ids_to_tokens", None)
        return list(convert(ids)) if convert is not None else [str(i) for i in ids]


def _encode_split(encode: _Encoder, data: Any, split: str) -> list[tuple[list[int], list[int]]]:
    """Per prompt: its token ids and its candidate ids ``[answer, *wrong]``."""
    if not isinstance(data, tuple | list) or len(data) != 3:
        raise DataError(
            f"{split}: expected (prompts, answers, wrong), got {type(data).__name__}"
            + (f" of length {len(data)}" if isinstance(data, tuple | list) else "")
        )
    prompts, answers, wrong = (list(part) if not isinstance(part, str) else [part] for part in data)
    if not prompts:
        raise DataError(f"{split}: no prompts (the set is empty)")
    if not len(prompts) == len(answers) == len(wrong):
        raise DataError(
            f"{split}: {len(prompts)} prompts, {len(answers)} answers and {len(wrong)} wrong "
            "entries; give one answer and one wrong entry (a string or a list) per prompt"
        )
    rows = []
    n_wrong = None
    for i, (prompt, answer, bad) in enumerate(zip(prompts, answers, wrong, strict=True)):
        bad = [bad] if isinstance(bad, str) else list(bad)
        where = f"{split} prompt {i} {prompt!r}"
        if not isinstance(prompt, str) or not prompt:
            raise DataError(f"{where}: prompts must be non-empty strings")
        if not bad:
            raise DataError(f"{where}: needs at least one wrong token")
        n_wrong = len(bad) if n_wrong is None else n_wrong
        if len(bad) != n_wrong:
            raise DataError(
                f"{where}: has {len(bad)} wrong tokens, earlier prompts {n_wrong}; every prompt "
                "needs the same number of candidates"
            )
        ids = encode.prompt(prompt)
        if not ids:
            raise DataError(f"{where}: tokenizes to no tokens")
        if encode.n_ctx is not None and len(ids) > encode.n_ctx:
            raise DataError(
                f"{where}: {len(ids)} tokens, but the model's context holds {encode.n_ctx}; "
                "shorten the prompt or use a model with a longer context"
            )
        candidates = [_single(encode, text, where, role) for text, role in
                      [(answer, "answer"), *((b, "wrong token") for b in bad)]]  # fmt: skip
        if len(set(candidates)) < len(candidates):
            raise DataError(
                f"{where}: the answer and wrong tokens must be different tokens, got "
                f"{encode.pieces(candidates)}"
            )
        rows.append((ids, candidates))
    return rows


def _single(encode: _Encoder, text: Any, where: str, role: str) -> int:
    if not isinstance(text, str) or not text:
        raise DataError(f"{where}: the {role} must be a non-empty string, got {text!r}")
    ids = encode.continuation(text)
    if len(ids) != 1:
        raise DataError(
            f"{where}: the {role} {text!r} is {len(ids)} tokens {encode.pieces(ids)}; answers "
            "and wrong tokens must be single tokens of the model's tokenizer (mind a leading "
            "space, e.g. ' Paris')"
        )
    return ids[0]


def _batch(
    rows: list[tuple[list[int], list[int]]],
    length: int,
    side: PaddingSide,
    pad_id: int,
    generator: torch.Generator | None,
) -> tuple[PromptBatch, Tensor]:
    n, k = len(rows), len(rows[0][1])
    tokens = torch.full((n, length), pad_id, dtype=torch.long)
    mask = torch.zeros(n, length, dtype=torch.long)
    position = torch.zeros(n, dtype=torch.long)
    candidates = torch.zeros(n, k, dtype=torch.long)
    labels = torch.zeros(n, dtype=torch.long)
    if generator is not None:  # balanced answer positions, in a seeded order
        labels = (torch.arange(n) % k)[torch.randperm(n, generator=generator)]
    for i, (ids, cands) in enumerate(rows):
        start = 0 if side == "right" else length - len(ids)
        tokens[i, start : start + len(ids)] = torch.tensor(ids)
        mask[i, start : start + len(ids)] = 1
        position[i] = start + len(ids) - 1
        wrong = iter(cands[1:])
        label = int(labels[i])
        candidates[i] = torch.tensor([cands[0] if j == label else next(wrong) for j in range(k)])
    return PromptBatch(tokens, mask, position, candidates, side, pad_id), labels


def _padding_side(root: nn.Module, tokenizer: Any, requested: str | None) -> PaddingSide:
    if requested not in (None, "left", "right"):
        raise ConfigError(f"padding_side must be 'left' or 'right', got {requested!r}")
    side = requested or getattr(tokenizer, "padding_side", None)
    side = side if side in ("left", "right") else "right"
    if side == "left" and not accepts_mask(root):
        if requested == "left":
            raise ConfigError(
                f"{type(root).__name__}.forward takes no attention_mask, so left padding would "
                "change its outputs; use padding_side='right' (correct for a causal model)"
            )
        log.info("padding prompts on the right: %s takes no attention mask", type(root).__name__)
        side = "right"
    return side  # type: ignore[return-value]


def _pad_id(tokenizer: Any) -> int:
    for attr in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attr, None)
        if isinstance(value, int):
            return value
    return 0


def _context_length(root: nn.Module) -> int | None:
    cfg = getattr(root, "cfg", None)
    if is_transformer_lens(root) and isinstance(getattr(cfg, "n_ctx", None), int):
        return int(cfg.n_ctx)  # type: ignore[union-attr]
    config = getattr(root, "config", None)
    for attr in ("n_positions", "max_position_embeddings"):
        value = getattr(config, attr, None)
        if isinstance(value, int):
            return value
    return None
