"""Synthetic versions of the "Break It Down" tasks and tiny odd-one-out models.

Vision (CVR-style rendered shapes): ``inside-contact``, ``inside-number``,
``number-contact``. Language (agreement templates): ``sva``, ``anaphora``. Every task is
an odd-one-out among four candidates with an "A" set, a "B" set, a compound set and the
compound set's partitions (``task.partition("a")``). Your own problems (sentences or
images) become inputs with :func:`odd_one_out`.

Importing this package does not import transformer_lens, matplotlib or pandas.

Example:
    >>> from sc_interp.tasks import make_task, build_task_model, task_accuracy
    >>> task = make_task("inside-contact", n_train=64, n_test=16)
    >>> model = build_task_model(task, arm="scratch", quick=True)
    >>> 0.0 <= task_accuracy(model, task.compound) <= 1.0
    True
"""

from sc_interp.tasks._base import CompoundTask, TaskData, properties
from sc_interp.tasks._design import sample_design
from sc_interp.tasks._registry import TASKS, make_task
from sc_interp.tasks.language import build_vocab, decode, encode, make_language_task
from sc_interp.tasks.models import (
    LanguageEncoder,
    OddOneOut,
    VisionEncoder,
    build_language_model,
    build_vision_model,
)
from sc_interp.tasks.pretraining import (
    augment,
    pretrain_language_model,
    pretrain_vision_model,
    symmetries,
)
from sc_interp.tasks.problems import Encoded, odd_one_out, word_vocab
from sc_interp.tasks.training import (
    build_task_model,
    task_accuracy,
    train_task_model,
)
from sc_interp.tasks.vision import Scenes, make_vision_task, sample_scenes

__all__ = [
    "TASKS",
    "CompoundTask",
    "Encoded",
    "LanguageEncoder",
    "OddOneOut",
    "Scenes",
    "TaskData",
    "VisionEncoder",
    "augment",
    "build_language_model",
    "build_task_model",
    "build_vision_model",
    "build_vocab",
    "decode",
    "encode",
    "make_language_task",
    "make_task",
    "make_vision_task",
    "odd_one_out",
    "pretrain_language_model",
    "pretrain_vision_model",
    "properties",
    "sample_design",
    "sample_scenes",
    "symmetries",
    "task_accuracy",
    "train_task_model",
    "word_vocab",
]
