"""Router quality on CLINC150-format data (``{split: [[query, intent], ...]}``).

:func:`evaluate` trains a head on the training splits the way the node does (the threshold
and the regularization chosen by cross-validation over those splits alone) and reports the
cross-validated estimate next to the figures on the eval splits, which choose nothing.
:func:`simulate_skills` measures the router's real job: a few installed skills with a
handful of examples each, general requests as background, and requests no skill covers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from bitterbot.agent.router import (
    FEATURES,
    LOCAL_LLM,
    ROUTER_MAX_TOKENS,
    Router,
    SkillIntent,
    TextEncoder,
)
from bitterbot.agent.router_head import fit_head
from bitterbot.protocol.errors import ValidationError

#: regularization strengths :func:`evaluate` cross-validates (the best CV wins)
L2_GRID = (1e-3, 3e-3, 1e-2)
#: CLINC150's development splits: :func:`evaluate` trains on those it does not score
DEVELOPMENT_SPLITS = ("train", "oos_train", "val", "oos_val")

Splits = dict[str, list[list[str]]]


def _split(data: Splits, name: str | None) -> list[list[str]]:
    if name is None:
        return []
    if name not in data:
        raise ValidationError(f"no split {name!r} in the data (has {sorted(data)})")
    return data[name]


def margin95(share: float, n: int) -> float:
    """Half-width of the 95% Wilson interval of a share measured on n cases: 0.078 (about 8
    points) for 80% recall on CLINC150's 100 validation OOS queries; not 0 at 0% or 100%."""
    if n == 0:
        return 0.0
    z2 = 1.96**2
    return round(math.sqrt(z2 * share * (1 - share) / n + z2 * z2 / (4 * n * n)) / (1 + z2 / n), 3)


def evaluate(
    data: Splits,
    encoder: TextEncoder,
    *,
    train_splits: Sequence[str] | None = None,
    eval_split: str = "val",
    oos_split: str | None = "oos_val",
    oos_label: str = "oos",
    folds: int = 5,
    features: str = "layers",
    l2: Sequence[float] = L2_GRID,
) -> dict[str, object]:
    """Train on the training splits (threshold by ``folds``-fold cross-validation over them
    alone), report that cross-validated estimate, then route every eval query one at a
    time (timed). The eval splits are never used for any choice: the threshold and the
    regularization (best of ``l2``) are chosen by cross-validation. ``features``: ``layers``
    (:meth:`Encoder.encode_layers`) or ``embedding`` (:meth:`Encoder.encode`, as
    :class:`Router` uses for installed skills).

    ``train_splits`` defaults to every development split in ``data`` that is not scored:
    ``train`` + ``oos_train`` when scoring ``val``, and ``val`` + ``oos_val`` as well when
    scoring ``test``. CLINC150 keeps ``val`` apart to choose settings on; this router
    chooses everything by cross-validation, so validation data is training data."""
    if features not in FEATURES:
        raise ValidationError(f"features must be one of {FEATURES}, not {features!r}")
    embed = encoder.encode_layers if features == "layers" else encoder.encode

    def split(name: str | None) -> list[list[str]]:
        return _split(data, name)

    if train_splits is None:
        train_splits = [
            s for s in DEVELOPMENT_SPLITS if s in data and s not in (eval_split, oos_split)
        ]
    both = sorted({eval_split, oos_split or eval_split} & set(train_splits))
    if both:
        raise ValidationError(f"split {both} is both trained on and scored")
    train = [row for name in train_splits for row in split(name)]
    if not train:
        raise ValidationError("the training splits are empty")
    cases = split(eval_split) + split(oos_split)
    texts = [str(q) for q, _ in train]
    labels = [str(y) for _, y in train]
    x = embed(texts, batch_size=64, max_length=ROUTER_MAX_TOKENS)
    has_oos = oos_label in labels
    head = fit_head(x, labels, background=oos_label if has_oos else None, folds=folds, l2=l2)
    times, correct_in, n_in, oos_hit, n_oos, predicted_oos = [], 0, 0, 0, 0, 0
    for query, truth in cases:
        start = time.perf_counter()
        vec = embed([str(query)], max_length=ROUTER_MAX_TOKENS)
        (label,), _ = head.predict(vec)
        times.append((time.perf_counter() - start) * 1000)
        predicted_oos += label is None
        if truth == oos_label:
            n_oos += 1
            oos_hit += label is None
        else:
            n_in += 1
            correct_in += label == truth
    assert head.cv is not None
    recall = oos_hit / n_oos if n_oos else 0.0
    return {
        "in_scope_accuracy": round(correct_in / n_in, 4) if n_in else 0.0,
        "oos_recall": round(recall, 4),
        "oos_recall_margin": margin95(recall, n_oos),
        "oos_precision": round(oos_hit / predicted_oos, 4) if predicted_oos else 0.0,
        "cross_validated": {
            "folds": head.cv.folds,
            "in_scope_accuracy": round(head.cv.in_scope_accuracy, 4),
            "oos_recall": round(head.cv.background_recall, 4),
            "oos_recall_margin": margin95(head.cv.background_recall, head.cv.n_background),
            "n_in_scope": head.cv.n_in_scope,
            "n_oos": head.cv.n_background,
            "l2": head.cv.l2,
        },
        "p50_ms": round(float(np.percentile(times, 50)), 3) if times else 0.0,
        "p99_ms": round(float(np.percentile(times, 99)), 3) if times else 0.0,
        "model_bytes": int(getattr(encoder, "model_bytes", 0)) + head.nbytes,
        "n_eval": len(cases),
        "n_oos_eval": n_oos,
        "n_train": len(train),
        "train_splits": list(train_splits),
        "threshold": round(head.threshold, 4),
        "features": features,
    }


