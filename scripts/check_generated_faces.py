#!/usr/bin/env python3
"""Render PNG grids to judge the DCGAN generator and its edit space by eye.

    .venv/bin/python scripts/check_generated_faces.py [--out runs/check-faces] [--bound B]

Writes, from onnx/dcgan-face/model.onnx and its card.yaml (run scripts/setup_models.py first):
  samples.png       32 unedited samples (seed 0)
  edits_dense.png   3 random dense unit directions × 3 samples; columns α = -2B … 2B
  edits_sparse.png  same with unit directions on 32 random channels (CLIP-derived directions are
                    sparse after thresholding)
  probes.png        single-channel ±kσ probes (k = -5…5, σ = channel_scale) for 2 channels per layer
The column at α = ±B (the card's default_bound) has a red frame.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import cards, dcgan, onnxio  # noqa: E402


def save(tiles: np.ndarray, cols: int, path: Path, frame_cols=(), zoom: int = 2) -> None:
    g = dcgan.grid(tiles, cols)
    img = Image.fromarray(g).resize((g.shape[1] * zoom, g.shape[0] * zoom), Image.NEAREST)
    d = ImageDraw.Draw(img)
    for c in frame_cols:
        x0 = (2 + c * 66) * zoom
        d.rectangle([x0 - 2, 0, x0 + 64 * zoom + 1, img.height - 1], outline=(255, 0, 0), width=2)
    img.save(path)
    print(f"wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "check-faces")
    ap.add_argument("--bound", type=float, help="B (default: the card's default_bound)")
    args = ap.parse_args()
    model = ROOT / "onnx" / "dcgan-face" / "model.onnx"
    card = cards.read(model.with_name("card.yaml"))
    if not model.exists() or not card:
        print(f"{model} or its card.yaml is missing: run scripts/setup_models.py --only dcgan-face", file=sys.stderr)
        return 1
    bound = args.bound or float(card["default_bound"])
    scale = np.asarray(card["channel_scale"], np.float64)
    args.out.mkdir(parents=True, exist_ok=True)
    sess = onnxio.session(model, 2)
    rng = np.random.default_rng(0)

    z = rng.standard_normal((32, dcgan.Z_DIM)).astype(np.float32)
    img, _ = dcgan.run(sess, z)
    save(dcgan.to_uint8_hwc(img), 8, args.out / "samples.png")

    alphas = np.array([-2, -1.5, -1, -0.5, 0, 0.5, 1, 1.5, 2]) * bound
    frame = [int(np.argmin(np.abs(alphas + bound))), int(np.argmin(np.abs(alphas - bound)))]
    zs = z[:3]
    for kind in ("dense", "sparse"):
        tiles = []
        for _ in range(3):
            d = rng.standard_normal(dcgan.STYLE_DIM)
            if kind == "sparse":
                d *= np.isin(np.arange(dcgan.STYLE_DIM), rng.choice(dcgan.STYLE_DIM, 32, replace=False))
            d /= np.linalg.norm(d)
            for zi in zs:
                e = (alphas[:, None] * d[None]).astype(np.float32)
                im, _ = dcgan.run(sess, np.repeat(zi[None], len(alphas), 0), e)
                tiles.append(dcgan.to_uint8_hwc(im))
        save(np.concatenate(tiles), len(alphas), args.out / f"edits_{kind}.png", frame)

    ks = np.arange(-5, 6)
    tiles = []
    for layer in card["edit_space"]["layers"]:
        for c in rng.choice(np.arange(layer["start"], layer["end"]), 2, replace=False):
            e = np.zeros((len(ks), dcgan.STYLE_DIM), np.float32)
            e[:, c] = ks * scale[c]
            im, _ = dcgan.run(sess, np.repeat(z[3][None], len(ks), 0), e)
            tiles.append(dcgan.to_uint8_hwc(im))
    save(np.concatenate(tiles), len(ks), args.out / "probes.png")
    report_targets(sess)
    return 0


def report_targets(sess) -> None:
    """How the demo targets see 512 unedited samples (whole 64×64 image as the face crop)."""
    z = np.random.default_rng(1).standard_normal((512, dcgan.Z_DIM)).astype(np.float32)
    img, _ = dcgan.run(sess, z)
    gray = np.einsum("nchw,c->nhw", (np.clip(img, -1, 1) + 1) / 2, np.array([0.2989, 0.5870, 0.1140]))
    x = ((gray - 0.5) * 2).astype(np.float32)[:, None]
    for name in ("gender", "emotion"):
        path = ROOT / "onnx" / name / "model.onnx"
        card = cards.read(path.with_name("card.yaml"))
        if not path.exists() or not card:
            continue
        top = onnxio.session(path).run(["probs"], {"input": x})[0].argmax(1)
        counts = ", ".join(f"{lab} {np.mean(top == i):.0%}" for i, lab in enumerate(card["labels"]))
        print(f"{name} on 512 generated faces: {counts}")


if __name__ == "__main__":
    sys.exit(main())
