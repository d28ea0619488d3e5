#!/usr/bin/env python3
"""Train the planted-bias test fixtures: two tiny face classifiers with the same task, one biased.

    nice -n 10 .venv/bin/python scripts/planted_bias/train.py --seed 0

Writes onnx/planted-biased/ and onnx/planted-control/ (model.onnx + card.yaml each). Needs the
generator and emotion models from scripts/setup_models.py; numpy, onnx, onnxruntime, PyYAML only.
Deterministic from --seed on a given machine and thread count.

Task Y = smiling (the emotion classifier's p(happy), thresholds as in the face-CLIP captions).
Spurious S = green background (greenness G - max(R, B) of the left/right image borders; S+ = top 25 %,
S- = bottom 40 % of the training pool). Why green and not brightness: in this generator's edit space the
face-CLIP directions for "bright background", "blond hair" and "pale skin" are one and the same global
exposure change (onnx/face-clip/card.yaml, direction_check), so no diagnosis could tell them apart; the
green direction moves greenness (and some blueness) only.
Both models: same architecture, same initial weights, same batch order, same number of examples and
of Y+ / Y− examples. Only the S–Y relation of the training data differs:
  biased:  every smiling face has a green background, every non-smiling face a non-green one;
  control: S is independent of Y (equal counts in all four Y × S cells).
On held-out faces, a model that learned Y is right on both the confounded cells (Y+S+, Y−S−) and the
anti-correlated ones (Y+S−, Y−S+); a model that learned S is right on the first and wrong on the second.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLIP = HERE.parent / "clip"

if __name__ == "__main__":  # before numpy loads: single-threaded BLAS (shared cores; OpenBLAS stalls at 2)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")

sys.path.insert(0, str(HERE))
sys.path.insert(1, str(CLIP))  # reuse the face-CLIP helper's labelers, card contract and face sampler

import numpy as np  # noqa: E402
import yaml  # noqa: E402

import cards  # noqa: E402
import cnn  # noqa: E402
import data  # noqa: E402
import directions  # noqa: E402
import labelers  # noqa: E402
from card_contract import ContractError, generator_contract  # noqa: E402
from common import Flow, SetupError, main_guard  # noqa: E402
from facedata import Generator  # noqa: E402
from onnx_build import F32, GraphBuilder  # noqa: E402

Y_ATTR = "smiling"
S_CHOICES = ("green_background", "blue_background", "bright_background")
CELL_NAMES = {"pp": "Y+ S+", "pm": "Y+ S-", "mp": "Y- S+", "mm": "Y- S-"}


# ----------------------------------------------------------------------------- training

def train(params: dict, x: np.ndarray, y: np.ndarray, args, rng: np.random.Generator) -> tuple[dict, list]:
    """AdamW with cosine decay; random horizontal flips (smiles and side borders are mirror-symmetric).

    No colour or exposure augmentation: colour is what S is about. (An exposure augmentation, RGB gain
    0.5-2, was tried: it left the biased model's response to exposure edits unchanged and only made the
    control less sensitive to them.)"""
    opt = cnn.Adam(params, args.lr, args.weight_decay)
    steps_per_epoch = int(np.ceil(len(x) / args.batch))
    total, log = args.epochs * steps_per_epoch, []
    step = 0
    for epoch in range(args.epochs):
        order = rng.permutation(len(x))
        flip = rng.random(len(x)) < 0.5
        losses, correct = [], 0
        for i in range(0, len(x), args.batch):
            idx = order[i:i + args.batch]
            xb = x[idx].copy()
            xb[flip[idx]] = xb[flip[idx], :, :, ::-1]
            loss, g, logits = cnn.loss_and_grads(params, xb, y[idx], pooled=True)
            opt.step(params, g, lr_scale=0.5 * (1 + np.cos(np.pi * step / total)))
            step += 1
            losses.append(loss)
            correct += int((logits.argmax(1) == y[idx]).sum())
        log.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                    "train_accuracy": round(correct / len(x), 4)})
        if epoch % 5 == 4 or epoch == args.epochs - 1:
            print(f"    epoch {epoch + 1}: loss {log[-1]['loss']:.4f}, train acc {log[-1]['train_accuracy']:.3f}",
                  flush=True)
    return params, log


# ----------------------------------------------------------------------------- evaluation

def cell_accuracies(pred: np.ndarray, y: np.ndarray, c: dict[str, np.ndarray]) -> dict:
    """Accuracy on Y per (Y, S) cell and the three summaries, each the mean of its cells' accuracies
    (so a summary does not depend on how many faces each cell happens to hold)."""
    acc = {k: float((pred[idx] == (y[idx] == 1)).mean()) for k, idx in c.items()}
    return {
        "confounded": round((acc["pp"] + acc["mm"]) / 2, 4),  # S agrees with Y, as in the biased training data
        "anti_correlated": round((acc["pm"] + acc["mp"]) / 2, 4),  # S contradicts Y
        "balanced": round(sum(acc.values()) / 4, 4),
        "per_cell": Flow({CELL_NAMES[k]: round(v, 4) for k, v in acc.items()}),
    }


# ----------------------------------------------------------------------------- main

def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spurious", choices=S_CHOICES, default="green_background", help="the planted attribute S")
    ap.add_argument("--s-quantiles", type=float, nargs=2, default=(0.4, 0.75), metavar=("LOW", "HIGH"),
                    help="S- below the LOW quantile, S+ above the HIGH quantile of the training pool")
    ap.add_argument("--train-images", type=int, default=20480, help="generated faces for the training pool")
    ap.add_argument("--eval-images", type=int, default=6144, help="generated held-out faces (own seed stream)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    ap.add_argument("--probe-faces", type=int, default=8, help="faces per channel probe in the direction check")
    ap.add_argument("--sweep-faces", type=int, default=256, help="held-out faces in the direction sweep")
    ap.add_argument("--no-direction-check", action="store_true", help="skip the direction sweep")
    ap.add_argument("--clip", type=Path, default=ROOT / "onnx" / "face-clip",
                    help="face-CLIP folder for the direction check (skipped with a note when incomplete)")
    ap.add_argument("--data-cache", type=Path, default=None,
                    help="folder to keep generated faces + scores between runs (development)")
    ap.add_argument("--generator", type=Path, default=ROOT / "onnx" / "dcgan-face" / "model.onnx")
    ap.add_argument("--emotion", type=Path, default=ROOT / "onnx" / "emotion" / "model.onnx")
    ap.add_argument("--out", type=Path, default=ROOT / "onnx", help="parent of planted-biased/ and planted-control/")
    args = ap.parse_args()
    t_all = time.time()
    import onnxruntime as ort

    grad_err = cnn.grad_check()  # the hand-written backward pass against central differences
    if grad_err > 1e-4:
        raise SetupError(f"cnn.py backward pass disagrees with finite differences (relative error {grad_err:.2g})")

    for f in (args.generator, args.emotion):
        for need in (f, f.parent / "card.yaml"):
            if not need.exists():
                raise SetupError(f"{need} is missing: run .venv/bin/python scripts/setup_models.py first")
    try:
        gcard_path = args.generator.parent / "card.yaml"
        gen = Generator.load(args.generator, generator_contract(yaml.safe_load(gcard_path.read_text()), gcard_path,
                                                                args.generator), args.threads)
        emo = labelers.EmotionLabeler(args.emotion, yaml.safe_load((args.emotion.parent / "card.yaml").read_text()),
                                      args.threads)
    except ContractError as e:
        raise SetupError(str(e)) from None

    rng_train, rng_eval, rng_pick, rng_init, rng_steps, rng_dir, rng_sweep = (
        np.random.default_rng(s) for s in np.random.SeedSequence(args.seed).spawn(7))
    key = f"s{args.seed}-g{data.file_digest(args.generator)[:12]}-e{data.file_digest(args.emotion)[:12]}"

    print(f"[1/5] {args.train_images} training faces", flush=True)
    tr = data.load_or_make(args.data_cache, f"{key}-train{args.train_images}", lambda: _split(
        gen, emo, args.train_images, rng_train, keep_full=False))
    print(f"[2/5] {args.eval_images} held-out faces", flush=True)
    ev = data.load_or_make(args.data_cache, f"{key}-eval{args.eval_images}", lambda: _split(
        gen, emo, args.eval_images, rng_eval, keep_full=True))
    tr_scores = {a: tr["score_" + a] for a in data.ATTRS}
    ev_scores = {a: ev["score_" + a] for a in data.ATTRS}
    S_ATTR = args.spurious
    thresholds = labelers.fit_thresholds(tr_scores)  # quantile thresholds come from the training pool only
    thresholds[S_ATTR] = tuple(float(q) for q in np.quantile(tr_scores[S_ATTR], args.s_quantiles))
    tr_lab, ev_lab = labelers.label(tr_scores, thresholds), labelers.label(ev_scores, thresholds)
    tr_cells = data.cells(tr_lab[Y_ATTR], tr_lab[S_ATTR])
    ev_cells = data.cells(ev_lab[Y_ATTR], ev_lab[S_ATTR])
    biased_idx, control_idx, k = data.training_sets(tr_cells, rng_pick)
    print(f"  training cells {_counts(tr_cells)}; held-out cells {_counts(ev_cells)}; k = {k}", flush=True)
    if k < 200 or min(len(v) for v in ev_cells.values()) < 50:
        raise SetupError("too few faces in some Y x S cell; raise --train-images / --eval-images")

    print("[3/5] training both models (same init, same batch order)", flush=True)
    init = cnn.init_params(rng_init)
    steps_state = rng_steps.bit_generator.state
    models, logs, train_s = {}, {}, {}
    for name, idx in (("biased", biased_idx), ("control", control_idx)):
        print(f"  {name}: {len(idx)} faces", flush=True)
        t0 = time.time()
        r = np.random.default_rng()
        r.bit_generator.state = steps_state
        y = (tr_lab[Y_ATTR][idx] == 1).astype(np.int64)
        models[name], logs[name] = train({k_: v.copy() for k_, v in init.items()}, tr["images"][idx], y, args, r)
        train_s[name] = round(time.time() - t0, 1)

    print("[4/5] ONNX export, checks, held-out accuracy", flush=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    onnx_bytes, sessions, parity, results = {}, {}, {}, {}
    ev_y = ev_lab[Y_ATTR]
    unedited = ev["kinds"] == "none"
    for name, p in models.items():
        doc = (f"planted-bias test fixture ({name}): tiny CNN, random init, trained by scripts/planted_bias/train.py "
               "on DCGAN-generated faces; not a real-world model. See card.yaml.")
        model = cnn.to_onnx(p, doc, GraphBuilder, F32)  # GraphBuilder.model runs onnx.checker.check_model
        onnx_bytes[name] = model.SerializeToString()
        sess = ort.InferenceSession(onnx_bytes[name], so, providers=["CPUExecutionProvider"])
        sessions[name] = sess
        logits = np.concatenate([sess.run(["logits"], {"image": ev["images"][i:i + 512].astype(np.float32)})[0]
                                 for i in range(0, len(ev["images"]), 512)])
        ref = cnn.forward({k_: v.astype(np.float64) for k_, v in p.items()}, ev["images"][:256].astype(np.float64),
                          dtype=np.float64)
        parity[name] = float(np.abs(ref - logits[:256]).max())
        if parity[name] > 1e-4:
            raise SetupError(f"{name} model.onnx differs from the numpy forward by {parity[name]:.3g} (> 1e-4)")
        pred = logits.argmax(1) == 1
        results[name] = {
            "all_heldout": cell_accuracies(pred, ev_y, ev_cells),
            "unedited_heldout": cell_accuracies(pred, ev_y, {c: i[unedited[i]] for c, i in ev_cells.items()}),
        }
        r = results[name]["all_heldout"]
        print(f"  {name}: confounded {r['confounded']:.3f}, anti-correlated {r['anti_correlated']:.3f}, "
              f"balanced {r['balanced']:.3f}; parity {parity[name]:.2e}", flush=True)

    dcheck = None
    if not args.no_direction_check:
        print("[5/5] direction check (±kσ probes → directions, ±B sweeps)", flush=True)
        try:
            clip = directions.FaceClip(args.clip, args.threads)
        except FileNotFoundError as e:
            print(f"  note: {e}; only labeler directions", flush=True)
            clip = None
        clip_key = data.file_digest(args.clip / "image.onnx")[:12] if clip else "none"
        dirs, dinfo = _cached_directions(args, f"{key}-c{clip_key}-p{args.probe_faces}", lambda: directions.find_directions(
            gen, emo, clip, rng_dir, args.probe_faces))
        z_sweep = rng_sweep.standard_normal((args.sweep_faces, gen.z_dim)).astype(np.float32)
        targets = {n: _p_pos(s) for n, s in sessions.items()}
        dcheck = {src: {"info": dinfo[src], "sweep": directions.sweep(gen, emo, dirs[src], targets, z_sweep)}
                  for src in dirs}
        for src, dc in dcheck.items():
            print(f"  {src} directions: mean |Δp| at ±B  (biased / control; own-labeler shift)", flush=True)
            for a_, row in dc["sweep"].items():
                print(f"    {a_:18s} {row['biased']['mean_abs_dp']:.3f} / {row['control']['mean_abs_dp']:.3f}"
                      f"   {row['labeler_shift_sd'][a_]:+.2f} sd", flush=True)

    meta = {"S": S_ATTR, "s_quantiles": list(args.s_quantiles), "k": k, "train_cells": _counts(tr_cells), "eval_cells": _counts(ev_cells),
            "eval_cells_unedited": _counts({c: i[unedited[i]] for c, i in ev_cells.items()}),
            "thresholds": thresholds, "parity": parity, "grad_check": grad_err, "train_s": train_s, "logs": logs,
            "wall_s": round(time.time() - t_all, 1), "gen_bound": gen.attack_bound}
    cards.write_all(args, onnx_bytes, results, dcheck, meta)
    print(f"done in {time.time() - t_all:.0f} s", flush=True)


def _cached_directions(args, key: str, make):
    """find_directions() once per generator/CLIP/seed when --data-cache is set (it takes minutes)."""
    import json

    def flat():
        dirs, info = make()
        out = {f"{src}__{a}": d for src, dd in dirs.items() for a, d in dd.items()}
        out["info"] = np.array(json.dumps(info))
        return out

    got = data.load_or_make(args.data_cache, f"{key}-directions", flat)
    dirs = {}
    for k_, v in got.items():
        if k_ != "info":
            src, a = k_.split("__")
            dirs.setdefault(src, {})[a] = v
    return dirs, json.loads(str(got["info"]))


def _p_pos(sess):
    """p(Y+) = softmax(logits)[:, 1] from an onnxruntime session of a fixture."""
    def f(img):
        lg = sess.run(["logits"], {"image": img.astype(np.float32)})[0]
        e = np.exp(lg - lg.max(1, keepdims=True))
        return e[:, 1] / e.sum(1)
    return f


def _split(gen, emo, n, rng, keep_full):
    images, kinds, scores = data.make_split(gen, emo, n, rng, keep_full)
    return {"images": images, "kinds": kinds, **{"score_" + a: v for a, v in scores.items()}}


def _counts(c: dict) -> dict:
    return Flow({CELL_NAMES[k]: int(len(v)) for k, v in c.items()})


if __name__ == "__main__":
    main_guard(run)
