"""The router: which installed skill handles a request, or none (then the local model).

A small classifier head sits on the shared sentence encoder (:mod:`bitterbot.agent.encoder`):
multinomial logistic regression (numpy, full-batch Nesterov gradient descent) over the
standardized embeddings, with one class per skill plus a background class (``local-llm``:
general requests no skill covers, trained on :data:`GENERAL_REQUESTS`).

Out-of-scope detection uses the energy score (log-sum-exp of the logits): a request whose
best class is a skill but whose energy falls below the threshold is *not* sent to that
skill. The threshold is chosen on training data only: the out-of-fold energies of the
in-scope examples, rejecting at most ``max_inscope_loss`` of them (1% by default).
``docs: /work/shared/notes/router-calibration.md`` measured this as the best choice under
100 MB.

Skills contribute a description and example utterances. Their embeddings are cached by
text, so adding or removing a skill retrains only the head (well under a second for a
few dozen skills). The head saves to and loads from ``.npz``.

Whether a request that no skill takes stays on the local model or escalates to the cloud
is the escalation policy's call (:mod:`bitterbot.agent.escalation`), not the router's.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from bitterbot.protocol.errors import ModelError, ValidationError

LOCAL_LLM = "local-llm"
CLOUD = "cloud"
ROUTER_MAX_TOKENS = 64  # requests are short; longer ones are cut for routing only
MAX_SKILL_EXAMPLES = 200
MAX_TEXT_CHARS = 2000

#: Background class: requests for the general assistant, no skill. Written for this
#: project (varied domains, question and command forms).
GENERAL_REQUESTS = [
    "tell me something interesting",
    "what is the meaning of life",
    "write a short poem about autumn",
    "explain how photosynthesis works",
    "who wrote pride and prejudice",
    "summarize the causes of the first world war",
    "give me ideas for a birthday party",
    "how do vaccines work",
    "what's the difference between a virus and a bacterium",
    "help me write an email to my landlord",
    "can you explain recursion simply",
    "why is the sky blue",
    "what should i name my cat",
    "translate this paragraph for me",
    "how does a rainbow form",
    "what is quantum computing",
    "write a python function that sorts a list",
    "what are some good books about history",
    "tell me about the roman empire",
    "how do i make friends as an adult",
    "what is the capital of australia",
    "describe the water cycle",
    "compare capitalism and socialism",
    "how far away is the moon",
    "what is machine learning",
    "draft a cover letter for a teaching job",
    "give me a fun fact about octopuses",
    "what happened in 1969",
    "explain the theory of relativity",
    "how do airplanes stay in the air",
    "what are black holes",
    "who painted the mona lisa",
    "help me brainstorm a story plot",
    "what is the best way to learn a language",
    "explain inflation to a child",
    "rewrite this sentence to sound more formal",
    "what causes earthquakes",
    "how do i deal with stress",
    "what is a prime number",
    "what's a good strategy for chess openings",
]


class TextEncoder(Protocol):
    dim: int

    def encode(
        self, texts: list[str], batch_size: int = 32, *, max_length: int | None = None
    ) -> np.ndarray: ...


# --- the classifier head ----------------------------------------------------------


def train_softmax(
    x: np.ndarray, y: np.ndarray, n_classes: int, *, l2: float = 1e-3, iters: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by Nesterov gradient descent. x is standardized."""
    n, d = x.shape
    w = np.zeros((d, n_classes), np.float32)
    b = np.zeros(n_classes, np.float32)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    onehot = np.zeros((n, n_classes), np.float32)
    onehot[np.arange(n), y] = 1.0
    # step below 1/L; L <= largest eigenvalue of x^T x / n, about 1 per feature after scaling
    lr = np.float32(1.0 / max(1.0, float(np.linalg.norm(x, ord=2)) ** 2 / n + l2))
    momentum = np.float32(0.9)
    for _ in range(iters):
        lw, lb = w + momentum * vw, b + momentum * vb
        z = x @ lw + lb
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        p -= onehot
        gw = x.T @ p / n + l2 * lw
        gb = p.mean(axis=0)
        vw = momentum * vw - lr * gw
        vb = momentum * vb - lr * gb
        w += vw
        b += vb
    return w, b


