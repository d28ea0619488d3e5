"""Plain numpy (float64, NHWC) reference implementations of the ops our converters emit.

These are the independent side of every parity check: they follow TensorFlow's definitions
(SAME padding split, pooling that ignores padded cells, bilinear resize modes) directly, not
ONNX's, so an ONNX conversion that gets an attribute wrong shows up as a mismatch.
"""
from __future__ import annotations

import numpy as np


def same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding: output = ceil(size/s); the extra pixel goes after."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _pads(x, kh, kw, strides, padding, dil=(1, 1)):
    if padding == "VALID":
        return (0, 0), (0, 0)
    if padding == "SAME":
        return same_pads(x.shape[1], kh, strides[0], dil[0]), same_pads(x.shape[2], kw, strides[1], dil[1])
    return padding  # explicit ((top, bottom), (left, right))


def _windows(x, kh, kw, strides, dil):
    """[N, OH, OW, kh, kw, C] strided view of an already padded NHWC tensor."""
    n, h, w, c = x.shape
    oh = (h - (kh - 1) * dil[0] - 1) // strides[0] + 1
    ow = (w - (kw - 1) * dil[1] - 1) // strides[1] + 1
    sn, sh, sw, sc = x.strides
    return np.lib.stride_tricks.as_strided(
        x, (n, oh, ow, kh, kw, c),
        (sn, sh * strides[0], sw * strides[1], sh * dil[0], sw * dil[1], sc), writeable=False)


def conv2d(x, w, strides=(1, 1), padding="VALID", dil=(1, 1)):
    """x [N,H,W,Ci], w [kh,kw,Ci,Co] (TF HWIO)."""
    kh, kw = w.shape[:2]
    (pt, pb), (pl, pr) = _pads(x, kh, kw, strides, padding, dil)
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    return np.einsum("nyxijc,ijco->nyxo", _windows(xp, kh, kw, strides, dil), w.astype(np.float64), optimize=True)


def depthwise_conv2d(x, w, strides=(1, 1), padding="VALID", dil=(1, 1)):
    """x [N,H,W,C], w [kh,kw,C,M] → [N,OH,OW,C*M] (TF channel order c*M+m)."""
    kh, kw, c, m = w.shape
    (pt, pb), (pl, pr) = _pads(x, kh, kw, strides, padding, dil)
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    y = np.einsum("nyxijc,ijcm->nyxcm", _windows(xp, kh, kw, strides, dil), w.astype(np.float64), optimize=True)
    return y.reshape(*y.shape[:3], c * m)


def pool(x, k, strides, padding, kind):
    """Max/avg pooling; padded cells never count (TF semantics: avg divides by valid cells)."""
    (pt, pb), (pl, pr) = _pads(x, k[0], k[1], strides, padding)
    xp = np.pad(x.astype(np.float64), ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=np.nan)
    win = _windows(xp, k[0], k[1], strides, (1, 1))
    return np.nanmax(win, axis=(3, 4)) if kind == "max" else np.nanmean(win, axis=(3, 4))


def conv2d_transpose(x, w, out_hw, strides, padding):
    """TF Conv2DBackpropInput: x [N,H,W,Co] (the 'gradient'), w [kh,kw,Ci,Co] → [N,OH,OW,Ci]."""
    kh, kw, ci, _ = w.shape
    oh, ow = out_hw
    if padding == "SAME":
        (pt, _), (pl, _) = same_pads(oh, kh, strides[0]), same_pads(ow, kw, strides[1])
    else:
        pt = pl = 0
    n, h, wd, _ = x.shape
    full = np.zeros((n, (h - 1) * strides[0] + kh, (wd - 1) * strides[1] + kw, ci))
    for i in range(kh):
        for j in range(kw):
            full[:, i:i + (h - 1) * strides[0] + 1:strides[0], j:j + (wd - 1) * strides[1] + 1:strides[1]] += \
                np.einsum("nyxo,co->nyxc", x.astype(np.float64), w[i, j].astype(np.float64))
    return full[:, pt:pt + oh, pl:pl + ow]


def resize_bilinear(x, out_hw, align_corners=False, half_pixel_centers=False):
    """tf.image.resize_bilinear (ResizeBilinear op) for NHWC."""
    def coords(n_out, n_in):
        if align_corners and n_out > 1:
            src = np.arange(n_out) * (n_in - 1) / (n_out - 1)
        elif half_pixel_centers:
            src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
        else:
            src = np.arange(n_out) * n_in / n_out
        lo = np.floor(src)
        frac = src - lo
        lo_i = np.clip(lo.astype(int), 0, n_in - 1)
        hi_i = np.clip(lo.astype(int) + 1, 0, n_in - 1)
        if half_pixel_centers:  # TF clamps the negative source coordinate to 0
            frac = np.where(src < 0, 0.0, frac)
            lo_i = np.where(src < 0, 0, lo_i)
        return lo_i, hi_i, frac

    y0, y1, fy = coords(out_hw[0], x.shape[1])
    x0, x1, fx = coords(out_hw[1], x.shape[2])
    x = x.astype(np.float64)
    top = x[:, y0] * (1 - fy)[None, :, None, None] + x[:, y1] * fy[None, :, None, None]
    return top[:, :, x0] * (1 - fx)[None, None, :, None] + top[:, :, x1] * fx[None, None, :, None]


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
    e = np.exp(-np.abs(x))  # stable for large |x| (the selfie logits reach ±1e3)
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
