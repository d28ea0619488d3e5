"""A small StyleGAN-like generator written against the plain-module interface (interface.py).

    .venv-byo/bin/python scripts/export_stylegan.py --module scripts/byo/stylegan/example_module.py:build --out DIR

It has random weights (seeded) and exists to document and test the interface: mapping MLP with a W
average and per-row truncation, a learned constant, modulated 3×3 convolutions written non-fused
(x * s → conv with a constant kernel → * demodulation), bilinear 2× upsampling, constant noise, and
ToRGB layers (1×1, not demodulated) whose styles are marked non-editable.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class _ModConv(torch.nn.Module):
    def __init__(self, w_dim, cin, cout, k, demodulate, res, gen):
        super().__init__()
        self.affine_w = torch.nn.Parameter(torch.randn(cin, w_dim, generator=gen) / w_dim ** 0.5)
        self.affine_b = torch.nn.Parameter(torch.ones(cin))
        self.weight = torch.nn.Parameter(torch.randn(cout, cin, k, k, generator=gen) / (cin * k * k) ** 0.5)
        self.bias = torch.nn.Parameter(torch.randn(cout, generator=gen) * 0.1)
        self.demodulate = demodulate
        if demodulate:
            self.register_buffer("noise", torch.randn(1, 1, res, res, generator=gen) * 0.05)

    def style(self, w):
        return w @ self.affine_w.t() + self.affine_b

    def forward(self, x, s):
        x = x * s[:, :, None, None]
        x = F.conv2d(x, self.weight, padding=self.weight.shape[-1] // 2)
        if self.demodulate:
            d = (s.square() @ self.weight.square().sum([2, 3]).t() + 1e-8).rsqrt()
            x = x * d[:, :, None, None] + self.noise
            return F.leaky_relu(x + self.bias[None, :, None, None], 0.2) * 2 ** 0.5
        return x + self.bias[None, :, None, None]


class TinyStyleGenerator(torch.nn.Module):
    def __init__(self, z_dim=32, w_dim=32, channels=(32, 32, 16), seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.z_dim = z_dim
        self.map = torch.nn.ModuleList([torch.nn.Linear(z_dim, w_dim), torch.nn.Linear(w_dim, w_dim)])
        with torch.no_grad():
            for lin in self.map:
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=gen) / lin.in_features ** 0.5)
                lin.bias.zero_()
        self.const = torch.nn.Parameter(torch.randn(1, channels[0], 4, 4, generator=gen))
        self.convs = torch.nn.ModuleList()
        self.torgbs = torch.nn.ModuleList()
        layers, res, cin = [], 4, channels[0]
        for i, c in enumerate(channels):
            if i > 0:
                res *= 2
                self.convs.append(_ModConv(w_dim, cin, c, 3, True, res, gen))
                layers.append(dict(name=f"r{res}.conv_up", channels=cin, resolution=res))
                cin = c
            self.convs.append(_ModConv(w_dim, cin, c, 3, True, res, gen))
            layers.append(dict(name=f"r{res}.conv", channels=cin, resolution=res))
            self.torgbs.append(_ModConv(w_dim, c, 3, 1, False, res, gen))
            layers.append(dict(name=f"r{res}.torgb", channels=c, resolution=res, editable=False, torgb=True))
            cin = c
        self.style_layers = layers
        self.num_ws = len(layers)
        self.img_resolution = res
        self.card_info = {"description": "example_module.py: tiny StyleGAN-like generator, random weights (seeded)",
                          "licence": "part of zoom (tests/documentation); random weights"}
        with torch.no_grad():
            z = torch.randn(2048, z_dim, generator=gen)
            self.register_buffer("w_avg", self._mlp(z).mean(0))

    def _mlp(self, z):
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        for lin in self.map:
            x = F.leaky_relu(lin(x), 0.2)
        return x

    # -- interface -------------------------------------------------------------------------------

    def mapping(self, z, truncation_psi, truncation_cutoff):
        w = self._mlp(z)
        ws = w[:, None, :].expand(-1, self.num_ws, -1)
        if truncation_psi == 1:
            return ws
        cut = self.num_ws if truncation_cutoff is None else min(truncation_cutoff, self.num_ws)
        head = self.w_avg + truncation_psi * (ws[:, :cut] - self.w_avg)
        return torch.cat([head, ws[:, cut:]], dim=1)

    def _order(self):
        """(module, is_torgb) in style_layers order."""
        out, ci, ti = [], 0, 0
        for layer in self.style_layers:
            if layer.get("torgb"):
                out.append((self.torgbs[ti], True))
                ti += 1
            else:
                out.append((self.convs[ci], False))
                ci += 1
        return out

    def styles(self, ws):
        return [mod.style(ws[:, k]) for k, (mod, _) in enumerate(self._order())]

    def synthesis(self, ws, styles):
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        img = None
        for (mod, torgb), s, layer in zip(self._order(), styles, self.style_layers):
            if torgb:
                y = mod(x, s)
                img = y if img is None else F.interpolate(img, scale_factor=2, mode="bilinear",
                                                          align_corners=False) + y
            else:
                if layer["name"].endswith("conv_up"):
                    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
                x = mod(x, s)
        return img


def build():
    return TinyStyleGenerator().eval().requires_grad_(False)
