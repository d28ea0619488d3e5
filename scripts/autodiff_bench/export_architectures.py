#!/usr/bin/env python3
"""Export small RANDOM-WEIGHT PyTorch architectures to ONNX for the autodiff benchmark.

Every model here has random weights (seeded initialisation, never trained, never downloaded): they
exist only to exercise gradient (VJP) graph builders on realistic operator mixes. For each model this
writes, under --out (default /tmp/autodiff-bench/models, never into the repository):

  <name>.onnx   forward model, opset 17, fixed batch 1, one differentiated input and output
  <name>.npz    PyTorch autograd reference: `x` (float32 input), `g` (float32 cotangent of the
                output) and `grad` = (d output / d x)^T g computed by autograd in float64 on a
                float64 copy of the same random-weight model
  manifest.json the list of models with input/output names and shapes

Models (names all end in `_random`: random weights):
  cnn_maxpool_random     small CNN classifier: Conv-BN-ReLU-MaxPool x3, GAP, Linear (1x3x96x96)
  resnet18_random        torchvision resnet18(weights=None), 1x3x224x224
  vit_tiny_random        timm vit_tiny_patch16_224 (pretrained=False), 1x3x224x224
                         (a same-sized custom ViT when timm is not installed)
  seg_resize_random      segmentation net: strided encoder + bilinear upsampling (Resize) head, 1x3x128x128
  seg_resize512_random   the same net at 1x3x512x512 (bilinear 64->128 and 128->512: how the Resize
                         gradient scales with the image size)
  unet_small_random      3-level U-Net (MaxPool down, bilinear up, skip Concat), 1x3x128x128
  stylegan2_synth_random StyleGAN2-like NON-fused synthesis network: modulated conv as
                         x*s -> conv -> *demod, upsampling, blur, constant noise, leaky ReLU,
                         toRGB skips; graph input `styles` [1, L, 64] is differentiated

Usage (torch, torchvision and timm are in .venv-byo):
  .venv-byo/bin/python scripts/autodiff_bench/export_architectures.py --out /tmp/autodiff-bench/models

--exporter torchscript (default) uses torch.onnx.export(dynamo=False), which writes opset 17 with
standard ai.onnx operators directly; --exporter dynamo uses the torch.export-based exporter (it
targets opset 18 natively and is converted down to 17).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OPSET = 17


# --------------------------------------------------------------------------------------------------
# Architectures (random weights)


class CnnMaxpool(nn.Module):
    """Small CNN classifier with MaxPool, random weights."""

    def __init__(self, classes: int = 10):
        super().__init__()
        chans = [3, 32, 64, 64]
        layers: list[nn.Module] = []
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                       nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], classes)

    def forward(self, x):
        x = self.features(x)
        x = x.mean(dim=(2, 3))
        return self.head(x)


class SegResize(nn.Module):
    """Segmentation net with a bilinear upsampling (Resize) head, random weights."""

    def __init__(self, classes: int = 5):
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
                                 nn.BatchNorm2d(cout), nn.ReLU())

        self.s1 = nn.Sequential(block(3, 16, 2), block(16, 16, 1))     # /2
        self.s2 = nn.Sequential(block(16, 32, 2), block(32, 32, 1))    # /4
        self.s3 = nn.Sequential(block(32, 64, 2), block(64, 64, 1))    # /8
        self.lat2 = nn.Conv2d(32, 32, 1)
        self.top = nn.Conv2d(64, 32, 1)
        self.head = nn.Sequential(block(32, 32, 1), nn.Conv2d(32, classes, 1))

    def forward(self, x):
        h, w = x.shape[-2:]
        f1 = self.s1(x)
        f2 = self.s2(f1)
        f3 = self.s3(f2)
        p = F.interpolate(self.top(f3), scale_factor=2.0, mode="bilinear", align_corners=False)
        p = p + self.lat2(f2)
        logits = self.head(p)
        return F.interpolate(logits, size=(int(h), int(w)), mode="bilinear", align_corners=False)


class UNetSmall(nn.Module):
    """3-level U-Net: MaxPool down, bilinear up, skip concatenation; random weights."""

    def __init__(self, classes: int = 2, base: int = 16):
        super().__init__()

        def double(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(),
                                 nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        c1, c2, c3, c4 = base, base * 2, base * 4, base * 8
        self.d1, self.d2, self.d3 = double(3, c1), double(c1, c2), double(c2, c3)
        self.mid = double(c3, c4)
        self.u3, self.u2, self.u1 = double(c4 + c3, c3), double(c3 + c2, c2), double(c2 + c1, c1)
        self.out = nn.Conv2d(c1, classes, 1)

    def forward(self, x):
        x1 = self.d1(x)
        x2 = self.d2(F.max_pool2d(x1, 2))
        x3 = self.d3(F.max_pool2d(x2, 2))
        m = self.mid(F.max_pool2d(x3, 2))
        up = lambda t: F.interpolate(t, scale_factor=2.0, mode="bilinear", align_corners=False)  # noqa: E731
        y = self.u3(torch.cat([up(m), x3], 1))
        y = self.u2(torch.cat([up(y), x2], 1))
        y = self.u1(torch.cat([up(y), x1], 1))
        return self.out(y)


class SmallViT(nn.Module):
    """Fallback ViT (same shape as vit_tiny_patch16_224) used only when timm is missing."""

    def __init__(self, img=224, patch=16, dim=192, depth=12, heads=3, classes=1000):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        n = (img // patch) ** 2
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


class ModConv(nn.Module):
    """StyleGAN2 modulated convolution, NON-fused: x * s -> conv (shared weight) -> * demod."""

    def __init__(self, cin, cout, k, w_dim, demodulate=True, up=False):
        super().__init__()
        self.affine = nn.Linear(w_dim, cin)
        nn.init.ones_(self.affine.bias)
        self.weight = nn.Parameter(torch.randn(cout, cin, k, k) / math.sqrt(cin * k * k))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.demodulate, self.up, self.pad = demodulate, up, k // 2
        if up:  # [1, 2, 1] blur after upsampling, as a depthwise conv (grouped Conv)
            f = torch.tensor([1.0, 2.0, 1.0])
            f = (f[:, None] * f[None, :]) / 16.0
            self.register_buffer("blur", f.expand(cout, 1, 3, 3).clone())

    def forward(self, x, w):
        s = self.affine(w)                                          # [B, cin]
        x = x * s[:, :, None, None]
        if self.up:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        x = F.conv2d(x, self.weight, padding=self.pad)
        if self.up:
            x = F.conv2d(x, self.blur, padding=1, groups=x.shape[1])
        if self.demodulate:
            wsq = self.weight.pow(2).sum(dim=(2, 3))                # [cout, cin]
            d = torch.rsqrt(s.pow(2) @ wsq.t() + 1e-8)              # [B, cout]
            x = x * d[:, :, None, None]
        return x + self.bias[None, :, None, None]


class SynthLayer(nn.Module):
    def __init__(self, cin, cout, w_dim, res, up, seed):
        super().__init__()
        self.conv = ModConv(cin, cout, 3, w_dim, up=up)
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("noise", torch.randn(1, 1, res, res, generator=g))  # constant noise
        self.noise_strength = nn.Parameter(torch.full((), 0.1))

    def forward(self, x, w):
        x = self.conv(x, w) + self.noise * self.noise_strength
        return F.leaky_relu(x, 0.2) * math.sqrt(2.0)


class StyleGAN2Synth(nn.Module):
    """StyleGAN2-like synthesis network (non-fused modulated convs), random weights.

    Input `styles` [B, num_ws, w_dim]; output image [B, 3, 32, 32]. 4x4 const, then 8, 16, 32.
    """

    def __init__(self, w_dim=64, ch=64, res=32):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, ch, 4, 4))
        self.layers = nn.ModuleList()
        self.torgb = nn.ModuleList()
        r, i = 4, 0
        self.layers.append(SynthLayer(ch, ch, w_dim, 4, False, seed=100 + i)); i += 1
        self.torgb.append(ModConv(ch, 3, 1, w_dim, demodulate=False))
        while r < res:
            r *= 2
            self.layers.append(SynthLayer(ch, ch, w_dim, r, True, seed=100 + i)); i += 1
            self.layers.append(SynthLayer(ch, ch, w_dim, r, False, seed=100 + i)); i += 1
            self.torgb.append(ModConv(ch, 3, 1, w_dim, demodulate=False))
        self.num_ws = len(self.layers) + 1

    def forward(self, styles):
        x = self.const.expand(styles.shape[0], -1, -1, -1)
        x = self.layers[0](x, styles[:, 0])
        img = self.torgb[0](x, styles[:, 1])
        li = 1
        for t, rgb in enumerate(self.torgb[1:]):
            x = self.layers[li](x, styles[:, li]); li += 1
            x = self.layers[li](x, styles[:, li]); li += 1
            img = F.interpolate(img, scale_factor=2.0, mode="bilinear", align_corners=False)
            img = img + rgb(x, styles[:, li])
        return img


def _vit():
    try:
        import timm
    except ImportError:
        print("timm not installed: using the custom SmallViT (same size as vit_tiny_patch16_224)")
        return SmallViT(), "custom SmallViT (timm missing)"
    m = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=1000)
    return m, f"timm {timm.__version__} vit_tiny_patch16_224 pretrained=False"


def _resnet18():
    import torchvision
    return torchvision.models.resnet18(weights=None), f"torchvision {torchvision.__version__} resnet18(weights=None)"


def _torchvision(name: str):
    """A torchvision classifier with random weights (the exporter writes HardSwish/HardSigmoid
    ops for MobileNetV3, and SiLU as Sigmoid + Mul for EfficientNet)."""
    import torchvision
    return lambda: (getattr(torchvision.models, name)(weights=None),
                    f"torchvision {torchvision.__version__} {name}(weights=None)")


def _randomize_bn(model: nn.Module, gen: torch.Generator):
    """Give BatchNorm layers non-trivial random statistics (fresh BN is the identity)."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=gen) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=gen) * 0.5 + 0.75)
                mod.weight.copy_(torch.rand(mod.num_features, generator=gen) * 0.5 + 0.75)
                mod.bias.copy_(torch.randn(mod.num_features, generator=gen) * 0.1)


