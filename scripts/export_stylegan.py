#!/usr/bin/env python3
"""Export a StyleGAN2-ADA / StyleGAN3 generator to zoom's generator contract (ONNX + card.yaml).

    .venv-byo/bin/python scripts/export_stylegan.py \\
        (--pkl FILE --stylegan-repo DIR | --module FILE.py:FACTORY | --random-weights ARCH --stylegan-repo DIR [--seed S]) \\
        --out DIR [--truncation-psi 0.7] [--truncation-cutoff 8] [--default-bound 30] [--scale-samples 1000] \\
        [--opset 17] [--class-index K] [--clamp] [--check [--zoom PATH]]

Writes DIR/model.onnx — inputs z [N, Z], edit [N, S] (additive StyleSpace offset, zeros = unedited);
outputs image [N, 3, H, W] (raw synthesis output, about [-1, 1], not clamped unless --clamp) and style
[N, S] (the unedited StyleSpace code) — and DIR/card.yaml. Truncation ψ / cutoff are baked into the graph.
Modulated convolutions are exported non-fused (constant kernels), noise is constant, everything fp32.

--pkl: an official network pickle (the training loop's dict with G_ema, or a bare generator); the
official code is imported from --stylegan-repo (your checkout of NVlabs/stylegan3 or
NVlabs/stylegan2-ada-pytorch), nothing of it is vendored here. --random-weights: the official class with
random weights (TESTS ONLY; the pickle is written to DIR/random-weights.pkl and loaded back through the
--pkl path). --module: any PyTorch module with the interface in scripts/byo/stylegan/interface.py.
--check: ONNX vs PyTorch parity (and vs the untouched official forward), CPU forward time, `zoom grad`
on the graph, and the gradient against torch autograd and central finite differences; all into the card.
See scripts/byo/stylegan/README.md. Exit status: 0 ok, 1 failure (or a failed check), 2 usage error.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # models.fetch (sha256_file)
sys.path.insert(0, str(HERE / "byo"))

try:
    import numpy as np
    import onnx
    import onnxruntime
    import torch
    import yaml
except ImportError as e:  # pragma: no cover
    sys.exit(f"export_stylegan.py: missing Python package {e.name!r}; use the developer venv:\n"
             "  bash scripts/byo/setup.sh && .venv-byo/bin/python scripts/export_stylegan.py ...")

from stylegan import card as cardmod  # noqa: E402
from stylegan import checks, graph, interface, official  # noqa: E402

# Acceptance limits for --check (a failed one makes the exit status 1). Parity is fp32-level. The VJP is
# compared with torch autograd in relative L2; on random 256 px weights the demodulated layers' style
# gradients move by ~3e-3 under fp32 summation-order changes or 1e-6 nudges of the edit (leaky-ReLU and
# clamp kinks), which the check measures alongside, hence 1e-2. Finite differences are in fp32: along the
# VJP itself they must agree to 1e-2 (best step), along random directions (nearly orthogonal to the
# gradient) the error is measured against |VJP|. A wrong gradient rule gives O(1) errors in either.
LIMITS = {"image_vs_torch_max_rel": 1e-4, "image_vs_official_max_rel": 1e-3, "style_max_rel": 1e-5,
          "grad_vs_autograd_rel_l2": 1e-2,
          "fd_vjp_direction_best_rel": 1e-2, "fd_random_best_rel_to_grad_norm": 1e-2}


def log(msg: str) -> None:
    print(f"[export_stylegan] {msg}", file=sys.stderr, flush=True)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="See scripts/byo/stylegan/README.md.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--pkl", metavar="FILE", help="official network pickle (dict with G_ema, as the training loop writes)")
    src.add_argument("--module", metavar="FILE.py:FACTORY", help="FILE.py:FACTORY returning a generator with the documented interface")
    src.add_argument("--random-weights", metavar="ARCH", choices=list(official.RANDOM_ARCHS),
                     help="TESTS ONLY: official class with random weights; one of " + ", ".join(official.RANDOM_ARCHS))
    p.add_argument("--stylegan-repo", metavar="DIR", help="your checkout of NVlabs/stylegan3 or NVlabs/stylegan2-ada-pytorch")
    p.add_argument("--seed", type=int, metavar="S", default=None, help="seed of --random-weights (default 0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (model.onnx, card.yaml)")
    p.add_argument("--name", help="card name (default: the output folder's name)")
    p.add_argument("--truncation-psi", type=float, metavar="PSI", default=0.7, help="ψ baked into the graph (default 0.7; 1 = none)")
    p.add_argument("--truncation-cutoff", default="8", metavar="K",
                   help="truncate the first K W+ rows (default 8, as ZOOM); 'none' = all rows")
    p.add_argument("--class-index", type=int, metavar="K", help="conditional generators: the class whose one-hot label is baked in")
    p.add_argument("--clamp", action="store_true", help="clamp the image to [-1, 1] in the graph (default: raw output)")
    p.add_argument("--default-bound", type=float, metavar="B", default=30.0, help="card default_bound B (ZOOM: 30)")
    p.add_argument("--scale-samples", type=int, metavar="N", default=1000, help="samples for channel_scale (default 1000)")
    p.add_argument("--scale-seed", type=int, metavar="S", default=2324, help="seed for channel_scale's z (default 2324, as ZOOM's extract)")
    p.add_argument("--opset", type=int, metavar="V", default=17, help="ONNX opset, 17..21 (default 17)")
    p.add_argument("--external-data", action="store_true",
                   help="weights in DIR/model.onnx.data (automatic when the graph would exceed 2 GiB)")
    p.add_argument("--check", action="store_true", help="parity, forward time, zoom grad, gradient vs autograd and FD")
    p.add_argument("--check-seed", type=int, metavar="S", default=0)
    p.add_argument("--zoom", metavar="PATH", help="zoom binary for --check (default: $ZOOM_BIN, PATH, target/release/zoom)")
    p.add_argument("--keep-grad", action="store_true", help="keep the gradient graph as DIR/grad-check.onnx")
    p.add_argument("--threads", type=int, metavar="N", default=0, help="torch/onnxruntime threads (0 = default)")
    a = p.parse_args(argv)
    if (a.pkl or a.random_weights) and not a.stylegan_repo:
        p.error("--pkl and --random-weights need --stylegan-repo DIR (your checkout of the official code)")
    if a.class_index is not None and a.module:
        p.error("--class-index applies to official pickles; a --module bakes its own conditioning")
    if a.seed is not None and not a.random_weights:
        p.error("--seed only applies to --random-weights")
    if not 0.0 <= a.truncation_psi <= 2.0:
        p.error("--truncation-psi must be in [0, 2] (1 = no truncation)")
    if a.truncation_cutoff.lower() in ("none", "all"):
        a.truncation_cutoff = None
    else:
        try:
            a.truncation_cutoff = int(a.truncation_cutoff)
        except ValueError:
            p.error("--truncation-cutoff must be an integer or 'none'")
        if a.truncation_cutoff < 1:
            p.error("--truncation-cutoff must be >= 1 (or 'none')")
    if not (a.default_bound > 0 and np.isfinite(a.default_bound)):
        p.error("--default-bound must be a positive number")
    if a.scale_samples < 2:
        p.error("--scale-samples must be at least 2")
    if not 17 <= a.opset <= 21:
        p.error("--opset must be between 17 and 21 (zoom's gradient builder is tested on 13..21; "
                "the exporter starts from 18)")
    return a


def load_generator(a, out: Path):
    """→ (generator with the interface, family, source section of the card, licence, repo info)."""
    repo = official.import_official(a.stylegan_repo) if a.stylegan_repo else None
    if a.module:
        gen, info = interface.load_module(a.module)
        extra = getattr(gen, "card_info", None)
        source = {"kind": "plain PyTorch module (scripts/byo/stylegan/interface.py)", **info}
        if isinstance(extra, dict):
            source.update(official._plain(extra))
        lic = {"module": (extra or {}).get("licence", "not declared by the module; check the weights' terms")}
        return gen, "module", source, lic, repo
    if a.random_weights:
        seed = 0 if a.seed is None else a.seed
        pkl = out / "random-weights.pkl"
        log(f"building {a.random_weights} with RANDOM weights (seed {seed}) -> {pkl}")
        rinfo = official.build_random(a.random_weights, seed, repo, pkl)
        G, pinfo = official.load_pickle(pkl)
        source = {"kind": "RANDOM WEIGHTS (test only): official class, random init, pickled and loaded back",
                  "random_weights": rinfo, "pickle": pinfo}
    else:
        G, pinfo = official.load_pickle(a.pkl)
        source = {"kind": "official network pickle", "pickle": pinfo}
    gen = official.OfficialGenerator(G, class_index=a.class_index)
    source["official_code"] = {"path": repo.path, "git_commit": repo.commit, "dirty": repo.dirty,
                               "flavour": repo.flavour, **({"notes": repo.notes} if repo.notes else {})}
    source["network"] = gen.describe(repo)
    lic = dict(cardmod.LICENCE_OFFICIAL)
    if a.random_weights:
        lic["weights"] = "random weights (no trained weights involved); the architecture comes from NVIDIA's code"
    return gen, gen.kind, source, lic, repo


def limits_report(res: dict) -> dict:
    fails = []
    par = res["parity"]["worst_max_rel"]
    if par["image_vs_torch"] > LIMITS["image_vs_torch_max_rel"]:
        fails.append(f"image vs torch max_rel {par['image_vs_torch']:.2e} > {LIMITS['image_vs_torch_max_rel']}")
    if "image_vs_official" in par and par["image_vs_official"] > LIMITS["image_vs_official_max_rel"]:
        fails.append(f"image vs official max_rel {par['image_vs_official']:.2e} > {LIMITS['image_vs_official_max_rel']}")
    for k in ("style_vs_torch", "style_vs_official"):
        if k in par and par[k] > LIMITS["style_max_rel"]:
            fails.append(f"{k} max_rel {par[k]:.2e} > {LIMITS['style_max_rel']}")
    if not res["zoom_grad"].get("built"):
        fails.append("zoom grad did not build: " + res["zoom_grad"].get("reason", res["zoom_grad"].get("message", "")))
    if "gradient" in res:
        w = res["gradient"]["worst"]
        if w["vs_torch_autograd_rel_l2"] > LIMITS["grad_vs_autograd_rel_l2"]:
            fails.append(f"gradient vs autograd rel_l2 {w['vs_torch_autograd_rel_l2']:.2e} > {LIMITS['grad_vs_autograd_rel_l2']}")
        if w["fd_vjp_direction_best_rel"] > LIMITS["fd_vjp_direction_best_rel"]:
            fails.append(f"FD along the VJP: best rel {w['fd_vjp_direction_best_rel']:.2e} > "
                         f"{LIMITS['fd_vjp_direction_best_rel']}")
        if w["fd_random_best_rel_to_grad_norm"] > LIMITS["fd_random_best_rel_to_grad_norm"]:
            fails.append(f"FD along random directions: best error / |vjp| {w['fd_random_best_rel_to_grad_norm']:.2e} > "
                         f"{LIMITS['fd_random_best_rel_to_grad_norm']}")
    return {"limits": LIMITS, "passed": not fails, "failures": fails}


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    out = Path(a.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    try:
        gen, family, source, licence, repo = load_generator(a, out)
        layers = interface.check_interface(gen)
    except (official.ExportError, interface.InterfaceError) as e:
        log(f"error: {e}")
        return 2
    module = graph.ContractModule(gen, layers, a.truncation_psi, a.truncation_cutoff, clamp=a.clamp).eval()
    log(f"{family}: z_dim {module.z_dim}, style_dim {module.style_dim} in {len(layers)} layers "
        f"({sum(l.channels for l in layers if l.editable)} editable)")
    # A first forward in PyTorch: shapes and finiteness, before spending time on the export.
    z1 = torch.randn(1, module.z_dim, generator=torch.Generator().manual_seed(0))
    try:
        img, sty = module(z1, torch.zeros(1, module.style_dim))
    except Exception as e:  # noqa: BLE001
        log(f"error: the PyTorch forward failed: {type(e).__name__}: {e}")
        return 1
    if img.ndim != 4 or img.shape[1] != 3 or sty.shape != (1, module.style_dim):
        log(f"error: forward gave image {tuple(img.shape)} and style {tuple(sty.shape)}; expected [1, 3, H, W] "
            f"and [1, {module.style_dim}]")
        return 1
    if not (torch.isfinite(img).all() and torch.isfinite(sty).all()):
        log("error: the PyTorch forward produced non-finite values")
        return 1
    H, W = int(img.shape[2]), int(img.shape[3])

    scale, scale_info = checks.channel_scale(module, a.scale_samples, a.scale_seed, log)

    model_path = out / "model.onnx"
    try:
        exp = graph.export(module, model_path, a.opset, log, external_data=a.external_data)
    except Exception as e:  # noqa: BLE001
        log(f"error: export failed: {type(e).__name__}: {e}")
        return 1
    size = model_path.stat().st_size + (os.path.getsize(str(model_path) + ".data") if exp["external_data"] else 0)
    log(f"wrote {model_path} ({size / 2**20:.1f} MiB, opset {a.opset}, {exp['nodes']} nodes)")

    is_random = bool(a.random_weights)
    arch = {"module": "a plain PyTorch module (see source)",
            "stylegan2": "StyleGAN2 generator (official NVlabs code)",
            "stylegan3": "StyleGAN3 generator (official NVlabs code)"}[family]
    card = {"name": a.name or out.name, "kind": "generator",
            "architecture": f"{arch}, {H}x{W} RGB"}
    if is_random:
        card["WARNING"] = ("RANDOM WEIGHTS - TEST ONLY. This graph has the real architecture but untrained weights; "
                           "its images are noise-like and it must not be used for a diagnosis.")
    card["source"] = source
    card["licence"] = licence
    card["z_dim"] = module.z_dim
    card["style_dim"] = module.style_dim
    card["inputs"] = [
        {"name": "z", "shape": ["N", module.z_dim], "dtype": "float32", "semantics": "latent, sample from N(0, I)"},
        {"name": "edit", "shape": ["N", module.style_dim], "dtype": "float32",
         "semantics": "additive offset on the StyleSpace code (every layer's affine output), zeros = unedited"}]
    card["outputs"] = [
        {"name": "image", "shape": ["N", 3, H, W], "dtype": "float32",
         "semantics": ("RGB clamped to [-1, 1] in the graph (--clamp)" if a.clamp else
                       "RGB, raw synthesis output, nominally [-1, 1] and NOT clamped (as ZOOM feeds its "
                       "preprocessing; clamp downstream if a consumer needs it)")},
        {"name": "style", "shape": ["N", module.style_dim], "dtype": "float32",
         "semantics": "the unedited StyleSpace code of each sample (independent of edit)"}]
    card["truncation"] = {
        "psi": a.truncation_psi, "cutoff": a.truncation_cutoff if a.truncation_cutoff is not None else "all rows",
        "formula": "w_k = w_avg + psi * (w_k - w_avg) for the first `cutoff` W+ rows, other rows unchanged "
                   "(ZOOM: psi 0.7, cutoff 8); baked into the graph" if family != "module" else
                   "passed to the module's mapping(z, psi, cutoff); baked into the graph",
    }
    card["image"] = {"size": [H, W], "clamped": bool(a.clamp)}
    card["edit_space"] = cardmod.edit_space(layers, scale, family)
    card["channel_scale"] = [float(f"{v:.6g}") for v in scale]
    card["channel_scale_method"] = scale_info["method"]
    card["channel_scale_floor"] = {k: scale_info[k] for k in ("floored_channels", "floor", "floor_rule")}
    card["default_bound"] = a.default_bound
    card["default_bound_note"] = cardmod.DEFAULT_BOUND_NOTE if a.default_bound == 30.0 else \
        f"set with --default-bound {a.default_bound:g} (ZOOM's own value is 30)"
    card["export"] = {
        "exporter": f"torch.onnx.export(dynamo=True) at opset 18, torch {torch.__version__}",
        "seconds": exp["seconds"], "opset": a.opset, "opset_conversion": exp["opset_notes"] or "none",
        "modulated_convolutions": "non-fused: x * s -> conv with a constant kernel -> * demodulation(s)"
                                  + (" (official fused_modconv=False path)" if family == "stylegan2" else
                                     " (official modulated_conv2d swapped for a non-fused equivalent)"
                                     if family == "stylegan3" else " (the module's own)"),
        "noise": "constant (noise_mode='const': the noise buffers stored in the pickle x noise_strength)"
                 if family != "module" else "as the module defines it",
        "precision": "fp32 everywhere (force_fp32; fp16 blocks and their channels-last layout unused)"
                     if family != "module" else "fp32",
        "conv_clamp": "kept where the network has it (Clip ops)",
        "batch": "dynamic (N)", "external_data": exp["external_data"]}
    card["model"] = {"file": "model.onnx", "sha256": cardmod.sha256(model_path), "bytes": size,
                     **({"external_data": {"file": "model.onnx.data",
                                           "sha256": cardmod.sha256(Path(str(model_path) + ".data"))}}
                        if exp["external_data"] else {}),
                     "opset": a.opset, "nodes": exp["nodes"], "parameters": exp["params"],
                     "domains": exp["domains"], "ops": exp["ops"]}
    card["verification"] = "not run (export_stylegan.py --check)"
    card["provenance"] = {
        "made_by": "scripts/export_stylegan.py (scripts/byo/stylegan/)",
        "command": "export_stylegan.py " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:])),
        "tools": f"python {platform.python_version()}, torch {torch.__version__}, onnx {onnx.__version__}, "
                 f"onnxruntime {onnxruntime.__version__}, numpy {np.__version__}, PyYAML {yaml.__version__}"}
    cardmod.write(card, out / "card.yaml")

    status = 0
    if a.check:
        zoom_bin = checks.find_zoom(a.zoom)
        keep = out / "grad-check.onnx" if a.keep_grad else None
        try:
            res = checks.run_all(module, model_path, scale, a.default_bound, a.check_seed, a.threads, zoom_bin, keep, log)
        except Exception as e:  # noqa: BLE001
            log(f"error: --check failed: {type(e).__name__}: {e}")
            card["verification"] = f"--check crashed: {type(e).__name__}: {e}"
            cardmod.write(card, out / "card.yaml")
            return 1
        verdict = limits_report(res)
        par = res["parity"]["worst_max_rel"]
        summary = (f"parity max_rel image {par['image_vs_torch']:.1e} (vs torch)"
                   + (f", {par['image_vs_official']:.1e} (vs official fused forward)" if "image_vs_official" in par else "")
                   + f", style {par['style_vs_torch']:.1e}; ")
        if "gradient" in res:
            w = res["gradient"]["worst"]
            summary += (f"zoom grad builds; VJP vs autograd rel_l2 {w['vs_torch_autograd_rel_l2']:.1e} "
                        f"(fp32 noise floor {w['fp32_noise_floor_rel_l2']:.1e}, kink sensitivity {w['kink_sensitivity_rel_l2']:.1e}), "
                        f"FD along the VJP best rel {w['fd_vjp_direction_best_rel']:.1e} (h=0.05: "
                        f"{w['fd_vjp_direction_rel_at_h_0.05']:.1e}), along random directions best |error| / |vjp| "
                        f"{w['fd_random_best_rel_to_grad_norm']:.1e} (rel {w['fd_random_best_rel']:.1e})")
        else:
            summary += "zoom grad: " + ("built" if res["zoom_grad"].get("built") else "NOT built")
        summary += "" if verdict["passed"] else " -- FAILED: " + "; ".join(verdict["failures"])
        card["verification"] = {"summary": summary, "verdict": verdict, **res}
        cardmod.write(card, out / "card.yaml")
        log(summary)
        status = 0 if verdict["passed"] else 1
    log(f"done in {time.time() - t_start:.0f} s: {out / 'card.yaml'}")
    return status


if __name__ == "__main__":
    sys.exit(main())
