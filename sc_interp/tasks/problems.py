"""Bring your own odd-one-out problems: sentences (or images) to model inputs.

:func:`odd_one_out` turns problems, each a list of candidates (sentences or image tensors)
with one odd one at a known position, into the ``[N, k, ...]`` inputs and labels the
built-in tasks use: the odd one's position is shuffled (seeded, each position equally
often), sentences are tokenized with a word vocabulary built from the data (or a given
one, or a Hugging Face tokenizer) and padded to the longest. The paper's released
problems have the odd one last (``odd="last"``).

Example:
    >>> problems = [["the cat sleeps", "the dog sleeps", "the cow sleeps", "the cats sleeps"]]
    >>> data = odd_one_out(problems)
    >>> x, y = data
    >>> x.shape, decode(x[0, y[0]], data.meta["vocab"])
    (torch.Size([1, 4, 5]), ['the', 'cats', 'sleeps'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from sc_interp.errors import DataError
from sc_interp.tasks._base import TaskData
from sc_interp.tasks.language import PAD, SPECIALS, decode, encode

Odd = str | int | Sequence[int]

__all__ = ["Encoded", "decode", "odd_one_out", "word_vocab"]


class Encoded(tuple):
    """``(inputs, labels)`` of one set of problems, with ``meta`` (``vocab``, ``max_len``,
    ``pad_id``, ``order``: for each example, which original candidate sits at each slot).

    Example:
        >>> inputs, labels = encoded = odd_one_out(
        ...     [["the fox naps", "the owl naps", "the hare naps", "the foxes naps"]] * 4)
        >>> tuple(inputs.shape), sorted(encoded.meta)
        ((4, 4, 5), ['max_len', 'order', 'pad_id', 'vocab'])
    """

    meta: dict[str, Any]

    def __new__(cls, inputs: Tensor, labels: Tensor, meta: dict[str, Any]) -> Encoded:
        obj = super().__new__(cls, (inputs, labels))
        obj.meta = meta
        return obj


def word_vocab(*collections: Any) -> dict[str, int]:
    """A word vocabulary (``<pad>`` 0, ``<bos>`` 1, ``<cls>`` 2, then words in order of
    first appearance) from sentences nested in lists, tuples or dicts.

    Example:
        >>> word_vocab([["the cat", "a dog"]], {"test": [["the cow"]]})["cow"]
        7
    """
    vocab = {w: i for i, w in enumerate(SPECIALS)}

    def visit(item: Any) -> None:
        if isinstance(item, str):
            for word in item.split():
                vocab.setdefault(word, len(vocab))
        elif isinstance(item, Mapping):
            for value in item.values():
                visit(value)
        elif isinstance(item, Sequence) and item and all(isinstance(w, str) for w in item):
            if any(" " in w for w in item):  # a list of sentences
                for sentence in item:
                    visit(sentence)
            else:  # one sentence as a word list, or a list of one-word sentences
                for word in item:
                    vocab.setdefault(word, len(vocab))
        elif isinstance(item, Sequence):
            for value in item:
                visit(value)

    for collection in collections:
        visit(collection)
    return vocab


def odd_one_out(
    problems: Any,
    odd: Odd | Mapping[str, Odd] = "last",
    vocab: Any = None,
    max_len: int | None = None,
    seed: int = 0,
    *,
    name: str = "odd-one-out",
    source: str | None = None,
) -> Any:
    """Odd-one-out inputs from problems: lists of candidates with one odd one.

    Args:
        problems: one set of problems, or a mapping ``{"train": ..., "test": ...,
            "val": ...}`` of sets (then one vocabulary and length serve all splits). A set
            is a list of problems, each a list of ``k >= 3`` sentences (strings, or lists of
            words) or image tensors, or a ``[N, k, ...]`` float tensor of images.
        odd: where the odd one is in each problem: ``"last"`` (the paper's files), an index
            for all, or one index per problem (a mapping per split for split mappings).
        vocab: ``None`` (a word vocabulary built from the data, see :func:`word_vocab`), a
            word -> id dict with ``<pad>``, ``<bos>`` and ``<cls>``, or a Hugging Face
            tokenizer (its ids, with its special tokens; padded with its pad token).
        max_len: tokens per sentence (default: the longest sentence of the data).
        seed: seeds the shuffling of candidate positions (balanced over positions).
        name: the dataset's name (TaskData).
        source: its description for reports (TaskData).

    Returns:
        For one set, ``(inputs, labels)`` (an :class:`Encoded` tuple with ``.meta``); for a
        mapping of splits, a :class:`TaskData` (``meta`` holds ``vocab``, ``max_len``,
        ``pad_id``). Inputs are ``[N, k, max_len]`` int64 (sentences) or ``[N, k, ...]``
        (images); labels ``[N]`` give the odd one's shuffled position.

    Raises:
        DataError: an empty set, problems with different numbers of candidates, an odd index
            out of range, an unknown word (naming the word and the sentence), a sentence
            longer than ``max_len``, a split mapping without ``train`` and ``test``.

    Example:
        >>> owls = [["the owl naps", "the owls naps", "the owl naps", "the owl naps"]] * 4
        >>> data = odd_one_out({"train": owls, "test": owls}, odd=1, source="my owls")
        >>> data.train[0].shape, data.train[1].tolist(), data.describe("test")
        (torch.Size([4, 4, 5]), [0, 1, 3, 2], 'my owls, test split')
    """
    if isinstance(problems, Mapping):
        return _splits(problems, odd, vocab, max_len, seed, name, source)
    if isinstance(odd, Mapping):
        raise DataError("odd may be a mapping of splits only when problems is one")
    return _encode_set(problems, odd, vocab, max_len, seed, "problems")


def _splits(
    problems: Mapping[str, Any], odd: Any, vocab: Any, max_len: int | None, seed: int,
    name: str, source: str | None,
) -> TaskData:  # fmt: skip
    unknown = sorted(set(problems) - {"train", "test", "val"})
    if unknown or not {"train", "test"} <= set(problems):
        raise DataError(
            f"a mapping of problems needs 'train' and 'test' (and may have 'val'); got "
            f"{sorted(problems)}"
        )
    sets = {s: _as_list(p, s) for s, p in problems.items()}
    if not _is_images(next(iter(sets.values()))):
        vocab = word_vocab(list(sets.values())) if vocab is None else vocab
        max_len = max_len or max(_longest(p, vocab) for p in sets.values())
    encoded = {}
    for i, (split, data) in enumerate(sets.items()):
        split_odd = odd.get(split, "last") if isinstance(odd, Mapping) else odd
        encoded[split] = _encode_set(data, split_odd, vocab, max_len, seed * 3 + i, split)
    meta = dict(encoded["train"].meta)
    meta.pop("order")
    meta["order"] = {s: e.meta["order"] for s, e in encoded.items()}
    pair = {s: (e[0], e[1]) for s, e in encoded.items()}
    return TaskData(name, pair["train"], pair["test"], pair.get("val"), source, meta)


def _as_list(problems: Any, where: str) -> Any:
    if isinstance(problems, Tensor):
        if problems.ndim < 3 or not problems.is_floating_point():
            raise DataError(
                f"{where}: an image tensor must be float [N, k, ...], got "
                f"{problems.dtype} {tuple(problems.shape)}"
            )
        return problems
    if isinstance(problems, str) or not isinstance(problems, Sequence) or not len(problems):
        raise DataError(
            f"{where}: expected a non-empty list of problems (each a list of candidates), got "
            + (f"{type(problems).__name__}" if problems is not None else "None")
        )
    return list(problems)


def _is_images(problems: Any) -> bool:
    if isinstance(problems, Tensor):
        return True
    first = problems[0]
    return isinstance(first, Sequence) and len(first) > 0 and isinstance(first[0], Tensor)


def _encode_set(
    problems: Any, odd: Any, vocab: Any, max_len: int | None, seed: int, where: str
) -> Encoded:
    problems = _as_list(problems, where)
    n = len(problems)
    sizes = {len(p) for p in problems}
    if len(sizes) > 1:
        counts = [len(p) for p in problems]
        first = next(i for i, c in enumerate(counts) if c != counts[0])
        raise DataError(
            f"{where}: problem {first} has {counts[first]} candidates, problem 0 has "
            f"{counts[0]}; every problem needs the same number"
        )
    k = sizes.pop()
    if k < 3:
        raise DataError(f"{where}: an odd one out needs at least 3 candidates per problem, got {k}")
    odd_index = _odd_positions(odd, n, k, where)
    gen = torch.Generator().manual_seed(seed)
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=gen)]
    order = torch.zeros(n, k, dtype=torch.long)
    for i in range(n):
        regular = torch.tensor([j for j in range(k) if j != odd_index[i]])
        regular = regular[torch.randperm(k - 1, generator=gen)].tolist()
        regular.insert(int(labels[i]), odd_index[i])
        order[i] = torch.tensor(regular)
    if _is_images(problems):
        images = problems if isinstance(problems, Tensor) else _stack_images(problems, where)
        inputs = images[torch.arange(n)[:, None], order]
        return Encoded(inputs, labels, {"order": order})
    rows, meta = _tokenize(problems, vocab, max_len, where)
    flat = rows.reshape(n, k, -1)
    return Encoded(flat[torch.arange(n)[:, None], order], labels, {**meta, "order": order})


def _odd_positions(odd: Any, n: int, k: int, where: str) -> list[int]:
    if odd == "last":
        return [k - 1] * n
    if isinstance(odd, int) and not isinstance(odd, bool):
        positions = [odd] * n
    elif isinstance(odd, Sequence | Tensor) and not isinstance(odd, str):
        positions = [int(o) for o in odd]
        if len(positions) != n:
            raise DataError(f"{where}: {len(positions)} odd positions for {n} problems")
    else:
        raise DataError(f"odd must be 'last', an index or one index per problem, got {odd!r}")
    bad = [(i, p) for i, p in enumerate(positions) if not 0 <= p < k]
    if bad:
        i, p = bad[0]
        raise DataError(
            f"{where}: problem {i} gives odd={p}, but its candidates are numbered 0..{k - 1}"
        )
    return positions


def _stack_images(problems: list[Any], where: str) -> Tensor:
    try:
        return torch.stack([torch.stack(list(p)) for p in problems]).float()
    except RuntimeError as exc:
        raise DataError(f"{where}: images of different shapes ({exc})") from exc


def _sentences(problems: list[Any]) -> list[Any]:
    return [s for p in problems for s in p]


def _longest(problems: Any, vocab: Any) -> int:
    if _is_images(problems):
        return 0
    if isinstance(vocab, dict):
        return 2 + max(len(_words(s)) for s in _sentences(problems))
    return max(len(_hf_ids(vocab, s)) for s in _sentences(problems))


def _words(sentence: Any) -> list[str]:
    return sentence.split() if isinstance(sentence, str) else list(sentence)


def _hf_ids(tokenizer: Any, sentence: Any) -> list[int]:
    text = sentence if isinstance(sentence, str) else " ".join(sentence)
    return list(tokenizer(text)["input_ids"])


def _tokenize(
    problems: list[Any], vocab: Any, max_len: int | None, where: str
) -> tuple[Int[Tensor, "m t"], dict[str, Any]]:
    sentences = _sentences(problems)
    for i, s in enumerate(sentences):
        if not _words(s):
            raise DataError(f"{where}: problem {i // len(problems[0])} has an empty sentence")
    if vocab is None:
        vocab = word_vocab(problems)
    if isinstance(vocab, dict):
        length = max_len or _longest(problems, vocab)
        for i, problem in enumerate(problems):
            for j, sentence in enumerate(problem):
                words = _words(sentence)
                unknown = [w for w in words if w not in vocab]
                where_ = f"{where}: problem {i}, candidate {j} {' '.join(words)!r}"
                if unknown:
                    raise DataError(
                        f"{where_}: unknown word {unknown[0]!r}; the vocabulary has {len(vocab)} "
                        "words (pass vocab=None to build it from the data, or word_vocab(all "
                        "your problem sets))"
                    )
                if len(words) + 2 > length:
                    raise DataError(
                        f"{where_}: {len(words) + 2} tokens with <bos> and <cls>, but max_len "
                        f"is {length}"
                    )
        return encode(sentences, vocab, length), {"vocab": vocab, "max_len": length,
                                                   "pad_id": vocab[PAD]}  # fmt: skip
    if not callable(vocab):
        raise DataError(
            f"vocab must be None, a word -> id dict or a Hugging Face tokenizer, got "
            f"{type(vocab).__name__}"
        )
    pad = getattr(vocab, "pad_token_id", None)
    pad = pad if pad is not None else getattr(vocab, "eos_token_id", None)
    if pad is None:
        raise DataError("the tokenizer has no pad or eos token; set tokenizer.pad_token first")
    ids = [_hf_ids(vocab, s) for s in sentences]
    length = max_len or max(len(r) for r in ids)
    out = torch.full((len(ids), length), int(pad), dtype=torch.long)
    for i, row in enumerate(ids):
        if len(row) > length:
            raise DataError(
                f"{where}: sentence {_words(sentences[i])!r} has {len(row)} tokens, but "
                f"max_len is {length}"
            )
        out[i, : len(row)] = torch.tensor(row)
    return out, {"tokenizer": vocab, "max_len": length, "pad_id": int(pad)}
