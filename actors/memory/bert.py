"""A BERT sentence encoder on plain torch: what sentence-transformers computes for a mean-pooled,
normalised BERT model (all-MiniLM-L6-v2, the packaged default), without importing it.

Importing sentence-transformers (transformers, scikit-learn, scipy) took three of the four seconds
a memory actor needed at every start and every restart after a crash, for a six-layer model whose
forward pass is a dozen torch calls. This module reads the same folder (``tokenizer.json`` through
the tokenizers library, ``model.safetensors`` through safetensors) and computes the same vectors
with the same kernels (tests/actors/memory/test_bert.py compares the two on varied text). :func:`actors.memory.embed.load_embedder` uses it for folders it can read
(:func:`readable`) on the CPU, and sentence-transformers for everything else (other
architectures, CUDA).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]

_BATCH_TOKENS = 8192  # padded tokens per forward pass (attention memory grows with length squared)

# The sentence-transformers modules this encoder reproduces, in order.
_MODULES = (
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
)


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def readable(folder: Path) -> str:
    """Why this encoder cannot compute ``folder``'s vectors ("" when it can): a BERT model with
    absolute positions and exact GELU, mean pooling only, then normalisation."""
    try:
        modules = _json(folder / "modules.json")
        config = _json(folder / "config.json")
        types = tuple(
            m.get("type", "").replace("sentence_transformers.models.", "") for m in modules
        )
        if types != tuple(m.rsplit(".", 1)[1] for m in _MODULES):
            return f"modules {types}"
        if modules[0].get("path", "") != "" or modules[1].get("path") != "1_Pooling":
            return "modules in unexpected folders"
        pooling = _json(folder / "1_Pooling" / "config.json")
        for name in ("model.safetensors", "tokenizer.json", "sentence_bert_config.json"):
            if not (folder / name).is_file():
                return f"no {name}"
        prompts = folder / "config_sentence_transformers.json"
        if prompts.is_file():
            st_config = _json(prompts)
            if st_config.get("prompts") or st_config.get("default_prompt_name"):
                return "prompts"
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if config.get("model_type") != "bert":
        return f"model_type {config.get('model_type')!r}"
    if config.get("position_embedding_type", "absolute") != "absolute":
        return "relative positions"
    if config.get("hidden_act") != "gelu":
        return f"activation {config.get('hidden_act')!r}"
    modes = {k for k, v in pooling.items() if k.startswith("pooling_mode") and v}
    if modes != {"pooling_mode_mean_tokens"}:
        return f"pooling {sorted(modes)}"
    return ""


class BertEncoder:
    """Texts in, mean-pooled L2-normalised float32 rows out. Thread-safe: torch releases the GIL
    in its kernels, and nothing here is mutated after loading."""

    def __init__(self, folder: Path) -> None:
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        config = _json(folder / "config.json")
        st_config = _json(folder / "sentence_bert_config.json")
        self.torch = torch
        self.heads = int(config["num_attention_heads"])
        self.dim = int(config["hidden_size"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        positions = int(config["max_position_embeddings"])
        self.max_len = min(int(st_config.get("max_seq_length", positions)), positions)
        self.lowercase = bool(st_config.get("do_lower_case", False))
        weights = load_file(str(folder / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
        w = {k.removeprefix(prefix): v.float() for k, v in weights.items()}
        self.w = w
        self.layers = int(config["num_hidden_layers"])
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_len)
        self.tokenizer = tokenizer
        # Every weight is read now, not at the first memory: a folder with other names or shapes
        # fails here, where the loader can fall back to sentence-transformers.
        vectors = self.encode(["warm up", ""])
        if vectors.shape != (2, self.dim) or not np.isfinite(vectors).all():
            raise ValueError(f"the encoder computed {vectors.shape} vectors, not (2, {self.dim})")

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> Array:
        """One unit-length row per text, in order; texts of similar length batched together."""
        if self.lowercase:
            texts = [t.lower() for t in texts]
        ids = [e.ids for e in self.tokenizer.encode_batch(list(texts))]
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        start = 0
        with self.torch.inference_mode():
            while start < len(order):
                length = len(ids[order[min(start + batch_size, len(order)) - 1]])
                batch = order[start : start + max(1, min(batch_size, _BATCH_TOKENS // length))]
                out[batch] = self._forward([ids[i] for i in batch]).numpy()
                start += len(batch)
        return out

    def _forward(self, rows: list[list[int]]) -> Any:
        torch, w = self.torch, self.w
        functional = torch.nn.functional
        n, length = len(rows), max(len(r) for r in rows)
        ids = torch.zeros((n, length), dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = True

        def norm(x: Any, name: str) -> Any:
            return functional.layer_norm(
                x, (self.dim,), w[f"{name}.LayerNorm.weight"], w[f"{name}.LayerNorm.bias"], self.eps
            )

        def dense(x: Any, name: str) -> Any:
            return functional.linear(x, w[f"{name}.weight"], w[f"{name}.bias"])

        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = norm(x, "embeddings")
        heads, size = self.heads, self.dim // self.heads
        attend = mask[:, None, None, :]  # padding gets no attention
        for i in range(self.layers):
            layer = f"encoder.layer.{i}"

            def split(t: Any) -> Any:
                return t.view(n, length, heads, size).transpose(1, 2)

            q, k, v = (
                split(dense(x, f"{layer}.attention.self.{p}")) for p in ("query", "key", "value")
            )
            context = functional.scaled_dot_product_attention(q, k, v, attn_mask=attend)
            context = context.transpose(1, 2).reshape(n, length, self.dim)
            x = norm(
                dense(context, f"{layer}.attention.output.dense") + x, f"{layer}.attention.output"
            )
            up = functional.gelu(dense(x, f"{layer}.intermediate.dense"))
            x = norm(dense(up, f"{layer}.output.dense") + x, f"{layer}.output")
        weights = mask.unsqueeze(-1).float()
        pooled = (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return functional.normalize(pooled, p=2.0, dim=1)


__all__ = ["BertEncoder", "readable"]
