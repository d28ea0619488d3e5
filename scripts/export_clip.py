#!/usr/bin/env python3
"""Export an OpenAI CLIP / OpenCLIP model to zoom's CLIP contract (developer tool, .venv-byo).

    .venv-byo/bin/python scripts/export_clip.py --model ViT-B-32 --pretrained PATH --out DIR [--check]
    .venv-byo/bin/python scripts/export_clip.py --model ViT-B-32 --random-weights --seed 0 --out DIR --check

Writes DIR/image.onnx, DIR/text.onnx, DIR/tokenizer.json and DIR/card.yaml (with a ready-to-paste
`clip:` config block). PATH is an OpenCLIP checkpoint (.pt/.pth/.bin/.safetensors state dict) or
OpenAI's TorchScript release (e.g. ViT-B-32.pt). Nothing is downloaded. See scripts/byo/clip/README.md.

Exit codes: 0 success, 1 export or check failure, 2 usage error (bad flags, missing file, unknown model).
"""

from __future__ import annotations

import argparse
import logging
import re
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))  # models.fetch (sha256_file)
sys.path.insert(0, str(HERE / "byo" / "clip"))


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="export_clip.py",
        description="Export OpenAI CLIP / OpenCLIP checkpoints to zoom's CLIP contract "
                    "(image.onnx, text.onnx, tokenizer.json, card.yaml).")
    p.add_argument("--model", required=True,
                   help="open_clip architecture name, e.g. ViT-B-32, ViT-B-32-quickgelu, ViT-L-14, RN50 "
                        "('/' is accepted for '-': ViT-B/32)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pretrained", metavar="PATH",
                     help="checkpoint file: OpenCLIP state dict, or OpenAI's TorchScript .pt (QuickGELU is then implied)")
    src.add_argument("--random-weights", action="store_true",
                     help="untrained weights, to test the pipeline only (the card says so loudly)")
    p.add_argument("--seed", type=int, default=0, help="torch seed for --random-weights and the checks (default 0)")
    p.add_argument("--out", required=True, type=Path, help="output folder (created; existing files are replaced)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, 17..21 (default 17)")
    p.add_argument("--quick-gelu", action="store_true",
                   help="force QuickGELU (OpenAI-trained weights stored as a plain state dict; same as NAME-quickgelu)")
    p.add_argument("--check", action="store_true",
                   help="parity of both towers vs PyTorch, tokenizer vs open_clip, zoom inspect/grad/run; "
                        "results go into the card; exit 1 if a check fails")
    p.add_argument("--zoom", metavar="BIN", help="zoom binary for --check (default: $ZOOM_BIN, target/release/zoom, PATH)")
    p.add_argument("--config-dir", type=Path, default=None,
                   help="folder the card's clip: block paths are relative to (default: the current directory)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for torch and onnxruntime (default 2)")
    p.add_argument("--fuzz-texts", type=int, default=2000, help="random strings in the tokenizer check (default 2000)")
    return p.parse_args(argv)


# Tolerances of --check (float32 towers; random-weight ViT-B/32 measures ~1e-6 / ~1e-5).
TOL_EMBED_MAX_ABS = 1e-4
TOL_GRAD_REL = 1e-3
TOL_FD_REL = 1e-2


def zoom_autodiff_ops() -> set[str] | None:
    """Operators zoom's autodiff has a rule for, read from crates/zoom-graph/API.md."""
    api = REPO / "crates/zoom-graph/API.md"
    if not api.is_file():
        return None
    text = api.read_text(encoding="utf-8")
    m = re.search(r"supported_ops\(\)` lists the operators with a rule \((\d+)\):\s*(.*?)\.\s*\n- ", text, re.S)
    if not m:
        return None
    ops = {o.strip() for o in m.group(2).replace("\n", " ").split(",") if o.strip()}
    return ops if len(ops) == int(m.group(1)) else None


# Ops that carry no gradient (integer/shape paths), as zoom's activity analysis treats them.
NON_DIFFERENTIABLE = {"Shape", "Size", "ArgMax", "ArgMin", "Range", "Equal", "Less", "Greater", "Not", "And",
                      "Or", "ConstantOfShape", "Constant", "Floor", "Ceil", "Round", "NonZero"}


