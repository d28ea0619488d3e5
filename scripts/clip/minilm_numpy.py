"""Reference forward pass of the MiniLM-L6 (BERT) sentence encoder in plain numpy, float64.

This is the independent reference the ONNX text tower is checked against: written directly from the
BERT equations (embeddings + LayerNorm, 6 post-LN encoder layers with exact-erf GELU), then
sentence-transformers' mean pooling over the attention mask and L2 normalisation. It shares no code
with the ONNX builder.
"""

from __future__ import annotations

import math

import numpy as np

# math.erf, vectorised: exact and dependency-free (scipy is not in the setup path); speed is no concern here.
erf = np.vectorize(math.erf, otypes=[np.float64])


def _layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def _gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def encode(w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray, *, layers: int, heads: int,
           eps: float) -> np.ndarray:
    """Sentence embeddings [N, H] for token ids/mask [N, L] (float64 throughout)."""
    W = {k: v.astype(np.float64) for k, v in w.items() if v.dtype.kind == "f"}
    n, length = ids.shape
    x = (W["embeddings.word_embeddings.weight"][ids]
         + W["embeddings.position_embeddings.weight"][np.arange(length)][None]
         + W["embeddings.token_type_embeddings.weight"][0][None, None])
    x = _layer_norm(x, W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], eps)
    hidden = x.shape[-1]
    dh = hidden // heads
    neg = np.where(mask[:, None, None, :] > 0, 0.0, -1e9)  # padded keys get no attention
    for i in range(layers):
        p = f"encoder.layer.{i}."

        def lin(t, name):
            return t @ W[p + name + ".weight"].T + W[p + name + ".bias"]

        def split(t):
            return t.reshape(n, length, heads, dh).transpose(0, 2, 1, 3)

        q = split(lin(x, "attention.self.query"))
        k = split(lin(x, "attention.self.key"))
        v = split(lin(x, "attention.self.value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(dh) + neg
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        ctx = (s @ v).transpose(0, 2, 1, 3).reshape(n, length, hidden)
        x = _layer_norm(x + lin(ctx, "attention.output.dense"), W[p + "attention.output.LayerNorm.weight"],
                        W[p + "attention.output.LayerNorm.bias"], eps)
        h = _gelu(lin(x, "intermediate.dense"))
        x = _layer_norm(x + lin(h, "output.dense"), W[p + "output.LayerNorm.weight"],
                        W[p + "output.LayerNorm.bias"], eps)
    m = mask[..., None].astype(np.float64)
    pooled = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)
