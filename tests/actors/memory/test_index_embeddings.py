"""Embeddings from the packaged sentence model: unit float32 rows, paraphrases near, no model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from actors.memory.embed import Embedder, embedding_model, load_embedder
from hexbus.models import ModelMissing

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# -- embeddings ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return embedding_model().get()


@pytest.mark.slow
def test_embeddings_are_unit_float32_rows(embedder: Embedder) -> None:
    vectors = embedder.encode(["I adopted a cat named Miso.", "The meeting moved to Tuesday.", ""])
    assert embedder.dim == 384
    assert vectors.dtype == np.float32 and vectors.shape == (3, 384)
    assert vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.encode([]).shape == (0, 384)


@pytest.mark.slow
def test_paraphrases_are_closer_than_unrelated_sentences(embedder: Embedder) -> None:
    pairs = [
        (
            "My sister lives in Lisbon.",
            "My sibling's home is in Lisbon, Portugal.",
            "I need to buy new running shoes.",
        ),
        (
            "I'm allergic to peanuts.",
            "Peanuts give me an allergic reaction.",
            "The train leaves at nine tomorrow.",
        ),
        (
            "We watched Spirited Away last night.",
            "Yesterday evening we saw Spirited Away.",
            "My laptop battery is dying.",
        ),
    ]
    for a, paraphrase, unrelated in pairs:
        va, vp, vu = embedder.encode([a, paraphrase, unrelated])
        assert float(va @ vp) > float(va @ vu) + 0.2, (a, float(va @ vp), float(va @ vu))


@pytest.mark.slow
def test_batched_encoding_matches_one_by_one(embedder: Embedder) -> None:
    texts = [
        f"turn {i}: I told you about my {w} yesterday"
        for i, w in enumerate(["dog", "job", "trip"] * 30)
    ]
    batched = embedder.encode(texts)
    single = np.vstack([embedder.encode([t]) for t in texts[:3]])
    np.testing.assert_allclose(batched[:3], single, atol=1e-4)


def test_missing_model_folder_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing) as err:
        load_embedder(str(tmp_path / "no-such-model"))
    message = str(err.value)
    assert (
        str(tmp_path / "no-such-model") in message
        and "MODELS.md" in message
        and "Embeddings" in message
    )
    assert "\n" not in message
