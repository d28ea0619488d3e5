"""Independent labelers that caption generated faces: the emotion classifier and colour statistics.

Deliberately NOT used: the gender classifier and MTCNN (shipped demo configs diagnose them; a CLIP
trained on their outputs would make those demos circular).

Each labeler returns one continuous score per image; `label()` turns scores into +1 / -1 / 0
(unclear, no loss and no evaluation) with thresholds fixed once on the training set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Regions in 64x64 pixel coordinates (rows, cols), chosen by looking at DCGAN samples: faces are
# centred and fill most of the frame, hair sits at the top centre, background shows at the borders.
HAIR = (slice(1, 10), slice(20, 44))
SKIN = (slice(32, 42), slice(20, 44))  # nose and cheeks, below the eyes, above the mouth
BORDER_ROWS = slice(0, 40)  # left/right borders above the shoulders
BORDER_COLS = (slice(0, 5), slice(59, 64))

# (kind, low, high): "prob" thresholds are probabilities; "quantile" thresholds are training-set quantiles.
THRESHOLDS = {
    "smiling": ("prob", 0.05, 0.5),
    "surprised": ("prob", 0.005, 0.1),
    "blond_hair": ("quantile", 0.3, 0.7),
    "pale_skin": ("quantile", 0.3, 0.7),
    "bright_background": ("quantile", 0.3, 0.7),
    "green_background": ("quantile", 0.5, 0.88),
    "blue_background": ("quantile", 0.5, 0.88),
}


def _lum(rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 luminance of [N,3,...] RGB in [0,1] → [N,...]."""
    return 0.2126 * rgb[:, 0] + 0.7152 * rgb[:, 1] + 0.0722 * rgb[:, 2]


def colour_scores(images: np.ndarray) -> dict[str, np.ndarray]:
    """images [N,3,64,64] in [-1,1] → colour-statistic scores per image."""
    rgb = (images.astype(np.float32) + 1.0) / 2.0
    hair = _lum(rgb[:, :, HAIR[0], HAIR[1]]).mean((1, 2))
    skin = _lum(rgb[:, :, SKIN[0], SKIN[1]]).mean((1, 2))
    border = np.concatenate([rgb[:, :, BORDER_ROWS, c].reshape(len(rgb), 3, -1) for c in BORDER_COLS], axis=2)
    bmean = border.mean(2)  # [N,3] mean border colour
    r, g, b = bmean[:, 0], bmean[:, 1], bmean[:, 2]
    return {
        "blond_hair": hair,
        "pale_skin": skin,
        "bright_background": _lum(border).mean(1),
        "green_background": g - np.maximum(r, b),
        "blue_background": b - np.maximum(r, g),
    }


class EmotionLabeler:
    """onnx/emotion (mini-Xception FER2013, 7 classes) run with the preprocessing its card declares."""

    def __init__(self, model: Path, card: dict, threads: int = 2):
        import onnxruntime as ort

        self.labels, self.input_name, self.output_name, self.prep = _emotion_contract(card, model)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])

    def probs(self, images: np.ndarray, batch: int = 512) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch):
            x = self.prep(images[i:i + batch])
            out.append(self.sess.run([self.output_name], {self.input_name: x})[0])
        p = np.concatenate(out)
        if p.shape[1] != len(self.labels):
            raise ValueError(f"emotion model gives {p.shape[1]} outputs, its card lists {len(self.labels)} labels")
        if np.abs(p.sum(1) - 1).max() > 1e-3:
            raise ValueError("emotion model outputs do not sum to 1: expected softmax probabilities")
        return p

    def scores(self, images: np.ndarray) -> dict[str, np.ndarray]:
        p = self.probs(images)
        return {"smiling": p[:, self.labels.index("happy")], "surprised": p[:, self.labels.index("surprise")],
                "emotion_probs": p}


def _emotion_contract(card: dict, model: Path):
    """Read labels, input name and preprocessing from onnx/emotion/card.yaml; refuse what we can't honour."""
    from card_contract import emotion_contract  # kept apart: it follows the other helper's card format

    return emotion_contract(card, model)


def fit_thresholds(scores: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    out = {}
    for attr, (kind, lo, hi) in THRESHOLDS.items():
        if kind == "prob":
            out[attr] = (lo, hi)
        else:
            out[attr] = (float(np.quantile(scores[attr], lo)), float(np.quantile(scores[attr], hi)))
    return out


def label(scores: dict[str, np.ndarray], thresholds: dict[str, tuple[float, float]]) -> dict[str, np.ndarray]:
    """+1 above the high threshold, -1 below the low one, 0 in between (unclear)."""
    out = {}
    for attr, (lo, hi) in thresholds.items():
        s = scores[attr]
        out[attr] = np.where(s >= hi, 1, np.where(s <= lo, -1, 0)).astype(np.int8)
    return out
