"""Tests of the synthetic paper tasks (sc_interp.tasks) and the tiny odd-one-out models."""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sc_interp.errors import ConfigError, DataError
from sc_interp.tasks import (
    TASKS,
    CompoundTask,
    OddOneOut,
    build_task_model,
    build_vision_model,
    build_vocab,
    decode,
    make_task,
    properties,
    sample_design,
    sample_scenes,
    task_accuracy,
    train_task_model,
)
from sc_interp.tasks.language import (
    ADJECTIVES,
    INTRANSITIVE,
    NOUNS,
    PREPOSITIONS,
    TRANSITIVE,
)

VISION = ("inside-contact", "inside-number", "number-contact")
LANGUAGE = ("sva", "anaphora")
PART_KEYS = ("a", "b", "compound")
needs_tl = pytest.mark.skipif(
    __import__("importlib").util.find_spec("transformer_lens") is None,
    reason="needs transformer-lens",
)


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a busy 2-core machine this is faster and keeps timings stable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def small_tasks() -> dict[str, CompoundTask]:
    return {name: make_task(name, n_train=42, n_test=21, seed=3) for name in TASKS}


# --------------------------------------------------------------------------- data format


def test_registry_names() -> None:
    assert set(TASKS) == {*VISION, *LANGUAGE}


@pytest.mark.parametrize("name", [*VISION, *LANGUAGE])
def test_shapes_dtypes_and_names(small_tasks: dict[str, CompoundTask], name: str) -> None:
    task = small_tasks[name]
    assert task.name == name
    assert task.kind == ("vision" if name in VISION else "language")
    assert [task.a.name, task.b.name, task.compound.name] == [
        *task.meta["property_names"],
        "compound",
    ]
    for key in PART_KEYS:
        part = task.part(key)
        assert task.part(part.name) is part
        for split, n in (("train", 42), ("test", 21)):
            x, y = part.split(split)
            assert y.shape == (n,) and y.dtype == torch.int64
            assert int(y.min()) >= 0 and int(y.max()) <= 3
            if task.kind == "vision":
                assert x.shape == (n, 4, 1, 32, 32) and x.dtype == torch.float32
                assert set(x.unique().tolist()) <= {0.0, 1.0}
            else:
                assert x.shape == (n, 4, 12) and x.dtype == torch.int64
                assert int(x.max()) < len(task.meta["vocab"])
            assert properties(task, key, split).shape == (n, 4, 2)


@pytest.mark.parametrize("name", [*VISION, *LANGUAGE])
def test_labels_balanced_over_positions(small_tasks: dict[str, CompoundTask], name: str) -> None:
    for key in PART_KEYS:
        for split in ("train", "test"):
            counts = torch.bincount(small_tasks[name].part(key).split(split)[1], minlength=4)
            assert int(counts.max() - counts.min()) <= 1, (key, split, counts)


@pytest.mark.parametrize("name", [*VISION, *LANGUAGE])
def test_same_seed_same_tensors_other_seed_differs(name: str) -> None:
    one, two, other = (make_task(name, n_train=12, n_test=4, seed=s) for s in (5, 5, 6))
    for key in PART_KEYS:
        for split in ("train", "test"):
            x1, y1 = one.part(key).split(split)
            x2, y2 = two.part(key).split(split)
            assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(one.compound.train[0], other.compound.train[0])


def test_readable_repr(small_tasks: dict[str, CompoundTask]) -> None:
    text = repr(small_tasks["sva"])
    assert "subject" in text and "42 x (4, 12) int64" in text
    assert len(text) < 400  # no tensor dumps


def test_unknown_task_and_part_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="inside-contact") as info:
        make_task("nope")
    assert "anaphora" in str(info.value)
    task = make_task("sva", n_train=4, n_test=4)
    with pytest.raises(ConfigError):
        task.part("subjects")
    with pytest.raises(ConfigError):
        make_task("sva", n_train=0)
    with pytest.raises(ConfigError, match="max_len"):
        make_task("sva", n_train=4, size=32)
    with pytest.raises(ConfigError):
        train_task_model(
            build_vision_model(0), make_task("inside-contact", n_train=4, n_test=4), train_on=("c",)
        )


# --------------------------------------------------------------------------- design rules


