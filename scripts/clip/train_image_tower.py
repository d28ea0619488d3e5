#!/usr/bin/env python3
"""Train the face-CLIP image tower LiT-style (text tower frozen) and write onnx/face-clip/image.onnx.

    .venv/bin/python scripts/clip/train_image_tower.py --seed 0

Needs onnx/face-clip/text.onnx (export_text_tower.py), the generator onnx/dcgan-face/model.onnx and
the emotion classifier onnx/emotion/model.onnx with their cards (scripts/setup_models.py), and jax
(scripts/clip/requirements-train.txt). Deterministic from --seed on a given machine and thread count.

Pipeline: generate faces (a share with edit-space offsets) → caption them with independent labelers
(emotion classifier, colour statistics) → embed every prompt with the frozen MiniLM text tower →
train a small CNN whose unit embeddings pick the right prompt in per-attribute binary choices →
export to ONNX → evaluate zero-shot on held-out faces with held-out phrasings → card.yaml, prompts.yaml.

Why per-attribute binary losses rather than batch InfoNCE over whole captions: the labels are
per-attribute and coarse, so a batch of 128 holds many images with identical captions; InfoNCE
would push those apart as negatives. The binary choices (attribute vs opposite, attribute vs the
neutral "a face") are also exactly how zoom reads CLIP: directions from t(neutral) - t(target)
and a softmax over a few prompts. The temperature is learned, as in CLIP.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

# Thread limits must be set before numpy/jax load (shared 2-core machine).
if __name__ == "__main__":
    _threads = "2"
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            _threads = sys.argv[i + 1]
    os.environ.setdefault("OMP_NUM_THREADS", _threads)
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={_threads}")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import yaml  # noqa: E402

import labelers  # noqa: E402
import prompts as P  # noqa: E402
import tower  # noqa: E402
from card_contract import ContractError, generator_contract  # noqa: E402
from common import (OUT_DIR, ROOT, Flow, SetupError, dump_yaml, load_card, main_guard, save_card,  # noqa: E402
                    sha256_bytes, write_if_changed)
from facedata import EDIT_MIX, Generator  # noqa: E402
from wordpiece import WordPiece  # noqa: E402

ATTRS = list(P.ATTRIBUTES)


# ----------------------------------------------------------------------------- text bank

class TextTower:
    def __init__(self, folder: Path, threads: int):
        import onnxruntime as ort

        model, tok = folder / "text.onnx", folder / "tokenizer.json"
        for f in (model, tok):
            if not f.exists():
                raise SetupError(f"{f} is missing: run .venv/bin/python scripts/clip/export_text_tower.py first")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])
        self.tok = WordPiece(tok)

    def embed(self, texts: list[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 64):
            ids, mask = self.tok.batch(texts[i:i + 64])
            out.append(self.sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0])
        return np.concatenate(out)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def build_bank(text: TextTower) -> dict:
    """bank[split][(attr, pole)] → sentence embeddings; 'phr' entries: one template-averaged vector per phrase."""
    P.check_disjoint()
    bank = {"train": {}, "heldout": {}, "heldout_phr": {}, "demo": {}}
    keys = [(a, pole) for a in ATTRS for pole in ("+", "-") if pole in P.ATTRIBUTES[a]] + [("*", "neutral")]
    for attr, pole in keys:
        bank["train"][(attr, pole)] = text.embed(P.sentences(P.pole_phrases(attr, pole, "train"), "train"))
        bank["demo"][(attr, pole)] = text.embed(P.sentences(P.pole_phrases(attr, pole, "demo"), "demo"))
        held = P.pole_phrases(attr, pole, "heldout")
        e = text.embed(P.sentences(held, "heldout")).reshape(len(held), len(P.TEMPLATES["heldout"]), -1)
        bank["heldout"][(attr, pole)] = e.reshape(-1, e.shape[-1])
        bank["heldout_phr"][(attr, pole)] = unit(e.mean(1))  # prompt ensembling over templates, per phrase
    return bank


def tests() -> list[tuple[str, str, str]]:
    return [(a, pa, pb) for a in ATTRS for pa, pb in P.ATTRIBUTES[a]["tests"]]


def pole_key(attr: str, pole: str) -> tuple[str, str]:
    return ("*", "neutral") if pole == "neutral" else (attr, pole)


def targets(lab: np.ndarray, pa: str, pb: str) -> tuple[np.ndarray, np.ndarray]:
    """For labels in {+1,-1,0}: (a_is_right [bool], usable [bool]) for the choice pole A vs pole B."""
    # Pole A wins on its own side; pole B (the opposite, or the neutral "a face") on the other side.
    return lab == {"+": 1, "-": -1}[pa], lab != 0


# ----------------------------------------------------------------------------- data

def make_split(gen: Generator, emo: labelers.EmotionLabeler, n: int, rng: np.random.Generator):
    t0 = time.time()
    images, kinds, _ = gen.sample(n, rng)
    scores = labelers.colour_scores(images)
    es = emo.scores(images)
    scores.update({k: es[k] for k in ("smiling", "surprised")})
    print(f"  {n} faces generated and labelled in {time.time() - t0:.0f} s", flush=True)
    return images.astype(np.float16), kinds, scores, es["emotion_probs"]


# ----------------------------------------------------------------------------- training

def train(params0: dict, images: np.ndarray, labels: dict, bank: dict, args, rng: np.random.Generator):
    import jax
    import jax.numpy as jnp

    T = tests()
    tr = bank["train"]
    ok_a, use = zip(*[targets(labels[a], pa, pb) for a, pa, pb in T])
    ok_a, use = np.stack(ok_a), np.stack(use)
    banks_a = [tr[pole_key(a, pa)] for a, pa, _ in T]
    banks_b = [tr[pole_key(a, pb)] for a, _, pb in T]

    def loss_fn(p, x, ta, tb, y, m):
        f = tower.forward(p, x)  # [B,D]
        s = jnp.exp(jnp.clip(p["log_scale"], 0.0, np.log(100.0)))
        la = s * jnp.einsum("bd,tbd->tb", f, ta)
        lb = s * jnp.einsum("bd,tbd->tb", f, tb)
        logits = jnp.stack([la, lb], -1)  # [T,B,2]
        logp = jax.nn.log_softmax(logits, -1)
        nll = -jnp.where(y, logp[..., 0], logp[..., 1])
        # Class-balanced per test: the A-side and the B-side images weigh half each. Without this the rare
        # side (e.g. 15% smiling faces) is ignored and every face reads as "not smiling".
        yf = y.astype(jnp.float32)
        ma, mb = m * yf, m * (1.0 - yf)
        per_test = 0.5 * ((nll * ma).sum(1) / jnp.maximum(ma.sum(1), 1.0)
                          + (nll * mb).sum(1) / jnp.maximum(mb.sum(1), 1.0))
        acc = ((la > lb) == y) * m
        return per_test.mean(), (acc.sum() / jnp.maximum(m.sum(), 1.0))

    steps_per_epoch = len(images) // args.batch
    total = steps_per_epoch * args.epochs
    warm = min(100, total // 10)
    b1, b2, eps = 0.9, 0.999, 1e-8
    decay = {k for k in params0 if k.endswith("_w")}

    @jax.jit
    def step(p, mom, vel, t, x, ta, tb, y, m):
        (loss, acc), g = jax.value_and_grad(loss_fn, has_aux=True)(p, x, ta, tb, y, m)
        lr = args.lr * jnp.where(t < warm, (t + 1) / warm, 0.5 * (1 + jnp.cos(np.pi * (t - warm) / (total - warm))))
        new_p, new_m, new_v = {}, {}, {}
        for k in p:
            new_m[k] = b1 * mom[k] + (1 - b1) * g[k]
            new_v[k] = b2 * vel[k] + (1 - b2) * g[k] ** 2
            mh = new_m[k] / (1 - b1 ** (t + 1))
            vh = new_v[k] / (1 - b2 ** (t + 1))
            upd = mh / (jnp.sqrt(vh) + eps) + (args.weight_decay * p[k] if k in decay else 0.0)
            new_p[k] = p[k] - lr * upd
        return new_p, new_m, new_v, loss, acc

    p = {k: jnp.asarray(v) for k, v in params0.items()}
    mom = {k: jnp.zeros_like(v) for k, v in p.items()}
    vel = {k: jnp.zeros_like(v) for k, v in p.items()}
    t, log = 0, []
    t_start = time.time()
    for epoch in range(args.epochs):
        order = rng.permutation(len(images))
        losses, accs = [], []
        for s in range(steps_per_epoch):
            idx = np.sort(order[s * args.batch:(s + 1) * args.batch])
            x = images[idx].astype(np.float32)
            flip = rng.random(len(idx)) < 0.5  # every attribute here is left/right symmetric
            x[flip] = x[flip, :, :, ::-1]
            ta = np.stack([bk[rng.integers(0, len(bk), len(idx))] for bk in banks_a])
            tb = np.stack([bk[rng.integers(0, len(bk), len(idx))] for bk in banks_b])
            p, mom, vel, loss, acc = step(p, mom, vel, t, x, ta, tb, ok_a[:, idx], use[:, idx].astype(np.float32))
            t += 1
            losses.append(float(loss))
            accs.append(float(acc))
        rate = t * args.batch / (time.time() - t_start)
        log.append(Flow({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                         "train_choice_accuracy": round(float(np.mean(accs)), 4)}))
        print(f"  epoch {epoch + 1}/{args.epochs}: loss {np.mean(losses):.4f}  choice acc {np.mean(accs):.3f}  "
              f"logit scale {float(np.exp(p['log_scale'])):.1f}  ({rate:.0f} img/s)", flush=True)
    return {k: np.asarray(v) for k, v in p.items()}, log


# ----------------------------------------------------------------------------- evaluation

def balanced_accuracy(margin: np.ndarray, a_right: np.ndarray) -> float:
    """Mean of per-class recall: chance is 0.5 whatever the class balance."""
    return float(0.5 * ((margin[a_right] > 0).mean() + (margin[~a_right] < 0).mean()))


def evaluate(emb: np.ndarray, labels: dict, bank: dict) -> list[dict]:
    rows = []
    for attr, pa, pb in tests():
        a_right, use = targets(labels[attr], pa, pb)
        e, a_right = emb[use], a_right[use]
        ka, kb = pole_key(attr, pa), pole_key(attr, pb)
        # held-out phrasings: every pair (phrase A, phrase B), each phrase ensembled over held-out templates
        pairs = [(pha, phb) for pha in P.pole_phrases(attr, pa, "heldout") for phb in P.pole_phrases(attr, pb, "heldout")]
        pair_acc = [balanced_accuracy(e @ ta - e @ tb, a_right)
                    for ta in bank["heldout_phr"][ka] for tb in bank["heldout_phr"][kb]]
        ens = balanced_accuracy(e @ unit(bank["heldout"][ka].mean(0)) - e @ unit(bank["heldout"][kb].mean(0)), a_right)
        demo = balanced_accuracy(e @ bank["demo"][ka][0] - e @ bank["demo"][kb][0], a_right)
        name_b = "neutral" if pb == "neutral" else pb
        rows.append(Flow({
            "attribute": attr, "choice": f"{pa} vs {name_b}",
            "images_A_B": [int(a_right.sum()), int((~a_right).sum())],
            "heldout_phrasing_accuracy": round(float(np.mean(pair_acc)), 3),
            "heldout_phrasing_worst_pair": round(float(np.min(pair_acc)), 3),
            "worst_pair": list(pairs[int(np.argmin(pair_acc))]),
            "heldout_ensemble_accuracy": round(ens, 3),
            "demo_phrasing_accuracy": round(demo, 3),
            "chance": 0.5,
        }))
    return rows


def auc(score: np.ndarray, pos: np.ndarray) -> float:
    """Rank AUC (Mann-Whitney): P(score of a positive > score of a negative)."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    n1, n0 = pos.sum(), (~pos).sum()
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def evaluate_all_images(emb: np.ndarray, scores: dict, bank: dict) -> dict:
    """AUC over *all* held-out images: demo prompt margin vs 'labeler score above its median'."""
    out = {}
    for attr in ATTRS:
        pa, pb = P.ATTRIBUTES[attr]["tests"][0]
        m = emb @ bank["demo"][pole_key(attr, pa)][0] - emb @ bank["demo"][pole_key(attr, pb)][0]
        s = scores[attr]
        out[attr] = round(auc(m if pa == "+" else -m, s > np.median(s)), 3)
    return out


