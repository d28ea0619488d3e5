"""A tiny CNN in plain numpy (forward, backward, Adam) and its ONNX export.

Why numpy and not JAX: the network is small enough that hand-written backprop is short, it keeps the
training path on the setup requirements (numpy, onnx, onnxruntime), and the numpy forward doubles as
the independent reference for the ONNX parity check. `grad_check()` verifies the backward pass against
central differences.

Architecture (the ONNX graph, NCHW; the numpy code works in NHWC and transposes before Flatten):

    image [N,3,64,64] RGB in [-1,1]  (the generator's output, no other preprocessing)
    AveragePool 2x2/2                → [N,3,32,32]
    Conv 3x3 pad 1 (3→8),  Relu, MaxPool 2x2/2 → [N,8,16,16]
    Conv 3x3 pad 1 (8→16), Relu, MaxPool 2x2/2 → [N,16,8,8]
    Conv 3x3 pad 1 (16→32), Relu, MaxPool 2x2/2 → [N,32,4,4]
    Flatten → Gemm (512→32) → Relu → Gemm (32→2) → logits [N,2]   (class 1 = the positive label)

Flatten + Gemm (not global pooling) keeps *where* a feature is: a smile sits at the bottom centre,
the background at the borders, and the model is free to learn either.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

CHANNELS = (3, 8, 16, 32)
HIDDEN = 32
FLAT = CHANNELS[-1] * 4 * 4


def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """He-normal weights, zero biases, float32. Conv weights in ONNX layout [O, I, kh, kw]."""
    p = {}
    for i, (cin, cout) in enumerate(zip(CHANNELS[:-1], CHANNELS[1:]), start=1):
        p[f"conv{i}.w"] = (rng.standard_normal((cout, cin, 3, 3)) * np.sqrt(2.0 / (cin * 9))).astype(np.float32)
        p[f"conv{i}.b"] = np.zeros(cout, np.float32)
    p["fc1.w"] = (rng.standard_normal((HIDDEN, FLAT)) * np.sqrt(2.0 / FLAT)).astype(np.float32)  # Gemm transB=1
    p["fc1.b"] = np.zeros(HIDDEN, np.float32)
    p["fc2.w"] = (rng.standard_normal((2, HIDDEN)) * np.sqrt(1.0 / HIDDEN)).astype(np.float32)
    p["fc2.b"] = np.zeros(2, np.float32)
    return p


# ----------------------------------------------------------------------------- layers (NHWC)

def _im2col(x: np.ndarray) -> np.ndarray:
    """x [N,H,W,C] → patches [N*H*W, C*9] for a 3x3 'same' convolution, column order (c, kh, kw)."""
    n, h, w, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    win = sliding_window_view(xp, (3, 3), axis=(1, 2))  # [N,H,W,C,3,3]
    return np.ascontiguousarray(win).reshape(n * h * w, c * 9)


def _col2im(dcols: np.ndarray, shape: tuple) -> np.ndarray:
    """Adjoint of _im2col: scatter-add patch gradients [N*H*W, C*9] back to [N,H,W,C]."""
    n, h, w, c = shape
    d = dcols.reshape(n, h, w, c, 3, 3)
    dxp = np.zeros((n, h + 2, w + 2, c), dcols.dtype)
    for i in range(3):
        for j in range(3):
            dxp[:, i:i + h, j:j + w, :] += d[..., i, j]
    return dxp[:, 1:-1, 1:-1, :]


def _pool_avg(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))


def _pool_max(x: np.ndarray):
    n, h, w, c = x.shape
    r = x.reshape(n, h // 2, 2, w // 2, 2, c)
    y = r.max((2, 4))
    return y, r


def _pool_max_back(dy: np.ndarray, r: np.ndarray, y: np.ndarray) -> np.ndarray:
    # Route the gradient to the max of each window. Ties only happen among zeros after Relu, whose
    # gradient the Relu mask below removes anyway.
    mask = r == y[:, :, None, :, None, :]
    dx = mask * dy[:, :, None, :, None, :]
    n, h2, _, w2, _, c = r.shape
    return dx.reshape(n, h2 * 2, w2 * 2, c)


def forward(p: dict, images: np.ndarray, keep: bool = False, dtype=np.float32, pooled: bool = False):
    """images [N,3,64,64] in [-1,1] → logits [N,2]; with keep=True also the cache for backward.
    pooled=True: images are already 2x2-average-pooled [N,3,32,32] (training pools the data once)."""
    x = np.asarray(images, dtype).transpose(0, 2, 3, 1)
    if not pooled:
        x = _pool_avg(x)
    cache = []
    for i in (1, 2, 3):
        w = p[f"conv{i}.w"].astype(dtype)
        cols = _im2col(x)
        n, h, wd, _ = x.shape
        pre = (cols @ w.reshape(w.shape[0], -1).T + p[f"conv{i}.b"].astype(dtype)).reshape(n, h, wd, -1)
        act = np.maximum(pre, 0)
        y, r = _pool_max(act)
        cache.append((x.shape, cols, pre, r, y))
        x = y
    flat = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # NCHW order, as ONNX Flatten sees it
    h1pre = flat @ p["fc1.w"].astype(dtype).T + p["fc1.b"].astype(dtype)
    h1 = np.maximum(h1pre, 0)
    logits = h1 @ p["fc2.w"].astype(dtype).T + p["fc2.b"].astype(dtype)
    if keep:
        return logits, (cache, x.shape, flat, h1pre, h1)
    return logits


def loss_and_grads(p: dict, images: np.ndarray, y: np.ndarray, dtype=np.float32, pooled: bool = False):
    """Mean softmax cross-entropy for labels y ∈ {0,1} and its gradient (in `dtype`) for every parameter."""
    logits, (cache, xshape, flat, h1pre, h1) = forward(p, images, keep=True, dtype=dtype, pooled=pooled)
    z = logits - logits.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    n = len(y)
    loss = float(-logp[np.arange(n), y].mean())
    dlog = np.exp(logp)
    dlog[np.arange(n), y] -= 1.0
    dlog /= n
    g = {"fc2.w": dlog.T @ h1, "fc2.b": dlog.sum(0)}
    dh1 = (dlog @ p["fc2.w"]) * (h1pre > 0)
    g["fc1.w"] = dh1.T @ flat
    g["fc1.b"] = dh1.sum(0)
    dflat = dh1 @ p["fc1.w"]
    n_, h_, w_, c_ = xshape
    dx = dflat.reshape(n_, c_, h_, w_).transpose(0, 2, 3, 1)
    for i in (3, 2, 1):
        shape, cols, pre, r, yv = cache[i - 1]
        dact = _pool_max_back(dx, r, yv) * (pre > 0)
        dpre = dact.reshape(-1, dact.shape[-1])
        w = p[f"conv{i}.w"]
        g[f"conv{i}.w"] = (dpre.T @ cols).reshape(w.shape)
        g[f"conv{i}.b"] = dpre.sum(0)
        if i > 1:
            dx = _col2im(dpre @ w.reshape(w.shape[0], -1), shape)
    return loss, {k: v.astype(dtype) for k, v in g.items()}, logits


class Adam:
    def __init__(self, params: dict, lr: float, weight_decay: float, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.wd, self.b1, self.b2, self.eps, self.t = lr, weight_decay, b1, b2, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, params: dict, grads: dict, lr_scale: float = 1.0) -> None:
        """AdamW: decoupled weight decay on weights (not biases)."""
        self.t += 1
        lr = self.lr * lr_scale
        for k, g in grads.items():
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * g
            self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * g * g
            mh = self.m[k] / (1 - self.b1 ** self.t)
            vh = self.v[k] / (1 - self.b2 ** self.t)
            if k.endswith(".w"):
                params[k] -= (lr * self.wd * params[k]).astype(np.float32)
            params[k] -= (lr * mh / (np.sqrt(vh) + self.eps)).astype(np.float32)


def grad_check(seed: int = 123) -> float:
    """Largest error of the analytic gradient against central differences (float64), relative to
    |numeric| + |analytic| + 1e-4 (the floor keeps near-zero entries from dominating)."""
    rng = np.random.default_rng(seed)
    p = {k: v.astype(np.float64) for k, v in init_params(rng).items()}
    for k in p:
        if k.endswith(".b"):  # non-zero biases, so Relu masks are not all decided by the weights alone
            p[k] += 0.1 * rng.standard_normal(p[k].shape)
    x = rng.uniform(-1, 1, (3, 3, 64, 64))
    y = np.array([0, 1, 1])

    def loss(q):
        lg = forward(q, x, dtype=np.float64)
        z = lg - lg.max(1, keepdims=True)
        return -(z - np.log(np.exp(z).sum(1, keepdims=True)))[np.arange(3), y].mean()

    _, g, _ = loss_and_grads(p, x, y, dtype=np.float64)
    worst, eps = 0.0, 1e-6
    for k in p:
        flat = p[k].reshape(-1)
        for idx in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            old = flat[idx]
            flat[idx] = old + eps
            lp = loss(p)
            flat[idx] = old - eps
            lm = loss(p)
            flat[idx] = old
            num = (lp - lm) / (2 * eps)
            ana = g[k].reshape(-1)[idx]
            worst = max(worst, abs(num - ana) / (abs(num) + abs(ana) + 1e-4))
    return float(worst)


# ----------------------------------------------------------------------------- ONNX export

def to_onnx(p: dict, doc: str, builder_cls, f32) -> "object":
    """The same network as standard ONNX ops (opset 17): see the module docstring."""
    b = builder_cls("planted_bias_cnn")
    x = b.input("image", f32, ["N", 3, 64, 64])
    x = b.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2])
    for i in (1, 2, 3):
        w = b.const(f"conv{i}.w", p[f"conv{i}.w"])
        bias = b.const(f"conv{i}.b", p[f"conv{i}.b"])
        x = b.op("Conv", [x, w, bias], kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[1, 1])
        x = b.op("Relu", [x])
        x = b.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = b.op("Flatten", [x], axis=1)
    x = b.op("Gemm", [x, b.const("fc1.w", p["fc1.w"]), b.const("fc1.b", p["fc1.b"])], transB=1)
    x = b.op("Relu", [x])
    b.op("Gemm", [x, b.const("fc2.w", p["fc2.w"]), b.const("fc2.b", p["fc2.b"])], name="logits", transB=1)
    b.output("logits", f32, ["N", 2])
    return b.model(doc, "zoom scripts/planted_bias")