def check_design(
    props: torch.Tensor,
    labels: torch.Tensor,
    key: str,
    rule: str,
    base: int = 1,
    vary_other: bool = False,
) -> None:
    """The odd candidate differs only in the stated property; compound follows its rule."""
    for p, odd in zip(props.tolist(), labels.tolist(), strict=True):
        regular = [p[i] for i in range(4) if i != odd]
        if key in ("a", "b", "partition-a", "partition-b"):
            decide, other = (0, 1) if key in ("a", "partition-a") else (1, 0)
            assert len({c[decide] for c in regular}) == 1, p
            value = regular[0][decide]
            assert p[odd][decide] == 1 - value, p
            if rule == "and" and (vary_other or key.startswith("partition")):
                assert value == base, p
            if key.startswith("partition"):  # all share the regular value in the other one
                assert all(c == [value, value] for c in regular), p
                assert p[odd][other] == value, p
            elif vary_other:  # the other property varies among the regular candidates
                assert {c[other] for c in regular} == {0, 1}, p
                assert p[odd][other] == value, p
            else:
                assert len({c[other] for c in p}) == 1, p  # all four share the other property
        elif rule == "iff":
            assert all(c[0] == c[1] for c in regular), p
            assert {c[0] for c in regular} == {0, 1}, p  # neither property alone decides
            assert p[odd][0] != p[odd][1], p
        else:
            assert all(c == [base, base] for c in regular), p
            assert p[odd] in ([1 - base, base], [base, 1 - base]), p


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 60),
    key=st.sampled_from([*PART_KEYS, "partition-a", "partition-b"]),
    rule=st.sampled_from(["iff", "and"]),
    base=st.sampled_from([0, 1]),
    vary_other=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_sample_design_rules(
    n: int, key: str, rule: str, base: int, vary_other: bool, seed: int
) -> None:
    gen = torch.Generator().manual_seed(seed)
    props, labels = sample_design(n, key, gen, rule, base=base, vary_other=vary_other)  # type: ignore[arg-type]
    assert props.shape == (n, 4, 2) and labels.shape == (n,)
    check_design(props, labels, key, rule, base, vary_other)


def task_design(task: CompoundTask) -> tuple[str, int, bool]:
    meta = task.meta
    return meta["rule"], int(meta.get("number") == "plural"), bool(meta.get("vary_other"))


@pytest.mark.parametrize("name", [*VISION, *LANGUAGE])
def test_task_properties_follow_design(small_tasks: dict[str, CompoundTask], name: str) -> None:
    task = small_tasks[name]
    if task.kind == "vision":
        assert task_design(task) == ("iff", 0, False)
        base = 1  # the vision "and" rule keeps both properties in the regular images
    else:  # the paper's design: singular experiment, "and" rule, the other property varies
        assert task_design(task) == ("and", 0, True)
        base = 0
    rule, _, vary = task_design(task)
    for key in PART_KEYS:
        for split in ("train", "test"):
            labels = task.part(key).split(split)[1]
            check_design(properties(task, key, split), labels, key, rule, base, vary)


def test_and_rule_is_available() -> None:
    task = make_task("sva", n_train=20, n_test=4, rule="and", number="plural")
    check_design(properties(task, "compound", "train"), task.compound.train[1], "compound", "and")
    task = make_task("inside-contact", n_train=8, n_test=4, rule="and")
    check_design(properties(task, "compound", "train"), task.compound.train[1], "compound", "and")


# --------------------------------------------------------------------------- vision geometry


def components(mask: np.ndarray) -> int:
    """Number of 8-connected components of a boolean image."""
    seen = np.zeros_like(mask)
    count = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        count += 1
        queue = deque([start])
        seen[start] = True
        while queue:
            y, x = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if (
                        0 <= ny < mask.shape[0]
                        and 0 <= nx < mask.shape[1]
                        and mask[ny, nx]
                        and not seen[ny, nx]
                    ):
                        seen[ny, nx] = True
                        queue.append((ny, nx))
    return count


