"""The data of the program-style scenarios (held-out sets 4 and 5): made by code, unlike ``data.py``.

Written separately from ``diagbench/data.py`` on purpose, so that the held-out runs do not share
the calibration set's data: other tasks, other sizes, other scales.

* ``sensor``: multichannel sequences; the class is the frequency band of a hidden oscillation.
* ``glyphs``: 12x12 pictures of digit-like strokes, shifted and noisy (one channel).
* ``tokens``: one-hot token sequences; the class is the token that occurs most often.
* ``houses``: tabular regression whose target is a price in thousands (mean ~3000, std ~900).
* ``churn``: tabular classification with an optional class imbalance.
* ``curve``: regression of a smooth function of one input feature.

Faults a pipeline plants: flipped labels (``label_noise``), inputs scaled twice
(``input_scale``), validation read from the training file (``val_is_train``), an imbalance
(``minority``: the share of every class but the first).

Example:
  >>> ds = make({"task": "houses", "n_train": 64, "n_val": 16}, seed=0)
  >>> ds.task, ds.x_train.shape, float(ds.y_train.mean()) > 1000
  ('regression', (64, 6), True)
"""

from __future__ import annotations

import numpy as np

from diagbench.data import Dataset


def _sensor(cfg, rng, n):
    t, f, c = cfg.get("length", 20), cfg.get("channels", 3), cfg.get("classes", 4)
    y = rng.integers(0, c, n)
    freq = 0.15 + 0.22 * y + rng.uniform(-0.04, 0.04, n)
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    steps = np.arange(t)[None, :]
    wave = np.sin(freq[:, None] * steps * np.pi + phase)
    mix = rng.normal(0, 1, (n, f)) * 0.5 + 1.0
    x = wave[:, :, None] * mix[:, None, :] + rng.normal(0, cfg.get("noise", 0.3), (n, t, f))
    return x.astype(np.float32), y


def _glyph(kind, rng, size):
    img = np.zeros((size, size), np.float32)
    r0, c0 = rng.integers(1, 4, 2)
    s = size - 5
    if kind == 0:  # vertical stroke
        img[r0:r0 + s, c0 + s // 2] = 1
    elif kind == 1:  # horizontal stroke
        img[r0 + s // 2, c0:c0 + s] = 1
    elif kind == 2:  # diagonal
        for i in range(s):
            img[r0 + i, c0 + i] = 1
    elif kind == 3:  # anti-diagonal
        for i in range(s):
            img[r0 + i, c0 + s - 1 - i] = 1
    elif kind == 4:  # ring
        img[r0, c0:c0 + s] = img[r0 + s - 1, c0:c0 + s] = 1
        img[r0:r0 + s, c0] = img[r0:r0 + s, c0 + s - 1] = 1
    else:  # L shape
        img[r0:r0 + s, c0] = 1
        img[r0 + s - 1, c0:c0 + s] = 1
    return img


def _glyphs(cfg, rng, n):
    size, c = cfg.get("size", 12), cfg.get("classes", 6)
    y = rng.integers(0, c, n)
    x = np.stack([_glyph(int(k), rng, size) for k in y])
    x = x + rng.normal(0, cfg.get("noise", 0.25), x.shape)
    return x[..., None].astype(np.float32), y


def _tokens(cfg, rng, n):
    t, v = cfg.get("length", 12), cfg.get("vocab", 6)
    y = rng.integers(0, v, n)
    seq = rng.integers(0, v, (n, t))
    extra = rng.random((n, t)) < 0.35
    seq = np.where(extra, y[:, None], seq)
    x = np.eye(v, dtype=np.float32)[seq]
    return x, y


def _houses(cfg, rng, n):
    f = cfg.get("features", 6)
    x = rng.normal(0, 1, (n, f))
    w = np.random.default_rng(77).normal(0, 1, f)
    base = x @ w + 0.5 * np.sin(2 * x[:, 0]) + 0.3 * x[:, 1] * x[:, 2 % f]
    y = cfg.get("price_mean", 3000.0) + cfg.get("price_std", 900.0) * base / base.std()
    y = y + rng.normal(0, cfg.get("price_noise", 40.0), n)
    return x.astype(np.float32), y.astype(np.float32)


def _churn(cfg, rng, n):
    f, c = cfg.get("features", 10), cfg.get("classes", 2)
    minority = cfg.get("minority")
    if minority is not None:
        p = np.full(c, minority / max(1, c - 1))
        p[0] = 1 - minority
        y = rng.choice(c, n, p=p)
    else:
        y = rng.integers(0, c, n)
    centers = np.random.default_rng(5).normal(0, cfg.get("separation", 0.8), (c, f))
    x = centers[y] + rng.normal(0, 1, (n, f))
    return x.astype(np.float32), y


def _curve(cfg, rng, n):
    x = rng.uniform(-3, 3, (n, 1))
    y = np.sin(1.5 * x[:, 0]) * cfg.get("amplitude", 2.0) + 0.3 * x[:, 0] + rng.normal(0, 0.1, n)
    return x.astype(np.float32), y.astype(np.float32)


BUILDERS = {"sensor": _sensor, "glyphs": _glyphs, "tokens": _tokens, "houses": _houses, "churn": _churn,
            "curve": _curve}
REGRESSION = {"houses", "curve"}


def make(cfg: dict, seed: int) -> Dataset:
    """The dataset of a program scenario's ``data`` section, with its planted data faults."""
    rng = np.random.default_rng(seed + 101)
    kind = cfg["task"]
    n_train, n_val = int(cfg.get("n_train", 1536)), int(cfg.get("n_val", 384))
    x, y = BUILDERS[kind](cfg, rng, n_train + n_val)
    regression = kind in REGRESSION
    classes = None if regression else int(cfg.get("classes", cfg.get("vocab", 4 if kind == "sensor" else 6)))
    if kind == "churn":
        classes = int(cfg.get("classes", 2))
    if kind == "sensor":
        classes = int(cfg.get("classes", 4))
    if kind == "glyphs":
        classes = int(cfg.get("classes", 6))
    if kind == "tokens":
        classes = int(cfg.get("vocab", 6))
    xt, yt, xv, yv = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    notes = []
    if cfg.get("input_scale") is not None:  # a preprocessing step applied twice (e.g. /255 on scaled data)
        xt, xv = xt * cfg["input_scale"], xv * cfg["input_scale"]
        notes.append(f"inputs multiplied by {cfg['input_scale']}")
    if cfg.get("label_noise"):
        flip = rng.random(n_train) < cfg["label_noise"]
        yt = yt.copy()
        yt[flip] = rng.integers(0, classes, int(flip.sum()))
        notes.append(f"{cfg['label_noise']:.0%} of train labels redrawn at random")
    if cfg.get("val_is_train"):  # the validation path points at the training file
        xv, yv = xt[:n_val].copy(), yt[:n_val].copy()
        notes.append("validation rows are the first training rows")
    if not regression:
        yt, yv = yt.astype(np.int32), yv.astype(np.int32)
    return Dataset(x_train=xt.astype(np.float32), y_train=yt, x_val=xv.astype(np.float32), y_val=yv,
                   task="regression" if regression else "classification", num_classes=classes, notes=notes)
