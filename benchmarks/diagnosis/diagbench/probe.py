"""Write the data probe's facts about a scenario's splits into its trace, as a user would."""

from __future__ import annotations

import numpy as np

from diagbench.data import Dataset


def write_data_facts(write, ds: Dataset) -> None:
    """Probe train and val with ``diag.data_probe`` and write each ``Data`` record with ``write``.

    Images and sequences are flattened to one row per example (the probe hashes rows; per-feature
    scores read the first 256 columns).
    """
    from diag.data_probe import probe_splits

    def flat(x):
        return x.reshape(len(x), -1)

    splits = {"train": (flat(ds.x_train), ds.y_train), "val": (flat(ds.x_val), ds.y_val)}
    times = None
    if ds.t_train is not None:
        times = {"train": ds.t_train, "val": ds.t_val}
    names = ds.feature_names if ds.feature_names and len(ds.feature_names) == flat(ds.x_train).shape[1] else None
    for record in probe_splits(splits, feature_names=names, timestamps=times):
        write(record)
