"""Read what the face-CLIP training needs from the generator's and the emotion model's card.yaml.

Both cards are written by scripts/setup_models.py (another part of the project); this module is the
one place that knows their keys, and it fails with the file and key when something is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np


class ContractError(ValueError):
    pass


def _get(card: dict, path: str, where: Path):
    cur = card
    for key in path.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise ContractError(f"{where}: missing key `{path}`")
        cur = cur[key]
    return cur


def _input_shapes(model: Path) -> dict[str, list]:
    import onnx

    m = onnx.load(str(model), load_external_data=False)
    return {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in m.graph.input}


def generator_contract(card: dict, card_path: Path, model: Path) -> dict:
    """z/edit sizes from the graph; channel_scale, editable ranges, default_bound, truncation from the card."""
    shapes = _input_shapes(model)
    if set(shapes) != {"z", "edit"}:
        raise ContractError(f"{model}: inputs {sorted(shapes)}, the generator contract wants z and edit")
    z_dim, edit_dim = int(shapes["z"][1]), int(shapes["edit"][1])
    scale = np.asarray(_get(card, "channel_scale", card_path), np.float32)
    if scale.shape != (edit_dim,) or not np.all(scale > 0):
        raise ContractError(f"{card_path}: `channel_scale` must be {edit_dim} positive numbers, got shape {scale.shape}")
    ranges = _get(card, "edit_space.editable_channels.ranges", card_path)
    editable = np.concatenate([np.arange(int(a), int(b)) for a, b in ranges])
    if editable.min() < 0 or editable.max() >= edit_dim:
        raise ContractError(f"{card_path}: `edit_space.editable_channels.ranges` {ranges} outside [0, {edit_dim})")
    bound = float(_get(card, "default_bound", card_path))
    trunc = card.get("truncation")
    truncation = float(trunc) if isinstance(trunc, (int, float)) else None  # "none (...)" → plain N(0, I)
    return {"z_dim": z_dim, "edit_dim": edit_dim, "channel_scale": scale, "editable": editable,
            "attack_bound": bound, "truncation": truncation}


def emotion_contract(card: dict, model: Path):
    """(labels, input name, output name, preprocessing fn) for onnx/emotion, from its card.

    Generated faces are already tight 64x64 face crops, so the whole image is the crop (the card's
    crop is 1.2 x the detector box; its per-crop-scale table shows the labels are stable around that).
    """
    where = model.parent / "card.yaml"
    labels = list(_get(card, "labels", where))
    for need in ("happy", "surprise"):
        if need not in labels:
            raise ContractError(f"{where}: `labels` {labels} lacks {need!r}")
    inputs = _get(card, "inputs", where)
    if len(inputs) != 1:
        raise ContractError(f"{where}: expected one input, found {len(inputs)}")
    inp = inputs[0]
    shape = list(inp.get("shape", []))
    if shape[1:] != [1, 64, 64]:
        raise ContractError(f"{where}: input shape {shape}, expected [N, 1, 64, 64] (NCHW grayscale)")
    outputs = {o["name"] for o in _get(card, "outputs", where)}
    if "probs" not in outputs:
        raise ContractError(f"{where}: no `probs` output among {sorted(outputs)}")
    prep = _get(card, "preprocessing", where)
    if list(prep.get("size", [])) != [64, 64] or not prep.get("grayscale"):
        raise ContractError(f"{where}: preprocessing size/grayscale {prep.get('size')}/{prep.get('grayscale')}, "
                            "expected [64, 64] grayscale")
    weights = [float(x) for x in re.findall(r"([0-9]*\.[0-9]+)\s*\*\s*[RGB]", str(prep.get("channel_order", "")))]
    if len(weights) != 3:
        raise ContractError(f"{where}: cannot read the gray weights from preprocessing.channel_order "
                            f"{prep.get('channel_order')!r} (want 'a*R + b*G + c*B')")
    mean, std = float(_get(prep, "mean", where)[0]), float(_get(prep, "std", where)[0])
    if not str(prep.get("value_range", "")).startswith("[-1, 1]"):
        raise ContractError(f"{where}: preprocessing.value_range {prep.get('value_range')!r}, expected [-1, 1]")
    wr, wg, wb = weights

    def preprocess(images: np.ndarray) -> np.ndarray:
        rgb = (images.astype(np.float32) + 1.0) / 2.0  # generator [-1, 1] → [0, 1]
        gray = wr * rgb[:, 0] + wg * rgb[:, 1] + wb * rgb[:, 2]
        return ((gray - mean) / std)[:, None].astype(np.float32)

    return labels, inp["name"], "probs", preprocess