# ----------------------------------------------------------------------------- direction check

def direction_check(gen: Generator, emo, run_tower, bank: dict, rng: np.random.Generator, n_probe: int,
                    n_test: int, k_sigma: float = 5.0, beta: float = 0.1) -> dict:
    """ZOOM's global-direction recipe with this CLIP, then: does editing along it move the labeler?

    fs3[c] = normalise(mean_i normalise(E(x_i + kσ_c) - E(x_i - kσ_c))) over n_probe faces; for each
    attribute Δt = normalise(t(neutral) - t(target)) with the demo phrasing; r = fs3·Δt, channels with
    |r| < β dropped, divided by max|r|, unit L2 (ZOOM's variant). Target-ward edit = -B·Δs.
    """
    z = rng.standard_normal((n_probe, gen.z_dim)).astype(np.float32)
    ed = gen.editable
    fs3 = np.zeros((gen.edit_dim, tower.EMBED), np.float32)
    per_call = max(1, 256 // (2 * n_probe))  # channels per generator call
    for start in range(0, len(ed), per_call):
        chans = ed[start:start + per_call]
        e = np.zeros((len(chans), 2, n_probe, gen.edit_dim), np.float32)
        for j, c in enumerate(chans):
            e[j, 0, :, c] = k_sigma * gen.channel_scale[c]
            e[j, 1, :, c] = -k_sigma * gen.channel_scale[c]
        zz = np.tile(z, (len(chans) * 2, 1))
        img = gen.sess.run(["image"], {"z": zz, "edit": e.reshape(-1, gen.edit_dim)})[0]
        f = run_tower(img).reshape(len(chans), 2, n_probe, -1)
        d = unit(f[:, 0] - f[:, 1] + 1e-12)
        fs3[chans] = unit(d.mean(1))
    zt = rng.standard_normal((n_test, gen.z_dim)).astype(np.float32)
    base = gen.sess.run(["image"], {"z": zt, "edit": np.zeros((n_test, gen.edit_dim), np.float32)})[0]
    spread = labelers.colour_scores(base)
    es = emo.scores(base)
    spread.update({"smiling": es["smiling"], "surprised": es["surprised"]})
    spread = {a: float(np.std(v)) + 1e-9 for a, v in spread.items() if a in ATTRS}
    neutral = bank["demo"][("*", "neutral")][0]
    out, dirs = {}, {}
    for attr in ATTRS:
        target = bank["demo"][(attr, "+")][0]
        dt = unit(neutral - target)
        r = fs3 @ dt
        r[np.abs(r) < beta] = 0.0
        kept = int((r != 0).sum())
        if kept == 0:
            out[attr] = {"channels_kept": 0, "note": f"no channel with |relevance| >= {beta}"}
            continue
        ds = r / np.abs(r).max()
        ds /= np.linalg.norm(ds)
        dirs[attr] = -ds  # target-ward
        res = {}
        for name, alpha in (("toward", -gen.attack_bound), ("away", gen.attack_bound)):
            img = gen.sess.run(["image"], {"z": zt, "edit": np.tile(alpha * ds, (n_test, 1)).astype(np.float32)})[0]
            sc = labelers.colour_scores(img)
            es = emo.scores(img)
            sc.update({"smiling": es["smiling"], "surprised": es["surprised"]})
            res[name] = sc
        gain = res["toward"][attr] - res["away"][attr]
        out[attr] = Flow({"channels_kept": kept, "max_relevance": round(float(np.abs(fs3 @ dt).max()), 3),
                          "labeler_mean_toward": round(float(res["toward"][attr].mean()), 4),
                          "labeler_mean_away": round(float(res["away"][attr].mean()), 4),
                          "share_of_faces_moved_toward": round(float((gain > 0).mean()), 3)})
        # Entanglement: how every labeler moves along this direction, in units of its spread on unedited faces.
        out[attr]["all_labelers_shift_in_sd"] = Flow({
            b: round(float((res["toward"][b] - res["away"][b]).mean() / spread[b]), 2) for b in ATTRS})
    # Near-identical directions mean zoom cannot tell those attributes apart with this generator + CLIP.
    cosines = {a: Flow({b: round(float(dirs[a] @ dirs[b]), 2) for b in dirs}) for a in dirs}
    return {"per_attribute": out, "direction_cosines": cosines}


# ----------------------------------------------------------------------------- main

def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-images", type=int, default=16000)
    ap.add_argument("--eval-images", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--probe-faces", type=int, default=8, help="faces per channel probe in the direction check")
    ap.add_argument("--generator", type=Path, default=ROOT / "onnx" / "dcgan-face" / "model.onnx")
    ap.add_argument("--emotion", type=Path, default=ROOT / "onnx" / "emotion" / "model.onnx")
    ap.add_argument("--data-cache", type=Path, default=None,
                    help="folder to keep generated faces + labels between runs (development; same seed → same data)")
    ap.add_argument("--out", type=Path, default=OUT_DIR,
                    help="folder for image.onnx, card.yaml, prompts.yaml (default onnx/face-clip)")
    ap.add_argument("--prompts-only", action="store_true",
                    help="rewrite prompts.yaml from the numbers already in card.yaml (no training)")
    args = ap.parse_args()
    if args.prompts_only:
        return prompts_from_card(args.out)
    t_all = time.time()
    import jax
    import onnxruntime as ort

    for f in (args.generator, args.emotion):
        for need in (f, f.parent / "card.yaml"):
            if not need.exists():
                raise SetupError(f"{need} is missing: run .venv/bin/python scripts/setup_models.py first")
    try:
        gcard = yaml.safe_load((args.generator.parent / "card.yaml").read_text())
        gen = Generator.load(args.generator, generator_contract(gcard, args.generator.parent / "card.yaml",
                                                                args.generator), args.threads)
        ecard = yaml.safe_load((args.emotion.parent / "card.yaml").read_text())
        emo = labelers.EmotionLabeler(args.emotion, ecard, args.threads)
    except ContractError as e:
        raise SetupError(str(e)) from None
    text = TextTower(OUT_DIR, args.threads)

    seeds = np.random.SeedSequence(args.seed).spawn(5)
    rng_train, rng_eval, rng_init, rng_steps, rng_dir = (np.random.default_rng(s) for s in seeds)

    stage_s, t_stage = {}, time.time()

    def stage(name):
        nonlocal t_stage
        stage_s[name] = round(time.time() - t_stage, 1)
        t_stage = time.time()

    print("[1/6] prompt embeddings (frozen MiniLM text tower)", flush=True)
    bank = build_bank(text)
    stage("prompt_embeddings")
    cache_key = (f"s{args.seed}-n{args.train_images}-e{args.eval_images}-g{sha256_bytes(args.generator.read_bytes())[:12]}"
                 f"-m{sha256_bytes(args.emotion.read_bytes())[:12]}")
    cache = args.data_cache / f"{cache_key}.npz" if args.data_cache else None
    if cache and cache.exists():
        print(f"[2-3/6] faces and labels from the cache {cache}", flush=True)
        d = np.load(cache)
        tr_img, tr_kind, ev_img, ev_kind = d["tr_img"], d["tr_kind"], d["ev_img"], d["ev_kind"]
        tr_scores = {a: d["tr_" + a] for a in ATTRS}
        ev_scores = {a: d["ev_" + a] for a in ATTRS}
    else:
        print("[2/6] training faces", flush=True)
        tr_img, tr_kind, tr_scores, _ = make_split(gen, emo, args.train_images, rng_train)
        print("[3/6] held-out faces (independent seed stream)", flush=True)
        ev_img, ev_kind, ev_scores, _ = make_split(gen, emo, args.eval_images, rng_eval)
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, tr_img=tr_img, tr_kind=tr_kind, ev_img=ev_img, ev_kind=ev_kind,
                     **{"tr_" + a: tr_scores[a] for a in ATTRS}, **{"ev_" + a: ev_scores[a] for a in ATTRS})
    thresholds = labelers.fit_thresholds(tr_scores)
    tr_lab = labelers.label(tr_scores, thresholds)
    ev_lab = labelers.label(ev_scores, thresholds)
    stage("data")

    print(f"[4/6] training ({args.epochs} epochs x {args.train_images // args.batch} steps, batch {args.batch})",
          flush=True)
    t_train = time.time()
    p0 = tower.init_params(rng_init)
    p0["log_scale"] = np.array(np.log(10.0), np.float32)
    params, log = train(p0, tr_img, tr_lab, bank, args, rng_steps)
    train_s = time.time() - t_train
    stage("training")

    print("[5/6] ONNX export and parity", flush=True)
    doc = ("face-CLIP image tower (NOT OpenAI CLIP): small CNN trained LiT-style on DCGAN faces against a "
           "frozen all-MiniLM-L6-v2 text tower; see card.yaml")
    weights = {k: v for k, v in params.items() if k != "log_scale"}
    model = tower.to_onnx(weights, doc)
    model_bytes = model.SerializeToString()
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])

    def run_tower(x: np.ndarray) -> np.ndarray:
        return np.concatenate([sess.run(["embedding"], {"image": x[i:i + 512].astype(np.float32)})[0]
                               for i in range(0, len(x), 512)])

    ev_emb = run_tower(ev_img)
    jax_emb = np.asarray(jax.jit(tower.forward)({k: jax.numpy.asarray(v) for k, v in weights.items()},
                                                ev_img[:256].astype(np.float32)))
    parity = float(np.abs(jax_emb - ev_emb[:256]).max())
    if parity > 1e-4:
        raise SetupError(f"image.onnx differs from the trained JAX model by {parity:.3g} (> 1e-4)")

    stage("export")
    print("[6/6] zero-shot evaluation and direction check", flush=True)
    rows = evaluate(ev_emb, ev_lab, bank)
    rows_unedited = evaluate(ev_emb[ev_kind == "none"], {a: v[ev_kind == "none"] for a, v in ev_lab.items()}, bank)
    tr_emb = run_tower(tr_img[:4000])
    rows_train = evaluate(tr_emb, {a: v[:4000] for a, v in tr_lab.items()}, bank)
    all_auc = evaluate_all_images(ev_emb, ev_scores, bank)
    stage("evaluation")
    dcheck = direction_check(gen, emo, run_tower, bank, rng_dir, args.probe_faces, 64)
    stage("direction_check")
    wall = time.time() - t_all

    write_outputs(args, model_bytes, params, rows, rows_unedited, rows_train, all_auc, dcheck, thresholds,
                  tr_lab, ev_lab, tr_kind, log, parity, train_s, wall, gen.attack_bound, stage_s)


