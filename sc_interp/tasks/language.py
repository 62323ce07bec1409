"""Templated agreement tasks (Marvin & Linzen style): subject-verb agreement and reflexive anaphora.

Sentences come from a small grammar with singular/plural nouns, verbs with singular and
plural present-tense forms, past-tense verbs (no number), reflexives and optional
distractor phrases ("the author near the senators ..."). Every candidate sentence draws
its own template and words, so candidates never match on surface tokens.

* **sva**: properties ``(subject, verb)``: number of the subject noun and of the main
  verb (1 = plural). The compound rule is grammaticality (subject number == verb number).
* **anaphora**: properties ``(antecedent, pronoun)``: number of the subject noun and of
  the reflexive (``himself``/``herself`` vs ``themselves``).

Tokens: ``<pad>`` = 0, ``<bos>`` = 1 at the start, ``<cls>`` = 2 after the last word
(the sentence end marker), then padding to ``max_len``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from sc_interp.errors import ConfigError
from sc_interp.tasks._base import CompoundTask, Rule, assemble_parts

PAD, BOS, CLS = "<pad>", "<bos>", "<cls>"
SPECIALS = (PAD, BOS, CLS)

NOUNS: tuple[tuple[str, str], ...] = (
    ("author", "authors"), ("pilot", "pilots"), ("surgeon", "surgeons"), ("farmer", "farmers"),
    ("manager", "managers"), ("customer", "customers"), ("officer", "officers"),
    ("teacher", "teachers"), ("senator", "senators"), ("dancer", "dancers"), ("guard", "guards"),
    ("minister", "ministers"), ("doctor", "doctors"), ("student", "students"),
)  # fmt: skip
INTRANSITIVE: tuple[tuple[str, str], ...] = (
    ("laughs", "laugh"), ("smiles", "smile"), ("swims", "swim"), ("sleeps", "sleep"),
    ("waits", "wait"), ("speaks", "speak"),
)  # fmt: skip
TRANSITIVE: tuple[tuple[str, str], ...] = (
    ("likes", "like"), ("admires", "admire"), ("hates", "hate"), ("loves", "love"), ("knows", "know"),
)  # fmt: skip
PAST = ("liked", "admired", "hated", "hurt", "praised", "blamed", "saw")
REFLEXIVES: tuple[tuple[str, ...], tuple[str, ...]] = (("himself", "herself"), ("themselves",))
PREPOSITIONS = ("near", "behind", "beside", "with")
ADJECTIVES = ("young", "old", "tall", "happy")
FUNCTION_WORDS = ("the", "that")

LANGUAGE_TASKS: dict[str, tuple[str, str]] = {
    "sva": ("subject", "verb"),
    "anaphora": ("antecedent", "pronoun"),
}
"""Task name -> names of its properties ``(A, B)``."""

MIN_LEN = 11
"""The longest template needs 11 tokens including ``<bos>`` and ``<cls>``."""
DEFAULT_LEN = 12


def build_vocab() -> dict[str, int]:
    """The word-level vocabulary shared by both language tasks (token -> id).

    Example:
        >>> vocab = build_vocab()
        >>> vocab["<pad>"], vocab["<bos>"], vocab["<cls>"]
        (0, 1, 2)
    """
    words: list[str] = [*SPECIALS, *FUNCTION_WORDS, *PREPOSITIONS, *ADJECTIVES, *PAST]
    for pairs in (NOUNS, INTRANSITIVE, TRANSITIVE):
        words += [w for pair in pairs for w in pair]
    words += [w for forms in REFLEXIVES for w in forms]
    return {w: i for i, w in enumerate(words)}


def word_number(word: str) -> int | None:
    """Grammatical number of a noun, present-tense verb or reflexive: 0 singular, 1 plural.

    Returns ``None`` for words without number (determiners, past-tense verbs...).

    Example:
        >>> word_number("authors"), word_number("laughs"), word_number("liked")
        (1, 0, None)
    """
    for pairs in (NOUNS, INTRANSITIVE, TRANSITIVE):
        for pair in pairs:
            if word in pair:
                return pair.index(word)
    for number, forms in enumerate(REFLEXIVES):
        if word in forms:
            return number
    return None


def _noun_phrase(rng: random.Random, number: int, adjective: bool = True) -> list[str]:
    adj = [rng.choice(ADJECTIVES)] if adjective and rng.random() < 0.3 else []
    return ["the", *adj, rng.choice(NOUNS)[number]]


def _distractor(rng: random.Random) -> list[str]:
    """A noun phrase whose number is random and irrelevant."""
    return ["the", rng.choice(NOUNS)[rng.randrange(2)]]


def _subject(rng: random.Random, number: int) -> list[str]:
    """Subject noun phrase, optionally followed by a PP or object relative clause."""
    head = _noun_phrase(rng, number)
    form = rng.randrange(3)
    if form == 1:
        return [*head, rng.choice(PREPOSITIONS), *_distractor(rng)]
    if form == 2:
        return [*head, "that", *_distractor(rng), rng.choice(PAST)]
    return head


def sva_sentence(rng: random.Random, subject: int, verb: int) -> list[str]:
    """A sentence whose subject has number ``subject`` and main verb number ``verb``.

    Example:
        >>> sva_sentence(random.Random(0), 1, 1)[-1] in {p[1] for p in INTRANSITIVE + TRANSITIVE} | {
        ...     p[w] for p in NOUNS for w in (0, 1)}
        True
    """
    words = _subject(rng, subject)
    if rng.random() < 0.5:
        return [*words, rng.choice(INTRANSITIVE)[verb]]
    return [*words, rng.choice(TRANSITIVE)[verb], *_distractor(rng)]


def anaphora_sentence(rng: random.Random, antecedent: int, pronoun: int) -> list[str]:
    """A sentence ``<antecedent phrase> <past verb> <reflexive>`` with the given numbers.

    Example:
        >>> anaphora_sentence(random.Random(0), 1, 1)[-1]
        'themselves'
    """
    return [*_subject(rng, antecedent), rng.choice(PAST), rng.choice(REFLEXIVES[pronoun])]


_SENTENCES: dict[str, Callable[[random.Random, int, int], list[str]]] = {
    "sva": sva_sentence,
    "anaphora": anaphora_sentence,
}


def encode(
    sentences: Sequence[Sequence[str]], vocab: dict[str, int], max_len: int
) -> Int[Tensor, "n t"]:
    """Turn word lists into ``<bos> words <cls> <pad>...`` id rows of length ``max_len``.

    Example:
        >>> encode([["the", "pilot", "laughs"]], build_vocab(), 6)[0, [0, 4, 5]].tolist()
        [1, 2, 0]
    """
    out = torch.full((len(sentences), max_len), vocab[PAD], dtype=torch.long)
    for i, words in enumerate(sentences):
        ids = [vocab[BOS], *(vocab[w] for w in words), vocab[CLS]]
        if len(ids) > max_len:
            raise ConfigError(f"sentence of {len(ids)} tokens does not fit max_len={max_len}")
        out[i, : len(ids)] = torch.tensor(ids)
    return out


def decode(tokens: Int[Tensor, "... t"], vocab: dict[str, int]) -> list[list[str]] | list[str]:
    """Map ids back to words, dropping ``<pad>``, ``<bos>`` and ``<cls>``.

    A 1-d input gives one word list; a 2-d or higher input gives a (flat) list of them.

    Example:
        >>> v = build_vocab()
        >>> decode(encode([["the", "pilots", "smile"]], v, 8)[0], v)
        ['the', 'pilots', 'smile']
    """
    words = {i: w for w, i in vocab.items()}
    if tokens.dim() == 1:
        return [words[int(i)] for i in tokens if words[int(i)] not in SPECIALS]
    return [decode(row, vocab) for row in tokens.reshape(-1, tokens.shape[-1])]  # type: ignore[misc]


def sample_sentences(
    task: str,
    props: Int[Tensor, "m 2"],
    *,
    seed: int,
    vocab: dict[str, int],
    max_len: int = DEFAULT_LEN,
) -> Int[Tensor, "m t"]:
    """Token rows, one sentence per row of ``props`` with exactly those numbers.

    Example:
        >>> import torch
        >>> v = build_vocab()
        >>> sample_sentences("anaphora", torch.tensor([[0, 0]]), seed=0, vocab=v).shape
        torch.Size([1, 12])
    """
    if task not in _SENTENCES:
        raise ConfigError(f"unknown language task {task!r}; available: {sorted(_SENTENCES)}")
    rng = random.Random(seed)
    make = _SENTENCES[task]
    return encode([make(rng, int(a), int(b)) for a, b in props.tolist()], vocab, max_len)


def sample_grammatical(
    n: int, *, seed: int, vocab: dict[str, int], max_len: int = DEFAULT_LEN
) -> Int[Tensor, "n t"]:
    """Grammatical sentences of both tasks, for language-model pretraining.

    Example:
        >>> sample_grammatical(4, seed=0, vocab=build_vocab()).shape
        torch.Size([4, 12])
    """
    rng = random.Random(seed)
    sentences = []
    for _ in range(n):
        number = rng.randrange(2)
        make = _SENTENCES["sva" if rng.random() < 0.5 else "anaphora"]
        sentences.append(make(rng, number, number))
    return encode(sentences, vocab, max_len)


def make_language_task(
    name: str,
    *,
    n_train: int = 2000,
    n_test: int = 500,
    seed: int = 0,
    max_len: int = DEFAULT_LEN,
    rule: Rule = "iff",
) -> CompoundTask:
    """Generate one language compound task with its "A", "B" and compound datasets.

    Args:
        name: ``"sva"`` or ``"anaphora"``.
        n_train: Training examples per dataset (each has 4 sentences).
        n_test: Test examples per dataset.
        seed: Seed (same seed -> identical tensors).
        max_len: Tokens per sentence including ``<bos>``, ``<cls>`` and padding (>= 11).
        rule: Compound rule; ``"iff"`` (default) is grammaticality.

    Returns:
        A :class:`CompoundTask` with inputs ``[N, 4, max_len]`` int64 and
        ``meta["vocab"]`` (token -> id).

    Example:
        >>> task = make_language_task("sva", n_train=8, n_test=4)
        >>> task.compound.train[0].shape, task.meta["vocab"]["<pad>"]
        (torch.Size([8, 4, 12]), 0)
    """
    if name not in LANGUAGE_TASKS:
        raise ConfigError(f"unknown language task {name!r}; available: {sorted(LANGUAGE_TASKS)}")
    if max_len < MIN_LEN:
        raise ConfigError(f"max_len must be at least {MIN_LEN}, got {max_len}")
    generator = torch.Generator().manual_seed(seed)
    vocab = build_vocab()
    names = (*LANGUAGE_TASKS[name], "compound")

    def render(props: Tensor, n: int) -> Tensor:
        word_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        tokens = sample_sentences(name, props, seed=word_seed, vocab=vocab, max_len=max_len)
        return tokens.reshape(n, 4, max_len)

    datasets, truth = assemble_parts(names, n_train, n_test, generator, rule, render)  # type: ignore[arg-type]
    meta = {
        "property_names": LANGUAGE_TASKS[name],
        "rule": rule,
        "vocab": vocab,
        "max_len": max_len,
        "seed": seed,
        "properties": truth,
    }
    return CompoundTask(name, datasets["a"], datasets["b"], datasets["compound"], "language", meta)
