"""The face-CLIP image tower: a small CNN in JAX for training, and its ONNX export.

    image [N,3,64,64] (generator RGB in [-1,1], used as is)
    → 4 × (Conv k4 s2 p1 + Relu): 32, 64, 128, 192 channels, 64→32→16→8→4 pixels
    → Conv 1×1 (192→64) + Relu          (a bottleneck: keeps the file small, ~3.7 MB)
    → Conv k4 valid (64→256) + Relu → ReduceSum over the 1×1 spatial dims → [N,256]
    → Gemm (256→384) → L2 normalisation (Mul, ReduceSum, Add ε, Sqrt, Div) → embedding [N,384]

The 4×4 map is flattened by a full-size convolution rather than pooled, so the tower keeps *where*
things are (hair at the top, background at the borders), which the colour attributes need.

Only Conv, Relu, ReduceSum, Gemm, Mul, Add, Sqrt and Div: plain ops that zoom's gradient builder
differentiates. No BatchNorm (nothing to fold), no custom domains.
"""

from __future__ import annotations

import numpy as np

WIDTHS = [32, 64, 128, 192]
BOTTLENECK = 64
HIDDEN = 256
EMBED = 384
L2_EPS = 1e-12


def init_params(rng: np.random.Generator) -> dict:
    """He-normal convolutions, small head; plain numpy so the init is bit-reproducible."""
    p, cin = {}, 3
    for i, c in enumerate(WIDTHS):
        p[f"conv{i}_w"] = (rng.standard_normal((c, cin, 4, 4)) * np.sqrt(2.0 / (cin * 16))).astype(np.float32)
        p[f"conv{i}_b"] = np.zeros(c, np.float32)
        cin = c
    p["squeeze_w"] = (rng.standard_normal((BOTTLENECK, cin, 1, 1)) * np.sqrt(2.0 / cin)).astype(np.float32)
    p["squeeze_b"] = np.zeros(BOTTLENECK, np.float32)
    cin = BOTTLENECK
    p["conv4_w"] = (rng.standard_normal((HIDDEN, cin, 4, 4)) * np.sqrt(2.0 / (cin * 16))).astype(np.float32)
    p["conv4_b"] = np.zeros(HIDDEN, np.float32)
    p["head_w"] = (rng.standard_normal((HIDDEN, EMBED)) * np.sqrt(1.0 / HIDDEN)).astype(np.float32)
    p["head_b"] = np.zeros(EMBED, np.float32)
    return p


def forward(p, x):
    """JAX forward: x [N,3,64,64] → unit embeddings [N,384]."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    dn = ("NCHW", "OIHW", "NCHW")
    for i in range(len(WIDTHS)):
        x = lax.conv_general_dilated(x, p[f"conv{i}_w"], (2, 2), [(1, 1), (1, 1)], dimension_numbers=dn)
        x = jax.nn.relu(x + p[f"conv{i}_b"][None, :, None, None])
    x = lax.conv_general_dilated(x, p["squeeze_w"], (1, 1), [(0, 0), (0, 0)], dimension_numbers=dn)
    x = jax.nn.relu(x + p["squeeze_b"][None, :, None, None])
    x = lax.conv_general_dilated(x, p["conv4_w"], (1, 1), [(0, 0), (0, 0)], dimension_numbers=dn)
    x = jax.nn.relu(x + p["conv4_b"][None, :, None, None]).sum((2, 3))
    y = x @ p["head_w"] + p["head_b"]
    return y / jnp.sqrt((y * y).sum(-1, keepdims=True) + L2_EPS)


def to_onnx(p: dict, doc: str):
    from onnx_build import F32, GraphBuilder

    g = GraphBuilder("face_clip_image_tower")
    x = g.input("image", F32, ["N", 3, 64, 64])
    for i in range(len(WIDTHS)):
        x = g.op("Relu", [g.op("Conv", [x, g.const(f"conv{i}_w", p[f"conv{i}_w"]), g.const(f"conv{i}_b", p[f"conv{i}_b"])],
                               kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1])])
    x = g.op("Relu", [g.op("Conv", [x, g.const("squeeze_w", p["squeeze_w"]), g.const("squeeze_b", p["squeeze_b"])],
                           kernel_shape=[1, 1])])
    x = g.op("Relu", [g.op("Conv", [x, g.const("conv4_w", p["conv4_w"]), g.const("conv4_b", p["conv4_b"])],
                           kernel_shape=[4, 4], strides=[1, 1], pads=[0, 0, 0, 0])])
    x = g.op("ReduceSum", [x, g.const("axes_hw", [2, 3], np.int64)], keepdims=0)
    y = g.op("Gemm", [x, g.const("head_w", p["head_w"]), g.const("head_b", p["head_b"])])
    sq = g.op("ReduceSum", [g.op("Mul", [y, y]), g.const("axes_c", [1], np.int64)], keepdims=1)
    norm = g.op("Sqrt", [g.op("Add", [sq, g.const("l2_eps", L2_EPS)])])
    g.op("Div", [y, norm], name="embedding")
    g.output("embedding", F32, ["N", EMBED])
    return g.model(doc, "zoom scripts/clip/train_image_tower.py")