def versions() -> dict:
    import numpy
    import onnx
    import onnxruntime
    import open_clip
    import tokenizers
    import torch
    import ftfy
    return {"python": sys.version.split()[0], "torch": str(torch.__version__), "open_clip_torch": open_clip.__version__,
            "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "tokenizers": tokenizers.__version__,
            "numpy": numpy.__version__, "ftfy": ftfy.__version__}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch
    torch.set_num_threads(max(1, args.threads))
    from clip_towers import ExportError, export_tower, load_model
    import clip_bpe
    import clip_card

    out: Path = args.out
    config_dir = (args.config_dir or Path.cwd())
    command = "python scripts/export_clip.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    timings = {}
    try:
        if out.exists() and not out.is_dir():
            raise ExportError(f"--out {out}: exists and is not a folder")
        if args.zoom and not Path(args.zoom).is_file():
            raise ExportError(f"--zoom {args.zoom}: no such file")
        if args.random_weights:
            print("WARNING: --random-weights: exporting an UNTRAINED CLIP (test only); the card says so.",
                  file=sys.stderr)
        t0 = time.time()
        loaded = load_model(args.model, args.pretrained, args.random_weights, args.seed, args.quick_gelu)
        timings["load"] = round(time.time() - t0, 1)
        for n in loaded.notes:
            print(f"note: {n}", file=sys.stderr)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    try:
        out.mkdir(parents=True, exist_ok=True)
        import open_clip
        model = loaded.model
        size = int(loaded.preprocess["size"][0])
        from clip_towers import reference_towers
        img_tower, txt_tower = reference_towers(model)
        meta = {"zoom.contract": "clip", "zoom.open_clip_model": loaded.name,
                "zoom.source": loaded.source.get("sha256", loaded.source.get("weights", ""))}
        towers = {}
        t0 = time.time()
        towers["image"] = export_tower(
            img_tower, torch.randn(2, 3, size, size), "image", out / "image.onnx", args.opset,
            {**meta, "zoom.tower": "image"},
            f"CLIP {loaded.name} image tower: image [N,3,{size},{size}] normalised -> embedding [N,D] L2-normalised")
        timings["export_image"] = round(time.time() - t0, 1)
        t0 = time.time()
        ids = open_clip.get_tokenizer(loaded.name)(["a photo of a cat", "a face"])
        towers["text"] = export_tower(
            txt_tower, ids, "input_ids", out / "text.onnx", args.opset, {**meta, "zoom.tower": "text"},
            f"CLIP {loaded.name} text tower: input_ids [N,77] int64 (0-padded) -> embedding [N,D] L2-normalised")
        timings["export_text"] = round(time.time() - t0, 1)
        supported = zoom_autodiff_ops()
        for name, facts in towers.items():
            if supported is not None:
                facts["ops_without_zoom_gradient_rule"] = sorted(
                    op for op in facts["ops"] if op not in supported and op not in NON_DIFFERENTIABLE)
                facts["ops_non_differentiable"] = sorted(op for op in facts["ops"] if op in NON_DIFFERENTIABLE)
        t0 = time.time()
        bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
        clip_bpe.write_tokenizer(bpe, out / "tokenizer.json")
        timings["tokenizer"] = round(time.time() - t0, 1)
        vers = versions()

        checks = None
        failed = []
        card = clip_card.build_card(loaded=loaded, out=out, config_dir=config_dir, towers=towers, versions=vers,
                                    checks=None, timings=timings, command=command)
        clip_card.write_card(card, out / "card.yaml")
        if args.check:
            checks, failed = run_checks(args, loaded, out, config_dir, timings)
            write_doctor_check(args, card, out, checks, failed)
            card["checks"] = checks
            card["timings_s"] = timings
            clip_card.write_card(card, out / "card.yaml")
        sizes = ", ".join(f"{k} {v['bytes'] / 1e6:.1f} MB" for k, v in card["files"].items())
        print(f"wrote {out}/: {sizes}, card.yaml")
        if failed:
            print("CHECK FAILED: " + "; ".join(failed), file=sys.stderr)
            return 1
        if args.check:
            print("checks passed (see card.yaml: checks)")
        return 0
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def run_checks(args, loaded, out: Path, config_dir: Path, timings: dict):
    import clip_checks
    checks: dict = {}
    failed: list[str] = []
    t0 = time.time()
    par = clip_checks.tower_parity(loaded, out / "image.onnx", out / "text.onnx", args.threads, args.seed)
    checks["towers_onnx_vs_pytorch"] = par
    for tower in ("image", "text"):
        e = par[tower]["onnx_vs_torch_fp32"]
        if not e["max_abs"] <= TOL_EMBED_MAX_ABS:
            failed.append(f"{tower} tower: max abs error {e['max_abs']:.3g} > {TOL_EMBED_MAX_ABS}")
    timings["check_parity"] = round(time.time() - t0, 1)
    t0 = time.time()
    # Every mismatch on the prompt list and the ImageNet prompts fails; on random strings only those
    # without a documented cause (ftfy's mojibake repair, rare HTML entities).
    def tok_failures(tok, where):
        if tok.get("status") == "FAIL":
            return [f"tokenizer ({where}): {tok.get('error')}"]
        if "prompt_list" not in tok:
            return []
        bad = []
        for name in ("prompt_list", "imagenet_prompts", "random_strings"):
            r = tok[name]
            n = r["mismatches_unexplained"] if name == "random_strings" else r["mismatches"]
            if n or not r["special_tokens_mask_and_attention_mask_ok"]:
                bad.append(f"tokenizer ({where}): {n} mismatches on {name.replace('_', ' ')}")
        return bad
    tok = clip_checks.tokenizer_checks(out / "tokenizer.json", loaded.name, args.fuzz_texts, args.seed)
    checks["tokenizer_vs_open_clip"] = tok
    failed += tok_failures(tok, "Python tokenizers")
    zoom = clip_checks.find_zoom(args.zoom)
    rust = clip_checks.rust_tokenizer_checks(out / "tokenizer.json", loaded.name, args.fuzz_texts, args.seed, zoom)
    checks["tokenizer_in_zoom_rust_build_vs_open_clip"] = rust
    failed += tok_failures(rust, "zoom's Rust build")
    if rust.get("status", "").startswith("SKIPPED"):
        failed.append("the tokenizer was not checked in zoom's Rust build (" + rust["status"] + ")")
    timings["check_tokenizer"] = round(time.time() - t0, 1)
    t0 = time.time()
    z = clip_checks.zoom_checks(zoom, loaded, out / "image.onnx", out / "text.onnx", out / "tokenizer.json",
                                args.threads, args.seed)
    checks["zoom"] = z
    if zoom is None:
        failed.append("zoom binary not found: the zoom checks did not run (--zoom BIN)")
    else:
        for k in ("inspect_image", "inspect_text"):
            if not z.get(k, {}).get("ok"):
                failed.append(f"zoom {k.replace('_', ' ')} failed")
        g = z.get("grad_image", {})
        if not g.get("builds"):
            failed.append("zoom grad of image.onnx failed: " + g.get("stderr", "")[-300:])
        else:
            if g["vjp_vs_torch_fp64_autograd"]["rel_l2"] > TOL_GRAD_REL:
                failed.append(f"VJP vs autograd rel error {g['vjp_vs_torch_fp64_autograd']['rel_l2']:.3g}")
            worst = max(d["fd_torch_fp64"]["rel_err"] for d in g["finite_differences"])
            if worst > TOL_FD_REL:
                failed.append(f"VJP vs finite differences rel error {worst:.3g}")
        rt = z.get("run_text", {})
        if not rt.get("ok") or rt.get("vs_torch_fp32", {}).get("max_abs", 1) > TOL_EMBED_MAX_ABS:
            failed.append("zoom run text.onnx failed or differs")
    timings["check_zoom"] = round(time.time() - t0, 1)
    checks["tolerances"] = {"embedding_max_abs": TOL_EMBED_MAX_ABS, "vjp_rel_l2_vs_autograd": TOL_GRAD_REL,
                            "vjp_rel_vs_fd_fp64": TOL_FD_REL}
    checks["verdict"] = "pass" if not failed else "FAIL: " + "; ".join(failed)
    return checks, failed


