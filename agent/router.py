"""The router: which installed skill handles a request, or none (then the local model).

A small classifier head (:mod:`bitterbot.agent.router_head`) sits on the shared sentence
encoder (:mod:`bitterbot.agent.encoder`): softmax regression with one class per skill plus
a background class (``local-llm``: general requests no skill covers, trained on
:data:`GENERAL_REQUESTS`). Which features depends on how much data there is, as measured
(``docs: /work/shared/notes/router-calibration.md``): installed skills have a handful of
examples each, and there the sentence embedding keeps more requests that no skill covers
away from the skills (73% vs 64% with layer features, same 99% skill accuracy); with 100
examples per intent (CLINC150, :func:`evaluate`), mean+max pools of the last three layers
win (97.0% vs 96.0% validation accuracy before the out-of-scope threshold).

Out-of-scope detection mixes the energy (log-sum-exp of the logits) with the Mahalanobis
distance to the nearest skill's examples (:meth:`IntentHead.score`): a request whose best
class is a skill but whose score falls below the threshold is *not* sent to that skill.
The threshold is chosen by cross-validation on training data only (out-of-fold scores,
losing at most 1 point of in-scope accuracy), which also yields the cross-validated
accuracy and background recall (``head.cv``). The distance keeps requests no skill covers
away from the skills far better than the energy alone: with 8 CLINC150 intents installed
as skills of 6 examples each, 79% of other requests stay on the local model instead of
71% (``router skills-eval``).

Skills contribute a description and example utterances. Their embeddings are cached by
text, so adding or removing a skill retrains only the head (well under a second for a
few dozen skills). The head saves to and loads from ``.npz``.

Whether a request that no skill takes stays on the local model or escalates to the cloud
is the escalation policy's call (:mod:`bitterbot.agent.escalation`), not the router's.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from bitterbot.agent.router_head import IntentHead, fit_head
from bitterbot.protocol.errors import ModelError, ValidationError

__all__ = [
    "CLOUD",
    "GENERAL_REQUESTS",
    "LOCAL_LLM",
    "ROUTER_MAX_TOKENS",
    "IntentHead",
    "RouteDecision",
    "Router",
    "SkillIntent",
    "fit_head",
]

LOCAL_LLM = "local-llm"
CLOUD = "cloud"
ROUTER_MAX_TOKENS = 64  # requests are short; longer ones are cut for routing only
MAX_SKILL_EXAMPLES = 200
MAX_TEXT_CHARS = 2000
#: part of every head's fingerprint: a cached head of an older format is retrained
HEAD_FORMAT = b"head-2: energy + distance\0"
#: what the head reads: the sentence embedding, or pooled layers 4-6 (Encoder.encode_layers)
FEATURES = ("embedding", "layers")

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
    """:class:`bitterbot.agent.encoder.Encoder`."""

    dim: int

    @property
    def layers_dim(self) -> int: ...

    def encode(
        self, texts: list[str], batch_size: int = 32, *, max_length: int | None = None
    ) -> np.ndarray: ...

    def encode_layers(
        self, texts: list[str], batch_size: int = 32, *, max_length: int | None = None
    ) -> np.ndarray: ...


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
    score: float  # out-of-scope score (IntentHead.score): below threshold, no skill
    threshold: float
    candidate: str | None  # best class before the out-of-scope check
    elapsed_ms: float


class Router:
    """Routes requests to installed skills; retrains its head when skills change."""

    def __init__(
        self,
        encoder: TextEncoder,
        *,
        general: Sequence[str] = GENERAL_REQUESTS,
        features: str = "embedding",
    ):
        if features not in FEATURES:
            raise ValidationError(f"features must be one of {FEATURES}, not {features!r}")
        self.encoder = encoder
        self.general = list(general)
        self.features = features  # "embedding" for skills: see the module docstring
        self.skills: dict[str, SkillIntent] = {}
        self.head: IntentHead | None = None
        self._cache: dict[str, np.ndarray] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if missing:
            vectors = self._encode(missing, batch_size=64)
            self._cache.update(zip(missing, vectors, strict=True))
        if not texts:
            dim = self.encoder.dim if self.features == "embedding" else self.encoder.layers_dim
            return np.zeros((0, dim), np.float32)
        return np.vstack([self._cache[t] for t in texts])

    def _encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        encode = self.encoder.encode if self.features == "embedding" else self.encoder.encode_layers
        return encode(texts, batch_size=batch_size, max_length=ROUTER_MAX_TOKENS)

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
        digest = hashlib.sha256(HEAD_FORMAT)
        for name in sorted(self.skills):
            for text in [name, *self.skills[name].utterances()]:
                digest.update(text.encode() + b"\0")
        for text in self.general:
            digest.update(text.encode() + b"\1")
        digest.update(self.features.encode())
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
        vec = self._encode([text[:MAX_TEXT_CHARS]])
        (label,), scores, (candidate,) = self.head.decide(vec)
        score = float(scores[0])
        elapsed = (time.perf_counter() - start) * 1000
        if label is not None:
            reason = f"skill {label!r} matched (score {score:.2f} >= {self.head.threshold:.2f})"
            return RouteDecision(label, reason, score, self.head.threshold, candidate, elapsed)
        if candidate == LOCAL_LLM:
            reason = "a general request: no installed skill covers it"
        else:
            reason = (
                f"closest skill {candidate!r} is not confident enough "
                f"(score {score:.2f} < {self.head.threshold:.2f})"
            )
        return RouteDecision(LOCAL_LLM, reason, score, self.head.threshold, candidate, elapsed)