def energy(logits: np.ndarray) -> np.ndarray:
    """log-sum-exp of the logits: high for inputs like the training data."""
    m = logits.max(axis=1)
    return m + np.log(np.exp(logits - m[:, None]).sum(axis=1))


@dataclass
class IntentHead:
    labels: list[str]
    weights: np.ndarray  # (dim, classes)
    bias: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    threshold: float  # energy below this: out of scope
    background: str | None  # the label meaning "no skill" (oos / local-llm), if trained
    fingerprint: str = ""  # what it was trained on (Router.fingerprint)

    def logits(self, x: np.ndarray) -> np.ndarray:
        out: np.ndarray = ((x - self.mean) / self.scale) @ self.weights + self.bias
        return out

    def predict(self, x: np.ndarray) -> tuple[list[str | None], np.ndarray]:
        """Label per row, or None when out of scope; and the energy scores."""
        z = self.logits(x)
        scores = energy(z)
        best = z.argmax(axis=1)
        out: list[str | None] = []
        for i, score in zip(best, scores, strict=True):
            label = self.labels[int(i)]
            out.append(None if label == self.background or score < self.threshold else label)
        return out, scores

    @property
    def nbytes(self) -> int:
        return int(self.weights.nbytes + self.bias.nbytes + self.mean.nbytes + self.scale.nbytes)

    def save(self, path: Path) -> None:
        buf = io.BytesIO()
        np.savez(
            buf,
            labels=np.array(self.labels),
            weights=self.weights,
            bias=self.bias,
            mean=self.mean,
            scale=self.scale,
            threshold=np.array(self.threshold),
            background=np.array(self.background or ""),
            fingerprint=np.array(self.fingerprint),
        )
        tmp = Path(path).with_name(Path(path).name + ".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> IntentHead:
        try:
            with np.load(path, allow_pickle=False) as data:
                background = str(data["background"])
                return cls(
                    labels=[str(s) for s in data["labels"]],
                    weights=data["weights"].astype(np.float32),
                    bias=data["bias"].astype(np.float32),
                    mean=data["mean"].astype(np.float32),
                    scale=data["scale"].astype(np.float32),
                    threshold=float(data["threshold"]),
                    background=background or None,
                    fingerprint=str(data["fingerprint"]) if "fingerprint" in data else "",
                )
        except (OSError, KeyError, ValueError) as exc:
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
    l2: float = 1e-3,
    iters: int = 500,
    seed: int = 0,
) -> IntentHead:
    """Train the head; choose the energy threshold from out-of-fold training scores."""
    with _one_blas_thread():
        return _fit_head(x, labels, background, max_inscope_loss, folds, l2, iters, seed)


def _fit_head(
    x: np.ndarray,
    labels: Sequence[str],
    background: str | None,
    max_inscope_loss: float,
    folds: int,
    l2: float,
    iters: int,
    seed: int,
) -> IntentHead:
    names = sorted(set(labels))
    if len(names) < 2:
        raise ValidationError("the router needs at least two classes to train")
    index = {name: i for i, name in enumerate(names)}
    y = np.array([index[s] for s in labels])
    mean = x.mean(axis=0)
    scale = x.std(axis=0) + 1e-6
    xs = ((x - mean) / scale).astype(np.float32)

    inscope = np.array([s != background for s in labels])
    oof = np.full(len(y), np.inf, np.float32)
    order = np.random.default_rng(seed).permutation(len(y))
    for k in range(folds):
        held = order[k::folds]
        keep = np.ones(len(y), bool)
        keep[held] = False
        w, b = train_softmax(xs[keep], y[keep], len(names), l2=l2, iters=iters)
        oof[held] = energy(xs[held] @ w + b)
    inscope_scores = np.sort(oof[inscope])
    cut = int(np.floor(max_inscope_loss * len(inscope_scores)))
    threshold = float(inscope_scores[cut]) if len(inscope_scores) else 0.0

    w, b = train_softmax(xs, y, len(names), l2=l2, iters=iters)
    return IntentHead(
        names, w, b, mean.astype(np.float32), scale.astype(np.float32), threshold, background
    )


