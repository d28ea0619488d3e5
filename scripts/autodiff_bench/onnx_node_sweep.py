#!/usr/bin/env python3
"""Check `zoom grad` on the ONNX project's own operator test cases (onnx.backend.test, node kind).

The `onnx` package carries ~1,900 single-operator test cases, one per attribute variant the ONNX
authors thought worth testing. For every case with a floating-point graph input, this script

1. writes the case's model with its input shapes fixed (from its first data set);
2. builds the VJP graph with `zoom grad` with respect to every float input (default tuning, or
   `--tune cpu`), and records a refusal with zoom's message (no rule, gradient not defined, ...);
3. runs the VJP graph in onnxruntime on the case's own inputs with random cotangents;
4. checks each input gradient against central finite differences of a float64 copy of the model in
   the ONNX reference evaluator (neither zoom nor onnxruntime involved), along random directions.

Directions that cross a kink (the two step sizes disagree) are redrawn, as in run.py. Cases whose
reference evaluation fails, or that have no float input, are listed as skipped with the reason.

Developer-only (needs .venv-byo or any venv with onnx + onnxruntime); nothing here runs in CI.

    .venv-byo/bin/python scripts/autodiff_bench/onnx_node_sweep.py --zoom target/release/zoom \
        --json /tmp/node-sweep.json [--only maxpool conv] [--tune cpu]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto

sys.path.insert(0, os.path.dirname(__file__))
from run import REPO, reference_evaluator, rel_l2  # noqa: E402  (same folder)

FLOATS = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64}
TOL = 1e-3  # relative error of a directional derivative above which a gradient is wrong


def elem_type(vi) -> int | None:
    t = vi.type
    return t.tensor_type.elem_type if t.HasField("tensor_type") else None


# Float inputs that parameterise an operator rather than carry data: baked in as constants like
# integer inputs, as they are in exported models (zoom differentiates with respect to data, not
# weights; each rule's own tests cover the gradients it has for such inputs).
PARAMETER_INPUTS = {
    "Resize": {1, 2, 3},  # roi, scales, sizes
    "Conv": {1, 2},  # weight, bias
    "ConvTranspose": {1, 2},
    "Clip": {1, 2},  # min, max
    "Pad": {2},  # constant_value
    "RotaryEmbedding": {1, 2},  # cos_cache, sin_cache
}


def data_set(case) -> tuple[list, list]:
    """The first data set's inputs and outputs as numpy arrays (some cases store TensorProtos or
    numpy scalars)."""
    def arr(v):
        if isinstance(v, onnx.TensorProto):
            try:
                return onnx.numpy_helper.to_array(v)
            except Exception:  # noqa: BLE001 (exotic element types stay as they are: skipped)
                return v
        return np.asarray(v) if isinstance(v, np.generic) else v
    ins, outs = case.data_sets[0]
    return [arr(v) for v in ins], [arr(v) for v in outs]


def fixed_model(case, ins: list, outs: list) -> tuple[onnx.ModelProto, dict]:
    """The case's model with every input and output shape set from its first data set, and its
    integer, boolean and parameter inputs (axes, shapes, pads, scales, ...) turned into
    initializers with the data set's values: the node tests feed them as inputs for convenience,
    while exported models hold them as constants, which gradient rules may require.

    `ins` are the values of the graph inputs that are not initializers, in order.
    Returns the model and the remaining inputs' values."""
    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    g = m.graph
    init = {t.name for t in g.initializer}
    params = {n.input[k] for n in g.node for k in PARAMETER_INPUTS.get(n.op_type, ()) if k < len(n.input)}
    feeds, keep = {}, [vi for vi in g.input if vi.name in init]
    for vi, val in zip([vi for vi in g.input if vi.name not in init], ins):
        if elem_type(vi) not in FLOATS or vi.name in params:
            g.initializer.append(onnx.numpy_helper.from_array(np.asarray(val), vi.name))
        else:
            feeds[vi.name] = val
            keep.append(vi)
    del g.input[:]
    g.input.extend(keep)
    by_name = {vi.name: vi for vi in g.input}
    for vi, val in [(by_name[k], v) for k, v in feeds.items()] + list(zip(g.output, outs)):
        if not vi.type.HasField("tensor_type") or not isinstance(val, np.ndarray):
            continue
        shp = vi.type.tensor_type.shape
        shp.ClearField("dim")
        for d in np.shape(val):
            shp.dim.add().dim_value = int(d)
    return m, feeds