# name -> (factory, input name, input shape, output name, description)
ARCHS = {
    "cnn_maxpool_random": (lambda: (CnnMaxpool(), "custom CNN classifier with MaxPool"),
                           "input", (1, 3, 96, 96), "logits"),
    "resnet18_random": (_resnet18, "input", (1, 3, 224, 224), "logits"),
    "vit_tiny_random": (_vit, "input", (1, 3, 224, 224), "logits"),
    "seg_resize_random": (lambda: (SegResize(), "custom segmentation net, bilinear Resize head"),
                          "input", (1, 3, 128, 128), "logits"),
    "unet_small_random": (lambda: (UNetSmall(), "custom 3-level U-Net, base 16 channels"),
                          "input", (1, 3, 128, 128), "logits"),
    "stylegan2_synth_random": (lambda: (StyleGAN2Synth(), "custom StyleGAN2-like non-fused synthesis, 32x32"),
                               "styles", None, "image"),
    # Last, so that adding it left the seeds (and weights) of the rows above unchanged.
    "seg_resize512_random": (lambda: (SegResize(), "custom segmentation net, bilinear Resize head, 512x512"),
                             "input", (1, 3, 512, 512), "logits"),
    # Mobile classifiers users bring most (squeeze-excite, hard-swish, SiLU), appended for the
    # same reason.
    "mobilenet_v3_small_random": (_torchvision("mobilenet_v3_small"), "input", (1, 3, 224, 224), "logits"),
    "efficientnet_b0_random": (_torchvision("efficientnet_b0"), "input", (1, 3, 224, 224), "logits"),
}