def outside_of(outline: np.ndarray) -> np.ndarray:
    """Pixels reachable from the image border without crossing ``outline`` (4-connected)."""
    h, w = outline.shape
    reach = np.zeros_like(outline)
    queue = deque(
        (y, x) for y in range(h) for x in range(w) if (y in (0, h - 1) or x in (0, w - 1))
    )
    queue = deque(p for p in queue if not outline[p])
    for p in queue:
        reach[p] = True
    while queue:
        y, x = queue.popleft()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < h and 0 <= nx < w and not outline[ny, nx] and not reach[ny, nx]:
                reach[ny, nx] = True
                queue.append((ny, nx))
    return reach


def touching(a: np.ndarray, b: np.ndarray) -> bool:
    """Some pixel of ``a`` is 4-adjacent to a pixel of ``b``."""
    grown = a.copy()
    grown[1:] |= a[:-1]
    grown[:-1] |= a[1:]
    grown[:, 1:] |= a[:, :-1]
    grown[:, :-1] |= a[:, 1:]
    return bool((grown & b).any())


def chebyshev_gap(a: np.ndarray, b: np.ndarray) -> int:
    """Number of empty pixels between ``a`` and ``b`` (Chebyshev distance minus one)."""
    pa, pb = np.argwhere(a), np.argwhere(b)
    return int(np.abs(pa[:, None] - pb[None]).max(-1).min()) - 1


ALL_COMBOS = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]]).repeat(20, 1)


@pytest.mark.parametrize("name", VISION)
def test_scenes_are_union_of_objects(name: str) -> None:
    scenes = sample_scenes(name, ALL_COMBOS, generator=torch.Generator().manual_seed(0))
    assert torch.equal(scenes.images[:, 0] > 0, scenes.objects.any(1))
    assert (scenes.objects <= scenes.filled).all()


def test_inside_contact_geometry() -> None:
    gap = 2
    scenes = sample_scenes(
        "inside-contact", ALL_COMBOS, generator=torch.Generator().manual_seed(1), gap=gap
    )
    for (inside, contact), objs in zip(ALL_COMBOS.tolist(), scenes.objects.numpy(), strict=True):
        outline, small = objs[0], objs[1]
        assert not (outline & small).any()
        reach = outside_of(outline)
        assert (not reach[small].any()) if inside else reach[small].all()
        assert touching(small, outline) == bool(contact)
        if not contact:
            assert chebyshev_gap(small, outline) >= gap


def test_inside_number_geometry() -> None:
    scenes = sample_scenes("inside-number", ALL_COMBOS, generator=torch.Generator().manual_seed(2))
    for (inside, number), objs, image in zip(
        ALL_COMBOS.tolist(), scenes.objects.numpy(), scenes.images, strict=True
    ):
        smalls = [o for o in objs[1:] if o.any()]
        assert len(smalls) == 2 + number
        reach = outside_of(objs[0])
        for small in smalls:
            assert (not reach[small].any()) if inside else reach[small].all()
            assert chebyshev_gap(small, objs[0]) >= 1
        assert components(image[0].numpy() > 0) == 1 + len(smalls)


def test_number_contact_geometry() -> None:
    gap = 2
    scenes = sample_scenes(
        "number-contact", ALL_COMBOS, generator=torch.Generator().manual_seed(3), gap=gap
    )
    for (number, contact), objs, n in zip(
        ALL_COMBOS.tolist(), scenes.objects.numpy(), scenes.n_objects, strict=True
    ):
        assert int(n) == 2 + number
        assert touching(objs[0], objs[1]) == bool(contact)
        assert not (objs[0] & objs[1]).any()
        pairs = [(0, 1), (0, 2), (1, 2)] if number else [(0, 1)]
        for i, j in pairs:
            if (i, j) != (0, 1) or not contact:
                assert chebyshev_gap(objs[i], objs[j]) >= gap


@pytest.mark.parametrize("name", ["inside-number", "number-contact"])
def test_task_images_show_the_stored_number(
    small_tasks: dict[str, CompoundTask], name: str
) -> None:
    """Counting connected shapes in the task images recovers the stored properties."""
    task = small_tasks[name]
    for key in PART_KEYS:
        images, _ = task.part(key).test
        props = properties(task, key, "test").reshape(-1, 2).tolist()
        for image, (a, b) in zip(images.reshape(-1, 32, 32).numpy() > 0, props, strict=True):
            expected = 1 + 2 + b if name == "inside-number" else 2 + a - b
            assert components(image) == expected


