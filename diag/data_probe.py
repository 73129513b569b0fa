"""Facts about dataset splits, measured once from numpy arrays: the ``data`` records of a trace.

Leakage and label problems are invisible in loss curves until it is too late, and cheap to see in
the data itself. For each split the probe measures:

* ``overlap_with_train``: examples whose exact input row (hashed) also occurs in the train split;
* ``feature_scores``: how well each feature *alone* predicts the label: the accuracy, on held-out
  rows, of the majority label among the 7 nearest training values of that feature. A feature
  that scores near 1.0 alone is almost surely the label in disguise (target leakage);
* ``id_like_features``: integer or string columns with (almost) one distinct value per row;
* ``time_min``/``time_max`` when timestamps are given (validation should come after train);
* ``label_histogram``, input mean/std and non-finite count;
* ``conflicting_labels``: examples whose identical input occurs with a different label.

Labels may be one class per example (integers, strings), one-hot rows or probabilities; labels of
any other shape (multi-label rows, segmentation masks, one-hot images) still get the input facts
and the conflicting-label count (labels compared whole), and a note says which label facts were
left out. Recording never stops on a shape the probe cannot read: that split gets a note instead.

numpy only, no framework. Example:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); y = (X[:, 0] > 0).astype(int)
    >>> recs = probe_splits({"train": (X[:150], y[:150]), "val": (X[140:], y[140:])})
    >>> recs[1].overlap_with_train, recs[1].feature_scores[0].feature
    (10, 'f0')
"""

from __future__ import annotations

import hashlib
from typing import Mapping, Sequence

import numpy as np

from diag.trace.records import Data, FeatureScore, NoteEvent

MAX_FEATURES = 256  # features scored per split (the first ones); keeps the probe fast and records short
TOP_SCORES = 10  # scores written per split, best first
ID_LIKE_DISTINCT = 0.95  # distinct values / rows above which an integer/string column looks like an id
NEIGHBOURS = 7


def _rows(X) -> np.ndarray:
    X = np.asarray(X)
    return X.reshape(len(X), -1) if X.ndim != 1 else X.reshape(-1, 1)


def row_hashes(X) -> np.ndarray:
    """A 64-bit hash of each example's input (rows compared exactly, as float64; -0.0 == 0.0)."""
    rows = _rows(X)
    if rows.dtype.kind in "biuf":
        rows = np.ascontiguousarray(rows.astype(np.float64) + 0.0)
        return np.array([int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little")
                         for r in rows], dtype=np.uint64)
    return np.array([int.from_bytes(hashlib.blake2b(repr(tuple(r)).encode(), digest_size=8).digest(), "little")
                     for r in rows], dtype=np.uint64)


def _is_classification(y: np.ndarray) -> bool:
    if y.dtype.kind in "biuUSO":
        return True
    return y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)) and len(np.unique(y)) <= 1000


def _labels_1d(y) -> np.ndarray:
    labels = class_per_example(y)
    if labels is None:
        raise ValueError(f"labels of shape {np.shape(y)} are not one class per example")
    return labels


def class_per_example(y) -> np.ndarray | None:
    """One class per example: the labels themselves, or the argmax of one-hot / probability rows.

    Returns None for labels that are not one class per example: multi-label rows (several classes
    at once), per-pixel masks, anything with more than two dimensions.
    """
    y = np.asarray(y)
    if y.ndim == 1:
        return y
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    if y.ndim == 2 and y.dtype.kind in "biuf" and len(y) and y.shape[1] > 1:
        rows = y.astype(np.float64)
        with np.errstate(invalid="ignore"):
            one_class = np.all(rows >= 0) and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3)
        if one_class:  # one-hot or probabilities
            return y.argmax(axis=1)
    return None


