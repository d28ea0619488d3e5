"""Generated, labelled faces for the planted-bias fixtures, and the Y × S cells they fall into.

Faces come from the real DCGAN generator (onnx/dcgan-face) with the face-CLIP helper's edit mix
(scripts/clip/facedata.py: 40 % unedited, 30 % ±kσ channel probes, 30 % attack-like edits), because
zoom shows the targets edited faces. Labels come from scripts/clip/labelers.py (emotion classifier and
colour statistics), computed on the edited image itself, with the same thresholds the face-CLIP
captions use, so "smiling" and "bright background" mean the same thing to the target and to CLIP.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np

import labelers

# The attributes every face is scored on (colour statistics + two emotion probabilities).
ATTRS = ["smiling", "surprised", "blond_hair", "pale_skin", "bright_background", "green_background",
         "blue_background"]


def score_images(images: np.ndarray, emo: labelers.EmotionLabeler) -> dict[str, np.ndarray]:
    scores = labelers.colour_scores(images)
    es = emo.scores(images)
    scores.update({k: es[k] for k in ("smiling", "surprised")})
    return {a: scores[a].astype(np.float32) for a in ATTRS}


def pool2(images: np.ndarray) -> np.ndarray:
    """2x2 average pooling, exactly the first op of the target graph (training works on the result)."""
    n, c, h, w = images.shape
    return images.reshape(n, c, h // 2, 2, w // 2, 2).mean((3, 5), dtype=np.float32)


def make_split(gen, emo, n: int, rng: np.random.Generator, keep_full: bool, chunk: int = 1024):
    """n faces → (images, edit kinds, scores). Images are kept 2x2-pooled [n,3,32,32] float32 for
    training (keep_full=False) or at full size [n,3,64,64] float16 for evaluation (keep_full=True)."""
    t0 = time.time()
    shape = (n, 3, 64, 64) if keep_full else (n, 3, 32, 32)
    images = np.empty(shape, np.float16 if keep_full else np.float32)
    kinds = np.empty(n, object)
    scores = {a: np.empty(n, np.float32) for a in ATTRS}
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        img, kind, _ = gen.sample(m, rng)
        images[i:i + m] = img if keep_full else pool2(img)
        kinds[i:i + m] = kind
        for a, v in score_images(img, emo).items():
            scores[a][i:i + m] = v
        print(f"    {i + m}/{n} faces ({time.time() - t0:.0f} s)", flush=True)
    return images, kinds.astype(str), scores


def load_or_make(cache: Path | None, key: str, make):
    """Return make() (a dict of arrays), keeping it in cache/<key>.npz between runs when cache is set."""
    path = cache / f"{key}.npz" if cache else None
    if path and path.exists():
        print(f"  from the cache {path}", flush=True)
        with np.load(path) as d:
            return {k: d[k] for k in d.files}
    out = make()
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".part.npz")
        np.savez(tmp, **out)
        tmp.replace(path)
    return out


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def cells(y: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """Indices of the four (Y, S) cells among faces whose Y and S labels are both clear (±1).
    Keys: 'pp' = (Y+, S+), 'pm' = (Y+, S−), 'mp' = (Y−, S+), 'mm' = (Y−, S−)."""
    return {"pp": np.flatnonzero((y == 1) & (s == 1)), "pm": np.flatnonzero((y == 1) & (s == -1)),
            "mp": np.flatnonzero((y == -1) & (s == 1)), "mm": np.flatnonzero((y == -1) & (s == -1))}


def training_sets(c: dict[str, np.ndarray], rng: np.random.Generator):
    """Equal-size biased and control training sets with the same number of Y+ and Y− faces.

    biased:  k from (Y+,S+) and k from (Y−,S−): S predicts Y perfectly.
    control: k/2 from each of the four cells: S is independent of Y.
    k is the largest even number the cells allow (the Y+ cells are the scarce ones).
    """
    k = min(len(c["pp"]), len(c["mm"]), 2 * len(c["pm"]), 2 * len(c["mp"]))
    k -= k % 2
    pick = {name: rng.permutation(idx) for name, idx in c.items()}
    biased = np.concatenate([pick["pp"][:k], pick["mm"][:k]])
    control = np.concatenate([pick[name][:k // 2] for name in ("pp", "pm", "mp", "mm")])
    return biased, control, k