# --------------------------------------------------------------------------- language


NOUN_WORDS = {w for pair in NOUNS for w in pair}
VERB_WORDS = {w for pair in INTRANSITIVE + TRANSITIVE for w in pair}


def plural_noun(word: str) -> int:
    assert word in NOUN_WORDS, word
    return int(word.endswith("s"))  # every noun of the grammar forms its plural with -s


def plural_verb(word: str) -> int:
    assert word in VERB_WORDS, word
    return int(not word.endswith("s"))  # present tense: "laughs" singular, "laugh" plural


def parse(words: list[str]) -> dict[str, Any]:
    """Read a sentence of the grammar: head noun, attractor (if any), main verb, last word."""
    i = 1 + (words[1] in ADJECTIVES)  # "the" [adjective] noun
    out: dict[str, Any] = {"head": words[i], "attractor": None, "form": "simple"}
    rest = words[i + 1 :]
    if rest[0] in PREPOSITIONS:  # the author near the guards ...
        out.update(form="pp", attractor=rest[2])
        rest = rest[3:]
    elif rest[0] == "that" and rest[1] == "the":  # the author that the guards like ...
        out.update(form="obj-rel", attractor=rest[2], embedded=rest[3])
        rest = rest[4:]
    elif rest[0] == "that":  # the author that likes the guards ...
        out.update(form="subj-rel", attractor=rest[3], embedded=rest[1])
        rest = rest[4:]
    elif rest[0] == "the":  # the author the guards like ...
        out.update(form="obj-rel", attractor=rest[1], embedded=rest[2])
        rest = rest[3:]
    out["main"], out["last"] = rest[0], words[-1]
    return out


def read_numbers(words: list[str], name: str) -> tuple[int, int]:
    """(subject, verb) or (antecedent, reflexive) numbers, read from the words."""
    parsed = parse(words)
    if name == "sva":
        return plural_noun(parsed["head"]), plural_verb(parsed["main"])
    return plural_noun(parsed["head"]), int(parsed["last"] == "themselves")


@pytest.mark.parametrize("name", LANGUAGE)
def test_sentences_read_back_as_intended(small_tasks: dict[str, CompoundTask], name: str) -> None:
    task = small_tasks[name]
    vocab = task.meta["vocab"]
    assert (vocab["<pad>"], vocab["<bos>"]) == (0, 1)
    for key in PART_KEYS:
        x, labels = task.part(key).train
        props = properties(task, key, "train")
        for row, p, odd in zip(x, props.tolist(), labels.tolist(), strict=True):
            for i, tokens in enumerate(row):
                length = int((tokens != 0).sum())
                assert tokens[0] == vocab["<bos>"] and tokens[length - 1] == vocab["<cls>"]
                assert (tokens[length:] == 0).all()
                words = decode(tokens, vocab)
                assert list(read_numbers(words, name)) == p[i]  # type: ignore[arg-type]
                if key == "compound":  # the odd one is the only ungrammatical sentence
                    grammatical = p[i][0] == p[i][1]
                    assert grammatical == (i != odd), words


@pytest.mark.parametrize("name", LANGUAGE)
def test_agreement_attractors_in_pps_and_relative_clauses(name: str) -> None:
    """Attractors of both numbers sit between the subject and the verb, in every template."""
    task = make_task(name, n_train=100, n_test=4, seed=1)
    vocab = task.meta["vocab"]
    parsed = [parse(words) for words in decode(task.compound.train[0], vocab)]  # type: ignore[arg-type]
    forms = {p["form"] for p in parsed}
    assert forms == {"simple", "pp", "subj-rel", "obj-rel"}
    with_attractor = [p for p in parsed if p["attractor"] is not None]
    mismatched = [
        p for p in with_attractor if plural_noun(p["attractor"]) != plural_noun(p["head"])
    ]
    assert len(with_attractor) > 0.6 * len(parsed)
    assert 0.3 < len(mismatched) / len(with_attractor) < 0.7  # the other number about half the time
    for p in parsed:
        if p["form"] == "obj-rel":  # "the author that the guards like": agrees with the attractor
            assert plural_verb(p["embedded"]) == plural_noun(p["attractor"]), p
        if p["form"] == "subj-rel":  # "the author that likes the guards": agrees with the head
            assert plural_verb(p["embedded"]) == plural_noun(p["head"]), p
    example = next(" ".join(w) for w in decode(task.compound.train[0], vocab) if "that" in w)
    assert example.startswith("the ") and " that " in example