def write_doctor_check(args, card: dict, out: Path, checks: dict, failed: list) -> None:
    """`zoom doctor` on a config that uses the card's clip: block with the demo generator and target
    (when the repo has them): zoom parses and validates the block and loads both towers."""
    import clip_checks
    import yaml
    zoom = clip_checks.find_zoom(args.zoom)
    demo = REPO / "configs/demo-gender.yaml"
    if zoom is None or not demo.is_file():
        checks["zoom"]["doctor_config"] = {"status": "SKIPPED (no zoom binary or no configs/demo-gender.yaml)"}
        return
    cfg = yaml.safe_load(demo.read_text(encoding="utf-8"))
    block = dict(card["config"]["clip"])
    base = (args.config_dir or Path.cwd()).resolve()
    for k in ("image", "text", "tokenizer"):
        block[k] = str((base / block[k]).resolve())
    cfg["clip"] = block
    for sect, keys in (("generator", ("model", "card")), ("target", ("model",))):
        for k in keys:
            cfg[sect][k] = str((demo.parent / cfg[sect][k]).resolve())
    cfg.pop("output", None)
    import tempfile
    with tempfile.TemporaryDirectory(prefix="zoom-clip-doctor-") as d:
        p = Path(d) / "config.yaml"
        p.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        res = clip_checks.zoom_doctor(zoom, p, args.threads)
    res["config"] = "configs/demo-gender.yaml with clip: replaced by this card's block"
    checks["zoom"]["doctor_config"] = res
    if not res.get("ok"):
        failed.append("zoom doctor rejected the card's clip: block")
        checks["verdict"] = "FAIL: " + "; ".join(failed)


if __name__ == "__main__":
    sys.exit(main())