# --- the router ---------------------------------------------------------------------


@dataclass
class SkillIntent:
    name: str
    description: str
    examples: list[str] = field(default_factory=list)

    def utterances(self) -> list[str]:
        texts = [self.description, *self.examples[:MAX_SKILL_EXAMPLES]]
        return [t[:MAX_TEXT_CHARS] for t in texts if t.strip()]


@dataclass
class RouteDecision:
    route: str  # a skill name, or LOCAL_LLM when no skill takes the request
    reason: str
    score: float  # energy of the best class
    threshold: float
    candidate: str | None  # best class before the out-of-scope check
    elapsed_ms: float


class Router:
    """Routes requests to installed skills; retrains its head when skills change."""

    def __init__(self, encoder: TextEncoder, *, general: Sequence[str] = GENERAL_REQUESTS):
        self.encoder = encoder
        self.general = list(general)
        self.skills: dict[str, SkillIntent] = {}
        self.head: IntentHead | None = None
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self.encoder.encode(missing, batch_size=64, max_length=ROUTER_MAX_TOKENS)
            self._cache.update(zip(missing, vectors, strict=True))
        if not texts:
            return np.zeros((0, self.encoder.dim), np.float32)
        return np.vstack([self._cache[t] for t in texts])

    def add_skill(self, skill: SkillIntent) -> None:
        if not skill.name or skill.name in (LOCAL_LLM, CLOUD):
            raise ValidationError(f"{skill.name!r} cannot name a skill route")
        if not skill.utterances():
            raise ValidationError(f"skill {skill.name!r} has no description or examples")
        self.skills[skill.name] = skill
        self.retrain()

    def set_skills(self, skills: Sequence[SkillIntent], *, head_cache: Path | None = None) -> None:
        """Replace every skill at once (one retrain), e.g. from ``Skills.intents()``.

        With ``head_cache`` (an ``.npz`` path), a head trained on exactly these skills is
        loaded instead of retrained, and a new one is saved there.
        """
        for skill in skills:
            if not skill.name or skill.name in (LOCAL_LLM, CLOUD):
                raise ValidationError(f"{skill.name!r} cannot name a skill route")
        self.skills = {s.name: s for s in skills if s.utterances()}
        key = self.fingerprint()
        if head_cache is not None and head_cache.is_file():
            try:
                head = IntentHead.load(head_cache)
            except ModelError:
                head = None  # unreadable: retrain and overwrite below
            if head is not None and head.fingerprint == key:
                self.head = head
                return
        self.retrain()
        if head_cache is not None and self.head is not None:
            head_cache.parent.mkdir(parents=True, exist_ok=True)
            self.head.save(head_cache)

    def fingerprint(self) -> str:
        """Hash of everything the head is trained on."""
        digest = hashlib.sha256()
        for name in sorted(self.skills):
            for text in [name, *self.skills[name].utterances()]:
                digest.update(text.encode() + b"\0")
        for text in self.general:
            digest.update(text.encode() + b"\1")
        return digest.hexdigest()[:32]

    def remove_skill(self, name: str) -> None:
        self.skills.pop(name, None)
        self.retrain()

    def retrain(self) -> None:
        if not self.skills:
            self.head = None
            return
        texts: list[str] = []
        labels: list[str] = []
        for skill in self.skills.values():
            for text in skill.utterances():
                texts.append(text)
                labels.append(skill.name)
        texts += self.general
        labels += [LOCAL_LLM] * len(self.general)
        folds = max(2, min(5, min(labels.count(s) for s in self.skills)))
        self.head = fit_head(self.embed(texts), labels, background=LOCAL_LLM, folds=folds)
        self.head.fingerprint = self.fingerprint()

    def route(self, text: str) -> RouteDecision:
        start = time.perf_counter()
        if self.head is None:
            return RouteDecision(LOCAL_LLM, "no skills installed", 0.0, 0.0, None, 0.0)
        vec = self.encoder.encode([text[:MAX_TEXT_CHARS]], max_length=ROUTER_MAX_TOKENS)
        logits = self.head.logits(vec)
        score = float(energy(logits)[0])
        candidate = self.head.labels[int(logits.argmax())]
        confident = candidate != LOCAL_LLM and score >= self.head.threshold
        label = candidate if confident else None
        elapsed = (time.perf_counter() - start) * 1000
        if label is not None:
            reason = f"skill {label!r} matched (energy {score:.2f} >= {self.head.threshold:.2f})"
            return RouteDecision(label, reason, score, self.head.threshold, candidate, elapsed)
        if candidate == LOCAL_LLM:
            reason = "a general request: no installed skill covers it"
        else:
            reason = (
                f"closest skill {candidate!r} is not confident enough "
                f"(energy {score:.2f} < {self.head.threshold:.2f})"
            )
        return RouteDecision(LOCAL_LLM, reason, score, self.head.threshold, candidate, elapsed)