@pytest.mark.parametrize("name", LANGUAGE)
def test_partitions_flip_only_the_named_property(name: str) -> None:
    task = make_task(name, n_train=8, n_test=40, n_val=12, seed=2)
    vocab = task.meta["vocab"]
    for key, prop in (("a", 0), ("b", 1)):
        partition = task.partition(key)
        assert partition is task.partition(task.part(key).name)  # generated once, by either name
        assert (partition.n_train, partition.n_test, partition.n_val) == (0, 40, 12)
        assert "only" in (partition.source or "") and task.part(key).name in (
            partition.source or ""
        )
        x, labels = partition.test
        for row, odd in zip(x, labels.tolist(), strict=True):
            numbers = [read_numbers(w, name) for w in decode(row, vocab)]  # type: ignore[arg-type]
            regular = [numbers[i] for i in range(4) if i != odd]
            assert all(n == (0, 0) for n in regular), numbers  # singular experiment: grammatical
            flipped = [i for i in range(2) if numbers[odd][i] != 0]
            assert flipped == [prop], numbers
    again = make_task(name, n_train=8, n_test=40, n_val=12, seed=2).partition("a")
    assert torch.equal(again.test[0], task.partition("a").test[0])


def test_paper_sizes_are_available() -> None:
    from sc_interp.tasks.language import PAPER_SIZES

    assert PAPER_SIZES["sva"] == {"n_train": 9500, "n_val": 500, "n_test": 1000, "partition": 300}
    assert PAPER_SIZES["anaphora"]["n_train"] == 2500
    task = make_task("anaphora", paper_sizes=True)
    assert (task.a.n_train, task.a.n_val, task.a.n_test) == (2500, 200, 200)
    assert task.meta["partition_sizes"]["test"] == 200


def test_sva_example_sentences_are_english_like() -> None:
    task = make_task("sva", n_train=8, n_test=4, seed=0)
    sentences = [" ".join(w) for w in decode(task.compound.train[0], task.meta["vocab"])]
    assert all(s.startswith("the ") for s in sentences)
    assert len(set(sentences)) == len(sentences)  # candidates do not repeat surface strings


@pytest.mark.parametrize("name", LANGUAGE)
def test_candidates_vary_lexically(small_tasks: dict[str, CompoundTask], name: str) -> None:
    x = small_tasks[name].compound.train[0]
    distinct = [len({tuple(r.tolist()) for r in example}) == 4 for example in x]
    assert sum(distinct) >= 0.9 * len(distinct)


def test_vocab_is_fixed_and_max_len_is_checked() -> None:
    assert build_vocab() == make_task("anaphora", n_train=4, n_test=4).meta["vocab"]
    with pytest.raises(ConfigError):
        make_task("sva", n_train=4, n_test=4, max_len=8)


# --------------------------------------------------------------------------- models


def test_odd_one_out_head_hand_set_encoder() -> None:
    model = OddOneOut(torch.nn.Identity(), scale=10.0)
    assert list(model.parameters()) == []  # the scale is a constant, not trained
    emb = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [1.0, -0.1, 0.0], [0.0, 0.0, 1.0]])
    x = torch.stack(
        [emb[torch.tensor(perm)] for perm in ([0, 1, 2, 3], [3, 0, 1, 2], [1, 3, 2, 0])]
    )
    logits = model(x)
    assert logits.shape == (3, 4)
    assert logits.argmax(-1).tolist() == [3, 0, 1]
    cos = torch.nn.functional.cosine_similarity(x[0, :, None], x[0, None], dim=-1)
    assert torch.allclose(logits[0], -10.0 * (cos.sum(-1) - 1.0), atol=1e-5)
    with pytest.raises(DataError):
        model(torch.zeros(2, 3, 5))


