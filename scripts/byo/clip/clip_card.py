"""card.yaml for an exported CLIP: provenance, contract, preprocessing, ready-to-paste config block."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LICENCE = {
    "code": "OpenAI CLIP: MIT (Copyright (c) 2021 OpenAI); open_clip: MIT; this exporter: the project's licence",
    "weights": ("OpenAI CLIP weights: MIT (with OpenAI's model card: intended for research, not for deployed "
                "use); OpenCLIP weights: per checkpoint (most LAION/DataComp releases are MIT, some models "
                "and datasets carry other terms): check the checkpoint's own model card"),
    "tokenizer_vocabulary": "bpe_simple_vocab_16e6.txt.gz as shipped in open_clip_torch (OpenAI CLIP's, MIT)",
}


def file_facts(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def rel(path: Path, base: Path) -> str:
    """path relative to base, or absolute when they share nothing but the filesystem root."""
    a, b = path.resolve(), base.resolve()
    if os.path.commonpath([a, b]) == a.anchor:
        return str(a)
    return os.path.relpath(a, b)


def config_block(out: Path, config_dir: Path, size: int, mean, std, logit_scale: float) -> dict:
    return {"clip": {
        "image": rel(out / "image.onnx", config_dir),
        "text": rel(out / "text.onnx", config_dir),
        "tokenizer": rel(out / "tokenizer.json", config_dir),
        "preprocess": {"size": [size, size], "resize": "bilinear", "range": [0, 1],
                       "mean": [round(float(v), 8) for v in mean], "std": [round(float(v), 8) for v in std]},
        "max_tokens": 77,
        "logit_scale": round(float(logit_scale), 4),
    }}


def architecture(model, name: str, quick_gelu: bool) -> dict:
    v, t = model.visual, model.transformer
    n_img = sum(p.numel() for p in v.parameters())
    n_all = sum(p.numel() for p in model.parameters())
    arch = {"open_clip_name": name, "embed_dim": int(model.text_projection.shape[1])
            if hasattr(model.text_projection, "shape") else None}
    def pair(x):
        return [int(x), int(x)] if isinstance(x, (int, float)) else [int(a) for a in x]
    vis = {"type": type(v).__name__}
    if hasattr(v, "image_size"):
        vis["image_size"] = pair(v.image_size)
    if hasattr(v, "patch_size"):
        vis["patch_size"] = pair(v.patch_size)
    if hasattr(v, "layers") and isinstance(getattr(v, "layers"), (list, tuple)):
        vis["layers"] = [int(a) for a in v.layers]
    if hasattr(v, "transformer"):
        vis["width"] = int(v.transformer.width)
        vis["layers"] = int(v.transformer.layers)
        vis["heads"] = int(v.transformer.resblocks[0].attn.num_heads)
    vis["parameters"] = int(n_img)
    arch["vision"] = vis
    arch["text"] = {"context_length": int(model.context_length), "vocab_size": int(model.vocab_size),
                    "width": int(t.width), "layers": int(t.layers), "heads": int(t.resblocks[0].attn.num_heads),
                    "pooling": "EOT token = argmax(input_ids)", "parameters": int(n_all - n_img)}
    arch["activation"] = "QuickGELU x*sigmoid(1.702x) (OpenAI)" if quick_gelu else "GELU (exact, Erf)"
    return arch


def build_card(*, loaded, out: Path, config_dir: Path, towers: dict, versions: dict, checks: dict | None,
               timings: dict, command: str) -> dict:
    import torch
    model = loaded.model
    pre = loaded.preprocess
    size = int(pre["size"][0])
    ls = float(model.logit_scale.detach().exp().item())
    arch = architecture(model, loaded.name, loaded.quick_gelu)
    d = arch["embed_dim"]
    random = "weights" in loaded.source and "RANDOM" in loaded.source["weights"]
    card: dict = {}
    card["name"] = f"clip-{loaded.name.lower()}" + ("-RANDOM-WEIGHTS" if random else "")
    if random:
        card["WARNING"] = ("RANDOM WEIGHTS, TEST ONLY: this is the architecture of CLIP with untrained weights. It "
                           "checks the export pipeline; it cannot read images or prompts. Do not diagnose with it.")
    fmt = loaded.source.get("format", "")
    origin = ("OpenAI CLIP" if fmt.startswith("OpenAI") else
              "the architecture of OpenCLIP" if random else "OpenCLIP")
    card["what"] = (f"{origin} {loaded.name} exported to zoom's CLIP contract: image tower, text tower, "
                    "Hugging Face tokenizer.json of CLIP's BPE")
    card["source"] = dict(loaded.source)
    card["produced_by"] = {"command": command, "script": "scripts/export_clip.py (scripts/byo/clip/)"}
    card["licence"] = LICENCE
    card["architecture"] = arch
    card["embed_dim"] = d
    card["logit_scale"] = {
        "value": round(ls, 4),
        "from": "exp(checkpoint logit_scale)" + (" (open_clip's initial value log(1/0.07) for random weights)" if random else ""),
        "note": "OpenAI's released CLIP models have 100.0 (the clamp); zoom's clip.logit_scale defaults to 100",
    }
    card["contract"] = {
        "image": {"file": "image.onnx", "input": f"image [N,3,{size},{size}] float32, normalised ((x01 - mean) / std)",
                  "output": f"embedding [N,{d}] float32, L2-normalised", "dynamic": "N"},
        "text": {"file": "text.onnx", "input": "input_ids [N,77] int64, padded with 0 after <end_of_text>",
                 "output": f"embedding [N,{d}] float32, L2-normalised (taken at the EOT token = argmax of ids)",
                 "dynamic": "N", "attention_mask": "none (CLIP's causal mask is inside the graph)"},
        "similarity": "cosine of the two embeddings; logits = logit_scale * cosine",
    }
    card["preprocessing"] = {
        "size": [size, size],
        "resize": "bilinear, half-pixel centres, no antialias (what ZOOM's original code does to tensors; "
                  "zoom composes it as ONNX Resize)",
        "clip_own_pipeline": (f"{pre.get('interpolation')} resize of the shortest side to {size} "
                              f"({pre.get('resize_mode')}) + centre crop, on PIL images; for square generator "
                              "frames this is a plain resize: only the interpolation differs"),
        "range": [0, 1],
        "value_range_note": "x01 = (generator_rgb + 1) / 2, no clamp (ZOOM's CLIP path)",
        "mean": [float(v) for v in pre["mean"]],
        "std": [float(v) for v in pre["std"]],
        "channel_order": "RGB",
        "layout": "NCHW",
    }
    card["config"] = config_block(out, config_dir, size, pre["mean"], pre["std"], ls)
    card["config_note"] = (f"paths relative to {rel(config_dir, Path.cwd()) if config_dir != Path.cwd() else 'the current directory'}"
                           " (export_clip.py --config-dir); max_tokens must be 77 (text.onnx's fixed length; the "
                           "tokenizer truncates to 77 keeping <end_of_text> last)")
    card["tokenizer"] = {
        "file": "tokenizer.json",
        "format": "Hugging Face tokenizers JSON: normaliser (ftfy's text fixes, HTML entities, whitespace, "
                  "lower case), CLIP's regex split, byte-level BPE with </w>, <start_of_text>=49406 $A "
                  "<end_of_text>=49407 (special), truncation 77, no padding",
        "special_tokens": {"<start_of_text>": 49406, "<end_of_text>": 49407,
                           "note": "open_clip's names (OpenAI's code calls them <|startoftext|>/<|endoftext|>); "
                                   "the ids are what the model sees"},
        "not_replicated": "ftfy's mojibake repair and HTML entities other than &amp; &lt; &gt; &quot; &apos; "
                          "&#39; &#x27; &#34; &#38; &#60; &#62; &nbsp; &#160;",
    }
    files = {}
    for fname in ("image.onnx", "text.onnx", "tokenizer.json", "image.onnx.data", "text.onnx.data"):
        p = out / fname
        if p.exists():
            files[fname] = file_facts(p)
    card["files"] = files
    card["graphs"] = towers
    if checks is not None:
        card["checks"] = checks
    else:
        card["checks"] = "not run (export_clip.py --check)"
    if loaded.notes:
        card["notes"] = loaded.notes
    card["timings_s"] = timings
    card["versions"] = versions
    card["versions"]["torch_threads"] = torch.get_num_threads()
    return card


def write_card(card: dict, path: Path) -> None:
    import yaml
    text = yaml.safe_dump(card, sort_keys=False, width=110, allow_unicode=True, default_flow_style=None)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
