"""A preview of what zoom should find: attribute edit directions, then a ±B sweep of both targets.

Two sources of directions, from one pass of ±kσ probes over every editable channel:

  clip     ZOOM's global-direction recipe with onnx/face-clip (the CLIP zoom's configs use):
           fs3[c] = unit(mean_i unit(E(x_i + kσ_c) − E(x_i − kσ_c))),  Δt = unit(t(neutral) − t(prompt)),
           r = fs3·Δt, |r| < β → 0, r / max|r|, unit L2; the edit toward the prompt is −Δs.
  labeler  an "ideal CLIP": the attribute's own labeler replaces CLIP,
           r[c] = mean_i (score(x_i + kσ_c) − score(x_i − kσ_c)), then the same β / max / unit L2.

Then both targets are evaluated on held-out faces edited by ±B·d (B = the generator card's default
bound, zoom's α range): mean |Δ p(smiling)| against the unedited face, like zoom's sweep mode. A target
that relies on S should move most along d_S. This checks the fixtures, not zoom.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import yaml

from data import ATTRS, score_images


class FaceClip:
    """onnx/face-clip: image tower, text tower, tokenizer, and the prompts its helper recommends."""

    def __init__(self, folder: Path, threads: int):
        import onnxruntime as ort
        from wordpiece import WordPiece  # scripts/clip

        for f in ("image.onnx", "text.onnx", "tokenizer.json", "prompts.yaml"):
            if not (folder / f).exists():
                raise FileNotFoundError(f"{folder / f} is missing (face-CLIP: scripts/clip/README.md)")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        self.image = ort.InferenceSession(str(folder / "image.onnx"), so, providers=["CPUExecutionProvider"])
        self.text = ort.InferenceSession(str(folder / "text.onnx"), so, providers=["CPUExecutionProvider"])
        self.tok = WordPiece(folder / "tokenizer.json")
        spec = yaml.safe_load((folder / "prompts.yaml").read_text())
        self.neutral = spec["neutral"]
        self.prompts = {a["name"]: a["prompt"] for a in spec["attributes"]}

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        # The card's preprocessing is the identity on the generator's [-1, 1] output.
        return np.concatenate([self.image.run(["embedding"], {"image": images[i:i + 512].astype(np.float32)})[0]
                               for i in range(0, len(images), 512)])

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        ids, mask = self.tok.batch(texts)
        return self.text.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)


def _finish(r: np.ndarray, beta: float) -> tuple[np.ndarray, int]:
    """β threshold (absolute for CLIP cosines, as ZOOM; pass a relative one for labelers), / max, unit L2."""
    r = r.copy()
    r[np.abs(r) < beta] = 0.0
    kept = int((r != 0).sum())
    if kept == 0:
        return np.zeros_like(r, dtype=np.float32), 0
    r = r / np.abs(r).max()
    return (r / np.linalg.norm(r)).astype(np.float32), kept


def find_directions(gen, emo, clip: FaceClip | None, rng: np.random.Generator, n_probe: int,
                    k_sigma: float = 5.0, beta: float = 0.1, batch: int = 480):
    """{source: {attribute: unit direction toward the attribute}} and {source: {attribute: info}}."""
    t0 = time.time()
    z = rng.standard_normal((n_probe, gen.z_dim)).astype(np.float32)
    ed = gen.editable
    rel = {a: np.zeros(gen.edit_dim) for a in ATTRS}
    fs3 = np.zeros((gen.edit_dim, 384), np.float32) if clip else None
    per_call = max(1, batch // (2 * n_probe))
    for start in range(0, len(ed), per_call):
        chans = ed[start:start + per_call]
        e = np.zeros((len(chans), 2, n_probe, gen.edit_dim), np.float32)
        for j, c in enumerate(chans):
            e[j, 0, :, c] = k_sigma * gen.channel_scale[c]
            e[j, 1, :, c] = -k_sigma * gen.channel_scale[c]
        img = gen.sess.run(["image"], {"z": np.tile(z, (len(chans) * 2, 1)), "edit": e.reshape(-1, gen.edit_dim)})[0]
        sc = score_images(img, emo)
        for a in ATTRS:
            v = sc[a].reshape(len(chans), 2, n_probe)
            rel[a][chans] = (v[:, 0] - v[:, 1]).mean(1)
        if clip:
            f = clip.embed_images(img).reshape(len(chans), 2, n_probe, -1)
            fs3[chans] = _unit(_unit(f[:, 0] - f[:, 1]).mean(1))
        if (start // per_call) % 20 == 0:
            print(f"    probes: {start + len(chans)}/{len(ed)} channels ({time.time() - t0:.0f} s)", flush=True)
    dirs, info = {"labeler": {}}, {"labeler": {}}
    for a in ATTRS:
        # Labeler units differ per attribute; the threshold is relative (β of the largest channel).
        d, kept = _finish(rel[a] / (np.abs(rel[a]).max() + 1e-12), beta)
        dirs["labeler"][a], info["labeler"][a] = d, {"channels_kept": kept}
    if clip:
        dirs["clip"], info["clip"] = {}, {}
        t_neutral = clip.embed_texts([clip.neutral])[0]
        for a in ATTRS:
            if a not in clip.prompts:
                continue
            dt = _unit(t_neutral - clip.embed_texts([clip.prompts[a]])[0])
            d, kept = _finish(fs3 @ dt, beta)
            dirs["clip"][a] = -d  # ZOOM's Δs points away from the prompt; flip so +α goes toward it
            info["clip"][a] = {"channels_kept": kept, "prompt": clip.prompts[a],
                               "max_relevance": round(float(np.abs(fs3 @ dt).max()), 3)}
    return dirs, info


ALPHA_FRACTIONS = (0.25, 0.5, 1.0)  # of the bound B


def sweep(gen, emo, dirs: dict[str, np.ndarray], targets: dict, z: np.ndarray) -> dict:
    """Per attribute and |α| ∈ ALPHA_FRACTIONS·B: each target's mean |Δ p(Y+)| at ±α against α = 0, and
    at ±B its decision flip rate, the signed change (+B minus −B), and how far every labeler moves
    (+B minus −B, in sd of unedited faces)."""
    B = gen.attack_bound
    n = len(z)

    def render(edit_row):
        return gen.sess.run(["image"], {"z": z, "edit": np.tile(edit_row, (n, 1)).astype(np.float32)})[0]

    base = render(np.zeros(gen.edit_dim, np.float32))
    sd = {a: float(np.std(v)) + 1e-9 for a, v in score_images(base, emo).items()}
    p0 = {name: f(base) for name, f in targets.items()}
    out = {}
    for a, d in dirs.items():
        row = {name: {"mean_abs_dp_by_alpha": {}} for name in targets}
        for frac in ALPHA_FRACTIONS:
            img_p, img_m = render(frac * B * d), render(-frac * B * d)
            for name, f in targets.items():
                pp, pm = f(img_p), f(img_m)
                mac = 0.5 * (np.abs(pp - p0[name]).mean() + np.abs(pm - p0[name]).mean())
                row[name]["mean_abs_dp_by_alpha"][round(frac * B, 3)] = round(float(mac), 4)
                if frac == 1.0:
                    flips = 0.5 * (((pp > 0.5) != (p0[name] > 0.5)).mean() + ((pm > 0.5) != (p0[name] > 0.5)).mean())
                    row[name].update({"mean_abs_dp": round(float(mac), 4), "signed_dp": round(float((pp - pm).mean()), 4),
                                      "flip_rate": round(float(flips), 3)})
        sp, sm = score_images(img_p, emo), score_images(img_m, emo)  # the ±B images
        row["labeler_shift_sd"] = {b: round(float((sp[b] - sm[b]).mean() / sd[b]), 2) for b in ATTRS}
        out[a] = row
    return out
