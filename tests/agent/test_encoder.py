"""The ONNX encoder against an independent numpy implementation of the same BERT."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bitterbot.agent.encoder import Encoder, get_encoder, load_weights, model_dir

SENTENCES = [
    "what is my checking account balance",
    "set an alarm for 7 in the morning",
    "Wie spät ist es in Berlin?",
    "Tell me a joke about penguins, please!",
    "",
    "a " * 400,  # longer than max_length: truncated, not an error
]


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-12) * g + b


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf)(x)


def reference_embed(weights: dict[str, np.ndarray], ids: list[int]) -> np.ndarray:
    """BERT forward pass + mean pooling, one sentence, float64, written from the paper."""
    w = {k: v.astype(np.float64) for k, v in weights.items() if v.dtype != np.int64}
    n = len(ids)
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:n]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    heads, dim = 12, x.shape[1] // 12
    for i in range(6):
        p = f"encoder.layer.{i}."

        def lin(v: np.ndarray, name: str, p: str = p) -> np.ndarray:
            return v @ w[p + name + ".weight"].T + w[p + name + ".bias"]

        q = lin(x, "attention.self.query").reshape(n, heads, dim).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, dim).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, dim).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(dim)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(1, 0, 2).reshape(n, heads * dim)
        x = _layer_norm(
            lin(ctx, "attention.output.dense") + x,
            w[p + "attention.output.LayerNorm.weight"],
            w[p + "attention.output.LayerNorm.bias"],
        )
        h = lin(x, "intermediate.dense")
        h = 0.5 * h * (1 + _erf(h / math.sqrt(2)))
        x = _layer_norm(
            lin(h, "output.dense") + x,
            w[p + "output.LayerNorm.weight"],
            w[p + "output.LayerNorm.bias"],
        )
    pooled = x.mean(0)
    return pooled / np.linalg.norm(pooled)


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return get_encoder()


def test_onnx_encoder_matches_numpy_reference(encoder: Encoder) -> None:
    weights = load_weights(model_dir())
    got = encoder.encode(SENTENCES, max_length=64)
    token_ids = encoder.tokenize(SENTENCES, 64)
    for row, ids in zip(got, token_ids, strict=True):
        ref = reference_embed(weights, ids)
        assert float(row @ ref) >= 0.999


def test_output_shape_dtype_and_unit_norm(encoder: Encoder) -> None:
    out = encoder.encode(SENTENCES)
    assert out.shape == (len(SENTENCES), encoder.dim) == (6, 384)
    assert out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_batching_and_padding_do_not_change_embeddings(encoder: Encoder) -> None:
    together = encoder.encode(SENTENCES[:4], batch_size=4)
    alone = np.vstack([encoder.encode([s]) for s in SENTENCES[:4]])
    assert np.allclose(together, alone, atol=1e-4)


def test_layer_features_pool_three_layers_and_contain_the_embedding(encoder: Encoder) -> None:
    texts = SENTENCES[:4]
    features = encoder.encode_layers(texts, max_length=64)
    assert features.shape == (4, encoder.layers_dim) == (4, 6 * 384)
    blocks = features.reshape(4, 6, 384)
    assert np.allclose(np.linalg.norm(blocks, axis=2), 1.0, atol=1e-5)
    # block 2 is the last layer's mean: the sentence embedding itself
    assert np.allclose(blocks[:, 2], encoder.encode(texts, max_length=64), atol=1e-5)
    alone = np.vstack([encoder.encode_layers([t], max_length=64) for t in texts])
    assert np.allclose(alone, features, atol=1e-4)  # padding changes neither mean nor max
    assert encoder.encode_layers([]).shape == (0, encoder.layers_dim)


def test_paraphrases_are_closer_than_unrelated_sentences(encoder: Encoder) -> None:
    a, b, c = encoder.encode(
        ["how much money is in my bank account", "what's my account balance", "play some jazz"]
    )
    assert a @ b > 0.6
    assert a @ b > a @ c + 0.3


def test_get_encoder_is_process_wide_and_reports_size(encoder: Encoder) -> None:
    assert get_encoder() is encoder
    assert 80_000_000 < encoder.model_bytes < 100_000_000


def test_no_torch_needed(encoder: Encoder) -> None:
    encoder.encode(["anything"])
    assert "torch" not in sys.modules


def test_built_graph_is_cached_under_cache_dir_and_reused(tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    stale = tmp_path / "cache" / "minilm-l6-0123456789abcdef.onnx"  # an older builder's graph
    stale.write_bytes(b"old graph")
    keep = tmp_path / "cache" / "notes.txt"
    keep.write_text("not ours")
    first = Encoder(tmp_path / "cache")
    assert not stale.exists() and keep.exists()
    files = list((tmp_path / "cache").glob("*.onnx"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    second = Encoder(tmp_path / "cache")
    assert files[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    text = ["cache me if you can"]
    assert np.allclose(first.encode(text), second.encode(text), atol=1e-6)


def test_single_query_latency_is_a_few_milliseconds(encoder: Encoder) -> None:
    query = ["how do i move money to my savings account"]
    encoder.encode(query)
    times = []
    for _ in range(30):
        start = time.perf_counter()
        encoder.encode(query, max_length=64)
        times.append(time.perf_counter() - start)
    # the benchmark target is 5 ms; the test allows for a machine shared with other jobs
    assert float(np.median(times)) < 0.1


@pytest.mark.slow
def test_int8_variant_is_a_quarter_of_the_size_and_close_to_fp32(
    encoder: Encoder, tmp_path: Path
) -> None:
    small = Encoder(tmp_path, quantized=True)
    assert small.model_bytes < 30_000_000
    texts = SENTENCES[:4]
    cos = (small.encode(texts) * encoder.encode(texts)).sum(axis=1)
    assert float(cos.min()) >= 0.98
