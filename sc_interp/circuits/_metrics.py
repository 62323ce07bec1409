"""Ranking metrics in plain numpy: AUROC (Mann-Whitney with tied ranks) and AUPRC."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _inputs(scores: ArrayLike, labels: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=float).reshape(-1)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} differ in length")
    return s, y


def auroc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Area under the ROC curve; ``nan`` when only one class is present. Ties count half.

    Example:
        >>> auroc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
        1.0
        >>> auroc([1.0, 1.0], [1, 0])
        0.5
    """
    s, y = _inputs(scores, labels)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=float)
    sorted_scores = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def auprc(scores: ArrayLike, labels: ArrayLike) -> float:
    """Average precision (area under the precision-recall step curve), tied scores
    forming one threshold; ``nan`` without positives.

    Example:
        >>> auprc([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0])
        1.0
        >>> round(auprc([0.9, 0.8, 0.7], [0, 1, 1]), 4)
        0.5833
    """
    s, y = _inputs(scores, labels)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # last index of each distinct threshold
    ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp = np.cumsum(y)[ends]
    precision = tp / (ends + 1)
    recall = tp / n_pos
    previous = np.r_[0.0, recall[:-1]]
    return float(np.sum((recall - previous) * precision))