# --- evaluation on CLINC150-format data -------------------------------------------------


def evaluate(
    data: dict[str, list[list[str]]],
    encoder: TextEncoder,
    *,
    train_split: str = "train",
    oos_train_split: str | None = "oos_train",
    eval_split: str = "val",
    oos_split: str | None = "oos_val",
    oos_label: str = "oos",
) -> dict[str, float | int]:
    """Train on the given splits, then route every eval query one at a time (timed)."""

    def split(name: str | None) -> list[list[str]]:
        if name is None:
            return []
        if name not in data:
            raise ValidationError(f"no split {name!r} in the data (has {sorted(data)})")
        return data[name]

    train = split(train_split) + split(oos_train_split)
    if not train:
        raise ValidationError("the training splits are empty")
    texts = [str(q) for q, _ in train]
    labels = [str(y) for _, y in train]
    x = encoder.encode(texts, batch_size=64, max_length=ROUTER_MAX_TOKENS)
    has_oos = oos_label in labels
    head = fit_head(x, labels, background=oos_label if has_oos else None)
    cases = split(eval_split) + split(oos_split)
    times, correct_in, n_in, oos_hit, n_oos, predicted_oos = [], 0, 0, 0, 0, 0
    for query, truth in cases:
        start = time.perf_counter()
        vec = encoder.encode([str(query)], max_length=ROUTER_MAX_TOKENS)
        (label,), _ = head.predict(vec)
        times.append((time.perf_counter() - start) * 1000)
        predicted_oos += label is None
        if truth == oos_label:
            n_oos += 1
            oos_hit += label is None
        else:
            n_in += 1
            correct_in += label == truth
    return {
        "in_scope_accuracy": round(correct_in / n_in, 4) if n_in else 0.0,
        "oos_recall": round(oos_hit / n_oos, 4) if n_oos else 0.0,
        "oos_precision": round(oos_hit / predicted_oos, 4) if predicted_oos else 0.0,
        "p50_ms": round(float(np.percentile(times, 50)), 3) if times else 0.0,
        "p99_ms": round(float(np.percentile(times, 99)), 3) if times else 0.0,
        "model_bytes": int(getattr(encoder, "model_bytes", 0)) + head.nbytes,
        "n_eval": len(cases),
        "n_train": len(train),
        "threshold": round(head.threshold, 4),
    }