def simulate_skills(
    data: Splits,
    encoder: TextEncoder,
    *,
    skills: int = 8,
    examples: int = 6,
    others: int = 20,
    rounds: int = 5,
    features: str = "embedding",
    oos_split: str | None = "oos_val",
) -> dict[str, object]:
    """The node's job on CLINC150: per round, ``skills`` random intents become skills with
    ``examples`` training queries each (background: ``GENERAL_REQUESTS``), exactly as
    :class:`Router` trains. Scored on the val queries of those intents (must reach their
    skill) and on those of ``others`` other intents plus ``oos_split`` (must reach the
    local model). Means over ``rounds`` seeded rounds."""
    train, val = _split(data, "train"), _split(data, "val")
    outside = [str(q) for q, _ in _split(data, oos_split)]
    intents = sorted({str(y) for _, y in train})
    if len(intents) < skills + others:
        raise ValidationError(f"{len(intents)} intents: fewer than {skills} + {others}")
    hits, local, retrain_s = [], [], []
    for seed in range(rounds):
        rng = np.random.default_rng(seed)
        chosen = [intents[i] for i in rng.permutation(len(intents))[: skills + others]]
        mine, theirs = chosen[:skills], set(chosen[skills:])
        router = Router(encoder, features=features)
        intents_now = []
        for name in mine:
            pool = [str(q) for q, y in train if y == name]
            picked = rng.choice(len(pool), size=min(examples, len(pool)), replace=False)
            intents_now.append(SkillIntent(name, "", [pool[i] for i in picked]))
        router.embed([t for s in intents_now for t in s.utterances()] + router.general)
        start = time.perf_counter()
        router.set_skills(intents_now)
        retrain_s.append(time.perf_counter() - start)
        assert router.head is not None
        inside = [(str(q), str(y)) for q, y in val if y in mine]
        away = [str(q) for q, y in val if y in theirs] + outside
        got, _ = router.head.predict(router.embed([q for q, _ in inside]))
        hits.append(np.mean([g == y for g, (_, y) in zip(got, inside, strict=True)]))
        got, _ = router.head.predict(router.embed(away))
        local.append(np.mean([g is None for g in got]))
    return {
        "skill_accuracy": round(float(np.mean(hits)), 4),
        "out_of_skill_to_local_llm": round(float(np.mean(local)), 4),
        "retrain_s": round(float(np.median(retrain_s)), 3),
        "skills": skills,
        "examples_per_skill": examples,
        "rounds": rounds,
        "features": features,
        "background": LOCAL_LLM,
    }