def single_feature_accuracy(train_col, train_y, test_col, test_y, k: int = NEIGHBOURS) -> float:
    """Held-out accuracy of predicting a label from one feature by its ``k`` nearest train values.

    Nearest neighbours on one axis follow the data's own clusters (quantile bins cut through
    them): a feature that is the label in disguise scores ~1.0, a noise or row-id feature about
    the majority-class share.
    """
    if len(test_y) == 0 or len(train_y) == 0:
        return float("nan")
    classes, train_codes = np.unique(train_y, return_inverse=True)
    tr, te = _sortable(train_col), _sortable(test_col)
    order = np.argsort(tr, kind="stable")
    tr, train_codes = tr[order], train_codes[order]
    k = min(k, len(tr))
    # The k nearest lie among the k values on either side of the insertion point.
    width = min(2 * k, len(tr))
    start = np.clip(np.searchsorted(tr, te) - k, 0, len(tr) - width)
    candidates = start[:, None] + np.arange(width)[None, :]
    with np.errstate(invalid="ignore"):
        distance = np.abs(tr[candidates] - te[:, None])
    nearest = np.argsort(np.nan_to_num(distance, nan=0.0), axis=1, kind="stable")[:, :k]
    window = np.take_along_axis(candidates, nearest, axis=1)
    # Vote counts per (test row, class): one bincount over flat indices (np.add.at is unbuffered
    # and an order of magnitude slower).
    flat = (np.arange(len(te))[:, None] * len(classes) + train_codes[window]).ravel()
    votes = np.bincount(flat, minlength=len(te) * len(classes)).reshape(len(te), len(classes))
    pred = classes[votes.argmax(axis=1)]
    return float(np.mean(pred == test_y))


def _sortable(col: np.ndarray) -> np.ndarray:
    if col.dtype.kind in "biuf":
        return np.nan_to_num(col.astype(np.float64), nan=np.inf)
    _, codes = np.unique(col.astype(str), return_inverse=True)  # strings: by category
    return codes.astype(np.float64)


def _mode(values: np.ndarray):
    vals, counts = np.unique(values, return_counts=True)
    return vals[np.argmax(counts)]


def feature_scores(X, y, *, names: Sequence[str] | None = None, fit=None, seed: int = 0) -> list[FeatureScore]:
    """Single-feature predictive power of each column of a 2-D ``X``, best first (classification).

    Args:
      X, y: the split's features and labels.
      names: feature names (default ``f0, f1, ...``).
      fit: ``(X_fit, y_fit)`` to learn the bins from (e.g. the train split); default: half of
        this split, scored on the other half.
      seed: for the half split.
    """
    X, y = _rows(X), _labels_1d(y)
    names = list(names) if names is not None else [f"f{j}" for j in range(X.shape[1])]
    if fit is None:
        order = np.random.default_rng(seed).permutation(len(X))
        half = len(X) // 2
        fit_idx, test_idx = order[:half], order[half:]
        X_fit, y_fit, X_test, y_test = X[fit_idx], y[fit_idx], X[test_idx], y[test_idx]
    else:
        X_fit, y_fit = _rows(fit[0]), _labels_1d(fit[1])
        X_test, y_test = X, y
    scores = []
    for j in range(min(X.shape[1], MAX_FEATURES)):
        acc = single_feature_accuracy(X_fit[:, j], y_fit, X_test[:, j], y_test)
        scores.append(FeatureScore(feature=names[j], score=round(acc, 6), metric="holdout_accuracy"))
    scores.sort(key=lambda s: -s.score)
    return scores[:TOP_SCORES]


def id_like_features(X, names: Sequence[str] | None = None) -> list[str]:
    """Integer-valued or string columns with (almost) one distinct value per row."""
    X = _rows(X)
    names = list(names) if names is not None else [f"f{j}" for j in range(X.shape[1])]
    out = []
    if len(X) < 20:
        return out
    for j in range(min(X.shape[1], MAX_FEATURES)):
        col = X[:, j]
        integral = col.dtype.kind in "biuUSO" or (col.dtype.kind == "f" and np.all(np.isfinite(col)) and np.all(col == np.round(col)))
        if integral and len(np.unique(col)) >= ID_LIKE_DISTINCT * len(col):
            out.append(names[j])
    return out


