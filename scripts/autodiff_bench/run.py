#!/usr/bin/env python3
"""Side-by-side benchmark: zoom's gradient (VJP) graphs against the Python peer onnx-ad.

For every model (the random-weight architectures written by export_architectures.py, plus the real
demo models under onnx/), this script

1. fixes the model's input shapes (batch 1) and gives the same static forward file to both tools;
2. builds the VJP graph with `zoom grad` (the binary given by --zoom) and with onnx-ad's
   `reverse` (run as `python -m onnx_ad reverse` with the interpreter of its own venv,
   --onnxad-python); a failure of either tool is recorded with its error message;
3. checks each tool's input gradient against an independent reference: the PyTorch autograd
   gradient (float64) saved by export_architectures.py, or, for the demo models, central finite
   differences of a float64 copy of the model evaluated by the ONNX reference evaluator
   (onnx.reference; neither tool is involved) along random directions;
4. times the forward graph and both VJP graphs under the same onnxruntime (this interpreter's),
   CPU provider, intra/inter-op threads 1, ORT_ENABLE_ALL, interleaved round by round (order rotated
   every round), and reports per model the median over rounds of (VJP time / forward time) for each
   tool and of (onnx-ad VJP time / zoom VJP time), from process CPU time (wall time in the JSON).

Run it with .venv-byo/bin/python (onnxruntime 1.32.0); see README.md beside this file.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, numpy_helper

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GRAD_TOL = 1e-3  # relative error above which a gradient is flagged as wrong


@dataclass
class Spec:
    name: str
    path: str
    wrt: str
    of: list[str]
    shapes: dict[str, list[int]]
    reference: str                     # "torch" (npz) or "fd" (finite differences)
    npz: str | None = None
    note: str = ""
    convert_opset: int | None = None    # convert with onnx.version_converter before use
    expose: list[str] | None = None     # internal tensors to make the graph's outputs instead of its own


@dataclass
class ToolResult:
    ok: bool = False
    error: str = ""
    stage: str = ""
    path: str = ""
    nodes: int = 0
    build_s: float = 0.0
    grad_err: float | None = None
    seeds: dict[str, str] = field(default_factory=dict)
    grad_out: str = ""


# --------------------------------------------------------------------------------------------------
# Models


def demo_specs(root: str, batch: int = 1) -> list[Spec]:
    """The real demo models, their inputs at batch size `batch` (the diagnosis engine runs the
    target in batches of 8–32, so the cost ratio there is what a run pays)."""
    p = lambda *a: os.path.join(root, *a)  # noqa: E731
    specs = [
        Spec("gender (demo)", p("gender", "model.onnx"), "input", ["logits"], {"input": [1, 1, 64, 64]}, "fd"),
        Spec("emotion (demo)", p("emotion", "model.onnx"), "input", ["logits"], {"input": [1, 1, 64, 64]}, "fd"),
        Spec("mtcnn-onet (demo)", p("mtcnn-onet", "model.onnx"), "input_3", ["dense_5", "dense_6", "softmax_2"],
             {"input_3": [1, 48, 48, 3]}, "fd", note="opset 12 as shipped"),
        Spec("mtcnn-onet@13 (demo)", p("mtcnn-onet", "model.onnx"), "input_3", ["dense_5", "dense_6", "softmax_2"],
             {"input_3": [1, 48, 48, 3]}, "fd", note="converted to opset 13 by onnx.version_converter",
             convert_opset=13),
        Spec("mtcnn-onet@17 (demo)", p("mtcnn-onet", "model.onnx"), "input_3", ["dense_5", "dense_6", "softmax_2"],
             {"input_3": [1, 48, 48, 3]}, "fd", note="converted to opset 17 by onnx.version_converter",
             convert_opset=17),
        Spec("selfie (demo)", p("selfie", "model.onnx"), "input", ["logits"], {"input": [1, 3, 256, 256]}, "fd"),
        Spec("face-clip image (demo)", p("face-clip", "image.onnx"), "image", ["embedding"],
             {"image": [1, 3, 64, 64]}, "fd"),
        Spec("dcgan-face (demo)", p("dcgan-face", "model.onnx"), "edit", ["image"],
             {"z": [1, 100], "edit": [1, 960]}, "fd"),
    ]
    if batch != 1:
        for sp in specs:
            sp.name = sp.name.replace(" (demo)", f" (demo, batch {batch})")
            sp.shapes = {k: [batch] + v[1:] for k, v in sp.shapes.items()}
    return specs


def _manifest(folder: str, script: str) -> list[dict]:
    """The model entries of `folder`/manifest.json, written by `script` (exits if missing)."""
    man = os.path.join(folder, "manifest.json")
    if not os.path.exists(man):
        sys.exit(f"{man} not found: run scripts/autodiff_bench/{script} --out {folder} first")
    with open(man) as f:
        return json.load(f)["models"]


def arch_specs(models_dir: str) -> list[Spec]:
    return [Spec(e["name"], os.path.join(models_dir, e["onnx"]), e["wrt"], [e["of"]], {e["wrt"]: e["shape"]},
                 "torch", npz=os.path.join(models_dir, e["npz"]), note=e.get("description", ""))
            for e in _manifest(models_dir, "export_architectures.py")]


def real_world_specs(real_dir: str) -> list[Spec]:
    """Third-party ONNX models fetched by fetch_real_world.py."""
    out = []
    for e in _manifest(real_dir, "fetch_real_world.py"):
        path = os.path.join(real_dir, e["onnx"])
        outputs = e.get("outputs") or [o.name for o in onnx.load(path, load_external_data=False).graph.output]
        out.append(Spec(e["name"] + " (real-world)", path, e["wrt"], outputs, {e["wrt"]: e["shape"]}, "fd",
                        note=e["source"] + "; " + e["description"], expose=e.get("outputs")))
    return out


def make_static(spec: Spec, dst: str) -> onnx.ModelProto:
    """The forward model with every input dimension fixed (same file for both tools)."""
    m = onnx.load(spec.path)
    if spec.convert_opset:
        from onnx import version_converter
        m = version_converter.convert_version(m, spec.convert_opset)
    params: dict[str, int] = {}
    for vi in m.graph.input:
        if vi.name in spec.shapes:
            dims = vi.type.tensor_type.shape.dim
            want = spec.shapes[vi.name]
            assert len(dims) == len(want), (spec.name, vi.name, len(dims), want)
            for d, v in zip(dims, want):
                if d.dim_param:
                    params[d.dim_param] = v
                d.Clear()
                d.dim_value = v
    if spec.expose:
        # Differentiate internal tensors (e.g. logits before a saturating Sigmoid): they become the
        # graph's only outputs, and the nodes after them fall away as dead code in both tools.
        del m.graph.output[:]
        for t in spec.expose:
            m.graph.output.append(onnx.helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    for vi in list(m.graph.output) + list(m.graph.value_info):
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param in params:
                v = params[d.dim_param]
                d.Clear()
                d.dim_value = v
    if spec.expose:
        # Shaped like any model output (onnx-ad's checker wants a shape): from one run, since
        # ONNX shape inference does not reach through every exporter's graph.
        s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        zeros = {i.name: np.zeros(spec.shapes[i.name], np.float32) for i in s.get_inputs()}
        for out, y in zip(m.graph.output, s.run([o.name for o in m.graph.output], zeros)):
            for v in y.shape:
                out.type.tensor_type.shape.dim.add().dim_value = v
    onnx.save(m, dst)
    return m


# --------------------------------------------------------------------------------------------------
# Building the VJP graphs


def _last_lines(text: str, n: int = 3) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])[:600]


def build_zoom(zoom: str, fwd: str, spec: Spec, out: str, env: dict, tune: str) -> ToolResult:
    r = ToolResult(path=out)
    cmd = [zoom, "grad", fwd, "--wrt", spec.wrt]
    for o in spec.of:
        cmd += ["--of", o]
    cmd += ["--tune", tune, "-o", out]
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    except Exception as e:  # noqa: BLE001
        r.stage, r.error = "build", f"{type(e).__name__}: {e}"
        return r
    r.build_s = time.perf_counter() - t
    if p.returncode != 0:
        r.stage, r.error = "build", _last_lines(p.stderr or p.stdout)
        return r
    r.ok = True
    r.seeds = {o: o + "_grad" for o in spec.of}
    r.grad_out = spec.wrt + "_grad"
    return r


def build_onnxad(python: str, fwd: str, spec: Spec, out: str, fwd_model: onnx.ModelProto,
                 seed_dim: str) -> ToolResult:
    r = ToolResult(path=out)
    cmd = [python, "-m", "onnx_ad", "reverse", fwd, out, "--inputs", spec.wrt, "--outputs", *spec.of,
           "--layout", "onnx"]
    t = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except Exception as e:  # noqa: BLE001
        r.stage, r.error = "build", f"{type(e).__name__}: {e}"
        return r
    r.build_s = time.perf_counter() - t
    if p.returncode != 0:
        r.stage, r.error = "build", _last_lines(p.stderr or p.stdout, 1)
        return r
    m = onnx.load(out)
    fin = {v.name for v in fwd_model.graph.input}
    fout = {v.name for v in fwd_model.graph.output}
    new_in = [v.name for v in m.graph.input if v.name not in fin]
    new_out = [v.name for v in m.graph.output if v.name not in fout]
    for o in spec.of:
        cands = [n for n in new_in if n.endswith(o) and n[: -len(o)].startswith("adj")]
        if len(cands) != 1:
            r.stage, r.error = "build", f"cannot find the seed input of {o} among {new_in}"
            return r
        r.seeds[o] = cands[0]
    grads = [n for n in new_out if n.endswith(spec.wrt)]
    if len(grads) != 1:
        r.stage, r.error = "build", f"cannot find the gradient output of {spec.wrt} among {new_out}"
        return r
    r.grad_out = grads[0]
    if seed_dim == "static":
        # the seed count is a symbolic trailing axis ("nadj"); fix it to 1, as zoom's graph is static
        for vi in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
            for d in vi.type.tensor_type.shape.dim:
                if d.dim_param and d.dim_param.startswith("nadj"):
                    d.Clear()
                    d.dim_value = 1
        onnx.save(m, out)
    r.ok = True
    return r


def optimize_onnxscript(raw: ToolResult, out: str) -> ToolResult:
    """onnx-ad's graph after onnxscript.optimizer.optimize (constant folding, CSE, dead-code and
    identity removal, rewrite rules): the "after optimisation" form of the peer. The raw graph is
    timed too."""
    import copy
    r = copy.deepcopy(raw)
    r.path = out
    try:
        import onnxscript.optimizer
        t = time.perf_counter()
        m = onnxscript.optimizer.optimize(onnx.load(raw.path))
        onnx.save(m, out)
        r.build_s = raw.build_s + (time.perf_counter() - t)
    except Exception as e:  # noqa: BLE001
        r.ok, r.stage, r.error = False, "onnxscript.optimizer", _last_lines(f"{type(e).__name__}: {e}", 2)
    return r


# --------------------------------------------------------------------------------------------------
# Running


def session(path: str, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def count_nodes(path: str) -> int:
    return len(onnx.load(path, load_external_data=False).graph.node)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def to_float64_model(m: onnx.ModelProto) -> onnx.ModelProto:
    """A float64 copy (initializers, Constant tensors, float I/O, Cast targets) for the reference evaluator."""
    m2 = onnx.ModelProto()
    m2.CopyFrom(m)
    g = m2.graph
    for t in g.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    for vi in list(g.input) + list(g.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            vi.type.tensor_type.elem_type = TensorProto.DOUBLE
    del g.value_info[:]
    for n in g.node:
        for a in n.attribute:
            if a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.DOUBLE
            if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.FLOAT:
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float64), a.t.name))
    return m2


def reference_evaluator(model: onnx.ModelProto):
    """onnx.reference on a float64 copy of `model`, with operators patched in place where the
    evaluator departs from the specification and onnxruntime (function bodies get evaluators of
    their own, which do not see `new_ops`):

    - Erf rounds to float32 in onnx 1.23, too coarse for finite differences (Gelu expands to it);
    - LpNormalization sums x^p instead of |x|^p, wrong for p = 1 at negative values (onnxruntime
      and the spec use |x|; the node tests feed non-negative values, jittering makes some negative);
    - AffineGrid casts its grid to float32;
    - BatchNormalization 9–13 computes batch statistics (training mode) whenever `momentum` is
      set, and the evaluator always sets it (schema default); with the one output an inference
      model has, the spec and onnxruntime use the running statistics (PaddlePaddle exports).
    """
    import math

    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops import op_affine_grid, op_batch_normalization, op_erf, op_lp_normalization

    op_erf.Erf._run = lambda self, x: (np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype),)

    def lp_normalization(self, x, axis=None, p=None):
        axis, p = axis or self.axis, p or self.p
        norm = np.expand_dims(np.power(np.power(np.abs(x), p).sum(axis=axis), 1.0 / p), axis)
        return (np.where(norm == 0, 0, x / np.where(norm == 0, 1, norm)).astype(x.dtype),)

    op_lp_normalization.LpNormalization._run = lp_normalization

    def affine(theta, grid_homo):  # θ applied to every homogeneous base position, in float64
        k = grid_homo.shape[-1]
        out = np.einsum("nij,pj->npi", theta, grid_homo.reshape(-1, k))
        return out.reshape((theta.shape[0], *grid_homo.shape[:-1], theta.shape[1]))

    op_affine_grid.apply_affine_transform = affine

    bn9 = op_batch_normalization.BatchNormalization_9
    bn9_training = bn9._run

    def batch_norm_9(self, x, scale, bias, mean, var, epsilon=None, momentum=None):
        if len(self.onnx_node.output) == 1:
            y = op_batch_normalization._batchnorm_test_mode(x, scale, bias, mean, var, epsilon=epsilon)
            return (y,)
        return bn9_training(self, x, scale, bias, mean, var, epsilon=epsilon, momentum=momentum)

    bn9._run = batch_norm_9
    return ReferenceEvaluator(to_float64_model(model))


def fd_directional(fwd_model: onnx.ModelProto, feeds: dict, spec: Spec, cot: dict, dirs: int, rng,
                   max_tries: int = 16) -> dict:
    """Central differences of <cot, f(x)> along random directions v ~ N(0, I), in float64 (onnx.reference).

    ReLU/MaxPool nets are kinked at every scale down to ~1e-6 around a random input (measured on the
    demo models), so each direction is differenced with two steps, h = 1e-7 and h/10 (times the
    input's RMS); a direction on which the two disagree by more than 1e-6 (relative) crosses a kink
    and is replaced by a new random one. The h/10 value is kept; its float64 round-off is ~1e-8
    relative or better on these models. With a batch of several images each direction moves one
    image (drawn at random): a direction through all of them would cross every image's kinks, and
    at batch 8 almost none survive.
    """
    ev = reference_evaluator(fwd_model)
    f64 = {k: v.astype(np.float64) for k, v in feeds.items()}
    x = f64[spec.wrt]
    scale = float(np.sqrt(np.mean(x ** 2))) or 1.0
    h = 1e-7 * scale
    cot64 = {o: cot[o].astype(np.float64) for o in spec.of}

    def phi(v, t):
        d = dict(f64)
        d[spec.wrt] = x + t * v
        return sum(float(np.sum(y * cot64[o])) for y, o in zip(ev.run(spec.of, d), spec.of))

    kept, rejected = [], 0
    for _ in range(max_tries):
        if len(kept) == dirs:
            break
        v = rng.standard_normal(x.shape)
        if x.shape[0] > 1:
            keep = rng.integers(x.shape[0])
            v[np.arange(x.shape[0]) != keep] = 0.0
        d1 = (phi(v, h) - phi(v, -h)) / (2 * h)
        d2 = (phi(v, h / 10) - phi(v, -h / 10)) / (2 * h / 10)
        if abs(d1 - d2) <= 1e-6 * max(abs(d1), abs(d2), 1e-30):
            kept.append((v, d2))
        else:
            rejected += 1
    return dict(directions=kept, rejected=rejected, h=h)


def _interp_matrix(n: int, k: int) -> np.ndarray:
    """(n, k) linear-interpolation matrix from k samples to n (corners aligned)."""
    pos = np.linspace(0.0, k - 1.0, n)
    lo = np.minimum(np.floor(pos).astype(int), k - 2)
    t = pos - lo
    m = np.zeros((n, k))
    m[np.arange(n), lo] = 1.0 - t
    m[np.arange(n), lo + 1] = t
    return m


def smooth_image(rng, shape) -> np.ndarray:
    """A random image in [0, 1] that looks like one: bilinear-upsampled 1/16-resolution noise plus a
    little pixel noise. (White noise drives the demo classifiers far outside their input range: the
    selfie net answers logits of -850 on it.) NCHW, or NHWC when the last axis is the channel axis."""
    nhwc = shape[-1] in (1, 3) and shape[1] not in (1, 3)
    n, c, h, w = (shape[0], shape[3], shape[1], shape[2]) if nhwc else shape
    low = rng.random((n, c, h // 16 + 2, w // 16 + 2))
    img = np.einsum("hk,nckl,wl->nchw", _interp_matrix(h, low.shape[2]), low, _interp_matrix(w, low.shape[3]))
    img = np.clip(0.9 * img + 0.1 * rng.random(img.shape), 0.0, 1.0)
    if nhwc:
        img = img.transpose(0, 2, 3, 1)
    return np.ascontiguousarray(img, dtype=np.float32)


def make_feeds(spec: Spec, fwd_model: onnx.ModelProto, rng):
    if spec.reference == "torch":
        z = np.load(spec.npz)
        feeds = {spec.wrt: z["x"].astype(np.float32)}
        return feeds, {spec.of[0]: z["g"].astype(np.float32)}, z["grad"]
    feeds = {}
    for vi in fwd_model.graph.input:
        if vi.name in {t.name for t in fwd_model.graph.initializer}:
            continue
        shape = spec.shapes[vi.name]
        if len(shape) == 4:  # images in [0, 1]
            feeds[vi.name] = smooth_image(rng, shape)
        else:                # latents / edit weights
            feeds[vi.name] = (rng.standard_normal(shape) * (1.0 if vi.name == "z" else 0.5)).astype(np.float32)
    return feeds, None, None


def time_interleaved(sessions: dict, feeds: dict, budget_s: float, min_reps: int, max_reps: int):
    """Median per-round ratios from interleaved runs; CPU time (process) and wall time."""
    names = list(sessions)
    for n in names:  # warm-up
        for _ in range(2):
            sessions[n].run(None, feeds[n])
    est = {}
    for n in names:
        t = time.perf_counter()
        sessions[n].run(None, feeds[n])
        est[n] = max(time.perf_counter() - t, 1e-5)
    inner = max(1, math.ceil(0.02 / est["forward"]))        # >= ~20 ms per forward measurement
    per_round = inner * sum(est.values())
    reps = int(min(max_reps, max(min_reps, budget_s // per_round)))
    cpu = {n: [] for n in names}
    wall = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names):] + names[: r % len(names)]
        for n in order:
            s, f = sessions[n], feeds[n]
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(inner):
                s.run(None, f)
            cpu[n].append((time.process_time() - c0) / inner)
            wall[n].append((time.perf_counter() - w0) / inner)
    res = dict(reps=reps, inner=inner,
               cpu_median_s={n: statistics.median(v) for n, v in cpu.items()},
               wall_median_s={n: statistics.median(v) for n, v in wall.items()})

    def ratio(src, a, b):
        return statistics.median([x / y for x, y in zip(src[a], src[b])])

    for key, src in (("cpu", cpu), ("wall", wall)):
        for n in names:
            if n != "forward":
                res[f"{key}_ratio_{n}"] = ratio(src, n, "forward")
        if "zoom" in names and "onnxad" in names:
            res[f"{key}_onnxad_over_zoom"] = ratio(src, "onnxad", "zoom")
        if "zoom" in names and "zoom_portable" in names:
            res[f"{key}_portable_over_tuned"] = ratio(src, "zoom_portable", "zoom")
    return res


# --------------------------------------------------------------------------------------------------


def fmt(x, spec=".2f", suffix=""):
    return "—" if x is None else f"{x:{spec}}{suffix}"


def fmt_err(x):
    if x is None:
        return "—"
    flag = "" if x < GRAD_TOL else " **WRONG**"
    return f"{x:.1e}{flag}"


def markdown(rows: list[dict], meta: dict) -> str:
    out = []
    tuned = meta.get("zoom_tune", "portable") != "portable"
    out.append("| model | fwd nodes | zoom nodes | onnx-ad nodes raw → opt | zoom VJP/fwd "
               + ("| zoom portable VJP/fwd " if tuned else "")
               + "| onnx-ad VJP/fwd (opt) "
               "| onnx-ad VJP/fwd (raw) | zoom speed-up (onnx-ad opt / zoom) | zoom grad rel. err "
               "| onnx-ad grad rel. err | zoom vs onnx-ad | reference | rounds × runs |")
    out.append("|---|---:|---:|---:|---:|" + ("---:|" if tuned else "") + "---:|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        z, a, a0, t = r["zoom"], r["onnxad"], r["onnxad_raw"], r.get("timing") or {}
        zp = r.get("zoom_portable", {"ok": False})
        portable = ([fmt(t.get("cpu_ratio_zoom_portable"), ".2f", "×") if zp["ok"] else "—"] if tuned else [])
        zr = t.get("cpu_ratio_zoom")
        ar = t.get("cpu_ratio_onnxad")
        ar0 = t.get("cpu_ratio_onnxad_raw")
        sp = t.get("cpu_onnxad_over_zoom")
        out.append("| " + " | ".join([
            r["model"], str(r["forward_nodes"]),
            str(z["nodes"]) if z["ok"] else "FAILED",
            (f'{a0["nodes"]} → {a["nodes"]}' if a["ok"] else (f'{a0["nodes"]} → FAILED' if a0["ok"] else "FAILED")),
            fmt(zr, ".2f", "×") if z["ok"] else "—", *portable, fmt(ar, ".2f", "×") if a["ok"] else "—",
            fmt(ar0, ".2f", "×") if a0["ok"] else "—",
            fmt(sp, ".2f", "×") if (z["ok"] and a["ok"]) else "—",
            fmt_err(z["grad_err"]), fmt_err(a["grad_err"]), fmt(r.get("zoom_vs_onnxad_rel_l2"), ".1e"),
            r["reference_short"], f'{t.get("reps", 0)} × {t.get("inner", 0)}']) + " |")
    fails = [(r["model"], tool, r[key]) for r in rows
             for tool, key in (("zoom", "zoom"), ("onnx-ad", "onnxad_raw"), ("onnx-ad optimised", "onnxad"))
             if not r[key]["ok"] and not (key == "onnxad" and not r["onnxad_raw"]["ok"])]
    if fails:
        out.append("")
        out.append("Failures:")
        out.append("")
        for m, tool, res in fails:
            out.append(f"- **{m}**, {tool} ({res['stage']}): `{res['error']}`")
    return "\n".join(out)


def _onnxscript_version() -> str:
    try:
        import onnxscript
        return onnxscript.__version__
    except Exception:  # noqa: BLE001
        return "(onnxscript missing)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoom", required=True, help="zoom binary (zoom grad)")
    ap.add_argument("--onnxad-python", default=os.path.join(REPO, ".venv-onnxad", "bin", "python"),
                    help="python of the venv holding onnx-ad==0.3.0")
    ap.add_argument("--models", default="/tmp/autodiff-bench/models", help="export_architectures.py --out")
    ap.add_argument("--demo-root", default=os.path.join(REPO, "onnx"), help="folder of the real demo models")
    ap.add_argument("--no-demo", action="store_true")
    ap.add_argument("--real-world", metavar="DIR",
                    help="also the third-party models that fetch_real_world.py put in DIR (batch 1)")
    ap.add_argument("--only", nargs="*", help="model names (substring match)")
    ap.add_argument("--batch", type=int, default=1,
                    help="batch size of the demo models' inputs; above 1 the architecture rows are skipped "
                         "(their PyTorch references are for batch 1)")
    ap.add_argument("--work", default="/tmp/autodiff-bench/work", help="where the VJP graphs are written")
    ap.add_argument("--threads", type=int, default=1, help="ORT intra-op threads (1 = the bench setting)")
    ap.add_argument("--tune", choices=["cpu", "portable"], default="cpu",
                    help="`zoom grad --tune`: cpu is the graph zoom diagnose runs on the CPU (default)")
    ap.add_argument("--budget", type=float, default=20.0, help="timing seconds per model (about)")
    ap.add_argument("--min-reps", type=int, default=5)
    ap.add_argument("--max-reps", type=int, default=31)
    ap.add_argument("--fd-dirs", type=int, default=3, help="finite-difference directions per demo model")
    ap.add_argument("--onnxad-seed-dim", choices=["static", "symbolic"], default="static",
                    help="fix onnx-ad's seed-count axis (nadj) to 1 (static, default) or leave it symbolic")
    ap.add_argument("--md", help="write the Markdown table here")
    ap.add_argument("--json", help="write all results as JSON here")
    args = ap.parse_args(argv)

    t_start = time.perf_counter()
    os.makedirs(args.work, exist_ok=True)
    env = dict(os.environ)
    if "ORT_DYLIB_PATH" not in env and os.path.exists(os.path.join(REPO, ".ort", "lib", "libonnxruntime.so")):
        env["ORT_DYLIB_PATH"] = os.path.join(REPO, ".ort", "lib", "libonnxruntime.so")

    if args.batch < 1:
        sys.exit("--batch must be at least 1")
    specs = ((arch_specs(args.models) if args.batch == 1 else [])
             + ([] if args.no_demo else demo_specs(args.demo_root, args.batch))
             + (real_world_specs(args.real_world) if args.real_world and args.batch == 1 else []))
    if args.only:
        specs = [s for s in specs if any(o in s.name for o in args.only)]

    zoom_version = subprocess.run([args.zoom, "--version"], capture_output=True, text=True, env=env).stdout.strip()
    with open(args.zoom, "rb") as f:
        zoom_sha = hashlib.sha256(f.read()).hexdigest()[:16]
    onnxad_version = subprocess.run([args.onnxad_python, "-c", "import onnx_ad, onnx; print(onnx_ad.__version__, onnx.__version__)"],
                                    capture_output=True, text=True).stdout.strip()
    cpu_model = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu_model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), machine=platform.machine(),
                cpu=cpu_model, cores=os.cpu_count(), onnxruntime=ort.__version__, onnx=onnx.__version__,
                python=platform.python_version(), zoom=zoom_version, zoom_binary=args.zoom, zoom_sha256_16=zoom_sha, zoom_tune=args.tune,
                onnx_ad_and_its_onnx=onnxad_version, threads=args.threads, graph_optimization="ORT_ENABLE_ALL",
                timer="process CPU time (time.process_time), median over rounds of per-round ratios",
                budget_s_per_model=args.budget, min_reps=args.min_reps, max_reps=args.max_reps,
                onnxad_layout="onnx", onnxad_seed_dim=args.onnxad_seed_dim,
                onnxad_optimisation="onnxscript.optimizer.optimize " + _onnxscript_version())
    print(json.dumps(meta, indent=1))

    rows = []
    rng = np.random.default_rng(1234)
    for spec in specs:
        t_model = time.perf_counter()
        slug = spec.name.split(" ")[0].replace("@", "_op") + (f"_b{args.batch}" if args.batch != 1 else "")
        wd = os.path.join(args.work, slug)
        os.makedirs(wd, exist_ok=True)
        fwd_path = os.path.join(wd, "forward.onnx")
        fwd_model = make_static(spec, fwd_path)
        row = dict(model=spec.name, path=spec.path, wrt=spec.wrt, of=spec.of, shapes=spec.shapes, note=spec.note,
                   reference=("PyTorch autograd (float64)" if spec.reference == "torch"
                              else f"central FD, float64 (onnx.reference), {args.fd_dirs} random directions"),
                   forward_nodes=len(fwd_model.graph.node), opset=next((o.version for o in fwd_model.opset_import
                                                                         if o.domain in ("", "ai.onnx")), None))
        ad_raw = build_onnxad(args.onnxad_python, fwd_path, spec, os.path.join(wd, "onnxad.onnx"),
                              fwd_model, args.onnxad_seed_dim)
        tools = {"zoom": build_zoom(args.zoom, fwd_path, spec, os.path.join(wd, "zoom.onnx"), env, args.tune),
                 "onnxad": optimize_onnxscript(ad_raw, os.path.join(wd, "onnxad.opt.onnx")) if ad_raw.ok else ad_raw,
                 "onnxad_raw": ad_raw}
        if args.tune != "portable":
            # The portable form too, timed in the same interleaved rounds, so that the effect of the
            # tuning is a side-by-side number rather than a difference between runs.
            tools["zoom_portable"] = build_zoom(args.zoom, fwd_path, spec,
                                                os.path.join(wd, "zoom.portable.onnx"), env, "portable")
        feeds, cot, ref = make_feeds(spec, fwd_model, rng)
        if cot is None:
            sess_f = session(fwd_path, args.threads)
            ys = dict(zip([o.name for o in sess_f.get_outputs()], sess_f.run(None, feeds)))
            cot = {o: rng.standard_normal(ys[o].shape).astype(np.float32) for o in spec.of}
        sessions = {"forward": session(fwd_path, args.threads)}
        run_feeds = {"forward": feeds}
        grads = {}
        for name, r in tools.items():
            if not r.ok:
                continue
            r.nodes = count_nodes(r.path)
            f = dict(feeds)
            for o, seed in r.seeds.items():
                f[seed] = cot[o] if name.startswith("zoom") else cot[o][..., None]
            try:
                s = session(r.path, args.threads)
                out = s.run([r.grad_out], f)[0]
                grads[name] = out if name.startswith("zoom") else out[..., 0]
                sessions[name], run_feeds[name] = s, f
            except Exception as e:  # noqa: BLE001
                r.ok, r.stage, r.error = False, "onnxruntime", _last_lines(str(e), 2)
        # correctness
        fd = None
        if spec.reference == "torch":
            for name, g in grads.items():
                tools[name].grad_err = rel_l2(g, ref)
        elif grads:
            fd = fd_directional(fwd_model, feeds, spec, cot, args.fd_dirs, rng)
            fd_errs = {}
            for name, g in grads.items():
                # |FD - <grad, v>| relative to max(|FD|, ||grad||_2 where v moves): that norm is the
                # typical size of <grad, v> for v ~ N(0, I) there, so a direction nearly orthogonal
                # to grad does not blow it up
                g64 = g.astype(np.float64)
                errs = [abs(float(np.sum(g64 * v)) - d)
                        / max(abs(d), float(np.linalg.norm(g64[v != 0])), 1e-30)
                        for v, d in fd["directions"]]
                tools[name].grad_err = max(errs) if errs else None
                fd_errs[name] = errs
            row["fd"] = dict(values=[d for _, d in fd["directions"]], rejected_kinked=fd["rejected"], h=fd["h"],
                             errors=fd_errs)
        if spec.reference == "torch":
            row["reference_short"] = "autograd f64"
        elif fd is not None:
            row["reference_short"] = (f"FD f64, {len(fd['directions'])} dirs"
                                      + (f" ({fd['rejected']} kinked redrawn)" if fd["rejected"] else ""))
        else:
            row["reference_short"] = "—"
        if "zoom" in grads and "onnxad" in grads:
            row["zoom_vs_onnxad_rel_l2"] = rel_l2(grads["zoom"], grads["onnxad"])
        if "zoom" in grads and "zoom_portable" in grads:
            row["zoom_tuned_vs_portable_max_abs"] = float(np.max(np.abs(grads["zoom"] - grads["zoom_portable"])))
        if "onnxad_raw" in grads and "onnxad" in grads:
            row["onnxad_raw_vs_opt_rel_l2"] = rel_l2(grads["onnxad_raw"], grads["onnxad"])
        # timing
        row["timing"] = time_interleaved(sessions, run_feeds, args.budget, args.min_reps, args.max_reps)
        for name, r in tools.items():
            row[name] = dict(ok=r.ok, error=r.error, stage=r.stage, nodes=r.nodes, build_s=round(r.build_s, 3),
                             grad_err=r.grad_err, file=r.path)
        row["seconds"] = round(time.perf_counter() - t_model, 1)
        rows.append(row)
        t = row["timing"]
        print(f"{spec.name:26s} fwd {t['cpu_median_s']['forward']*1e3:8.2f} ms | "
              f"zoom {fmt(t.get('cpu_ratio_zoom'), '.2f', 'x'):>7s} err {fmt_err(tools['zoom'].grad_err):>9s} | "
              f"onnx-ad {fmt(t.get('cpu_ratio_onnxad'), '.2f', 'x'):>7s} err {fmt_err(tools['onnxad'].grad_err):>9s} | "
              f"raw {fmt(t.get('cpu_ratio_onnxad_raw'), '.2f', 'x'):>7s} | "
              f"zoom portable {fmt(t.get('cpu_ratio_zoom_portable'), '.2f', 'x'):>7s} | "
              f"onnx-ad/zoom {fmt(t.get('cpu_onnxad_over_zoom'), '.2f', 'x'):>7s} | reps {t['reps']}x{t['inner']} "
              f"| {row['seconds']} s", flush=True)
        for name, r in tools.items():
            if not r.ok:
                print(f"    {name} FAILED ({r.stage}): {r.error}", flush=True)

    meta["total_seconds"] = round(time.perf_counter() - t_start, 1)
    table = markdown(rows, meta)
    print()
    print(table)
    if args.md:
        with open(args.md, "w") as f:
            f.write(f"<!-- generated by scripts/autodiff_bench/run.py on {meta['date']} -->\n")
            f.write(f"onnxruntime {meta['onnxruntime']} CPU, intra-op threads {meta['threads']}, "
                    f"{meta['graph_optimization']}; {meta['timer']}; zoom `{meta['zoom']}` "
                    f"(sha256 {meta['zoom_sha256_16']}…, `--tune {meta['zoom_tune']}`); onnx-ad {meta['onnx_ad_and_its_onnx'].split()[0]} "
                    f"(opt = after {meta['onnxad_optimisation']}); "
                    f"CPU: {meta['cpu']} ({meta['cores']} cores)\n\n")
            f.write(table + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(meta=meta, rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
