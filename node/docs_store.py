"""The node's document index: one per home, over the node's store (``docs.*`` settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitterbot.node.context import NodeContext
from bitterbot.protocol.errors import ValidationError


def make_index(store: Any, cache_dir: Path, *, vectors: str, max_file_bytes: int) -> Any:
    """A DocsIndex over ``store`` with passage vectors of kind ``vectors``."""
    from bitterbot.agent.docs_index import DocsIndex
    from bitterbot.agent.docs_vectors import STATIC_NAME

    if vectors not in {"static", "minilm"}:
        raise ValidationError(f"unknown docs.vectors {vectors!r}", hint="use 'static' or 'minilm'")

    def encoder() -> Any:
        if vectors == "static":
            from bitterbot.agent.docs_vectors import get_static_encoder

            return get_static_encoder(cache_dir)
        from bitterbot.agent.encoder import get_encoder

        return get_encoder(cache_dir)

    name = STATIC_NAME if vectors == "static" else "all-MiniLM-L6-v2"
    return DocsIndex(store, encoder, max_file_bytes=max_file_bytes, encoder_name=name)


def docs_index(ctx: NodeContext) -> Any:
    """The node's document index, made on first use and kept in ``ctx.docs``."""
    if ctx.docs is None:
        ctx.docs = make_index(
            ctx.store,
            ctx.home.path / "cache",
            vectors=str(ctx.settings["docs.vectors"]),
            max_file_bytes=int(ctx.settings["docs.max_file_bytes"]),
        )
    return ctx.docs
