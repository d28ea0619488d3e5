"""The official NVlabs StyleGAN2-ADA / StyleGAN3 generators, seen through zoom's generator interface.

Nothing from the official code is copied here: it is imported at run time from the checkout the user
names (``--stylegan-repo``), because its pickles need ``dnnlib`` and ``torch_utils`` to unpickle and
carry the network source code inside them. This module

* imports that checkout quietly on CPU (reference ops, no CUDA plugin builds);
* loads a network pickle (``legacy.load_network_pkl``, falling back to plain pickle) and takes
  ``G_ema``, or builds a randomly initialised generator of a known architecture (tests only);
* wraps the generator as an :class:`OfficialGenerator`, which implements the interface documented in
  ``interface.py`` (``mapping`` / ``styles`` / ``synthesis``) with

  - StyleSpace = the output of every modulated layer's ``affine`` (bias included, ToRGB weight gain
    not included), in synthesis order; the StyleGAN3 input layer's affine (a rotation/translation of
    the Fourier features) is not StyleSpace and stays internal;
  - each layer's ``affine`` replaced by :class:`StyleSlot`, which returns the style it is given
    instead of computing ``affine(w)``;
  - non-fused modulated convolutions (StyleGAN2: the official ``fused_modconv=False`` path;
    StyleGAN3: the official layer's ``modulated_conv2d`` is swapped, for the duration of a call,
    for :func:`modulated_conv2d_nonfused`, written here from the equations), constant noise and fp32.

``OfficialGenerator.reference`` runs the untouched official forward (fused grouped-conv modconv,
official truncation) with the edit added to each affine output: the independent reference that the
parity check compares the ONNX graph against.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import pickle
import subprocess
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from models.fetch import sha256_file  # scripts/ is on sys.path

from .interface import StyleLayer


class ExportError(Exception):
    """A user-facing error (bad path, unsupported pickle, ...)."""


# --------------------------------------------------------------------------------------------------
# Importing the checkout


@dataclass
class RepoInfo:
    path: str
    commit: str | None
    dirty: bool | None
    flavour: str  # 'stylegan3' (networks_stylegan2 + networks_stylegan3) or 'stylegan2-ada' (networks)
    notes: list = field(default_factory=list)


def _git(repo: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def import_official(repo: str | Path) -> RepoInfo:
    """Puts the user's checkout on sys.path and imports what unpickling needs."""
    repo = Path(repo).expanduser().resolve()
    if not repo.is_dir():
        raise ExportError(f"--stylegan-repo {repo}: not a directory (give the root of your checkout of "
                          "NVlabs/stylegan3 or NVlabs/stylegan2-ada-pytorch)")
    missing = [p for p in ("dnnlib", "torch_utils", "training", "legacy.py") if not (repo / p).exists()]
    if missing:
        raise ExportError(f"--stylegan-repo {repo}: does not look like the official StyleGAN code "
                          f"(missing {', '.join(missing)}); give the root of your checkout of NVlabs/stylegan3 "
                          "or NVlabs/stylegan2-ada-pytorch")
    notes = []
    # The official code imports pkg_resources.parse_version (removed from setuptools >= 81); give it a
    # minimal stand-in when the real one is absent.
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        try:
            from packaging.version import parse as parse_version
        except ImportError:  # pragma: no cover - packaging ships with pip/setuptools
            def parse_version(v):
                return tuple(int(p) if p.isdigit() else 0 for p in v.split("+")[0].split(".")[:3])
        sys.modules["pkg_resources"] = types.SimpleNamespace(parse_version=parse_version)
        notes.append("pkg_resources missing: a parse_version shim (packaging.version.parse) was installed")
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    try:
        importlib.import_module("dnnlib")
        custom_ops = importlib.import_module("torch_utils.custom_ops")
        importlib.import_module("torch_utils.persistence")
        importlib.import_module("legacy")
    except Exception as e:  # noqa: BLE001 - any import failure is the user's checkout/environment
        raise ExportError(f"--stylegan-repo {repo}: importing the official code failed: {type(e).__name__}: {e}")
    # Only CUDA tensors ever trigger the plugin builds; keep them silent anyway.
    custom_ops.verbosity = "none"
    flavour = "stylegan3" if (repo / "training" / "networks_stylegan3.py").exists() else "stylegan2-ada"
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=no") if commit else None
    return RepoInfo(path=str(repo), commit=commit, dirty=(bool(status) if status is not None else None),
                    flavour=flavour, notes=notes)


# --------------------------------------------------------------------------------------------------
# Loading pickles




