"""Templated agreement tasks (Marvin & Linzen style): subject-verb agreement and reflexive anaphora.

Sentences come from a small grammar with singular/plural nouns, verbs with singular and
plural present-tense forms, past-tense verbs (no number) and reflexives. As in Marvin &
Linzen's templates (the paper's data), the subject may carry an *agreement attractor*, a
noun of random number (so often the other number) between it and the verb:

* simple: "the author laughs"
* prepositional phrase: "the author near the guards laughs"
* subject relative clause: "the author that likes the guards laughs"
* object relative clause: "the author that the guards like laughs" (the embedded verb
  agrees with the attractor)
* object relative clause without "that": "the author the guards like laughs"

Every candidate sentence draws its own template and words, so candidates never match on
surface tokens.

* **sva**: properties ``(subject, verb)``: number of the subject noun and of the main
  verb (1 = plural).
* **anaphora**: properties ``(antecedent, pronoun)``: number of the subject noun and of
  the reflexive (``himself``/``herself`` vs ``themselves``) after a past-tense verb.

Design (the paper's, :func:`make_language_task`): rule ``"and"`` in a singular (or
plural) experiment: the three regular sentences are grammatical with singular subject and
verb; the odd one flips the subject or the verb. The "+subject/-verb" set's odd one alone
has a plural subject while the verb's number varies among the regular sentences; the
compound partitions (``task.partition("a")``) flip only one property. Rule ``"iff"``
(both numbers in one set) and the simpler sets (other property shared) remain options.

Tokens: ``<pad>`` = 0, ``<bos>`` = 1 at the start, ``<cls>`` = 2 after the last word
(the sentence end marker), then padding to ``max_len``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

from sc_interp.errors import ConfigError, DataError
from sc_interp.tasks._base import CompoundTask, Rule
from sc_interp.tasks._design import DesignSpec, assemble_parts, describe_parts, sample_part

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

MIN_LEN = 12
"""The longest template needs 12 tokens including ``<bos>`` and ``<cls>``."""
DEFAULT_LEN = 12

PAPER_SIZES: dict[str, dict[str, int]] = {
    "sva": {"n_train": 9500, "n_val": 500, "n_test": 1000, "partition": 300},
    "anaphora": {"n_train": 2500, "n_val": 200, "n_test": 200, "partition": 200},
}
"""The paper's set sizes per task (``partition``: val and test size of each partition)."""
NUMBERS = {"singular": 0, "plural": 1}


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


def _attractor(rng: random.Random) -> list[str]:
    """A noun phrase whose number is random: the other number half of the time."""
    return ["the", rng.choice(NOUNS)[rng.randrange(2)]]