# --------------------------------------------------------------------------------------------------


def export(model: nn.Module, x: torch.Tensor, path: str, in_name: str, out_name: str, exporter: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, (x,), path, input_names=[in_name], output_names=[out_name],
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
        else:
            prog = torch.onnx.export(model, (x,), input_names=[in_name], output_names=[out_name],
                                     opset_version=OPSET, dynamo=True, external_data=False,
                                     optimize=True, verbose=False)
            prog.save(path, external_data=False)
    import onnx
    m = onnx.load(path)
    onnx.checker.check_model(m)
    # inline any leftover external data (small models only) and save as one self-contained file
    onnx.save(m, path)
    if os.path.exists(path + ".data"):
        os.remove(path + ".data")
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/autodiff-bench/models")
    ap.add_argument("--exporter", choices=["torchscript", "dynamo"], default="torchscript")
    ap.add_argument("--only", nargs="*", help="subset of model names")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    import onnx

    manifest = []
    for idx, (name, (factory, in_name, in_shape, out_name)) in enumerate(ARCHS.items()):
        if args.only and name not in args.only:
            continue
        torch.manual_seed(args.seed + idx)
        gen = torch.Generator().manual_seed(args.seed + 1000 + idx)
        model, desc = factory()
        _randomize_bn(model, gen)
        model.eval()
        if in_shape is None:  # StyleGAN-like: styles [1, num_ws, w_dim]
            in_shape = (1, model.num_ws, 64)
        x = torch.randn(*in_shape, generator=gen)
        path = os.path.join(args.out, name + ".onnx")
        export(model, x, path, in_name, out_name, args.exporter)
        om = onnx.load(path)

        # PyTorch autograd reference in float64 on the same random weights.
        m64 = model.double()
        x64 = x.double().requires_grad_(True)
        y64 = m64(x64)
        g = torch.randn(y64.shape, generator=gen)
        (grad,) = torch.autograd.grad(y64, x64, g.double())
        np.savez(os.path.join(args.out, name + ".npz"), x=x.numpy().astype(np.float32),
                 g=g.numpy().astype(np.float32), grad=grad.numpy(), y=y64.detach().numpy())
        ops: dict[str, int] = {}
        for n in om.graph.node:
            ops[n.op_type] = ops.get(n.op_type, 0) + 1
        entry = dict(name=name, onnx=name + ".onnx", npz=name + ".npz", wrt=in_name, of=out_name,
                     shape=list(in_shape), out_shape=list(y64.shape), description=desc + " (random weights)",
                     exporter=args.exporter, nodes=len(om.graph.node), ops=ops,
                     opset=next((o.version for o in om.opset_import if o.domain in ("", "ai.onnx")), None),
                     params=int(sum(p.numel() for p in model.parameters())))
        manifest.append(entry)
        print(f"{name:24s} {len(om.graph.node):4d} nodes  {entry['params']/1e6:6.2f} M params  "
              f"{'x'.join(map(str, in_shape))} -> {'x'.join(map(str, y64.shape))}  {desc}")
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(dict(torch=torch.__version__, exporter=args.exporter, opset=OPSET, models=manifest), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