def load_pickle(path: str | Path) -> tuple[torch.nn.Module, dict]:
    """Loads a network pickle and returns (G_ema in eval mode on CPU, provenance info)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise ExportError(f"--pkl {path}: no such file")
    legacy = importlib.import_module("legacy")
    how = "legacy.load_network_pkl"
    try:
        with open(path, "rb") as f:
            data = legacy.load_network_pkl(f)
    except (KeyError, AssertionError, TypeError, AttributeError):
        # Not a full training snapshot (e.g. a dict with only G_ema, or a bare module): plain pickle.
        how = "pickle.load (not a full training snapshot)"
        try:
            with open(path, "rb") as f:
                data = pickle.load(f)
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"--pkl {path}: cannot unpickle it with the official code on sys.path: "
                              f"{type(e).__name__}: {e}")
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"--pkl {path}: cannot unpickle it with the official code on sys.path: "
                          f"{type(e).__name__}: {e}")
    if isinstance(data, dict):
        if "G_ema" not in data:
            raise ExportError(f"--pkl {path}: the pickle is a dict without 'G_ema' (keys: {sorted(map(str, data))}); "
                              "export needs the generator snapshot G_ema as written by the official training loop")
        G = data["G_ema"]
        key = "G_ema"
    elif isinstance(data, torch.nn.Module):
        G, key = data, "(the pickle is the module itself)"
    else:
        raise ExportError(f"--pkl {path}: expected a dict with 'G_ema' or a generator module, got {type(data).__name__}")
    if not isinstance(G, torch.nn.Module) or not hasattr(G, "mapping") or not hasattr(G, "synthesis"):
        raise ExportError(f"--pkl {path}: {key} is not an official StyleGAN generator (no mapping/synthesis)")
    G = G.eval().requires_grad_(False).to("cpu").float()
    return G, {"path": str(path), "sha256": sha256_file(path), "bytes": path.stat().st_size,
               "loaded_with": how, "key": key}


# --------------------------------------------------------------------------------------------------
# Random-weight architectures (tests only)

# name -> (module in the checkout, Generator kwargs, what it mirrors)
_COMMON = dict(z_dim=512, c_dim=0, w_dim=512, img_channels=3)
RANDOM_ARCHS = {
    "stylegan2-256-config-f": ("networks_stylegan2", dict(
        _COMMON, img_resolution=256, mapping_kwargs=dict(num_layers=8), channel_base=32768, channel_max=512,
        num_fp16_res=0, conv_clamp=None),
        "StyleGAN2 config-f at 256 px (e.g. LSUN church as converted from TF: no fp16, no clamp)"),
    "stylegan2-512-ada": ("networks_stylegan2", dict(
        _COMMON, img_resolution=512, mapping_kwargs=dict(num_layers=8), channel_base=32768, channel_max=512,
        num_fp16_res=4, conv_clamp=256),
        "StyleGAN2-ADA at 512 px (e.g. AFHQ; fp16 blocks and conv_clamp 256, both inert in this fp32 export)"),
    "stylegan2-1024-ffhq": ("networks_stylegan2", dict(
        _COMMON, img_resolution=1024, mapping_kwargs=dict(num_layers=8), channel_base=32768, channel_max=512,
        num_fp16_res=4, conv_clamp=256),
        "StyleGAN2-ADA FFHQ 1024 px shapes (ZOOM's generator config)"),
    "stylegan2-64-tiny": ("networks_stylegan2", dict(
        z_dim=64, c_dim=0, w_dim=64, img_channels=3, img_resolution=64, mapping_kwargs=dict(num_layers=2),
        channel_base=2048, channel_max=64, num_fp16_res=0, conv_clamp=256),
        "a tiny StyleGAN2 for fast tests (not a published configuration)"),
    "stylegan3-t-256": ("networks_stylegan3", dict(
        _COMMON, img_resolution=256, mapping_kwargs=dict(num_layers=2), channel_base=16384, channel_max=512,
        num_fp16_res=4, conv_clamp=256, magnitude_ema_beta=0.5 ** (32 / 20e3)),
        "StyleGAN3-T at 256 px, --cbase=16384 (the official docs' FFHQ-U 256 ablation config, presumably "
        "the shape of the released stylegan3-t-ffhqu-256x256.pkl)"),
    "stylegan3-r-256": ("networks_stylegan3", dict(
        _COMMON, img_resolution=256, mapping_kwargs=dict(num_layers=2), channel_base=32768, channel_max=1024,
        num_fp16_res=4, conv_clamp=256, magnitude_ema_beta=0.5 ** (32 / 20e3), conv_kernel=1,
        use_radial_filters=True),
        "StyleGAN3-R at 256 px, --cbase=16384 (doubled for -R as train.py does; the official docs' FFHQ-U "
        "256 ablation config)"),
    "stylegan3-t-64-tiny": ("networks_stylegan3", dict(
        z_dim=64, c_dim=0, w_dim=64, img_channels=3, img_resolution=64, mapping_kwargs=dict(num_layers=2),
        channel_base=2048, channel_max=64, num_layers=6, num_critical=2, margin_size=4, num_fp16_res=0,
        conv_clamp=256),
        "a tiny StyleGAN3-T for fast tests (not a published configuration)"),
    "stylegan3-r-64-tiny": ("networks_stylegan3", dict(
        z_dim=64, c_dim=0, w_dim=64, img_channels=3, img_resolution=64, mapping_kwargs=dict(num_layers=2),
        channel_base=4096, channel_max=128, num_layers=6, num_critical=2, margin_size=4, num_fp16_res=0,
        conv_clamp=256, conv_kernel=1, use_radial_filters=True),
        "a tiny StyleGAN3-R for fast tests (not a published configuration)"),
}


def build_random(arch: str, seed: int, repo: RepoInfo, pkl_path: Path) -> dict:
    """Builds the official Generator class with random weights and pickles it as the training loop does.

    After the official random init, the parameters that init leaves at a constant (noise strengths,
    conv/ToRGB biases, W average, StyleGAN3 magnitude EMAs) are randomised too, so that every path of
    the graph (noise, bias, truncation towards w_avg, input gain) is exercised by the checks.
    """
    if arch not in RANDOM_ARCHS:
        raise ExportError(f"--random-weights {arch}: unknown; choose one of {', '.join(RANDOM_ARCHS)}")
    module_name, kwargs, what = RANDOM_ARCHS[arch]
    if repo.flavour != "stylegan3":
        if module_name == "networks_stylegan3":
            raise ExportError(f"--random-weights {arch} needs a checkout of NVlabs/stylegan3 (training/networks_stylegan3.py)")
        module_name = "networks"  # stylegan2-ada-pytorch
        kwargs = dict(kwargs)
        kwargs["synthesis_kwargs"] = {k: kwargs.pop(k) for k in list(kwargs)
                                      if k in ("channel_base", "channel_max", "num_fp16_res", "conv_clamp")}
    net = importlib.import_module(f"training.{module_name}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    G = net.Generator(**copy.deepcopy(kwargs)).eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in list(G.named_parameters()) + list(G.named_buffers()):
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "noise_strength":
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif leaf == "bias" and ".affine." not in name and "mapping." not in name and "input." not in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            elif leaf == "magnitude_ema":
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
        # w_avg as the training EMA would make it: the mean mapping output.
        z = torch.randn([4096, G.z_dim], generator=gen)
        c = torch.zeros([4096, G.c_dim])
        G.mapping.w_avg.copy_(G.mapping(z, c, truncation_psi=1)[:, 0].mean(0))
        # A deliberately tiny discriminator, only so that the snapshot has the training loop's layout
        # (legacy.load_network_pkl checks for G, D and G_ema).
        d_net = importlib.import_module("training.networks_stylegan2" if repo.flavour == "stylegan3" else "training.networks")
        d_kwargs = dict(c_dim=0, img_resolution=kwargs["img_resolution"], img_channels=3)
        d_kwargs.update(channel_base=256, channel_max=16)
        D = d_net.Discriminator(**d_kwargs).eval().requires_grad_(False)
    snapshot = dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs=None)
    pkl_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pkl_path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(snapshot, f)
    tmp.replace(pkl_path)
    return {"arch": arch, "mirrors": what, "class": f"training.{module_name}.Generator", "kwargs": kwargs,
            "seed": seed, "pickle": str(pkl_path),
            "perturbed_after_init": "noise_strength N(0,0.1); conv/ToRGB biases N(0,0.1); w_avg = mean mapping "
                                    "output of 4096 z; StyleGAN3 magnitude_ema U(0.5,1.5)",
            "snapshot": "dict(G, D, G_ema, augment_pipe=None, training_set_kwargs=None); G is G_ema, D is a tiny "
                        "stand-in (channel_base 256, channel_max 16)"}


# --------------------------------------------------------------------------------------------------
# The interface adapter


class StyleSlot(torch.nn.Module):
    """Stands in for a layer's ``affine``: returns the style it is given (``value``), or the original
    affine output plus an offset (``offset``, used by the reference, which also records the unedited
    output in ``last``), or just the original output."""

    def __init__(self, affine: torch.nn.Module):
        super().__init__()
        self.affine = affine
        self.value = None
        self.offset = None
        self.last = None

    @property
    def channels(self) -> int:
        # stylegan2-ada-pytorch's FullyConnectedLayer has no out_features attribute; its weight is [out, in]
        return int(self.affine.weight.shape[0])

    def forward(self, w):
        if self.value is not None:
            return self.value
        s = self.affine(w)
        if self.offset is None:
            return s
        self.last = s
        return s + self.offset


def modulated_conv2d_nonfused(x, w, s, demodulate=True, padding=0, input_gain=None):
    """StyleGAN3's modulated convolution without weights that depend on the style.

    Same arguments as the official StyleGAN3 ``modulated_conv2d``. With ``W`` the RMS-normalised
    kernel and ``ŝ`` the RMS-normalised style (per sample here; the official code normalises over the
    whole batch, a common scale that demodulation cancels up to its 1e-8 epsilon), the official fused
    form computes ``conv(x, W ⊙ ŝ_i ⊙ d_o ⊙ g_i)`` per sample with ``d_o = (Σ_ik (W_oik ŝ_i)² + 1e-8)^-½``.
    That equals ``d_o · conv(x ⊙ ŝ ⊙ g, W)``, and ``d = ((ŝ²) · (Σ_k W²)ᵀ + 1e-8)^-½`` is a matmul, so
    the convolution kernel is a constant.
    """
    n, i = s.shape
    if demodulate:
        w = w * w.square().mean([1, 2, 3], keepdim=True).rsqrt()
        s = s * s.square().mean(dim=1, keepdim=True).rsqrt()
    scale = s
    if input_gain is not None:
        scale = s * input_gain.expand(n, i)
    x = x * scale.reshape(n, i, 1, 1)
    x = torch.nn.functional.conv2d(x, w.to(x.dtype), padding=padding)
    if demodulate:
        d = (s.square() @ w.square().sum([2, 3]).t() + 1e-8).rsqrt()
        x = x * d.reshape(n, -1, 1, 1)
    return x


def _official_module_of(obj, attr: str):
    """The Python module holding the (possibly unpickled) class of ``obj`` that defines ``attr``."""
    for cls in type(obj).__mro__:
        mod = sys.modules.get(cls.__module__)
        if mod is not None and hasattr(mod, attr) and cls.__module__ != "torch_utils.persistence":
            return mod
    raise ExportError(f"cannot find the module of {type(obj).__name__} defining {attr}")


class OfficialGenerator(torch.nn.Module):
    """Official G (StyleGAN2 or StyleGAN3) behind the interface of ``interface.py``."""

    def __init__(self, G: torch.nn.Module, class_index: int | None = None):
        super().__init__()
        self.G = G
        self.z_dim = int(G.z_dim)
        self.img_resolution = int(G.img_resolution)
        self.c_dim = int(getattr(G, "c_dim", 0))
        c = torch.zeros([1, self.c_dim])
        if self.c_dim > 0:
            if class_index is None or not 0 <= class_index < self.c_dim:
                raise ExportError(f"the generator is conditional (c_dim = {self.c_dim}): pass --class-index K "
                                  f"with 0 <= K < {self.c_dim}; the one-hot label is baked into the graph")
            c[0, class_index] = 1
        elif class_index is not None:
            raise ExportError("--class-index given but the generator is unconditional (c_dim = 0)")
        self.class_index = class_index
        self.register_buffer("c", c)
        syn = G.synthesis
        self.style_layers: list[StyleLayer] = []
        self._slots: list[StyleSlot] = []
        self._w_index: list[int] = []
        if hasattr(syn, "block_resolutions"):
            self.kind = "stylegan2"
            w_idx = 0
            for res in syn.block_resolutions:
                block = getattr(syn, f"b{res}")
                k = w_idx
                for name in ("conv0", "conv1", "torgb"):
                    if not hasattr(block, name):
                        continue
                    layer = getattr(block, name)
                    self._add(f"b{res}.{name}", layer, res, torgb=(name == "torgb"), w_index=k)
                    k += 1
                w_idx += block.num_conv
            self._modconv_module = None
        elif hasattr(syn, "layer_names") and hasattr(syn, "input"):
            self.kind = "stylegan3"
            for idx, name in enumerate(syn.layer_names):
                layer = getattr(syn, name)
                self._add(name, layer, int(layer.out_size[0]), torgb=bool(layer.is_torgb), w_index=idx + 1)
            self._modconv_module = _official_module_of(getattr(syn, syn.layer_names[0]), "modulated_conv2d")
        else:
            raise ExportError(f"{type(syn).__name__}: neither a StyleGAN2 (block_resolutions) nor a StyleGAN3 "
                              "(layer_names, input) synthesis network")
        self.num_ws = int(G.num_ws)
        self.w_avg = G.mapping.w_avg

    def _add(self, name, layer, res, torgb, w_index):
        aff = layer.affine
        slot = aff if isinstance(aff, StyleSlot) else StyleSlot(aff)
        layer.affine = slot
        ch = slot.channels
        self.style_layers.append(StyleLayer(name=name, channels=ch, editable=not torgb, torgb=torgb,
                                            resolution=res))
        self._slots.append(slot)
        self._w_index.append(w_index)

    # -- interface -------------------------------------------------------------------------------

    def mapping(self, z, truncation_psi: float, truncation_cutoff: int | None):
        c = self.c.expand(z.shape[0], -1)
        ws = self.G.mapping(z, c, truncation_psi=1)
        if truncation_psi == 1:
            return ws
        cut = self.num_ws if truncation_cutoff is None else min(int(truncation_cutoff), self.num_ws)
        head = self.w_avg.lerp(ws[:, :cut], truncation_psi)
        return head if cut == self.num_ws else torch.cat([head, ws[:, cut:]], dim=1)

    def styles(self, ws):
        return [slot.affine(ws[:, k]) for slot, k in zip(self._slots, self._w_index)]

    def synthesis(self, ws, styles):
        with self._slots_set(values=styles), self._nonfused():
            if self.kind == "stylegan2":
                return self.G.synthesis(ws, noise_mode="const", force_fp32=True, fused_modconv=False)
            return self.G.synthesis(ws, noise_mode="const", force_fp32=True)

    # -- the untouched official forward, for parity --------------------------------------------------

    @torch.no_grad()
    def reference(self, z, edit, truncation_psi, truncation_cutoff):
        """Official mapping + truncation + synthesis (modconv as shipped: fused), affine outputs + edit.

        Returns (image, style) with style = the unedited affine outputs as the official blocks computed
        them (so the W+ row each layer reads is the official one, not ``styles()``'s bookkeeping)."""
        c = self.c.expand(z.shape[0], -1)
        ws = self.G.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        offsets, a = [], 0
        for layer in self.style_layers:
            offsets.append(edit[:, a:a + layer.channels])
            a += layer.channels
        with self._slots_set(offsets=offsets):
            image = self.G.synthesis(ws, noise_mode="const", force_fp32=True)
            style = torch.cat([slot.last for slot in self._slots], dim=1)
        return image, style

    @contextlib.contextmanager
    def _slots_set(self, values=None, offsets=None):
        try:
            for i, slot in enumerate(self._slots):
                slot.value = values[i] if values is not None else None
                slot.offset = offsets[i] if offsets is not None else None
            yield
        finally:
            for slot in self._slots:
                slot.value = slot.offset = slot.last = None

    @contextlib.contextmanager
    def _nonfused(self):
        mod = self._modconv_module
        if mod is None:
            yield
            return
        orig = mod.modulated_conv2d
        mod.modulated_conv2d = modulated_conv2d_nonfused
        try:
            yield
        finally:
            mod.modulated_conv2d = orig

    def describe(self, repo: RepoInfo | None = None) -> dict:
        """Architecture facts for the card, and whether the network source embedded in the pickle is the
        checkout's own file."""
        G = self.G
        kw = {}
        for k, v in (getattr(G, "init_kwargs", None) or {}).items():
            kw[k] = dict(v) if isinstance(v, dict) else v
        out = {"family": self.kind, "class": type(G).__name__, "init_kwargs": _plain(kw), "num_ws": self.num_ws,
               "w_dim": int(G.w_dim), "c_dim": self.c_dim, "class_index": self.class_index}
        src = getattr(G, "_orig_module_src", None)
        if src is not None:
            digest = hashlib.sha256(src.encode()).hexdigest()
            out["embedded_source_sha256"] = digest
            if repo is not None:
                # inspect.getsource drops a UTF-8 BOM and reads with universal newlines
                same = [str(p.relative_to(repo.path)) for p in sorted(Path(repo.path, "training").glob("networks*.py"))
                        if hashlib.sha256(p.read_bytes().decode("utf-8-sig", "replace").replace("\r\n", "\n")
                                          .encode()).hexdigest() == digest]
                out["embedded_source_matches"] = same[0] if same else "none of the checkout's training/networks*.py"
        return out


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return str(obj)