def probe_split(name: str, X, y=None, *, train: tuple | None = None, feature_names=None,
                timestamps=None, train_hashes: np.ndarray | None = None,
                notes: list[str] | None = None) -> Data:
    """The ``Data`` record of one split.

    Args:
      name: the split's name ('train', 'val', 'test').
      X: inputs, ``(n, ...)``; per-feature facts need a 2-D table.
      y: labels (integer, string or one-hot), optional.
      train: ``(X_train, y_train)`` to score features on this split with bins fit on train.
      feature_names: column names of a 2-D ``X``.
      timestamps: one time per example (seconds or any number), optional.
      train_hashes: :func:`row_hashes` of the train split, for the overlap count.
      notes: a list that receives a sentence for each fact left out because of the data's shape.
    """
    notes = notes if notes is not None else []
    X = np.asarray(X)
    rows = _rows(X)
    numeric = rows.dtype.kind in "biuf"
    rec = Data(split=name, size=len(rows), num_features=rows.shape[1])
    if numeric:
        values = rows.astype(np.float64)
        finite = np.isfinite(values)
        rec.input_nonfinite = int((~finite).sum())
        if finite.any():
            rec.input_mean = float(values[finite].mean())
            rec.input_std = float(values[finite].std())
    hashes = row_hashes(rows)
    if train_hashes is not None:
        shared = np.isin(hashes, train_hashes)
        rec.overlap_with_train = int(shared.sum())
        rec.overlap_fraction = float(shared.mean()) if len(shared) else 0.0
    if X.ndim <= 2:
        rec.id_like_features = id_like_features(rows, feature_names)
    if timestamps is not None:
        t = np.asarray(timestamps, dtype=np.float64)
        if t.size and np.isfinite(t).any():
            rec.time_min, rec.time_max = float(np.nanmin(t)), float(np.nanmax(t))
    if y is None:
        return rec
    y = np.asarray(y)
    if y.ndim == 0 or len(y) != len(rows):
        notes.append(f"data probe, split {name!r}: {len(rows)} inputs but labels of shape {y.shape}; "
                     "label facts left out")
        return rec
    labels = class_per_example(y)
    if labels is None:
        rec.conflicting_labels = _conflicts(hashes, row_hashes(y))
        rec.conflicting_fraction = rec.conflicting_labels / len(y) if len(y) else 0.0
        notes.append(f"data probe, split {name!r}: labels of shape {y.shape} are not one class per example "
                     "(multi-label or per-element); label histogram and feature scores left out")
    else:
        if _is_classification(labels):
            vals, counts = np.unique(labels, return_counts=True)
            rec.label_histogram = {str(v.item() if hasattr(v, "item") else v): int(c) for v, c in zip(vals, counts)}
            rec.conflicting_labels = _conflicts(hashes, labels)
            rec.conflicting_fraction = rec.conflicting_labels / len(labels) if len(labels) else 0.0
            fit_labels = class_per_example(train[1]) if train is not None else None
            if X.ndim <= 2 and numeric and len(rows) >= 20 and (train is None or fit_labels is not None):
                fit = None if train is None else (train[0], fit_labels)
                rec.feature_scores = feature_scores(rows, labels, names=feature_names, fit=fit)
    return rec


def _conflicts(hashes: np.ndarray, labels: np.ndarray) -> int:
    order = np.argsort(hashes, kind="stable")
    h, lab = hashes[order], labels[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    ends = np.r_[starts[1:], len(h)]
    bad = 0
    for s, e in zip(starts, ends):
        if e - s > 1 and len(np.unique(lab[s:e])) > 1:
            bad += e - s
    return int(bad)


def probe_splits(splits: Mapping[str, tuple], *, feature_names=None, timestamps: Mapping | None = None,
                 train: str = "train") -> list[Data]:
    """``Data`` records for every split; overlap and feature bins are taken against ``train``.

    Args:
      splits: ``{"train": (X, y), "val": (X, y), ...}`` (``y`` may be None).
      feature_names: column names of 2-D inputs.
      timestamps: ``{split: times}``, optional.
      train: the name of the training split.

    Returns:
      One Data record per split, train first, then a warning ``NoteEvent`` for each fact the probe
      could not measure (a label or input shape it cannot read). Write them all with
      ``writer.write(record)`` or ``recorder.write(record)``.
    """
    timestamps = timestamps or {}
    names = [train] + [s for s in splits if s != train] if train in splits else list(splits)
    notes: list[str] = []
    train_hashes = None
    if train in splits:
        try:
            train_hashes = row_hashes(splits[train][0])
        except (ValueError, TypeError) as e:
            notes.append(f"data probe, split {train!r}: cannot read the inputs ({e}); overlap with train left out")
    out: list = []
    for name in names:
        X, y = splits[name]
        is_train = name == train
        try:
            out.append(probe_split(
                name, X, y, feature_names=feature_names, timestamps=timestamps.get(name),
                train=None if is_train or train not in splits else splits[train],
                train_hashes=None if is_train else train_hashes, notes=notes,
            ))
        except (ValueError, TypeError, IndexError) as e:
            # An input the probe cannot read must not stop the run it is recording.
            notes.append(f"data probe, split {name!r}: not measured ({type(e).__name__}: {str(e)[:200]})")
    out.extend(NoteEvent(message=note, level="warning") for note in notes)
    return out