# ----------------------------------------------------------------------------- card + prompts

def attribute_verdicts(rows: list[dict]) -> dict:
    """Per attribute: worst held-out accuracy over its choices decides; below chance → dropped."""
    out = {}
    for attr in ATTRS:
        accs = [r["heldout_phrasing_accuracy"] for r in rows if r["attribute"] == attr]
        worst = min(accs)
        status = "dropped (below chance)" if worst <= 0.5 else ("weak (below 0.65)" if worst < 0.65 else "pass")
        out[attr] = {"worst_heldout_accuracy": worst, "status": status}
    return out


def write_outputs(args, model_bytes, params, rows, rows_unedited, rows_train, all_auc, dcheck, thresholds,
                  tr_lab, ev_lab, tr_kind, log, parity, train_s, wall, attack_bound, stage_s):
    import jax
    import onnx
    import onnxruntime

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    verdicts = attribute_verdicts(rows)
    write_if_changed(out / "image.onnx", model_bytes)
    n_params = int(sum(v.size for k, v in params.items() if k != "log_scale"))
    cmd = "scripts/clip/train_image_tower.py --seed " + str(args.seed)
    defaults = {"train_images": 16000, "eval_images": 4000, "epochs": 8, "batch": 128, "lr": 2e-3,
                "weight_decay": 1e-4, "probe_faces": 8}
    for k, v in defaults.items():
        if getattr(args, k) != v:
            cmd += f" --{k.replace('_', '-')} {getattr(args, k)}"
    gen_sha = sha256_bytes(args.generator.read_bytes())
    emo_sha = sha256_bytes(args.emotion.read_bytes())
    label_counts = {a: Flow({"positive": int((v == 1).sum()), "negative": int((v == -1).sum()),
                             "unclear": int((v == 0).sum())}) for a, v in tr_lab.items()}
    card = load_card() if out == OUT_DIR else {}
    text_section = card.get("text_tower")
    card = {
        "name": "face-clip",
        "what": ("A face-domain CLIP stand-in, NOT OpenAI CLIP: a real pretrained sentence encoder "
                 "(all-MiniLM-L6-v2) as the text tower and a small image tower trained here, LiT-style, on "
                 "generated DCGAN faces captioned by independent labelers. It knows only the attributes in "
                 "prompts.yaml; other prompts give meaningless directions."),
        "licence": {"text_tower": "Apache-2.0 (sentence-transformers all-MiniLM-L6-v2 weights)",
                    "image_tower": "trained here from the project's own pipeline; same licence as the project. "
                                   "Its training images come from the DCGAN generator (MIT; trained on "
                                   "DigiFace-1M, whose terms may restrict commercial use).",
                    "tokenizer": "Apache-2.0 (from the same package)"},
        "contract": {
            "image": {"file": "image.onnx", "input": "image [N,3,64,64] float32",
                      "output": "embedding [N,384] float32, L2-normalised"},
            "text": {"file": "text.onnx", "inputs": "input_ids [N,L] int64, attention_mask [N,L] int64",
                     "output": "embedding [N,384] float32, L2-normalised", "tokenizer": "tokenizer.json"},
            "similarity": "cosine of the two embeddings; logits = logit_scale * cosine",
            "logit_scale_learned": round(float(np.exp(np.clip(params["log_scale"], 0, np.log(100)))), 2),
            "logit_scale_note": ("the scale the tower was trained with; the accuracies below are argmax choices and do "
                                 "not depend on it. ZOOM's code uses 100 (OpenAI CLIP's), which makes the consistency "
                                 "softmax sharper than training saw"),
        },
        "preprocessing": {
            "resize": "none (64x64 in, the generator's size)",
            "value_range": "[0, 1]: x01 = (generator_rgb + 1) / 2",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "channel_order": "RGB", "layout": "NCHW",
            "note": "(x01 - 0.5) / 0.5 is the generator's [-1, 1] output unchanged: feed the image as is",
        },
    }
    if text_section:
        card["text_tower"] = text_section
    card["image_tower"] = {
        "file": {"name": "image.onnx", "bytes": len(model_bytes), "sha256": sha256_bytes(model_bytes),
                 "committed": True},
        "architecture": (f"Conv k4 s2 (3->{tower.WIDTHS[0]}) Relu, then {tower.WIDTHS[1:]} likewise, Conv k4 valid "
                         f"(->{tower.HIDDEN}) Relu, ReduceSum, Gemm ({tower.HIDDEN}->{tower.EMBED}), L2 norm; "
                         f"{n_params:,} parameters; ops: Conv Relu ReduceSum Gemm Mul Add Sqrt Div (opset 17)"),
        "parity_onnx_vs_jax_max_abs_diff": float(f"{parity:.3g}"),
        "training": {
            "command": f".venv/bin/python {cmd}",
            "requirements": "scripts/requirements.txt + scripts/clip/requirements-train.txt (jax, CPU only)",
            "seed": args.seed,
            "deterministic": "yes on the same machine type and thread count (numpy SeedSequence streams for "
                             "data, init, batches; XLA CPU); different CPUs may differ in the last bits",
            "wall_time_s": round(wall), "stage_s": Flow(stage_s), "threads": args.threads,
            "data": {"train_images": args.train_images, "eval_images": args.eval_images,
                     "edit_mix": Flow(EDIT_MIX),
                     "train_edit_kinds": Flow({k: int((tr_kind == k).sum()) for k in EDIT_MIX}),
                     "generator": {"file": rel(args.generator), "sha256": gen_sha},
                     "emotion_labeler": {"file": rel(args.emotion), "sha256": emo_sha},
                     "generator_default_bound": attack_bound,
                     "edits": ("probe: 1-4 channels moved by ±(3..6)·channel_scale; attack: α·(unit direction over "
                               "5-50 channels, weighted by channel_scale), |α| ≤ generator_default_bound"),
                     "train_label_counts": label_counts},
            "labelers": {a: P.ATTRIBUTES[a]["labeler"] for a in ATTRS},
            "not_used_as_labelers": "gender classifier and MTCNN (demo configs diagnose them: no circularity)",
            "label_thresholds": {a: Flow({"low": round(lo, 4), "high": round(hi, 4),
                                          "rule": labelers.THRESHOLDS[a][0]}) for a, (lo, hi) in thresholds.items()},
            "regions_64x64": {"hair": "rows 1-9, cols 20-43", "skin": "rows 32-41, cols 20-43",
                              "background": "rows 0-39 of cols 0-4 and 59-63"},
            "loss": ("per-attribute binary choices, CE over logit_scale*cos(image, prompt A/B) with a learned "
                     "logit scale, class-balanced per choice (A-side and B-side images weigh half each); A/B = "
                     "attribute vs opposite and attribute vs neutral; prompts sampled per image from 8 templates "
                     "x 3-5 training phrasings; unclear labels are masked"),
            "why_not_infonce": ("captions are coarse per-attribute labels, so a batch holds many identical "
                                "captions that InfoNCE would treat as negatives; binary choices are also how zoom "
                                "reads CLIP (t(neutral) - t(target) directions, softmax over few prompts)"),
            "optimiser": f"AdamW lr {args.lr} (warm-up, cosine decay), wd {args.weight_decay}, batch {args.batch}, "
                         f"{args.epochs} epochs, random horizontal flips",
            "log": log,
        },
        "evaluation": {
            "protocol": ("held-out faces from an independent seed stream (same edit mix), labelled by the same "
                         "labelers with the training thresholds; unclear labels excluded. Held-out phrasings and "
                         "templates (prompts.py 'heldout', never used in training). Balanced accuracy of the "
                         "binary choice, chance 0.5. heldout_phrasing_accuracy = mean over every (phrase A, "
                         "phrase B) pair, each phrase averaged over the held-out templates; demo = the bare "
                         "prompts of prompts.yaml"),
            "eval_label_counts": {a: Flow({"positive": int((v == 1).sum()), "negative": int((v == -1).sum())})
                                  for a, v in ev_lab.items()},
            "heldout": rows,
            "heldout_unedited_faces_only": [Flow({k: r[k] for k in ("attribute", "choice", "heldout_phrasing_accuracy",
                                                                        "demo_phrasing_accuracy")}) for r in rows_unedited],
            "training_faces_for_comparison": [Flow({k: r[k] for k in ("attribute", "choice", "heldout_phrasing_accuracy")})
                                              for r in rows_train],
            "auc_all_heldout_faces_demo_prompts_vs_median_split": all_auc,
            "verdicts": {a: Flow(v) for a, v in verdicts.items()},
            "dropped_from_demo_prompts": [a for a, v in verdicts.items() if v["status"].startswith("dropped")],
        },
        "direction_check": {
            "what": ("ZOOM's global-direction recipe run with this CLIP (±5σ probes of every editable channel on "
                     f"{args.probe_faces} faces, β = 0.1, demo prompts vs 'a face'), then 64 new faces edited by "
                     f"∓{attack_bound} (the generator card's default attack bound) along the direction: labeler means toward vs away from the attribute"),
            "results": dcheck["per_attribute"],
            "direction_cosines": dcheck["direction_cosines"],
        },
        "versions": {"jax": jax.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "numpy": np.__version__},
    }
    if out == OUT_DIR:
        save_card(card)
    else:
        write_if_changed(out / "card.yaml", dump_yaml(card).encode())
    write_prompts(out, rows, verdicts, all_auc, dcheck)
    print(dump_yaml(card))
    print(f"wrote {out / 'image.onnx'} ({len(model_bytes):,} B), {out / 'card.yaml'}, {out / 'prompts.yaml'}")


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# Target-ward directions this close act as one attribute in zoom (measured: the three luminance attributes
# reach 0.61-0.82 and each moves the others' labelers by ~4 sd; unrelated pairs stay below 0.35).
SAME_DIRECTION_COS = 0.6