def test_vision_model_forward_and_seed() -> None:
    state = torch.random.get_rng_state()
    one, two = build_vision_model(7), build_vision_model(7)
    assert torch.equal(torch.random.get_rng_state(), state)  # global RNG untouched
    x = torch.rand(2, 4, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    one.eval()
    two.eval()
    assert one(x).shape == (2, 4)
    assert torch.equal(one(x), two(x))


@needs_tl
def test_language_model_sites_and_padding() -> None:
    from sc_interp.tasks import build_language_model

    state = torch.random.get_rng_state()
    model = build_language_model(len(build_vocab()), seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    names = dict(model.named_modules())
    assert "encoder.bridge" in names
    bridge: Any = names["encoder.bridge"]
    assert "blocks.0.mlp.hook_post" in bridge.hook_dict
    tokens = make_task("sva", n_train=4, n_test=2).a.test[0]
    padded = torch.nn.functional.pad(tokens, (0, 3))
    model.eval()
    assert model(tokens).shape == (2, 4)
    assert torch.allclose(model(tokens), model(padded), atol=1e-5)  # padding is invisible


def test_training_is_deterministic() -> None:
    task = make_task("number-contact", n_train=32, n_test=8)
    weights = []
    for _ in range(2):
        model = build_vision_model(1)
        history = train_task_model(model, task.a, epochs=1, seed=4, progress=False)
        weights.append(torch.cat([p.flatten() for p in model.parameters()]))
        assert not model.training
    assert set(history) == {"epoch", "loss", "test_acc/number"}
    assert torch.equal(weights[0], weights[1])


def test_quick_vision_training_beats_chance() -> None:
    task = make_task("number-contact", n_train=1024, n_test=200, seed=0)
    model = build_vision_model(0)
    train_task_model(model, task.a, epochs=4, lr=2e-3, seed=0, progress=False)
    assert task_accuracy(model, task.a) > 0.5


@needs_tl
def test_quick_language_training_beats_chance() -> None:
    task = make_task("sva", n_train=512, n_test=200, seed=0)
    model = build_task_model(task, arm="scratch", epochs=4, lr=5e-3, train_on=("a",))
    assert task_accuracy(model, task.a) > 0.5


@needs_tl
@pytest.mark.parametrize("name", ["inside-contact", "anaphora"])
def test_pretrained_arm_quick_mode(name: str) -> None:
    task = make_task(name, n_train=64, n_test=16)
    model = build_task_model(task, arm="pretrained", quick=True, train_on=("a", "b", "compound"))
    assert not model.training
    assert model(task.compound.test[0]).shape == (16, 4)
    with pytest.raises(ConfigError):
        build_task_model(task, arm="bert")  # type: ignore[arg-type]


@needs_tl
def test_language_pretraining_lowers_lm_loss() -> None:
    from sc_interp.tasks import build_language_model, pretrain_language_model

    vocab = build_vocab()
    model = build_language_model(len(vocab), seed=0)
    loss = pretrain_language_model(model, vocab, steps=40, seed=0, progress=False)["loss"]
    assert np.mean(loss[-5:]) < 0.7 * np.mean(loss[:5])


def test_vision_pretraining_lowers_contrastive_loss() -> None:
    from sc_interp.tasks import pretrain_vision_model

    model = build_vision_model(0)
    before = [p.clone() for p in model.encoder.parameters()]
    loss = pretrain_vision_model(model, steps=30, seed=0, batch_size=32, progress=False)["loss"]
    assert np.mean(loss[-5:]) < np.mean(loss[:5])
    assert any(
        not torch.equal(a, b) for a, b in zip(before, model.encoder.parameters(), strict=True)
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["number-contact", "sva"])
def test_default_models_reach_high_accuracy(name: str) -> None:
    """Demo scale: a model trained on the mixed sets solves all three test sets."""
    task = make_task(name)
    model = build_task_model(task, arm="scratch", train_on=("a", "b", "compound"))
    for key in PART_KEYS:
        assert task_accuracy(model, task.part(key)) >= 0.9, key


# --------------------------------------------------------------------------- import hygiene


def test_import_does_not_pull_heavy_dependencies() -> None:
    code = (
        "import sys, sc_interp.tasks\n"
        "bad = [m for m in ('transformer_lens', 'matplotlib', 'pandas') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_all_public_names_import() -> None:
    import sc_interp.tasks as tasks

    for name in tasks.__all__:
        assert getattr(tasks, name) is not None
