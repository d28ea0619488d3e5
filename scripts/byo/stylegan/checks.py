"""Channel statistics and the --check measurements: ONNX vs PyTorch parity, forward time, `zoom grad`,
and the gradient graph against torch autograd and central finite differences."""
from __future__ import annotations

import gc
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from .graph import ContractModule

ROOT = Path(__file__).resolve().parents[3]


# --------------------------------------------------------------------------------------------------
# channel_scale


@torch.no_grad()
def channel_scale(module: ContractModule, samples: int, seed: int, log) -> tuple[np.ndarray, dict]:
    """Sample std (ddof=1) of the unedited style over `samples` z ~ N(0, I) from numpy default_rng(seed).

    Only mapping + affine layers run (no synthesis), so 1000+ samples are cheap. Channels whose std is
    not a positive finite number are floored (card.rs requires > 0) and counted."""
    if samples < 2:
        raise ValueError("--scale-samples must be at least 2")
    rng = np.random.default_rng(seed)
    z_all = rng.standard_normal((samples, module.z_dim), dtype=np.float32)
    s1 = np.zeros(module.style_dim)
    s2 = np.zeros(module.style_dim)
    t0 = time.time()
    for i in range(0, samples, 256):
        _, styles = module.unedited_styles(torch.from_numpy(z_all[i:i + 256]))
        s = torch.cat(styles, dim=1).double().numpy()
        s1 += s.sum(0)
        s2 += (s * s).sum(0)
    mean = s1 / samples
    var = np.maximum(s2 - samples * mean * mean, 0.0) / (samples - 1)
    std = np.sqrt(var)
    ok = np.isfinite(std) & (std > 0)
    floor = 1e-3 * float(np.median(std[ok])) if ok.any() else 1e-6
    floored = ok & (std < floor)
    bad = ~ok | floored
    std = np.where(bad, floor, std)
    log(f"channel_scale over {samples} samples in {time.time() - t0:.1f} s; {int(bad.sum())} channels floored")
    info = {"method": f"sample std (ddof=1) of `style` over {samples} samples, z ~ N(0, I) from numpy "
                      f"default_rng({seed}).standard_normal(float32), edit = 0; computed in PyTorch "
                      "(mapping + affine layers only)",
            "floored_channels": int(bad.sum()),
            "floor": float(floor),
            "floor_rule": "channels with std not > 0, or < 1e-3 x the median std, are set to 1e-3 x the median std"}
    return std.astype(np.float32), info


# --------------------------------------------------------------------------------------------------
# helpers


def _session(path: Path, threads: int, optimize: bool = True, arena: bool = False) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.enable_cpu_mem_arena = arena  # off: give memory back between runs (the 256 px SG3 VJP peaks at several GB)
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if threads > 0:
        so.intra_op_num_threads = threads
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _err(got: np.ndarray, ref: np.ndarray) -> dict:
    d = np.abs(got.astype(np.float64) - ref.astype(np.float64))
    peak = float(np.abs(ref).max())
    return {"max_abs": float(d.max()), "max_rel": float(d.max() / peak) if peak > 0 else float("nan"),
            "ref_max_abs": peak}


