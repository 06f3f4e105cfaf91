"""The torch-only BERT encoder computes sentence-transformers' vectors, and only where it can."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors.memory.bert import BertEncoder, readable
from actors.memory.embed import load_embedder, packaged_model_path
from hexbus.models import ModelMissing

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def reference() -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(packaged_model_path()), device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def encoder() -> BertEncoder:
    return BertEncoder(packaged_model_path())


def st_vectors(model: Any, texts: list[str], batch_size: int = 64) -> Any:
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True)


# Chat the way people write it: emoji, accents, CJK, code, shouting, runs of spaces and newlines,
# and texts past the model's 256 tokens (truncated the same way).
WORDS = st.sampled_from(
    [
        "ok",
        "lol",
        "I'm",
        "Tuesday's",
        "exam",
        "café",
        "naïve",
        "日本語",
        "🎉",
        "WHY",
        "```py",
        "x=1",
        "\n",
        "  ",
        "sister",
        "don't",
        "4:30pm",
        "e-mail",
        "https://example.org/a?b=c",
    ]
)
TEXTS = st.lists(
    st.one_of(
        st.lists(WORDS, max_size=30).map(" ".join),
        st.text(max_size=60),
        st.lists(WORDS, min_size=200, max_size=400).map(" ".join),
    ),
    min_size=1,
    max_size=12,
)


@pytest.mark.slow
# Ten examples of up to twelve texts each (a minute on two slow cores at 25); failures found are
# kept in hypothesis' database and tried first next time.
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=TEXTS, batch_size=st.sampled_from([1, 3, 64]))
def test_vectors_equal_sentence_transformers(
    reference: Any, encoder: BertEncoder, texts: list[str], batch_size: int
) -> None:
    ours = encoder.encode(texts, batch_size=batch_size)
    theirs = st_vectors(reference, texts)
    assert ours.dtype == np.float32 and ours.shape == (len(texts), 384)
    np.testing.assert_allclose(ours, theirs, atol=2e-5)


@pytest.mark.slow  # seconds on two slow cores: the full suite's
def test_the_packaged_model_loads_without_sentence_transformers() -> None:
    assert readable(packaged_model_path()) == ""
    script = (
        "import sys; from actors.memory.embed import load_embedder; e = load_embedder(''); "
        "print(type(e._model).__name__, e.dim, e.encode(['hi']).shape, "
        "'sentence_transformers' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["BertEncoder", "384", "(1,", "384)", "False", "False"], out


@pytest.mark.slow
def test_long_texts_in_big_batches_match_too(reference: Any, encoder: BertEncoder) -> None:
    # Past the per-pass token budget: 80 texts of 256 tokens are split into several passes.
    texts = [f"{i} " + "the cat sat on the warm mat by the door " * 40 for i in range(80)]
    np.testing.assert_allclose(
        encoder.encode(texts, batch_size=64), st_vectors(reference, texts), atol=2e-5
    )


@pytest.mark.slow
def test_a_folder_it_cannot_compute_goes_to_sentence_transformers(
    tmp_path: Path, reference: Any
) -> None:
    folder = tmp_path / "cls-pooled"
    shutil.copytree(packaged_model_path(), folder)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    config.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    pooling.write_text(json.dumps(config))
    assert "pooling" in readable(folder)
    embedder = load_embedder(str(folder))
    assert not isinstance(embedder._model, BertEncoder)
    texts = ["My sister lives in Lisbon.", "The train leaves at nine."]
    cls = embedder.encode(texts)
    mean = st_vectors(reference, texts)
    assert not np.allclose(cls, mean, atol=1e-3)  # the folder's own pooling, not the mean


@pytest.mark.slow  # seconds on two slow cores: the full suite's
def test_weights_under_other_names_fall_back_to_sentence_transformers(tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "renamed"
    shutil.copytree(packaged_model_path(), folder)
    weights = load_file(str(folder / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in weights.items()}, str(folder / "model.safetensors"))
    embedder = load_embedder(str(folder))  # a "bert." prefix: the encoder reads it too
    assert isinstance(embedder._model, BertEncoder)
    renamed = {k.replace("LayerNorm.weight", "LayerNorm.gamma"): v for k, v in weights.items()}
    save_file(renamed, str(folder / "model.safetensors"))
    embedder = load_embedder(str(folder))  # names it does not know: sentence-transformers'
    assert not isinstance(embedder._model, BertEncoder)
    assert embedder.encode(["hello"]).shape == (1, 384)


@pytest.mark.slow
def test_a_damaged_weights_file_is_one_line_naming_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "damaged"
    shutil.copytree(packaged_model_path(), folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    with pytest.raises(ModelMissing) as err:
        load_embedder(str(folder))
    message = str(err.value)
    assert str(folder) in message and "MODELS.md" in message and "\n" not in message
