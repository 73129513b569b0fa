"""The data probe finds the leaks and label problems planted in a synthetic tabular dataset."""

from __future__ import annotations

import numpy as np
import pytest

from diag.data_probe import probe_splits, row_hashes
from diag.trace import load_trace, write_trace
from diag.trace.records import Header


def make_table(n, rng):
    X = rng.normal(size=(n, 5))
    y = (X[:, 0] + 0.8 * rng.normal(size=n) > 0).astype(int)  # f0 helps, but is no leak
    return X, y


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    X, y = make_table(1000, rng)
    X[:, 3] = y + 0.01 * rng.normal(size=1000)  # f3: the label in disguise
    X[:, 4] = np.arange(1000)  # f4: a row id
    train, val = (X[:800], y[:800]), (X[800:].copy(), y[800:].copy())
    val[0][:30] = train[0][:30]  # 30 validation rows copied from train
    val[1][:30] = train[1][:30]
    Xc, yc = train[0].copy(), train[1].copy()
    Xc[700:720] = Xc[600:620]  # 20 duplicated inputs ...
    yc[700:720] = 1 - yc[600:620]  # ... with the other label
    Xc[50, 1] = np.nan
    times = {"train": np.arange(800.0), "val": np.arange(790.0, 990.0)}
    names = ["f0", "f1", "f2", "leak", "row_id"]
    return {r.split: r for r in probe_splits({"train": (Xc, yc), "val": val}, feature_names=names, timestamps=times)}


def test_validation_rows_copied_from_train_are_counted(planted):
    assert planted["val"].overlap_with_train == 30
    assert planted["val"].overlap_fraction == pytest.approx(30 / 200)
    assert planted["train"].overlap_with_train is None


def test_a_feature_that_encodes_the_label_scores_near_one_and_ranks_first(planted):
    for split, floor in (("train", 0.93), ("val", 0.97)):  # train carries 40 relabelled rows
        scores = planted[split].feature_scores
        assert scores[0].feature == "leak" and scores[0].score > floor
        assert {s.feature: s.score for s in scores}["f1"] < 0.65  # pure noise: chance level


def test_row_ids_are_flagged_as_identifier_columns(planted):
    assert planted["train"].id_like_features == ["row_id"]


def test_identical_inputs_with_different_labels_are_counted(planted):
    assert planted["train"].conflicting_labels == 40  # 20 pairs
    assert planted["val"].conflicting_labels == 0


def test_time_ranges_show_validation_overlapping_train_in_time(planted):
    assert planted["train"].time_max == 799.0 and planted["val"].time_min == 790.0


def test_label_histogram_and_input_statistics(planted):
    train = planted["train"]
    assert sum(train.label_histogram.values()) == 800 and set(train.label_histogram) == {"0", "1"}
    assert train.input_nonfinite == 1 and planted["val"].input_nonfinite == 0
    assert np.isfinite(train.input_mean) and train.input_std > 0


def test_clean_splits_show_no_leak(tmp_path):
    rng = np.random.default_rng(1)
    (Xa, ya), (Xb, yb) = make_table(600, rng), make_table(200, rng)
    records = probe_splits({"train": (Xa, ya), "val": (Xb, yb)})
    val = records[1]
    assert val.overlap_with_train == 0 and val.conflicting_labels == 0 and val.id_like_features == []
    assert val.feature_scores[0].score < 0.9
    # The records are ordinary trace records.
    path = write_trace(tmp_path / "t.jsonl", [Header(run_id="x", framework="numpy"), *records])
    assert [d.split for d in load_trace(path).data] == ["train", "val"]


def test_images_are_hashed_whole_and_get_no_per_feature_scores():
    rng = np.random.default_rng(2)
    imgs = rng.normal(size=(40, 4, 4, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=40)
    train, val = probe_splits({"train": (imgs[:30], labels[:30]), "val": (imgs[25:], labels[25:])})
    assert val.overlap_with_train == 5 and val.feature_scores == [] and train.num_features == 48
    assert len(set(row_hashes(imgs).tolist())) == 40


# ------------------------------------------------------------------ label and input shapes


def _images(n, rng):
    return rng.normal(size=(n, 8, 8, 3)).astype(np.float32)


def test_one_hot_image_labels_are_read_as_one_class_per_example():
    rng = np.random.default_rng(1)
    classes = rng.integers(0, 4, size=120)
    one_hot = np.eye(4, dtype=np.float32)[classes]
    records = probe_splits({"train": (_images(120, rng), one_hot)})
    (train,) = records
    assert train.label_histogram == {str(c): int((classes == c).sum()) for c in range(4)}


@pytest.mark.parametrize("labels_shape", [(60, 5), (60, 8, 8), (60, 8, 8, 4)],
                         ids=["multi-label rows", "segmentation masks", "one-hot masks"])
def test_labels_that_are_not_one_class_per_example_leave_a_note_and_keep_the_input_facts(labels_shape):
    rng = np.random.default_rng(2)
    X = _images(60, rng)
    y = (rng.random(size=labels_shape) > 0.5).astype(np.int64)  # several ones per row
    y[1] = 1 - y[0]  # the same input below, another label
    X[1] = X[0]
    train, note = probe_splits({"train": (X, y)})
    assert train.size == 60 and train.input_mean is not None and train.label_histogram is None
    assert train.conflicting_labels == 2
    assert note.kind == "event" and note.event == "note" and note.level == "warning"
    assert f"labels of shape {labels_shape}" in note.message and "label histogram" in note.message


def test_a_split_the_probe_cannot_read_becomes_a_note_and_the_other_splits_are_measured():
    rng = np.random.default_rng(3)
    X, y = make_table(100, rng)
    ragged = np.empty(3, dtype=object)
    ragged[:] = [[1.0], [1.0, 2.0], "x"]
    records = probe_splits({"train": (X, y), "odd": (ragged, np.zeros((7, 2, 2))), "val": (X[:40], y[:40])})
    data = [r for r in records if r.kind == "data"]
    notes = [r.message for r in records if r.kind == "event"]
    assert [d.split for d in data] == ["train", "odd", "val"] and data[2].overlap_with_train == 40
    assert len(notes) == 1 and "'odd'" in notes[0] and "labels of shape (7, 2, 2)" in notes[0]


def test_probe_notes_are_written_and_read_back_as_warnings(tmp_path):
    rng = np.random.default_rng(4)
    records = probe_splits({"train": (_images(30, rng), rng.integers(0, 2, size=(30, 8, 8)))})
    trace = load_trace(write_trace(tmp_path / "run.jsonl", [Header(run_id="r", framework="numpy"), *records]))
    (note,) = trace.events_of("note")
    assert "not one class per example" in note.message
