#!/usr/bin/env python3
"""Fetch, convert and verify zoom's demo models (no PyTorch, no TensorFlow).

    .venv/bin/python scripts/setup_models.py [--only NAME[,NAME]] [--force] [--threads N]

For each model: if onnx/<name>/model.onnx matches the sha256 in its card.yaml and the card was
made by the current converter code (recipe hash), nothing is done. Otherwise the pinned registry
archives are fetched into .cache/downloads/ (sha256-checked), the model is converted, checked
(onnx.checker + an onnxruntime parity run against an independent numpy reference) and only then
moved into place; card.yaml and tests/golden/<name>/ are rewritten. Exit status 1 on any failure.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    import numpy as np
    import onnx
    import onnxruntime
    import yaml  # noqa: F401  (used by models.cards)
    from PIL import Image  # noqa: F401  (used by models.photos)
except ImportError as e:
    sys.exit(f"setup_models.py: missing Python package {e.name!r}; run it with the project venv:\n"
             "  python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt")

from models import cards, dcgan_setup, fetch, mtcnn, onnxio, tfjs_targets  # noqa: E402

# name → (spec with NAME, PACKAGES, build(); converter source files its recipe depends on)
MODELS = {
    "dcgan-face": (dcgan_setup, ["dcgan_setup.py", "dcgan.py", "torchzip.py", "mtcnn.py"]),
    "emotion": (tfjs_targets.EMOTION, ["tfjs.py", "tfjs_targets.py"]),
    "gender": (tfjs_targets.GENDER, ["tfjs.py", "tfjs_targets.py"]),
    "mtcnn-onet": (mtcnn, ["mtcnn.py"]),
    "selfie": (tfjs_targets.SELFIE, ["tfjs.py", "tfjs_targets.py"]),
}
SHARED_SOURCES = ["fetch.py", "onnxio.py", "model.py", "cards.py", "npops.py", "photos.py"]


def recipe_hash(spec, extra: list[str]) -> str:
    """Digest of everything that determines the outputs: converter sources, pins, versions."""
    h = hashlib.sha256()
    src_dir = Path(__file__).resolve().parent / "models"
    for name in sorted(set(SHARED_SOURCES + extra)):
        h.update(name.encode() + b"\0" + (src_dir / name).read_bytes() + b"\0")
    h.update(Path(__file__).resolve().read_bytes())  # the driver writes part of the card too
    for pkg in spec.PACKAGES:
        h.update(f"{pkg.registry}:{pkg.spec}:{pkg.sha256}\0".encode())
    h.update(f"onnx {onnx.__version__} ort {onnxruntime.__version__} numpy {np.__version__}".encode())
    return h.hexdigest()[:16]


def golden_dir(name: str) -> Path:
    return ROOT / "tests" / "golden" / name


def up_to_date(name: str, recipe: str) -> dict | None:
    out = ROOT / "onnx" / name / "model.onnx"
    card = cards.read(ROOT / "onnx" / name / "card.yaml")
    if not card or not out.exists():
        return None
    try:
        if card["model"]["sha256"] != fetch.sha256_file(out) or card["provenance"]["recipe"] != recipe:
            return None
        if not all((golden_dir(name) / f).exists() for f in card["golden"]["files"]):
            return None
    except (KeyError, TypeError):
        return None
    return card


def write_goldens(name: str, arrays: dict[str, np.ndarray], readme: str) -> list[str]:
    d = golden_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    files = []
    for stem, arr in arrays.items():
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr))
        onnxio.write_atomic_bytes(buf.getvalue(), d / f"{stem}.npy")
        files.append(f"{stem}.npy")
    for old in d.glob("*.npy"):  # drop goldens a previous converter version wrote
        if old.name not in files:
            old.unlink()
    onnxio.write_atomic_bytes(readme.rstrip().encode() + b"\n", d / "README.md")
    total = sum((d / f).stat().st_size for f in files)
    if total > 1_000_000:
        raise onnxio.VerifyError(f"{d}: goldens take {total} bytes, more than the 1 MB budget")
    return files


def build_one(name: str, spec, recipe: str, threads: int, cache: Path) -> dict:
    archives = {pkg.name: fetch.fetch(pkg, cache) for pkg in spec.PACKAGES}
    built = spec.build(archives)
    dest = ROOT / "onnx" / name / "model.onnx"
    metrics = onnxio.write_verified(built.model, dest, built.verify)
    card, goldens = built.describe(onnxio.session(dest, threads), metrics)
    files = write_goldens(name, goldens, built.golden_readme)
    card["golden"] = {**card.get("golden", {}), "dir": f"tests/golden/{name}", "files": files}
    proto = onnx.load(dest, load_external_data=False)
    card["model"] = {"file": "model.onnx", "sha256": fetch.sha256_file(dest), "bytes": dest.stat().st_size,
                     "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                     "ops": sorted({n.op_type for n in proto.graph.node})}
    card["provenance"] = {**card.get("provenance", {}), "recipe": recipe,
                          "made_by": "scripts/setup_models.py (scripts/models/)",
                          "tools": f"onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, "
                                   f"numpy {np.__version__}"}
    cards.write(card, ROOT / "onnx" / name / "card.yaml")
    return card


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", default=[], help="model name(s), comma separated")
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "downloads",
                    help="download cache (default .cache/downloads)")
    ap.add_argument("--list", action="store_true", help="list model names and exit")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(MODELS))
        return 0
    only = [n for arg in args.only for n in arg.split(",") if n]
    unknown = [n for n in only if n not in MODELS]
    if unknown:
        print(f"unknown model(s) {unknown}; known: {', '.join(MODELS)}", file=sys.stderr)
        return 2
    failed = []
    for name, (spec, extra) in MODELS.items():
        if only and name not in only:
            continue
        t0 = time.time()
        recipe = recipe_hash(spec, extra)
        card = None if args.force else up_to_date(name, recipe)
        state = "up to date"
        try:
            if card is None:
                card = build_one(name, spec, recipe, args.threads, args.cache)
                state = "built"
        except Exception as e:  # report and continue with the other models
            failed.append(name)
            print(f"{name:<11} FAILED  {type(e).__name__}: {e}", file=sys.stderr)
            if not isinstance(e, (fetch.FetchError, onnxio.VerifyError)):
                traceback.print_exc()
            continue
        summary = card.get("verification", {}).get("summary", "")
        print(f"{name:<11} {state:<10} {card['model']['bytes'] / 1e6:6.2f} MB  sha256 {card['model']['sha256'][:12]}"
              f"  {summary}  ({time.time() - t0:.1f} s)", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