def prompts_from_card(out: Path) -> None:
    card_path = out / "card.yaml"
    if not card_path.exists():
        raise SetupError(f"{card_path} is missing: train first")
    ev = yaml.safe_load(card_path.read_text())["image_tower"]
    e, d = ev["evaluation"], ev["direction_check"]
    write_prompts(out, e["heldout"], e["verdicts"], e["auc_all_heldout_faces_demo_prompts_vs_median_split"],
                  {"per_attribute": d["results"], "direction_cosines": d["direction_cosines"]})
    print((out / "prompts.yaml").read_text())


def write_prompts(out: Path, rows, verdicts, all_auc, dcheck) -> None:
    cos = dcheck["direction_cosines"]
    per = dcheck["per_attribute"]
    attrs = []
    for a in ATTRS:
        spec = P.ATTRIBUTES[a]
        acc = {r["choice"]: r["heldout_phrasing_accuracy"] for r in rows if r["attribute"] == a}
        attrs.append({
            "name": a,
            "prompt": spec["+"]["demo"],
            **({"opposite": spec["-"]["demo"]} if "-" in spec else {}),
            "labeler": spec["labeler"],
            "status": verdicts[a]["status"],
            "heldout_accuracy": Flow(acc),
            "auc_all_faces": all_auc[a],
            "same_direction_as": [b for b in cos.get(a, {}) if b != a and cos[a][b] > SAME_DIRECTION_COS],
            "direction_side_effects_sd": Flow({b: v for b, v in per.get(a, {}).get("all_labelers_shift_in_sd", {}).items()
                                               if b != a and abs(v) >= 1.0}),
        })
    # Recommend passing attributes, best first, skipping one whose direction duplicates an already chosen one.
    chosen = []
    for x in sorted(attrs, key=lambda x: -verdicts[x["name"]]["worst_heldout_accuracy"]):
        if x["status"] == "pass" and not any(cos.get(x["name"], {}).get(c, 0) > SAME_DIRECTION_COS for c in chosen):
            chosen.append(x["name"])
    doc = {
        "neutral": P.NEUTRAL["demo"],
        "note": ("Attributes for zoom's demo configs with the face-clip model. Each was labelled by the labeler "
                 "named here, never by the gender classifier or MTCNN, so configs diagnosing those models are not "
                 "circular. Do NOT diagnose the emotion classifier through 'smiling' or 'surprised' (their "
                 "labeler IS that classifier). Use only attributes with status 'pass'. 'recommended' keeps one "
                 f"attribute per group of near-identical global directions (cosine > {SAME_DIRECTION_COS}; see "
                 "same_direction_as): zoom cannot separate those with this generator and CLIP."),
        "recommended": [x["prompt"] for x in attrs if x["name"] in chosen],
        "attributes": attrs,
    }
    text = "# Written by scripts/clip/train_image_tower.py; numbers from onnx/face-clip/card.yaml\n"
    text += dump_yaml(doc)
    write_if_changed(out / "prompts.yaml", text.encode())


if __name__ == "__main__":
    main_guard(run)