def zoom_grad(zoom: str, model_path: str, wrt: list[str], out: str, tune: str, env) -> tuple[bool, str]:
    cmd = [zoom, "grad", model_path, "-o", out, "-q", "--threads", "1"]
    for w in wrt:
        cmd += ["--wrt", w]
    if tune == "cpu":
        cmd += ["--tune", "cpu"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    msg = (p.stderr.strip() or p.stdout.strip()).splitlines()
    return p.returncode == 0, " ".join(msg[-3:])


def directional_fd(ev, feeds64: dict, wrt: str, v: np.ndarray, cot64: dict, names: list[str]):
    """d/dt <cot, f(x + t v)> at t = 0 by central differences, and whether it can be trusted.

    A step is trusted when the one-sided differences agree (they do not at a kink, nor at an exact
    tie of a max or a ReLU at 0, where the central difference is homogeneous in h and looks smooth)
    and the central differences at h and h/2 agree (they do not across a jump, e.g. Sign at 0).
    Steps from small to large: relative to the input's RMS, then absolute, then larger, for inputs
    of large magnitude and for references that compute in float32 inside.
    """
    x = feeds64[wrt]
    rms = float(np.sqrt(np.mean(x ** 2))) if x.size else 1.0
    rms = rms or 1.0

    def phi(t):
        d = dict(feeds64)
        d[wrt] = x + t * v
        ys = ev.run(names, d)
        return sum(float(np.sum(np.asarray(y, np.float64) * cot64[o])) for y, o in zip(ys, names))

    p0 = phi(0.0)
    # The last, larger step tolerates some curvature but no kink worth more than TOL / 2.
    for h, one_sided_tol in ((1e-6 * rms, 1e-4), (1e-6, 1e-4), (1e-4 * rms, TOL / 2)):
        pp, pm, pp2, pm2 = phi(h), phi(-h), phi(h / 2), phi(-h / 2)
        fwd, bwd = (pp - p0) / h, (p0 - pm) / h
        c1, c2 = (pp - pm) / (2 * h), (pp2 - pm2) / h
        big = max(abs(fwd), abs(bwd), 1e-12)
        if abs(fwd - bwd) <= one_sided_tol * big + 1e-9 and abs(c1 - c2) <= 1e-5 * big + 1e-9:
            return c2, True
    return c2, False


def check_case(case, args, env, work: str) -> dict:
    rec = dict(name=case.name, status="", detail="", ops=sorted({n.op_type for n in case.model.graph.node}))
    g = case.model.graph
    ins, outs = data_set(case)
    init = {t.name for t in g.initializer}
    graph_inputs = [vi for vi in g.input if vi.name not in init]
    if len(graph_inputs) != len(ins) or any(not isinstance(v, np.ndarray) for v in ins):
        rec.update(status="skipped", detail="non-tensor or optional inputs")
        return rec
    model, feeds = fixed_model(case, ins, outs)
    wrt = [k for k, v in feeds.items() if v.size > 0]
    if not wrt:
        rec.update(status="skipped", detail="no float input")
        return rec
    float_outs = [vi.name for vi in g.output if elem_type(vi) in FLOATS]
    if not float_outs:
        rec.update(status="skipped", detail="no float output")
        return rec

    fwd_path = os.path.join(work, case.name + ".onnx")
    vjp_path = os.path.join(work, case.name + ".vjp.onnx")
    onnx.save(model, fwd_path)
    # A VJP graph can only be as runnable as its forward model, and zoom differentiates what
    # onnxruntime computes: where that is not what the ONNX reference computes, the finite
    # differences of the reference are no yardstick.
    try:
        fwd_sess = ort.InferenceSession(fwd_path, providers=["CPUExecutionProvider"])
        fwd_outs = fwd_sess.run(float_outs, feeds)
    except Exception as e:  # noqa: BLE001
        rec.update(status="skipped", detail="onnxruntime cannot run the forward model: "
                   + str(e).splitlines()[0][:150])
        return rec
    names = [vi.name for vi in g.output]
    for o, y in zip(float_outs, fwd_outs):
        want = outs[names.index(o)]
        if np.shape(y) != np.shape(want) or not np.allclose(y, want, rtol=1e-3, atol=1e-4, equal_nan=True):
            rec.update(status="skipped", detail=f"onnxruntime's forward differs from the ONNX expected {o}")
            return rec
    ok, msg = zoom_grad(args.zoom, fwd_path, wrt, vjp_path, args.tune, env)
    if not ok:
        rec.update(status="refused", detail=msg)
        return rec

    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        sess = ort.InferenceSession(vjp_path, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 (any load failure is a finding)
        rec.update(status="vjp-invalid", detail=str(e).splitlines()[0][:300])
        return rec
    rec.update(compare(sess, model, feeds, outs, wrt, args.dirs, check_forward=True))
    if rec["status"] == "unchecked":
        # The ONNX cases often use small integers, so maxima tie everywhere: retry once on
        # inputs with the ties broken.
        rng = np.random.default_rng(1)
        jittered = {k: (v + 1e-3 * rng.standard_normal(v.shape).astype(v.dtype) if k in wrt else v)
                    for k, v in feeds.items()}
        rec.update(compare(sess, model, jittered, outs, wrt, args.dirs, check_forward=False))
        rec["detail"] += " (inputs jittered by 1e-3 to break ties)"
    return rec


def compare(sess, model, feeds, outs, wrt, dirs, check_forward) -> dict:
    """Run the VJP graph on `feeds` with random cotangents; check it against finite differences."""
    g = model.graph
    rng = np.random.default_rng(0)
    vjp_inputs = {i.name for i in sess.get_inputs()}
    vjp_outputs = {o.name for o in sess.get_outputs()}
    cots = {}
    for vi, val in zip(g.output, outs):
        if vi.name + "_grad" in vjp_inputs:
            cots[vi.name] = rng.standard_normal(np.shape(val)).astype(np.asarray(val).dtype)
    run_feeds = {k: v for k, v in feeds.items() if k in vjp_inputs}
    run_feeds.update({o + "_grad": c for o, c in cots.items()})
    grad_names = [w + "_grad" for w in wrt]
    checked_outs = [vi.name for vi in g.output if vi.name in vjp_outputs and elem_type(vi) in FLOATS]
    try:
        got = dict(zip(grad_names, sess.run(grad_names, run_feeds)))
        fwd_out = sess.run(checked_outs, run_feeds)
    except Exception as e:  # noqa: BLE001
        return dict(status="vjp-run-failed", detail=str(e).splitlines()[0][:300])
    if check_forward:
        for o, y in zip(checked_outs, fwd_out):
            want = outs[[vi.name for vi in g.output].index(o)]
            if np.shape(y) == np.shape(want) and not np.allclose(y, want, rtol=1e-3, atol=1e-4, equal_nan=True):
                return dict(status="wrong-forward", detail=f"output {o} rel {rel_l2(y, want):.2e}")

    # Reference: float64 central differences in onnx.reference.
    try:
        ev = reference_evaluator(model)
    except Exception as e:  # noqa: BLE001
        return dict(status="skipped", detail="reference evaluator: " + str(e).splitlines()[0][:200])
    feeds64 = {k: (v.astype(np.float64) if v.dtype in (np.float32, np.float64) else v) for k, v in feeds.items()}
    cot64 = {o: c.astype(np.float64) for o, c in cots.items()}
    names = list(cots)
    worst, kinked, unchecked = 0.0, 0, []
    for w in wrt:
        gw = np.asarray(got[w + "_grad"], np.float64)
        if gw.shape != feeds[w].shape:
            return dict(status="wrong-shape", detail=f"{w}_grad {gw.shape} != {feeds[w].shape}")
        kept = 0
        for _ in range(8):
            if kept == dirs:
                break
            v = rng.standard_normal(feeds[w].shape)
            try:
                d, smooth = directional_fd(ev, feeds64, w, v, cot64, names)
            except Exception as e:  # noqa: BLE001
                return dict(status="skipped", detail="reference evaluator: " + str(e).splitlines()[0][:200])
            if not smooth:
                kinked += 1
                continue
            kept += 1
            a = float(np.sum(gw * v))
            if not (np.isfinite(a) and np.isfinite(d)):
                err = 0.0 if (np.isnan(a) and np.isnan(d)) or a == d else float("inf")
            else:
                scale = max(abs(d), abs(a), 1e-6 * np.linalg.norm(gw) * np.linalg.norm(v))
                err = abs(a - d) / scale if scale > 0 else 0.0
            worst = max(worst, err)
        if kept == 0:
            unchecked.append(w)
    if len(unchecked) == len(wrt):
        return dict(status="unchecked", detail="every direction crossed a kink", kinked=kinked)
    return dict(status="ok" if worst <= TOL else "wrong-gradient", err=worst, kinked=kinked,
                detail=f"worst directional rel. error {worst:.2e}"
                + (f" (unchecked: {', '.join(unchecked)})" if unchecked else ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoom", required=True, help="zoom binary")
    ap.add_argument("--tune", choices=["portable", "cpu"], default="portable")
    ap.add_argument("--only", nargs="*", help="case names (substring match)")
    ap.add_argument("--dirs", type=int, default=2, help="finite-difference directions per input")
    ap.add_argument("--json", help="write every case's result here")
    ap.add_argument("--work", help="folder for the models (default: a temporary one)")
    args = ap.parse_args(argv)

    env = dict(os.environ)
    lib = os.path.join(REPO, ".ort", "lib", "libonnxruntime.so")
    if "ORT_DYLIB_PATH" not in env and os.path.exists(lib):
        env["ORT_DYLIB_PATH"] = lib
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from onnx.backend.test.case import node
        cases = [c for c in node.collect_testcases(None) if c.kind == "node"]
    if args.only:
        cases = [c for c in cases if any(s in c.name for s in args.only)]
    work = args.work or tempfile.mkdtemp(prefix="node-sweep-")
    os.makedirs(work, exist_ok=True)
    results = []
    for i, case in enumerate(cases):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                rec = check_case(case, args, env, work)
            except Exception as e:  # noqa: BLE001 (keep sweeping; the record says what broke)
                rec = dict(name=case.name, status="script-error", detail=repr(e)[:300])
        results.append(rec)
        if rec["status"] not in ("ok", "skipped"):
            print(f"[{i + 1}/{len(cases)}] {rec['name']}: {rec['status']}: {rec['detail']}", flush=True)
    counts = collections.Counter(r["status"] for r in results)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(tune=args.tune, counts=counts, cases=results), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