def _subject(rng: random.Random, number: int) -> list[str]:
    """Subject noun phrase, possibly with an attractor in a PP or relative clause."""
    head = _noun_phrase(rng, number)
    form = rng.randrange(5)
    if form == 1:  # prepositional phrase
        return [*head, rng.choice(PREPOSITIONS), *_attractor(rng)]
    if form == 2:  # subject relative: the embedded verb agrees with the head
        return [*head, "that", rng.choice(TRANSITIVE)[number], *_attractor(rng)]
    if form in (3, 4):  # object relative: the embedded verb agrees with the attractor
        attractor = rng.randrange(2)
        embedded = ["the", rng.choice(NOUNS)[attractor], rng.choice(TRANSITIVE)[attractor]]
        return [*head, *(["that"] if form == 3 else []), *embedded]
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
    return [*words, rng.choice(TRANSITIVE)[verb], *_attractor(rng)]


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
    sentences: Sequence[Sequence[str] | str], vocab: dict[str, int], max_len: int
) -> Int[Tensor, "n t"]:
    """Turn sentences into ``<bos> words <cls> <pad>...`` id rows of length ``max_len``.

    A sentence is a list of words or a string (split on whitespace).

    Raises:
        DataError: a word is not in ``vocab`` or a sentence does not fit ``max_len``
            (naming the sentence).

    Example:
        >>> encode([["the", "pilot", "laughs"]], build_vocab(), 6)[0, [0, 4, 5]].tolist()
        [1, 2, 0]
        >>> encode(["the zebra laughs"], build_vocab(), 6)
        Traceback (most recent call last):
        ...
        sc_interp.errors.DataError: sentence 0 'the zebra laughs': unknown word 'zebra'; ...
    """
    for special in SPECIALS:
        if special not in vocab:
            raise DataError(f"the vocabulary lacks {special!r}; it needs {list(SPECIALS)}")
    out = torch.full((len(sentences), max_len), vocab[PAD], dtype=torch.long)
    for i, sentence in enumerate(sentences):
        words = sentence.split() if isinstance(sentence, str) else list(sentence)
        text = " ".join(words)
        unknown = [w for w in words if w not in vocab]
        if unknown:
            raise DataError(
                f"sentence {i} {text!r}: unknown word {unknown[0]!r}; the vocabulary has "
                f"{len(vocab)} words (build it from all your data, e.g. odd_one_out(..., "
                "vocab=None))"
            )
        ids = [vocab[BOS], *(vocab[w] for w in words), vocab[CLS]]
        if len(ids) > max_len:
            raise DataError(
                f"sentence {i} {text!r}: {len(ids)} tokens with <bos> and <cls>, but "
                f"max_len is {max_len}"
            )
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
    n_val: int = 0,
    seed: int = 0,
    max_len: int = DEFAULT_LEN,
    rule: Rule = "and",
    number: Literal["singular", "plural"] = "singular",
    vary_other: bool = True,
    paper_sizes: bool = False,
) -> CompoundTask:
    """Generate one language compound task with its "A", "B" and compound datasets.

    The defaults follow the paper's data (built from Marvin & Linzen's templates): rule
    ``"and"`` in the singular experiment, subroutine sets in which the other property
    varies among the regular sentences, attractors in PPs and relative clauses.

    Args:
        name: ``"sva"`` or ``"anaphora"``.
        n_train: Training examples per dataset (each has 4 sentences).
        n_test: Test examples per dataset (and per partition).
        n_val: Validation examples per dataset and partition (0: no val split).
        seed: Seed (same seed -> identical tensors).
        max_len: Tokens per sentence including ``<bos>``, ``<cls>`` and padding (>= 12).
        rule: Compound rule: ``"and"`` (regular sentences all of ``number``; the odd one
            flips the subject or the verb) or ``"iff"`` (grammaticality, both numbers among
            the regular sentences).
        number: ``"singular"`` or ``"plural"``: the paper's two experiments (rule ``"and"``).
        vary_other: Let the other property vary among the regular sentences of the A and B
            sets (the paper's design); ``False`` shares it among all four.
        paper_sizes: Use the paper's set sizes (:data:`PAPER_SIZES`) instead of
            ``n_train``/``n_val``/``n_test``.

    Returns:
        A :class:`CompoundTask` with inputs ``[N, 4, max_len]`` int64 and
        ``meta["vocab"]`` (token -> id); ``task.partition("a")`` draws a partition.

    Example:
        >>> task = make_language_task("sva", n_train=8, n_test=4)
        >>> task.compound.train[0].shape, task.meta["vocab"]["<pad>"]
        (torch.Size([8, 4, 12]), 0)
        >>> task.a.source
        '+subject/-verb set'
    """
    if name not in LANGUAGE_TASKS:
        raise ConfigError(f"unknown language task {name!r}; available: {sorted(LANGUAGE_TASKS)}")
    if max_len < MIN_LEN:
        raise ConfigError(f"max_len must be at least {MIN_LEN}, got {max_len}")
    if number not in NUMBERS:
        raise ConfigError(f"number must be one of {list(NUMBERS)}, got {number!r}")
    sizes = {"train": n_train, "test": n_test, "val": n_val}
    part_sizes = {"train": 0, "test": n_test, "val": n_val}  # partitions are for scoring
    if paper_sizes:
        paper = PAPER_SIZES[name]
        sizes = {"train": paper["n_train"], "test": paper["n_test"], "val": paper["n_val"]}
        part_sizes = {"train": 0, "test": paper["partition"], "val": paper["partition"]}
    if n_val < 0:
        raise ConfigError(f"n_val must be >= 0, got {n_val}")
    generator = torch.Generator().manual_seed(seed)
    vocab = build_vocab()
    spec = DesignSpec(rule, NUMBERS[number], vary_other)
    sources = describe_parts(LANGUAGE_TASKS[name], spec, number if rule == "and" else "")
    names = (*LANGUAGE_TASKS[name], "compound")
    data = tuple((n, sources[k]) for n, k in zip(names, ("a", "b", "compound"), strict=True))

    def render(props: Tensor, n: int, gen: torch.Generator) -> Tensor:
        word_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        tokens = sample_sentences(name, props, seed=word_seed, vocab=vocab, max_len=max_len)
        return tokens.reshape(n, 4, max_len)

    def sampler(key: str, sizes: dict[str, int], gen: torch.Generator) -> tuple:
        named = (f"{LANGUAGE_TASKS[name][key[-1] == 'b']}-partition", sources[key])
        return sample_part(key, named, sizes, gen, spec, render)  # type: ignore[arg-type]

    datasets, truth = assemble_parts(data, sizes, generator, spec, render)  # type: ignore[arg-type]
    meta = {
        "property_names": LANGUAGE_TASKS[name],
        "rule": rule,
        "number": number if rule == "and" else "both",
        "vary_other": vary_other,
        "vocab": vocab,
        "max_len": max_len,
        "seed": seed,
        "properties": truth,
        "partition_sizes": part_sizes,
    }
    a, b, compound = datasets["a"], datasets["b"], datasets["compound"]
    return CompoundTask(name, a, b, compound, "language", meta, sampler)
