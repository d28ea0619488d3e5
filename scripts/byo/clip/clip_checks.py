"""Checks of an exported CLIP (export_clip.py --check): ONNX vs PyTorch parity of both towers, the
tokenizer against open_clip's, and zoom's side: `zoom inspect` of both graphs, `zoom grad` of the image
tower (its VJP graph run with onnxruntime and compared with PyTorch float64 autograd and with central
finite differences), `zoom run` of the text tower on .npy ids.
"""

from __future__ import annotations

import copy
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[3]


def _session(path: Path, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _errors(got: np.ndarray, ref: np.ndarray) -> dict:
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    row_scale = np.abs(ref).max(axis=1)
    cos = (got * ref).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(ref, axis=1))
    return {
        "max_abs": float(diff.max()),
        "max_rel": float((diff.max(axis=1) / row_scale).max()),   # per row: max|diff| / max|ref|
        "max_rel_l2": float((np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)).max()),
        "min_cosine": float(cos.min()),
    }


def normalised_images(n: int, size: int, mean, std, seed: int) -> np.ndarray:
    """Random test images in the tower's input space: smooth colour fields plus noise in [0, 1],
    then (x - mean) / std, as zoom's composed preprocessing would feed them."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 1, size=(n, 3, 8, 8))
    up = np.kron(low, np.ones((1, 1, size // 8 + 1, size // 8 + 1)))[:, :, :size, :size]
    x01 = np.clip(0.7 * up + 0.3 * rng.uniform(0, 1, size=(n, 3, size, size)), 0, 1)
    m = np.asarray(mean, np.float64).reshape(1, 3, 1, 1)
    s = np.asarray(std, np.float64).reshape(1, 3, 1, 1)
    return ((x01 - m) / s).astype(np.float32)


PARITY_TEXTS = [
    "a photo of a cat", "a face", "A face with BLOND hair, on a dark background.",
    "portrait of someone frowning; café lighting!", "", "a photo of a " + "very " * 80 + "big dog",
    "numbers 0123456789 and emoji 😀", "it's a dog's life",
]


def tower_parity(loaded, image_path: Path, text_path: Path, threads: int, seed: int) -> dict:
    import open_clip
    import torch
    from clip_towers import reference_towers

    size = int(loaded.preprocess["size"][0])
    img32, txt32 = reference_towers(loaded.model)
    m64 = copy.deepcopy(loaded.model).double()
    img64, txt64 = reference_towers(m64)
    out = {}
    s_img = _session(image_path, threads)
    per_batch = []
    agg32, agg64, agg_t = [], [], []
    for n in (1, 3):
        x = normalised_images(n, size, loaded.preprocess["mean"], loaded.preprocess["std"], seed + n)
        got = s_img.run(["embedding"], {"image": x})[0]
        with torch.no_grad():
            r32 = img32(torch.from_numpy(x)).numpy()
            r64 = img64(torch.from_numpy(x).double()).numpy()
        per_batch.append(n)
        agg32.append((got, r32))
        agg64.append((got, r64))
        agg_t.append((r32, r64))
    cat = lambda pairs, i: np.concatenate([p[i] for p in pairs])  # noqa: E731
    out["image"] = {
        "inputs": f"{sum(per_batch)} random smooth+noise images in [0,1], normalised; batches {per_batch} (dynamic N)",
        "onnx_vs_torch_fp32": _errors(cat(agg32, 0), cat(agg32, 1)),
        "onnx_vs_torch_fp64": _errors(cat(agg64, 0), cat(agg64, 1)),
        "torch_fp32_vs_torch_fp64": _errors(cat(agg_t, 0), cat(agg_t, 1)),
    }
    tok = open_clip.get_tokenizer(loaded.name)
    ids = tok(PARITY_TEXTS).numpy().astype(np.int64)
    s_txt = _session(text_path, threads)
    got = np.concatenate([s_txt.run(["embedding"], {"input_ids": ids[:1]})[0],
                          s_txt.run(["embedding"], {"input_ids": ids[1:]})[0]])
    with torch.no_grad():
        r32 = txt32(torch.from_numpy(ids)).numpy()
        r64 = txt64(torch.from_numpy(ids)).numpy()
    out["text"] = {
        "inputs": f"{len(PARITY_TEXTS)} prompts tokenised by open_clip (incl. empty and > 77 tokens); batches [1, {len(PARITY_TEXTS) - 1}]",
        "onnx_vs_torch_fp32": _errors(got, r32),
        "onnx_vs_torch_fp64": _errors(got, r64),
        "torch_fp32_vs_torch_fp64": _errors(r32, r64),
    }
    return out


def fuzz_texts(n: int, seed: int) -> list[str]:
    """Random strings over a pool that stresses the normaliser and the regex."""
    rng = random.Random(seed)
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3
            + list(" " * 40) + list(".,;:!?'\"-_()[]{}<>/\\@#$%^&*+=~`|")
            + list("éèêëàâäôöûüçñßÆæŒœØøÅåİıΣσςΩ") + list("日本語中文한국어Привет") + ["😀", "👍🏽", "🇫🇷", "\u200d"]
            + list("\t\n\r\u00a0\u2003\u3000\u2028") + list("“”‘’‚„«»…—–") + list("ﬁﬂＡＢ１２ｶ")
            + ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "'s", "'t", "'re", "'ll", "'d", "'ve", "'m"])
    out = []
    for _ in range(n):
        k = rng.choice([1, 2, 5, 10, 20, 40, 120])
        out.append("".join(rng.choice(pool) for _ in range(k)))
    return out


def _imagenet_prompts() -> list[str]:
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES
    return list(IMAGENET_CLASSNAMES) + [t(c) for i, t in enumerate(OPENAI_IMAGENET_TEMPLATES)
                                        for c in IMAGENET_CLASSNAMES[i * 7 % 1000: i * 7 % 1000 + 3]]


def _summary(r: dict, with_examples: bool = True) -> dict:
    keys = ("texts_compared", "mismatches", "mismatches_unexplained", "mismatches_ftfy_mojibake_repair",
            "mismatches_rare_html_entity", "special_tokens_mask_and_attention_mask_ok")
    out = {k: r[k] for k in keys}
    if with_examples and r["mismatch_examples"]:
        out["mismatch_examples"] = [{"text": m["text"], "cause": m.get("cause")} for m in r["mismatch_examples"][:3]]
    return out


def tokenizer_checks(tokenizer_json: Path, model_name: str, n_fuzz: int, seed: int, encoder=None,
                     library: str | None = None) -> dict:
    """tokenizer.json vs open_clip on three sets: the hand-written prompt list (every mismatch counts),
    ImageNet zero-shot prompts, and random stress strings (mismatches with a documented cause are
    counted apart: ftfy's mojibake repair, rare HTML entities)."""
    import open_clip
    from clip_bpe import PARITY_PROMPTS, check_parity
    ref = open_clip.get_tokenizer(model_name)
    sets = {"prompt_list": PARITY_PROMPTS, "imagenet_prompts": _imagenet_prompts(),
            "random_strings": fuzz_texts(n_fuzz, seed)}
    res = {"reference": "open_clip.get_tokenizer (SimpleTokenizer, clean='lower')",
           "library": library or "tokenizers (Python binding, Oniguruma regex)"}
    for name, texts in sets.items():
        r = check_parity(tokenizer_json, ref, texts, encoder=encoder, library=library)
        res[name] = _summary(r) if name != "prompt_list" else {**_summary(r), "texts_truncated_at_77": r["texts_truncated_at_77"]}
    res["imagenet_prompts"]["source"] = "open_clip.zero_shot_metadata: 1000 class names + 80 OpenAI templates x 3 names"
    res["random_strings"]["generator"] = f"clip_checks.fuzz_texts(n={n_fuzz}, seed={seed})"
    return res


# ---------------------------------------------------------------- the tokenizer in zoom's Rust build

def zoom_encoder(zoom: Path, tokenizer_json: Path):
    """Encodes texts with `zoom tokenize` (zoom's own tokenizers build, pure-Rust regex engine)."""
    def encode(texts):
        lines = "".join(json.dumps(t, ensure_ascii=False) + "\n" for t in texts)
        r = subprocess.run([str(zoom), "tokenize", "--json-input", str(tokenizer_json)], input=lines,
                           capture_output=True, text=True, timeout=600, env=_zoom_env())
        if r.returncode != 0:
            raise RuntimeError(f"zoom tokenize cannot use {tokenizer_json}: {r.stderr.strip()}")
        # split on "\n" only: str.splitlines() would also split inside strings holding U+2028 etc.
        data = [json.loads(line) for line in r.stdout.split("\n") if line]
        return [(d["ids"], d["special"], d["mask"]) for d in data]
    return encode


def rust_tokenizer_checks(tokenizer_json: Path, model_name: str, n_fuzz: int, seed: int,
                          zoom: Path | None) -> dict:
    """The tokenizer checks again through `zoom tokenize`: parity measured with Python's tokenizers
    (Oniguruma regexes) is not enough, zoom's build uses fancy-regex."""
    if zoom is None:
        return {"status": "SKIPPED: no zoom binary (build it with cargo build --release, or pass --zoom PATH)"}
    lib = f"zoom tokenize ({zoom})"
    try:
        res = tokenizer_checks(tokenizer_json, model_name, n_fuzz, seed, encoder=zoom_encoder(zoom, tokenizer_json),
                               library=lib)
    except RuntimeError as e:
        return {"status": "FAIL", "error": str(e)}
    res["status"] = "ran"
    return res


# ---------------------------------------------------------------- zoom (Rust) side

def find_zoom(explicit: str | None) -> Path | None:
    cands = [explicit, os.environ.get("ZOOM_BIN"), str(REPO / "target/release/zoom"),
             str(REPO / "target/debug/zoom"), shutil.which("zoom")]
    for c in cands:
        if c and Path(c).is_file() and os.access(c, os.X_OK):
            return Path(c)
    return None


def _zoom_env() -> dict:
    env = dict(os.environ)
    lib = REPO / ".ort/lib/libonnxruntime.so"
    if "ORT_DYLIB_PATH" not in env and lib.is_file():
        env["ORT_DYLIB_PATH"] = str(lib)
    return env


def _zoom(zoom: Path, args: list[str], threads: int, timeout: int = 1800) -> subprocess.CompletedProcess:
    cmd = [str(zoom), "--threads", str(threads), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_zoom_env(), timeout=timeout)


def _cmd_str(args: list[str]) -> str:
    return "zoom " + " ".join(args)


def zoom_checks(zoom: Path | None, loaded, image_path: Path, text_path: Path, tokenizer_json: Path,
                threads: int, seed: int, keep_dir: Path | None = None) -> dict:
    if zoom is None:
        return {"status": "SKIPPED: no zoom binary (build it with cargo build --release, or pass --zoom PATH)"}
    import torch
    from clip_towers import reference_towers

    res: dict = {"binary": str(zoom)}
    # inspect both graphs
    for name, p in (("image", image_path), ("text", text_path)):
        r = _zoom(zoom, ["inspect", str(p), "--json"], threads)
        if r.returncode != 0:
            res[f"inspect_{name}"] = {"ok": False, "stderr": r.stderr.strip()[-800:]}
            continue
        try:
            info = json.loads(r.stdout)
        except json.JSONDecodeError:
            info = {"raw": r.stdout[:400]}
        res[f"inspect_{name}"] = {"ok": True, "inputs": info.get("inputs"), "outputs": info.get("outputs"),
                                  "opsets": info.get("opsets")}

    tmp = Path(tempfile.mkdtemp(prefix="zoom-clip-check-", dir=keep_dir))
    try:
        size = int(loaded.preprocess["size"][0])
        n = 2
        # zoom grad of the image tower
        grad_path = tmp / "image_grad.onnx"
        args = ["grad", str(image_path), "--wrt", "image", "--shape", f"image={n}x3x{size}x{size}", "-o", str(grad_path)]
        t0 = time.time()
        r = _zoom(zoom, args, threads)
        g = {"command": _cmd_str(args), "seconds": round(time.time() - t0, 1), "builds": r.returncode == 0}
        res["grad_image"] = g
        if r.returncode != 0:
            g["stderr"] = r.stderr.strip()[-1500:]
            return res
        import onnx
        gm = onnx.load(str(grad_path), load_external_data=False)
        ops = {}
        for node in gm.graph.node:
            k = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
            ops[k] = ops.get(k, 0) + 1
        g["grad_graph"] = {"bytes": sum(f.stat().st_size for f in tmp.iterdir()), "nodes": len(gm.graph.node),
                           "domains": sorted({n.domain or "ai.onnx" for n in gm.graph.node}),
                           "inputs": [i.name for i in gm.graph.input], "outputs": [o.name for o in gm.graph.output]}
        del gm
        # run it: VJP of a random cotangent
        rng = np.random.default_rng(seed)
        x = normalised_images(n, size, loaded.preprocess["mean"], loaded.preprocess["std"], seed + 7)
        s_img = _session(image_path, threads)
        d = int(s_img.run(["embedding"], {"image": x[:1]})[0].shape[1])
        c = rng.standard_normal((n, d)).astype(np.float32)
        sg = _session(grad_path, threads)
        t0 = time.time()
        emb, vjp = sg.run(["embedding", "image_grad"], {"image": x, "embedding_grad": c})
        g["vjp_run_seconds"] = round(time.time() - t0, 2)
        # PyTorch float64 autograd of the same function
        m64 = copy.deepcopy(loaded.model).double()
        img64, _ = reference_towers(m64)
        xt = torch.from_numpy(x).double().requires_grad_(True)
        f = (img64(xt) * torch.from_numpy(c).double()).sum()
        (ref,) = torch.autograd.grad(f, xt)
        ref = ref.numpy()
        g["vjp_vs_torch_fp64_autograd"] = {
            "rel_l2": float(np.linalg.norm(vjp - ref) / np.linalg.norm(ref)),
            "max_abs": float(np.abs(vjp - ref).max()), "ref_max_abs": float(np.abs(ref).max())}

        # central finite differences of <c, embedding(x + h v)> along random directions
        fd = []
        for k in range(2):
            v = rng.standard_normal(x.shape)
            jvp = float((vjp.astype(np.float64) * v).sum())
            with torch.no_grad():
                def f64(h):
                    return float((img64(torch.from_numpy(x).double() + h * torch.from_numpy(v))
                                  * torch.from_numpy(c).double()).sum())
                # fp64 central differences at two steps; the smaller one is the check: non-smooth
                # kinks (ReLU) crossed inside [x - hv, x + hv] bias larger steps, see README)
                fd64 = {h: (f64(h) - f64(-h)) / (2 * h) for h in (1e-5, 1e-7)}
            h32 = 1e-2

            def f32(h):
                e = s_img.run(["embedding"], {"image": (x + h * v).astype(np.float32)})[0]
                return float((e.astype(np.float64) * c).sum())
            fd32 = (f32(h32) - f32(-h32)) / (2 * h32)
            fd.append({"direction": k, "vjp_dot_v": jvp,
                       "fd_torch_fp64": {"h": 1e-7, "value": fd64[1e-7], "rel_err": abs(jvp - fd64[1e-7]) / abs(fd64[1e-7]),
                                         "rel_err_at_h_1e-5": abs(jvp - fd64[1e-5]) / abs(fd64[1e-5])},
                       "fd_onnx_fp32": {"h": h32, "value": fd32, "rel_err": abs(jvp - fd32) / abs(fd32)}})
        g["finite_differences"] = fd
        g["functional"] = "f(x) = sum(c * embedding(x)), c ~ N(0,1) [N, D]; v ~ N(0,1) like x; FD = (f(x+hv) - f(x-hv)) / 2h"

        # zoom run on the text tower with .npy ids
        import open_clip
        ids = open_clip.get_tokenizer(loaded.name)(["a photo of a cat", "a face with blond hair"]).numpy().astype(np.int64)
        ids_path = tmp / "input_ids.npy"
        np.save(ids_path, ids)
        run_dir = tmp / "run"
        args = ["run", str(text_path), "--input", f"input_ids={ids_path}", "--out", str(run_dir)]
        r = _zoom(zoom, args, threads)
        t = {"command": _cmd_str(args), "ok": r.returncode == 0}
        if r.returncode == 0:
            got = np.load(run_dir / "embedding.npy")
            _, txt32 = reference_towers(loaded.model)
            with torch.no_grad():
                want = txt32(torch.from_numpy(ids)).numpy()
            t["vs_torch_fp32"] = _errors(got, want)
        else:
            t["stderr"] = r.stderr.strip()[-800:]
        res["run_text"] = t
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def zoom_doctor(zoom: Path | None, config_path: Path, threads: int) -> dict:
    """`zoom doctor CONFIG`: zoom parses the config (with the card's clip block) and loads each model,
    the text tower with its tokenizer."""
    if zoom is None:
        return {"status": "SKIPPED: no zoom binary"}
    args = ["doctor", str(config_path)]
    r = _zoom(zoom, args, threads, timeout=600)
    text = r.stdout + r.stderr
    return {"command": _cmd_str(args), "ok": r.returncode == 0 and "cannot load" not in text,
            "output_tail": (r.stdout + r.stderr).strip()[-1200:]}
