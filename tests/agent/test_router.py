"""The router: skills by example, out-of-scope to the local model, retraining, save/load."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from bitterbot.agent.encoder import get_encoder
from bitterbot.agent.router import (
    LOCAL_LLM,
    IntentHead,
    Router,
    SkillIntent,
    fit_head,
)
from bitterbot.agent.router_eval import evaluate, margin95, simulate_skills
from bitterbot.agent.router_head import choose_threshold, fit_distance, matmul
from bitterbot.protocol.errors import ModelError, ValidationError

# shared/ sits beside the repository (here and in CI)
CLINC = Path(__file__).resolve().parents[2].parent / "shared/data/clinc150/train_val.json"

SKILLS = [
    SkillIntent(
        "weather",
        "current weather and forecasts for a place",
        [
            "what's the weather in paris",
            "will it rain tomorrow",
            "how hot is it outside",
            "forecast for the weekend",
            "do i need an umbrella today",
        ],
    ),
    SkillIntent(
        "timer",
        "set, list and cancel timers and alarms",
        [
            "set a timer for ten minutes",
            "wake me up at 7am",
            "cancel my alarm",
            "how much time is left on the timer",
            "start a countdown for the pasta",
        ],
    ),
    SkillIntent(
        "currency",
        "convert amounts between currencies at today's rate",
        [
            "convert 100 dollars to euros",
            "how many yen is 50 pounds",
            "exchange rate usd to chf",
            "what is 20 euros in dollars",
        ],
    ),
]


@pytest.fixture(scope="module")
def router() -> Router:
    r = Router(get_encoder())
    for skill in SKILLS:
        r.add_skill(skill)
    return r


@pytest.mark.parametrize(
    ("text", "skill"),
    [
        ("is it going to snow in oslo tonight", "weather"),
        ("put a 5 minute timer on", "timer"),
        ("how much is 300 swiss francs in euros", "currency"),
    ],
)
def test_paraphrases_reach_their_skill(router: Router, text: str, skill: str) -> None:
    decision = router.route(text)
    assert decision.route == skill, decision.reason
    assert "matched" in decision.reason


@pytest.mark.parametrize(
    "text",
    [
        "who won the football world cup in 1998",
        "write a haiku about my grandmother",
        "explain how a transistor works",
        "what are good names for a bakery",
    ],
)
def test_out_of_scope_requests_go_to_the_local_model_not_a_wrong_skill(
    router: Router, text: str
) -> None:
    decision = router.route(text)
    assert decision.route == LOCAL_LLM, decision.reason
    assert decision.reason


def test_adding_and_removing_a_skill_retrains_in_seconds(router: Router) -> None:
    news = SkillIntent(
        "news",
        "read today's news headlines",
        ["what's in the news", "latest headlines", "read me the news", "top stories today"],
    )
    start = time.perf_counter()
    router.add_skill(news)
    assert time.perf_counter() - start < 10
    assert router.route("tell me the top news stories this morning").route == "news"
    router.remove_skill("news")
    assert router.route("tell me the top news stories this morning").route != "news"
    assert router.head is not None and "news" not in router.head.labels


def test_no_skills_means_local_model() -> None:
    decision = Router(get_encoder()).route("what's the weather")
    assert decision.route == LOCAL_LLM
    assert decision.reason == "no skills installed"


def test_reserved_route_names_are_refused() -> None:
    with pytest.raises(ValidationError):
        Router(get_encoder()).add_skill(SkillIntent("cloud", "x", ["y"]))


def test_head_round_trips_through_npz(router: Router, tmp_path: Path) -> None:
    assert router.head is not None
    router.head.save(tmp_path / "head.npz")
    loaded = IntentHead.load(tmp_path / "head.npz")
    x = router.embed(["will it be sunny", "a song please", "convert 3 euros"])
    a, sa = router.head.predict(x)
    b, sb = loaded.predict(x)
    assert a == b
    assert np.allclose(sa, sb)
    assert loaded.threshold == router.head.threshold
    assert loaded.cv == router.head.cv and loaded.cv is not None
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError):
        IntentHead.load(tmp_path / "bad.npz")


def test_threshold_rejects_about_the_allowed_share_of_training_data() -> None:
    rng = np.random.default_rng(1)
    centers = rng.normal(size=(4, 16)) * 3
    x = np.vstack([c + rng.normal(size=(50, 16)) for c in centers]).astype(np.float32)
    labels = [f"c{i}" for i in range(4) for _ in range(50)]
    head = fit_head(x, labels, max_inscope_loss=0.05)
    predicted, _ = head.predict(x)
    rejected = sum(p is None for p in predicted) / len(predicted)
    assert 0.0 < rejected <= 0.1
    far = (rng.normal(size=(20, 16)) * 0.1).astype(np.float32)  # between every class
    far_pred, _ = head.predict(far)
    assert sum(p is None for p in far_pred) >= 15


@pytest.mark.skipif(not CLINC.exists(), reason="shared CLINC150 data not present")
def test_evaluate_on_a_clinc_subset_reports_every_metric() -> None:
    data = json.loads(CLINC.read_text())
    intents = sorted({y for _, y in data["train"]})[:12]
    subset = {
        "train": [r for r in data["train"] if r[1] in intents][::2],
        "val": [r for r in data["val"] if r[1] in intents],
        "oos_train": data["oos_train"][:50],
        "oos_val": data["oos_val"][:40],
    }
    result = evaluate(subset, get_encoder())
    assert set(result) >= {
        "in_scope_accuracy",
        "oos_recall",
        "oos_precision",
        "p50_ms",
        "p99_ms",
        "model_bytes",
        "n_eval",
    }
    assert result["n_eval"] == len(subset["val"]) + 40
    assert result["in_scope_accuracy"] >= 0.9
    assert result["oos_recall"] >= 0.5
    assert 0 < result["p50_ms"] <= result["p99_ms"]
    with pytest.raises(ValidationError):
        evaluate(subset, get_encoder(), eval_split="test")


def test_set_skills_reuses_a_cached_head_only_for_the_same_skills(tmp_path: Path) -> None:
    cache = tmp_path / "router" / "head.npz"
    first = Router(get_encoder())
    first.set_skills(SKILLS, head_cache=cache)
    assert cache.is_file() and first.head is not None
    second = Router(get_encoder())
    second.set_skills(SKILLS, head_cache=cache)
    assert second.head is not None and second.head.fingerprint == first.head.fingerprint
    assert np.array_equal(second.head.weights, first.head.weights)
    assert second._cache == {}  # loaded, nothing embedded
    third = Router(get_encoder())
    third.set_skills(SKILLS[:2], head_cache=cache)
    assert third.head is not None and "currency" not in third.head.labels
    assert IntentHead.load(cache).fingerprint == third.fingerprint()


def test_matmul_without_blas_for_few_rows_gives_the_same_product() -> None:
    rng = np.random.default_rng(2)
    b = rng.normal(size=(64, 9)).astype(np.float32)
    for rows in (1, 8, 9, 40):
        a = rng.normal(size=(rows, 64)).astype(np.float32)
        assert np.allclose(matmul(a, b), a @ b, atol=1e-4)


def test_distance_is_mahalanobis_to_the_nearest_class_mean() -> None:
    rng = np.random.default_rng(7)
    # two classes stretched along axis 0, thin along axis 1; a background class anywhere
    spread = np.array([3.0, 0.1, 1.0, 1.0])
    a = rng.normal(size=(300, 4)) * spread + [0, 0, 5, 0]
    b = rng.normal(size=(300, 4)) * spread + [0, 0, -5, 0]
    bg = rng.normal(size=(50, 4)) * 10
    x = np.vstack([a, b, bg]).astype(np.float32)
    y = np.array([0] * 300 + [1] * 300 + [2] * 50)
    dist = fit_distance(x, y, background=2, shrink=0.0)
    at_means = dist(np.array([[0, 0, 5, 0], [0, 0, -5, 0]], np.float32))
    assert np.all(at_means < 0.1)
    # three spreads out along the long axis is as near as 0.3 along the thin one
    long, thin = dist(np.array([[9, 0, 5, 0], [0, 0.3, 5, 0]], np.float32))
    assert 6 < long < 12 and 6 < thin < 12
    assert dist(np.array([[0, 1.5, 5, 0]], np.float32))[0] > 5 * long


def test_distance_rejects_what_lies_beyond_the_classes_where_energy_alone_does_not() -> None:
    rng = np.random.default_rng(11)
    centers = np.eye(8, dtype=np.float32)[:4] * 4
    x = np.vstack([c + rng.normal(size=(60, 8)) * 0.5 for c in centers]).astype(np.float32)
    general = rng.normal(size=(60, 8)).astype(np.float32) * 0.5  # background near the origin
    x = np.vstack([x, general])
    labels = [f"c{i}" for i in range(4) for _ in range(60)] + ["bg"] * 60
    # far out along class 0's direction: softmax grows more certain, the distance grows too
    beyond = (centers[0] * 4 + rng.normal(size=(20, 8)) * 0.5).astype(np.float32)
    by_energy = fit_head(x, labels, background="bg", mix=0.0)
    mixed = fit_head(x, labels, background="bg")
    assert by_energy.distance is None
    assert mixed.distance is not None
    assert sum(p == "c0" for p in by_energy.predict(beyond)[0]) >= 18
    assert sum(p is None for p in mixed.predict(beyond)[0]) >= 18
    inside = (centers[1] + rng.normal(size=(40, 8)) * 0.5).astype(np.float32)
    assert sum(p == "c1" for p in mixed.predict(inside)[0]) >= 36  # the classes still route


def test_distance_is_used_only_with_enough_examples_per_class() -> None:
    rng = np.random.default_rng(13)
    centers = rng.normal(size=(3, 16)) * 3

    def head(per_class: int) -> IntentHead:
        x = np.vstack([c + rng.normal(size=(per_class, 16)) for c in centers])
        general = rng.normal(size=(30, 16)) * 3
        labels = [f"c{i}" for i in range(3) for _ in range(per_class)] + ["bg"] * 30
        return fit_head(np.vstack([x, general]).astype(np.float32), labels, background="bg")

    assert head(5).distance is None  # a covariance from 5 examples a class is noise
    assert head(6).distance is not None


def test_threshold_loses_at_most_the_allowed_accuracy_and_rejects_wrong_ones_for_free() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    correct = np.array([False, False, True, False, True, True, True, True, True, True])
    # 10% may be lost: the two lowest (wrong) go free, the third costs 10%, the fourth is free
    assert choose_threshold(correct, scores, 0.10) == 0.5
    assert choose_threshold(correct, scores, 0.0) == 0.3
    assert choose_threshold(correct, scores, 1.0) > 1.0  # everything may go


def test_cross_validated_estimate_is_out_of_fold() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(240, 64)).astype(np.float32)
    noise = [f"c{i}" for i in rng.integers(0, 4, size=240)]  # labels unrelated to x
    head = fit_head(x, noise, max_inscope_loss=0.0)
    best = [head.labels[i] for i in head.logits(x).argmax(axis=1)]
    seen = np.mean([p == t for p, t in zip(best, noise, strict=True)])
    assert seen > 0.6  # the head memorises what it was trained on...
    assert head.cv is not None and head.cv.in_scope_accuracy < 0.4  # ...CV sees chance
    centers = rng.normal(size=(4, 64)) * 2
    real = np.vstack([c + rng.normal(size=(60, 64)) for c in centers]).astype(np.float32)
    good = fit_head(real, [f"c{i}" for i in range(4) for _ in range(60)], max_inscope_loss=0.0)
    assert good.cv is not None and good.cv.in_scope_accuracy > 0.9
    assert good.cv.folds == 5 and good.cv.n_in_scope == 240 and good.cv.n_background == 0


@pytest.mark.skipif(not CLINC.exists(), reason="shared CLINC150 data not present")
def test_eval_splits_choose_nothing(tmp_path: Path) -> None:
    data = json.loads(CLINC.read_text())
    intents = sorted({y for _, y in data["train"]})[40:46]
    subset = {
        "train": [r for r in data["train"] if r[1] in intents][::2],
        "val": [r for r in data["val"] if r[1] in intents],
        "oos_train": data["oos_train"][:30],
        "oos_val": data["oos_val"][:40],
    }
    first = evaluate(subset, get_encoder())
    # the same training data with other eval data: threshold and CV estimate stay put
    other = dict(subset, val=subset["val"][::3], oos_val=data["oos_val"][40:])
    second = evaluate(other, get_encoder())
    assert first["threshold"] == second["threshold"]
    assert first["cross_validated"] == second["cross_validated"]
    assert first["n_eval"] != second["n_eval"]
    cv = first["cross_validated"]
    assert isinstance(cv, dict) and cv["n_oos"] == 30 and cv["n_in_scope"] == 300
    assert cv["in_scope_accuracy"] > 0.9 and 0 < cv["oos_recall_margin"] < 0.4
    assert first["n_oos_eval"] == 40 and 0 < first["oos_recall_margin"] <= 0.16


@pytest.mark.skipif(not CLINC.exists(), reason="shared CLINC150 data not present")
def test_scoring_test_trains_on_validation_too_and_never_on_what_it_scores() -> None:
    data = json.loads(CLINC.read_text())
    intents = sorted({y for _, y in data["train"]})[60:64]
    val = [r for r in data["val"] if r[1] in intents]
    subset = {
        "train": [r for r in data["train"] if r[1] in intents][::4],
        "val": val[::2],
        "test": val[1::2],  # stands in for CLINC150's held-out test split
        "oos_train": data["oos_train"][:20],
        "oos_val": data["oos_val"][:20],
        "oos_test": data["oos_val"][20:40],
    }
    on_val = evaluate(subset, get_encoder())
    assert on_val["train_splits"] == ["train", "oos_train"]
    on_test = evaluate(subset, get_encoder(), eval_split="test", oos_split="oos_test")
    assert on_test["train_splits"] == ["train", "oos_train", "val", "oos_val"]
    assert on_test["n_train"] == sum(len(subset[s]) for s in on_test["train_splits"])
    assert on_test["n_eval"] == len(subset["test"]) + 20
    only_train = evaluate(
        subset,
        get_encoder(),
        train_splits=["train", "oos_train"],
        eval_split="test",
        oos_split="oos_test",
    )
    assert only_train["n_train"] == on_val["n_train"]
    with pytest.raises(ValidationError, match="both trained on and scored"):
        evaluate(subset, get_encoder(), train_splits=["train", "test"], eval_split="test")


def test_margin_of_a_share_shrinks_with_more_cases() -> None:
    assert 0.07 < margin95(0.8, 100) < 0.085  # CLINC150 val: about +-8 points
    assert margin95(0.8, 1000) < 0.03 and margin95(1.0, 40) > 0 and margin95(0.5, 0) == 0


def test_l2_grid_keeps_the_value_with_the_best_cross_validated_score() -> None:
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(5, 32))
    x = np.vstack([c + rng.normal(size=(40, 32)) * 1.5 for c in centers]).astype(np.float32)
    labels = [f"c{i}" for i in range(5) for _ in range(40)]
    grid = [1e-4, 1e-2, 10.0]
    singles = [fit_head(x, labels, l2=v) for v in grid]
    chosen = fit_head(x, labels, l2=grid)
    assert chosen.cv is not None and chosen.cv.l2 in grid
    scores = [h.cv.in_scope_accuracy for h in singles if h.cv is not None]
    assert chosen.cv.in_scope_accuracy == max(scores)
    assert np.array_equal(chosen.weights, singles[grid.index(chosen.cv.l2)].weights)


@pytest.mark.skipif(not CLINC.exists(), reason="shared CLINC150 data not present")
def test_skill_simulation_trains_like_the_node_and_scores_both_sides() -> None:
    data = json.loads(CLINC.read_text())
    small = {"train": data["train"], "val": data["val"][::4], "oos_val": data["oos_val"][:40]}
    result = simulate_skills(small, get_encoder(), skills=4, others=6, rounds=2)
    assert result["skill_accuracy"] > 0.8  # 6 examples per skill are enough to find it
    assert 0.3 < result["out_of_skill_to_local_llm"] <= 1.0
    assert result["features"] == "embedding" and result["rounds"] == 2
