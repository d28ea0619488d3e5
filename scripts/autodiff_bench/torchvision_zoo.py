"""Breadth check of `zoom grad` on torchvision's model zoo (random weights, nothing downloaded).

For each architecture: export it with PyTorch's TorchScript exporter (opset 17, batch 1), build the
gradient graph with `zoom grad --tune cpu`, compare its input gradient with PyTorch autograd in
float64 on the same weights, input and cotangent, and time the gradient graph against the forward
pass (onnxruntime CPU, one thread, alternating runs, median of per-pair ratios). The bench proper
(run.py) measures a few models carefully; this one asks whether whole families build, are right
and stay near the 3x target.

Reading the error column: on ReLU networks float32 rounding can move a pre-activation that is
within ~1e-7 of zero to the other side of its kink, and the float32 gradient then takes the other
one-sided derivative there. Errors of 1e-4 to 5e-3 on ResNet/DenseNet-style nets are that (checked
on ResNet-50: zoom's gradient graph of the float64 model, evaluated in float64, matches autograd to
1e-7). A wrong rule shows up as an error near 1.

    .venv-byo/bin/python scripts/autodiff_bench/torchvision_zoo.py --zoom target/release/zoom \
        [--only resnet50 ...] [--work /tmp/autodiff-bench/zoo]
"""

import argparse
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import REPO  # noqa: E402  (same folder)

CLASSIFIERS = ["squeezenet1_1", "shufflenet_v2_x1_0", "mnasnet1_0", "mobilenet_v2", "mobilenet_v3_large",
               "efficientnet_v2_s", "regnet_y_400mf", "resnet50", "densenet121", "googlenet", "inception_v3",
               "convnext_tiny", "swin_t", "maxvit_t", "vit_b_16"]
SEGMENTERS = ["lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50"]


class FirstOutput(torch.nn.Module):
    """Segmentation models return a dict; GoogLeNet/Inception namedtuples in training only."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        y = self.m(x)
        return y["out"] if isinstance(y, dict) else y


def build(name: str):
    """(module in eval mode, input resolution)."""
    if name in SEGMENTERS:
        m = getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None)
        return FirstOutput(m).eval(), 160
    kw = {"weights": None}
    if name in ("googlenet", "inception_v3"):
        kw.update(aux_logits=False, init_weights=True)
    m = getattr(torchvision.models, name)(**kw)
    if name.startswith("vit_"):
        # torchvision zero-initialises the classifier head: the gradient would be exactly zero.
        torch.nn.init.normal_(m.heads.head.weight, std=0.02)
    return FirstOutput(m).eval(), (299 if name == "inception_v3" else 224)


def session(path: str) -> ort.InferenceSession:
    o = ort.SessionOptions()
    o.intra_op_num_threads = o.inter_op_num_threads = 1
    o.log_severity_level = 3
    return ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])


def check(name: str, zoom: str, work: str, env: dict, pairs: int) -> str:
    torch.manual_seed(0)
    model, res = build(name)
    x = torch.rand(1, 3, res, res)
    fwd = os.path.join(work, name + ".onnx")
    vjp = os.path.join(work, name + ".vjp.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), fwd, input_names=["input"], output_names=["out"], opset_version=17,
                          dynamo=False)
    t = time.perf_counter()
    p = subprocess.run([zoom, "grad", fwd, "--wrt", "input", "--tune", "cpu", "-o", vjp],
                       capture_output=True, text=True, env=env)
    build_s = time.perf_counter() - t
    nodes = len(onnx.load(fwd, load_external_data=False).graph.node)
    if p.returncode != 0:
        return f"| {name} | {res} | {nodes} | FAILED: {p.stderr.strip().splitlines()[-1][:200]} | | | |"
    f, v = session(fwd), session(vjp)
    y = f.run(None, {"input": x.numpy()})[0]
    g = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    feeds = {"input": x.numpy(), "out_grad": g}
    grad = v.run(["input_grad"], feeds)[0].astype(np.float64)
    x64 = x.double().requires_grad_(True)
    (ref,) = torch.autograd.grad(model.double()(x64), x64, torch.from_numpy(g).double())
    ref = ref.numpy()
    err = np.linalg.norm(grad - ref) / np.linalg.norm(ref)
    ratios = []
    for _ in range(pairs):
        t0 = time.process_time()
        f.run(None, {"input": x.numpy()})
        t1 = time.process_time()
        v.run(None, feeds)
        ratios.append((time.process_time() - t1) / (t1 - t0))
    fwd_ms = (t1 - t0) * 1e3
    return (f"| {name} | {res} | {nodes} | {err:.1e} | {np.median(ratios):.2f}× | {fwd_ms:.0f} ms | "
            f"{build_s:.1f} s |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoom", required=True, help="zoom binary (zoom grad)")
    ap.add_argument("--only", nargs="*", help="model names")
    ap.add_argument("--work", default="/tmp/autodiff-bench/zoo")
    ap.add_argument("--pairs", type=int, default=7, help="alternating forward/gradient timing pairs")
    args = ap.parse_args(argv)
    os.makedirs(args.work, exist_ok=True)
    env = dict(os.environ)
    if "ORT_DYLIB_PATH" not in env and os.path.exists(os.path.join(REPO, ".ort", "lib", "libonnxruntime.so")):
        env["ORT_DYLIB_PATH"] = os.path.join(REPO, ".ort", "lib", "libonnxruntime.so")
    print(f"<!-- torchvision {torchvision.__version__}, torch {torch.__version__}, onnxruntime {ort.__version__} -->")
    print("| model | input | fwd nodes | grad rel. err vs autograd f64 | VJP/fwd | fwd | zoom grad |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in CLASSIFIERS + SEGMENTERS:
        if args.only and name not in args.only:
            continue
        try:
            print(check(name, args.zoom, args.work, env, args.pairs), flush=True)
        except Exception as e:  # noqa: BLE001 (a harness failure is a row too)
            print(f"| {name} | | | harness: {type(e).__name__}: {str(e)[:160]} | | | |", flush=True)


if __name__ == "__main__":
    main()
