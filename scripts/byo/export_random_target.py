"""A stand-in target for the bring-your-own checks: torchvision ResNet-18 with ONE logit and
RANDOM weights (nothing here is a trained model). It has the input/output layout of ZOOM's
attribute classifiers (224x224 RGB, ImageNet mean/std, one logit), so the BYO presets run on it
unchanged.

    .venv-byo/bin/python scripts/byo/export_random_target.py --out DIR [--seed 0]
"""

import argparse
import pathlib

import torch
import torchvision


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=pathlib.Path, help="folder for model.onnx")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    net = torchvision.models.resnet18(weights=None, num_classes=1).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    x = torch.randn(2, 3, 224, 224)
    path = args.out / "model.onnx"
    torch.onnx.export(
        net,
        (x,),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    (args.out / "README.txt").write_text(
        "RANDOM WEIGHTS (test only): torchvision resnet18(num_classes=1), seed "
        f"{args.seed}, torch {torch.__version__}; written by scripts/byo/export_random_target.py\n"
    )
    print(f"wrote {path} (random weights)")


if __name__ == "__main__":
    main()
