"""The router's classifier head: softmax regression, an out-of-scope threshold, and the
cross-validated estimate of how well both work.

Multinomial logistic regression (numpy; full-batch Nesterov for a few skills, mini-batch
Adam for CLINC150-sized data) over standardized encoder features, with one class per
intent plus, optionally, a background class (``oos`` on CLINC150, ``local-llm`` in the
node).

Out of scope: a score that mixes two views, each standardized on the training data:
the energy (log-sum-exp of the logits: how strongly the head fires) and the Mahalanobis
distance to the nearest class mean (a shared covariance on the top principal components:
how far the request lies from every class's examples). On CLINC150 validation, with the
threshold set where 85% of OOS queries are caught, energy alone keeps 96.0% of in-scope
queries right, distance alone 95.6%, the mix 96.5%; at 90%: 94.2%, 94.8% and 96.3%. The
mix's weight (0.5) and the 256 components were looked at on validation, on that curve;
the threshold, which decides the figures reported, comes from K-fold
cross-validation over the training data only: every training example gets a score from a
head that did not see it (out of fold). The threshold is the highest one that costs at most
``max_inscope_loss`` of out-of-fold in-scope accuracy (rejecting an example that was wrong
anyway costs nothing). The same out-of-fold predictions give :class:`CrossValidated`: the
in-scope accuracy and the background recall a user can expect, without any held-out data.
``docs: /work/shared/notes/router-calibration.md`` has the measurements behind each choice.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bitterbot.protocol.errors import ModelError, ValidationError

#: up to this many rows the head trains full-batch (exact, fast for a few skills); above,
#: by mini-batch Adam (CLINC150's 15,100 rows of 2,304 features: about 20 s instead of 5 min)
FULL_BATCH_MAX_ROWS = 4096


def train_softmax(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    l2: float = 1e-3,
    iters: int = 500,
    epochs: int = 20,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardized ``x``: ``iters`` full-batch Nesterov
    steps for small data, ``epochs`` passes of mini-batch Adam for large data."""
    if len(x) <= FULL_BATCH_MAX_ROWS:
        return _nesterov(x, y, n_classes, l2, iters)
    return _adam(x, y, n_classes, l2, epochs, seed)