def unit_direction(rng, scale: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A random direction like zoom's: σ-scaled, restricted to `mask`, unit L2."""
    d = rng.standard_normal(scale.shape) * scale * mask
    return (d / np.linalg.norm(d)).astype(np.float32)


def editable_mask(module: ContractModule) -> np.ndarray:
    m = np.zeros(module.style_dim, dtype=bool)
    for layer, (a, b) in zip(module.layers, module.spans):
        m[a:b] = layer.editable
    return m


def find_zoom(explicit: str | None) -> str | None:
    for cand in [explicit, os.environ.get("ZOOM_BIN"), shutil.which("zoom"),
                 str(ROOT / "target" / "release" / "zoom"), str(ROOT / "target" / "debug" / "zoom")]:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def _zoom_env() -> dict:
    env = dict(os.environ)
    lib = ROOT / ".ort" / "lib" / "libonnxruntime.so"
    if "ORT_DYLIB_PATH" not in env and lib.is_file():
        env["ORT_DYLIB_PATH"] = str(lib)
    return env


# --------------------------------------------------------------------------------------------------
# the checks


@torch.no_grad()
def parity(module: ContractModule, onnx_path: Path, scale: np.ndarray, bound: float, seed: int, threads: int,
           log) -> dict:
    """ONNX vs the PyTorch module it was exported from, and vs the untouched official forward."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((2, module.z_dim), dtype=np.float32)
    mask = editable_mask(module)
    edits = {
        "zero": np.zeros((2, module.style_dim), np.float32),
        "editable_at_bound": np.stack([bound * unit_direction(rng, scale, mask) for _ in range(2)]),
        "all_channels_1sigma": (rng.standard_normal((2, module.style_dim)) * scale).astype(np.float32),
    }
    sess = _session(onnx_path, threads)
    ref_fn = getattr(module.gen, "reference", None)
    out = {"inputs": f"2 z from default_rng({seed}); edits: zero; B x a random σ-scaled unit direction over the "
                     "editable channels (B = default_bound); N(0,1) x channel_scale on every channel incl. ToRGB",
           "metric": "max_abs = max |onnx - ref|; max_rel = max_abs / max |ref| (per output)",
           "cases": {}}
    worst = {"image_vs_torch": 0.0, "style_vs_torch": 0.0}
    onnx_out = {name: sess.run(["image", "style"], {"z": z, "edit": e}) for name, e in edits.items()}
    del sess
    gc.collect()
    for name, e in edits.items():
        img_o, sty_o = onnx_out[name]
        img_t, sty_t = module(torch.from_numpy(z), torch.from_numpy(e))
        case = {"image_vs_torch": _err(img_o, img_t.numpy()), "style_vs_torch": _err(sty_o, sty_t.numpy())}
        if ref_fn is not None:
            img_r, sty_r = ref_fn(torch.from_numpy(z), torch.from_numpy(e), module.truncation_psi,
                                  module.truncation_cutoff)
            if module.clamp:
                img_r = img_r.clamp(-1, 1)
            case["image_vs_official"] = _err(img_o, img_r.numpy())
            case["style_vs_official"] = _err(sty_o, sty_r.numpy())
            case["torch_nonfused_vs_official_fused_image"] = _err(img_t.numpy(), img_r.numpy())
        if name != "zero":
            case["style_ignores_edit_max_abs"] = float(np.abs(sty_o - out["cases"]["zero"]["_style"]).max())
        case["_style"] = sty_o
        out["cases"][name] = case
        for k in list(worst):
            worst[k] = max(worst[k], case[k]["max_rel"])
        for k in ("image_vs_official", "style_vs_official"):
            if k in case:
                worst[k] = max(worst.get(k, 0.0), case[k]["max_rel"])
        log(f"parity [{name}]: image max_rel {case['image_vs_torch']['max_rel']:.2e} (torch)"
            + (f", {case['image_vs_official']['max_rel']:.2e} (official fused)" if "image_vs_official" in case else "")
            + f"; style max_rel {case['style_vs_torch']['max_rel']:.2e}")
    for case in out["cases"].values():
        case.pop("_style")
    out["worst_max_rel"] = worst
    img0 = onnx_out["zero"][0]
    out["image_range_zero_edit"] = [float(img0.min()), float(img0.max())]
    return out


def forward_time(onnx_path: Path, z_dim: int, style_dim: int, threads: int) -> dict:
    sess = _session(onnx_path, threads, arena=True)  # as a long-running consumer would run it
    res = {}
    for batch, reps in ((1, 3), (4, 1)):
        z = np.random.default_rng(1).standard_normal((batch, z_dim), dtype=np.float32)
        e = np.zeros((batch, style_dim), np.float32)
        sess.run(None, {"z": z, "edit": e})
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            sess.run(None, {"z": z, "edit": e})
            times.append(time.perf_counter() - t0)
        res[f"batch_{batch}_seconds_per_image"] = float(f"{float(np.median(times)) / batch:.3g}")
    res["provider"] = "CPUExecutionProvider"
    res["threads"] = threads if threads > 0 else f"onnxruntime default ({os.cpu_count()} cores visible)"
    return res


def zoom_grad(onnx_path: Path, module: ContractModule, zoom_bin: str | None, work: Path, log) -> dict:
    if zoom_bin is None:
        return {"built": False, "reason": "no zoom binary (pass --zoom PATH or set ZOOM_BIN); gradient checks skipped"}
    grad_path = work / "grad.onnx"
    cmd = [zoom_bin, "grad", str(onnx_path), "--wrt", "edit", "--of", "image",
           "--shape", f"z=1x{module.z_dim}", "--shape", f"edit=1x{module.style_dim}", "-o", str(grad_path)]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=_zoom_env())
    dt = time.time() - t0
    shown = " ".join(["zoom"] + cmd[1:3] + ["--wrt edit --of image", f"--shape z=1x{module.z_dim}",
                                             f"--shape edit=1x{module.style_dim}", "-o grad.onnx"])
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        log(f"zoom grad FAILED: {' | '.join(msg[-5:])}")
        return {"built": False, "command": shown, "exit_code": r.returncode, "message": "\n".join(msg[-10:])}
    import onnx
    g = onnx.load(str(grad_path), load_external_data=False)
    import collections
    ops = collections.Counter(n.op_type for n in g.graph.node)
    summary = (r.stdout + r.stderr).strip().splitlines()
    log(f"zoom grad built in {dt:.1f} s: {len(g.graph.node)} nodes")
    return {"built": True, "command": shown, "seconds": round(dt, 1), "nodes": len(g.graph.node),
            "bytes": grad_path.stat().st_size, "ops": dict(sorted(ops.items())),
            "zoom_says": summary[-1] if summary else "", "path": str(grad_path)}


def gradient_checks(module: ContractModule, onnx_path: Path, grad_path: Path, scale: np.ndarray, bound: float,
                    seed: int, threads: int, log) -> dict:
    """zoom's VJP graph vs torch autograd (exact) and vs central finite differences of the ONNX forward."""
    rng = np.random.default_rng(seed + 1)
    mask = editable_mask(module)
    z = rng.standard_normal((1, module.z_dim), dtype=np.float32)
    fwd = _session(onnx_path, threads)
    img0 = fwd.run(["image"], {"z": z, "edit": np.zeros((1, module.style_dim), np.float32)})[0]
    ct = rng.standard_normal(img0.shape).astype(np.float32)
    points = {"edit_zero": np.zeros((1, module.style_dim), np.float32),
              "edit_half_bound": (0.5 * bound * unit_direction(rng, scale, mask))[None]}
    random_dirs = {"random_editable": unit_direction(rng, scale, mask),
                   "random_all_channels": unit_direction(rng, scale, np.ones_like(mask))}
    nudges = {p: 1e-6 * rng.standard_normal(e.shape) for p, e in points.items()}
    # One big thing in memory at a time: each VJP session, then torch autograd, then the FD runs.
    vjp, vjp_plain, auto, auto_nudged = {}, {}, {}, {}
    for optimize, dest in ((True, vjp), (False, vjp_plain)):
        gsess = _session(grad_path, threads, optimize=optimize)
        for pname, e0 in points.items():
            dest[pname] = gsess.run(["edit_grad"], {"z": z, "edit": e0, "image_grad": ct})[0][0].astype(np.float64)
        del gsess
        gc.collect()

    # torch autograd on the exported module, at e0 and at e0 + 1e-6 N(0, 1)
    def autograd(e_np):
        with torch.enable_grad():
            et = torch.from_numpy(e_np.astype(np.float32)).requires_grad_(True)
            img, _ = module(torch.from_numpy(z), et)
            (img * torch.from_numpy(ct)).sum().backward()
        return et.grad.numpy()[0].astype(np.float64)
    for pname, e0 in points.items():
        auto[pname] = autograd(e0)
        auto_nudged[pname] = autograd(e0 + nudges[pname])
        gc.collect()
    steps = [0.05, 0.01, 0.003, 0.001]
    out = {"setup": f"1 z, cotangent ct ~ N(0,1) on image, seed {seed + 1}; points: edit 0 and 0.5 B along a random "
                    "direction. FD = (<ct, f(e+hd)> - <ct, f(e-hd)>) / 2h from the ONNX forward (float32 "
                    "onnxruntime, inner products in float64) at h = 0.05 (zoom's default fd_step), 0.01, 0.003, "
                    "0.001, along d = the VJP itself restricted to the editable channels (unit; FD must give its "
                    "norm: checks magnitude and direction), and σ-scaled random unit directions over the editable "
                    "channels and over all channels (FD must match vjp.d)",
           "metrics": "vs_torch_autograd: rel_l2 = |vjp - autograd| / |autograd| (torch autograd through the same "
                      "PyTorch module); fp32_noise_floor_rel_l2 = the same zoom VJP graph run by onnxruntime with "
                      "all graph optimisations vs none; kink_sensitivity_rel_l2 = torch autograd at e vs at "
                      "e + 1e-6 N(0,1) (leaky-ReLU/clamp kinks make the exact gradient jump under fp32-sized "
                      "changes). FD: rel = |fd - vjp.d| / max(|fd|, |vjp.d|); rel_to_grad_norm = |fd - vjp.d| / "
                      "|vjp| (random directions are nearly orthogonal to the gradient, so their plain rel can be "
                      "large at fp32 noise); best = the smallest over h (fp32 FD trades truncation and kinks "
                      "against round-off)",
           "points": {}}
    worst = {"vs_torch_autograd_rel_l2": 0.0, "fp32_noise_floor_rel_l2": 0.0, "kink_sensitivity_rel_l2": 0.0,
             "fd_vjp_direction_best_rel": 0.0, "fd_random_best_rel_to_grad_norm": 0.0,
             "fd_random_best_rel": 0.0, "fd_vjp_direction_rel_at_h_0.05": 0.0}
    for pname, e0 in points.items():
        g, g_plain, ga, ga_nudged = vjp[pname], vjp_plain[pname], auto[pname], auto_nudged[pname]
        ad = {"rel_l2": float(np.linalg.norm(g - ga) / np.linalg.norm(ga)),
              "max_abs_over_max": float(np.abs(g - ga).max() / np.abs(ga).max()),
              "fp32_noise_floor_rel_l2": float(np.linalg.norm(g - g_plain) / np.linalg.norm(g)),
              "kink_sensitivity_rel_l2": float(np.linalg.norm(ga_nudged - ga) / np.linalg.norm(ga)),
              "editable_rel_l2": float(np.linalg.norm((g - ga)[mask]) / np.linalg.norm(ga[mask])),
              "torgb_rel_l2": float(np.linalg.norm((g - ga)[~mask]) / np.linalg.norm(ga[~mask])) if (~mask).any() else None,
              "torgb_grad_norm_share": float(np.linalg.norm(ga[~mask]) / np.linalg.norm(ga))}
        for k in ("fp32_noise_floor_rel_l2", "kink_sensitivity_rel_l2"):
            worst[k] = max(worst[k], ad[k])
        worst["vs_torch_autograd_rel_l2"] = max(worst["vs_torch_autograd_rel_l2"], ad["rel_l2"])
        gnorm = float(np.linalg.norm(g))
        gm = g * mask
        dirs = {"vjp_direction": (gm / np.linalg.norm(gm)).astype(np.float32), **random_dirs}
        fd_res = {}
        for dname, d in dirs.items():
            an = float(g @ d.astype(np.float64))
            per_h = {}
            for h in steps:
                batch = np.concatenate([e0 + h * d[None], e0 - h * d[None]]).astype(np.float32)
                im = fwd.run(["image"], {"z": np.repeat(z, 2, axis=0), "edit": batch})[0].astype(np.float64)
                fd = float(((im[0] - im[1]) * ct[0]).sum() / (2 * h))
                per_h[f"h={h:g}"] = {"fd": fd, "rel": abs(fd - an) / max(abs(fd), abs(an), 1e-30),
                                     "rel_to_grad_norm": abs(fd - an) / max(gnorm, 1e-30)}
            best = min(v["rel"] for v in per_h.values())
            best_g = min(v["rel_to_grad_norm"] for v in per_h.values())
            if dname == "vjp_direction":
                worst["fd_vjp_direction_best_rel"] = max(worst["fd_vjp_direction_best_rel"], best)
                worst["fd_vjp_direction_rel_at_h_0.05"] = max(worst["fd_vjp_direction_rel_at_h_0.05"],
                                                              per_h["h=0.05"]["rel"])
            else:
                worst["fd_random_best_rel"] = max(worst["fd_random_best_rel"], best)
                worst["fd_random_best_rel_to_grad_norm"] = max(worst["fd_random_best_rel_to_grad_norm"], best_g)
            fd_res[dname] = {"vjp_dot_d": an, "best_rel": best, "best_rel_to_grad_norm": best_g, **per_h}
        out["points"][pname] = {"grad_norm": gnorm, "vs_torch_autograd": ad, "vs_finite_differences": fd_res}
        log(f"grad [{pname}]: vs autograd rel_l2 {ad['rel_l2']:.2e} (fp32 noise floor "
            f"{ad['fp32_noise_floor_rel_l2']:.1e}, kinks {ad['kink_sensitivity_rel_l2']:.1e}); FD best rel: "
            + ", ".join(f"{k} {v['best_rel']:.1e}" for k, v in fd_res.items())
            + "; random dirs rel to |vjp|: " + ", ".join(f"{v['best_rel_to_grad_norm']:.1e}"
                                                         for k, v in fd_res.items() if k != "vjp_direction"))
    out["worst"] = worst
    return out


def run_all(module: ContractModule, onnx_path: Path, scale: np.ndarray, bound: float, seed: int, threads: int,
            zoom_bin: str | None, keep_grad: Path | None, log) -> dict:
    res = {"parity": parity(module, onnx_path, scale, bound, seed, threads, log)}
    res["forward_time"] = forward_time(onnx_path, module.z_dim, module.style_dim, threads)
    log(f"forward: {res['forward_time']}")
    with tempfile.TemporaryDirectory(prefix="zoom-sg-grad-") as tmp:
        work = Path(tmp)
        zg = zoom_grad(onnx_path, module, zoom_bin, work, log)
        if zg.get("built"):
            res["gradient"] = gradient_checks(module, onnx_path, Path(zg["path"]), scale, bound, seed, threads, log)
            if keep_grad is not None:
                shutil.copyfile(zg["path"], keep_grad)
                zg["kept_at"] = str(keep_grad)
        zg.pop("path", None)
        res["zoom_grad"] = zg
    return res
