"""The generator interface the exporter works with, and loading a plain PyTorch module that offers it.

``scripts/export_stylegan.py --module FILE.py:FACTORY`` imports ``FILE.py`` and calls ``FACTORY()``
(no arguments). It must return an object (normally a ``torch.nn.Module``) with:

``z_dim: int``
    Latent size Z; the graph input ``z`` is ``[N, Z]`` and zoom samples it from N(0, I).

``style_layers: list``
    One entry per StyleSpace layer, in synthesis order: a :class:`StyleLayer` or a dict with keys
    ``name`` (str), ``channels`` (int), and optionally ``editable`` (bool, default True),
    ``torgb`` (bool, default False) and ``resolution`` (int, for the card). The edit space S is these
    layers' channels concatenated in this order; zoom only edits the editable ones (mark ToRGB-like
    layers ``editable: False``).

``mapping(z, truncation_psi, truncation_cutoff) -> ws``
    z ``[N, Z]`` float32 to whatever intermediate latent the module uses (a tensor, e.g. W+
    ``[N, num_ws, w_dim]``). Truncation is the module's job: the exporter passes ``--truncation-psi``
    (float) and ``--truncation-cutoff`` (int, or None for all rows) and bakes the result into the graph.

``styles(ws) -> list of tensors``
    The unedited StyleSpace code, one ``[N, channels]`` float32 tensor per entry of ``style_layers``.

``synthesis(ws, styles) -> image``
    Renders ``[N, 3, H, W]`` float32 RGB in about [-1, 1] from ``ws`` and a list of (possibly edited)
    styles, which it must use *instead of* computing them from ``ws``. ``ws`` is passed for anything
    that is not StyleSpace (e.g. StyleGAN3's input transform).

Optional: ``card_info``, a dict merged into the card's ``source`` section (description, weights
origin, ...; its ``licence`` entry becomes the card's licence).

Requirements, so that the export is a faithful, differentiable ONNX graph:

* deterministic (no random noise: use fixed noise buffers), fp32, eval mode, CPU;
* traceable by ``torch.export`` with a dynamic batch dimension (no Python branching on tensor
  values, no ``int(x.shape[0])`` baked into reshapes where avoidable);
* the image must reach the styles only through ops zoom can differentiate (crates/zoom-graph/API.md):
  in particular convolution kernels must not depend on the styles. Modulated convolutions must be
  written non-fused: ``x * s`` → conv with a constant kernel → ``* demod(s)``, not as a grouped
  convolution with per-sample kernels.

The exporter builds ``image, style = synthesis(ws, [s_l + edit_l]), concat(styles(ws))`` with
``ws = mapping(z, psi, cutoff)``: ``edit`` is an additive offset on every StyleSpace channel (zeros =
unedited) and ``style`` is the unedited code. ``example_module.py`` is a complete small example.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path


class InterfaceError(Exception):
    """The module does not offer the documented interface."""


@dataclass
class StyleLayer:
    name: str
    channels: int
    editable: bool = True
    torgb: bool = False
    resolution: int | None = None


def normalise_layers(raw) -> list[StyleLayer]:
    if not isinstance(raw, (list, tuple)) or not raw:
        raise InterfaceError("style_layers must be a non-empty list")
    out = []
    names = set()
    for i, item in enumerate(raw):
        if isinstance(item, StyleLayer):
            layer = item
        elif isinstance(item, dict):
            unknown = set(item) - {"name", "channels", "editable", "torgb", "resolution"}
            if unknown:
                raise InterfaceError(f"style_layers[{i}]: unknown keys {sorted(unknown)}")
            if "name" not in item or "channels" not in item:
                raise InterfaceError(f"style_layers[{i}]: needs 'name' and 'channels'")
            layer = StyleLayer(**item)
        elif hasattr(item, "name") and hasattr(item, "channels"):
            layer = StyleLayer(name=item.name, channels=item.channels, editable=getattr(item, "editable", True),
                               torgb=getattr(item, "torgb", False), resolution=getattr(item, "resolution", None))
        else:
            raise InterfaceError(f"style_layers[{i}]: expected a dict with name/channels, got {type(item).__name__}")
        if not isinstance(layer.channels, int) or layer.channels <= 0:
            raise InterfaceError(f"style_layers[{i}] ({layer.name}): channels must be a positive int")
        if layer.name in names:
            raise InterfaceError(f"style_layers[{i}]: duplicate name {layer.name!r}")
        names.add(layer.name)
        out.append(layer)
    return out


def check_interface(gen) -> list[StyleLayer]:
    missing = [a for a in ("z_dim", "style_layers", "mapping", "styles", "synthesis") if not hasattr(gen, a)]
    if missing:
        raise InterfaceError(f"{type(gen).__name__} lacks {', '.join(missing)} (see scripts/byo/stylegan/interface.py)")
    for a in ("mapping", "styles", "synthesis"):
        if not callable(getattr(gen, a)):
            raise InterfaceError(f"{type(gen).__name__}.{a} is not callable")
    if not isinstance(gen.z_dim, int) or gen.z_dim <= 0:
        raise InterfaceError(f"{type(gen).__name__}.z_dim must be a positive int")
    layers = normalise_layers(gen.style_layers)
    if not any(layer.editable for layer in layers):
        raise InterfaceError("no style layer is editable")
    return layers


def load_module(spec: str):
    """``FILE.py:FACTORY`` → (the generator object, info for the card)."""
    if ":" not in spec:
        raise InterfaceError(f"--module {spec}: expected FILE.py:FACTORY")
    file, factory = spec.rsplit(":", 1)
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise InterfaceError(f"--module {spec}: no such file {path}")
    name = f"_zoom_user_generator_{abs(hash(str(path)))}"
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise InterfaceError(f"--module {spec}: cannot import {path}")
    module = importlib.util.module_from_spec(mspec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    try:
        mspec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's code
        raise InterfaceError(f"--module {spec}: importing {path} failed: {type(e).__name__}: {e}")
    fn = getattr(module, factory, None)
    if fn is None or not callable(fn):
        raise InterfaceError(f"--module {spec}: {path.name} has no callable {factory!r}")
    try:
        gen = fn()
    except Exception as e:  # noqa: BLE001
        raise InterfaceError(f"--module {spec}: {factory}() failed: {type(e).__name__}: {e}")
    check_interface(gen)
    return gen, {"module_file": str(path), "factory": factory}