def _softmax_minus_onehot(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    p: np.ndarray = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1.0
    return p


def _nesterov(
    x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, iters: int
) -> tuple[np.ndarray, np.ndarray]:
    n, d = x.shape
    w = np.zeros((d, n_classes), np.float32)
    b = np.zeros(n_classes, np.float32)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    # step below 1/L; L <= largest eigenvalue of x^T x / n, about 1 per feature after scaling
    lr = np.float32(1.0 / max(1.0, float(np.linalg.norm(x, ord=2)) ** 2 / n + l2))
    momentum = np.float32(0.9)
    for _ in range(iters):
        lw, lb = w + momentum * vw, b + momentum * vb
        p = _softmax_minus_onehot(x @ lw + lb, y)
        vw = momentum * vw - lr * (x.T @ p / n + l2 * lw)
        vb = momentum * vb - lr * p.mean(axis=0)
        w += vw
        b += vb
    return w, b


def _adam(
    x: np.ndarray, y: np.ndarray, n_classes: int, l2: float, epochs: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Mini-batches of 128, step 2e-3 with a cosine decay to 0."""
    n, d = x.shape
    batch = 128
    per_epoch = -(-n // batch)
    steps = epochs * per_epoch
    params = [np.zeros((d, n_classes), np.float32), np.zeros(n_classes, np.float32)]
    first = [np.zeros_like(p) for p in params]
    second = [np.zeros_like(p) for p in params]
    beta1, beta2 = 0.9, 0.999
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    for t in range(1, steps + 1):
        k = (t - 1) % per_epoch
        if k == 0 and t > 1:
            order = rng.permutation(n)
        rows = order[k * batch : (k + 1) * batch]
        w, b = params
        p = _softmax_minus_onehot(x[rows] @ w + b, y[rows]) / len(rows)
        grads = [x[rows].T @ p + l2 * w, p.sum(axis=0)]
        step = 2e-3 * 0.5 * (1.0 + np.cos(np.pi * t / steps))
        for param, g, m, v in zip(params, grads, first, second, strict=True):
            m *= beta1
            m += (1 - beta1) * g
            v *= beta2
            v += (1 - beta2) * g * g
            param -= (step / (1 - beta1**t)) * m / (np.sqrt(v / (1 - beta2**t)) + 1e-8)
    return params[0], params[1]


def combined_score(
    energies: np.ndarray,
    distances: np.ndarray | None,
    norm: tuple[float, float, float, float],
    mix: float,
) -> np.ndarray:
    """The out-of-scope score: standardized energy, minus the standardized distance."""
    if distances is None:
        return energies
    e_centre, e_spread, d_centre, d_spread = norm
    e = (energies - e_centre) / e_spread
    out: np.ndarray = (1.0 - mix) * e - mix * (distances - d_centre) / d_spread
    return out


def energy(logits: np.ndarray) -> np.ndarray:
    """log-sum-exp of the logits: high for inputs like the training data."""
    m = logits.max(axis=1)
    out: np.ndarray = m + np.log(np.exp(logits - m[:, None]).sum(axis=1))
    return out


#: up to this many rows, :func:`matmul` keeps out of BLAS
_SMALL_ROWS = 8


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``; for the few rows of a routed request without BLAS, whose worker threads
    keep spinning after a call and slow the encoder's next run: one request's p50 went
    from 3.5 to 8 ms with the distance's (1 x 2,304) @ (2,304 x 256) on 2 cores."""
    if len(a) <= _SMALL_ROWS:
        small: np.ndarray = np.einsum("ij,jk->ik", a, b, optimize=False)
        return small
    out: np.ndarray = a @ b
    return out


#: principal components the distance uses at most (CLINC150: 256 of 2,304 features)
DISTANCE_COMPONENTS = 256
#: covariance shrinkage toward its mean eigenvalue (few examples per class need it)
DISTANCE_SHRINK = 0.1
#: examples per class (description included) from which the distance is used: with fewer,
#: its covariance is noise and it sends more requests no skill covers to a skill
#: (``router skills-eval``: 2 skills of 3 examples 88% -> 60% kept local, 3 of 4 82% -> 79%;
#: 4 of 6 77% -> 85%, 8 of 6 71% -> 79%, 3 of 10 94% -> 96%; 12 of 6 72% -> 70%)
DISTANCE_MIN_ROWS = 6
#: weight of the distance in the out-of-scope score (the energy has the rest)
DISTANCE_WEIGHT = 0.5
#: rows the principal components are computed from at most (enough for 256 components)
_PCA_ROWS = 4096


@dataclass
class Distance:
    """Squared Mahalanobis distance to the nearest class mean: the features are projected
    on their top principal components and whitened by the shared within-class covariance,
    so the distance is Euclidean there."""

    offset: np.ndarray  # (dim,)
    whiten: np.ndarray  # (dim, k)
    centers: np.ndarray  # (classes without the background, k)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        z = matmul(x - self.offset, self.whiten)
        sq = (z * z).sum(axis=1)[:, None] - 2.0 * matmul(z, self.centers.T)
        sq += (self.centers * self.centers).sum(axis=1)[None, :]
        out: np.ndarray = np.maximum(sq.min(axis=1), 0.0)
        return out


def fit_distance(
    x: np.ndarray,
    y: np.ndarray,
    background: int = -1,
    *,
    components: int = DISTANCE_COMPONENTS,
    shrink: float = DISTANCE_SHRINK,
    seed: int = 0,
) -> Distance:
    """Class means and shared covariance of the non-background rows of ``x``. The background
    class (general requests, CLINC's ``oos``) is left out: it has no centre, its examples
    are anything else."""
    keep = y != background
    rows, labels = x[keep].astype(np.float64), y[keep]
    classes, index = np.unique(labels, return_inverse=True)
    offset = rows.mean(axis=0)
    centred = rows - offset
    sample = centred
    if len(sample) > _PCA_ROWS:
        sample = centred[np.random.default_rng(seed).choice(len(centred), _PCA_ROWS, False)]
    k = max(1, min(components, len(rows) - len(classes), x.shape[1]))
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    basis = vt[:k].T
    projected = centred @ basis
    means = np.zeros((len(classes), k))
    np.add.at(means, index, projected)
    means /= np.bincount(index, minlength=len(classes))[:, None]
    resid = projected - means[index]
    cov = resid.T @ resid / max(1, len(resid))
    cov += shrink * max(float(np.trace(cov)) / k, 1e-12) * np.eye(k)
    values, vectors = np.linalg.eigh(cov)
    whiten = vectors / np.sqrt(np.maximum(values, 1e-12))
    return Distance(
        offset.astype(np.float32),
        (basis @ whiten).astype(np.float32),
        (means @ whiten).astype(np.float32),
    )


def choose_threshold(correct: np.ndarray, scores: np.ndarray, max_loss: float) -> float:
    """The highest score threshold that loses at most ``max_loss`` (a fraction) of accuracy
    on these in-scope examples: ``correct`` says which were classified right."""
    if len(scores) == 0:
        return float("-inf")
    order = np.argsort(scores, kind="stable")
    lost = np.concatenate([[0], np.cumsum(correct[order])]) / len(scores)
    rejectable = int(np.flatnonzero(lost <= max_loss + 1e-12).max())  # the lowest ones
    if rejectable == len(scores):
        return float(np.nextafter(scores.max(), np.inf))
    return float(scores[order][rejectable])


@dataclass
class CrossValidated:
    """Out-of-fold estimate: accuracy on in-scope training examples (rejections count as
    wrong) and recall of the background class, each from heads that did not see them."""

    folds: int
    n_in_scope: int
    n_background: int
    in_scope_accuracy: float
    background_recall: float  # 0.0 when no background class was trained
    l2: float = 0.0  # the regularization these figures (and the head) come with

    def public(self) -> dict[str, float | int]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class IntentHead:
    labels: list[str]
    weights: np.ndarray  # (dim, classes)
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    threshold: float  # out-of-scope score below this: out of scope
    background: str | None  # the label meaning "no skill" (oos / local-llm), if trained
    fingerprint: str = ""  # what it was trained on (Router.fingerprint)
    cv: CrossValidated | None = None
    distance: Distance | None = None  # None: the score is the energy alone
    #: how the score standardizes energy and distance: (energy centre, energy spread,
    #: distance centre, distance spread), from out-of-fold in-scope training examples
    norm: tuple[float, float, float, float] = (0.0, 1.0, 0.0, 1.0)
    mix: float = DISTANCE_WEIGHT

    def logits(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = matmul((x - self.mean) / self.scale, self.weights) + self.bias
        return out

    def score(self, x: np.ndarray, logits: np.ndarray | None = None) -> np.ndarray:
        """Out-of-scope score per row: high means like the training examples."""
        z = self.logits(x) if logits is None else logits
        return combined_score(
            energy(z), None if self.distance is None else self.distance(x), self.norm, self.mix
        )

    def predict(self, x: np.ndarray) -> tuple[list[str | None], np.ndarray]:
        """Label per row, or None when out of scope; and the out-of-scope scores."""
        labels, scores, _candidates = self.decide(x)
        return labels, scores

    def decide(self, x: np.ndarray) -> tuple[list[str | None], np.ndarray, list[str]]:
        """Per row: the label (None when out of scope: the background class won, or the
        score is below the threshold), the out-of-scope score, and the best class."""
        z = self.logits(x)
        scores = self.score(x, z)
        candidates = [self.labels[int(i)] for i in z.argmax(axis=1)]
        out: list[str | None] = []
        for label, score in zip(candidates, scores, strict=True):
            out.append(None if label == self.background or score < self.threshold else label)
        return out, scores, candidates

    @property
    def nbytes(self) -> int:
        arrays = [self.weights, self.bias, self.mean, self.scale]
        if self.distance is not None:
            arrays += [self.distance.offset, self.distance.whiten, self.distance.centers]
        return int(sum(a.nbytes for a in arrays))

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {  # Any: numpy's stub types the keywords as allow_pickle
            "labels": np.array(self.labels),
            "weights": self.weights,
            "bias": self.bias,
            "mean": self.mean,
            "scale": self.scale,
            "threshold": np.array(self.threshold),
            "background": np.array(self.background or ""),
            "fingerprint": np.array(self.fingerprint),
            "cv": np.array(json.dumps(asdict(self.cv)) if self.cv else ""),
            "norm": np.array(self.norm),
            "mix": np.array(self.mix),
        }
        if self.distance is not None:
            arrays["distance_offset"] = self.distance.offset
            arrays["distance_whiten"] = self.distance.whiten
            arrays["distance_centers"] = self.distance.centers
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> IntentHead:
        try:
            with np.load(path, allow_pickle=False) as data:
                background = str(data["background"])
                cv = str(data["cv"]) if "cv" in data else ""
                distance = None
                if "distance_whiten" in data:  # older heads score by energy alone
                    distance = Distance(
                        data["distance_offset"].astype(np.float32),
                        data["distance_whiten"].astype(np.float32),
                        data["distance_centers"].astype(np.float32),
                    )
                values = (
                    [float(v) for v in data["norm"]] if "norm" in data else [0.0, 1.0, 0.0, 1.0]
                )
                if len(values) != 4:
                    raise ValueError(f"norm has {len(values)} values, not 4")
                return cls(
                    labels=[str(s) for s in data["labels"]],
                    weights=data["weights"].astype(np.float32),
                    bias=data["bias"].astype(np.float32),
                    mean=data["mean"].astype(np.float32),
                    scale=data["scale"].astype(np.float32),
                    threshold=float(data["threshold"]),
                    background=background or None,
                    fingerprint=str(data["fingerprint"]) if "fingerprint" in data else "",
                    cv=CrossValidated(**json.loads(cv)) if cv else None,
                    distance=distance,
                    norm=(values[0], values[1], values[2], values[3]),
                    mix=float(data["mix"]) if "mix" in data else DISTANCE_WEIGHT,
                )
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise ModelError(
                f"cannot load the router head {path}: {exc}",
                hint="delete the file; the router retrains it from the installed skills",
            ) from exc


def _one_blas_thread() -> AbstractContextManager[object]:
    """Small matrices train faster on one BLAS thread, and far faster on a busy machine
    (OpenBLAS threads spin against each other: 10x slower at load 8 on 2 cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only speed depends on it
        return nullcontext()
    limiter: AbstractContextManager[object] = threadpool_limits(1, user_api="blas")
    return limiter


def fit_head(
    x: np.ndarray,
    labels: Sequence[str],
    *,
    background: str | None = None,
    max_inscope_loss: float = 0.01,
    folds: int = 5,
    l2: float | Sequence[float] = 1e-3,
    iters: int = 500,
    epochs: int = 20,
    seed: int = 0,
    mix: float = DISTANCE_WEIGHT,
) -> IntentHead:
    """Train the head; the threshold and ``head.cv`` come from ``folds``-fold out-of-fold
    predictions on ``x`` (nothing else is looked at). Several ``l2`` values: each is
    cross-validated the same way and the one with the best mean of in-scope accuracy and
    background recall is kept (ties: the first)."""
    grid = [float(l2)] if isinstance(l2, int | float) else [float(v) for v in l2]
    if not grid:
        raise ValidationError("l2 needs at least one value")
    best: IntentHead | None = None
    with _one_blas_thread():
        for value in grid:
            head = _fit_head(
                x, labels, background, max_inscope_loss, folds, (value, iters, epochs), seed, mix
            )
            if best is None or _cv_objective(head) > _cv_objective(best):
                best = head
    assert best is not None
    return best


def _cv_objective(head: IntentHead) -> float:
    assert head.cv is not None
    if head.cv.n_background == 0:
        return head.cv.in_scope_accuracy
    return (head.cv.in_scope_accuracy + head.cv.background_recall) / 2


def _fit_head(
    x: np.ndarray,
    labels: Sequence[str],
    background: str | None,
    max_inscope_loss: float,
    folds: int,
    training: tuple[float, int, int],
    seed: int,
    mix: float,
) -> IntentHead:
    names = sorted(set(labels))
    if len(names) < 2:
        raise ValidationError("the router needs at least two classes to train")
    if len(labels) != len(x):
        raise ValidationError(f"{len(x)} feature rows but {len(labels)} labels")
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[s] for s in labels])
    bg = index.get(background, -1) if background is not None else -1

    def standardized_fit(rows: np.ndarray) -> tuple[np.ndarray, ...]:
        mean = x[rows].mean(axis=0)
        scale = x[rows].std(axis=0) + 1e-6
        xs = ((x[rows] - mean) / scale).astype(np.float32)
        l2, iters, epochs = training
        w, b = train_softmax(xs, y[rows], len(names), l2=l2, iters=iters, epochs=epochs, seed=seed)
        return mean, scale, w, b

    # out of fold: every example scored by a head trained on the other folds
    oof = np.zeros((len(y), len(names)), np.float32)
    oof_distance = np.zeros(len(y), np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    inscope = y != bg
    classes = len(set(y[inscope].tolist()))
    use_distance = mix > 0 and inscope.sum() >= DISTANCE_MIN_ROWS * max(1, classes)
    for k in range(folds):
        held = order[k::folds]
        keep = np.ones(len(y), bool)
        keep[held] = False
        mean, scale, w, b = standardized_fit(np.flatnonzero(keep))
        oof[held] = ((x[held] - mean) / scale) @ w + b
        if use_distance:
            oof_distance[held] = fit_distance(x[keep], y[keep], bg, seed=seed)(x[held])
    energies = energy(oof)
    norm = (
        float(np.median(energies[inscope])),
        float(energies[inscope].std()) + 1e-6,
        float(np.median(oof_distance[inscope])),
        float(oof_distance[inscope].std()) + 1e-6,
    )
    distances = oof_distance if use_distance else None
    scores, best = combined_score(energies, distances, norm, mix), oof.argmax(axis=1)
    correct = (best == y) & inscope
    threshold = choose_threshold(correct[inscope], scores[inscope], max_inscope_loss)
    rejected = (best == bg) | (scores < threshold)
    cv = CrossValidated(
        folds=folds,
        n_in_scope=int(inscope.sum()),
        n_background=int((~inscope).sum()),
        in_scope_accuracy=float((correct & ~rejected)[inscope].mean()),
        background_recall=float(rejected[~inscope].mean()) if (~inscope).any() else 0.0,
        l2=training[0],
    )

    mean, scale, w, b = standardized_fit(np.arange(len(y)))
    return IntentHead(
        names,
        w,
        b,
        mean.astype(np.float32),
        scale.astype(np.float32),
        threshold,
        background,
        cv=cv,
        distance=fit_distance(x, y, bg, seed=seed) if use_distance else None,
        norm=norm,
        mix=mix,
    )
