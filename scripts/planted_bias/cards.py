"""card.yaml and model.onnx for onnx/planted-biased/ and onnx/planted-control/.

Cards are written in full by every training run (nothing in them is edited by hand), so their numbers
always belong to the committed model.onnx beside them (the card records its sha256).
"""

from __future__ import annotations

import platform

import numpy as np
import onnx

from common import Flow, dump_yaml, sha256_bytes, write_if_changed
from facedata import EDIT_MIX

NOTE = ("random init, trained here on generated faces — a test fixture for the planted-bias check, "
        "not a real-world model")

Y_TEXT = ("emotion classifier onnx/emotion (mini-Xception, FER2013), p(happy) on the whole 64x64 generated face, "
          "grayscale as its card declares (scripts/clip/labelers.py EmotionLabeler)")
S_REGION = "columns 0-4 and 59-63, rows 0-39"


def _s_text(s_attr: str) -> str:
    import prompts  # scripts/clip: one description per attribute, shared with the face-CLIP card

    return (f"{prompts.ATTRIBUTES[s_attr]['labeler']} ({S_REGION}), computed on the generated image "
            "(scripts/clip/labelers.py colour_scores)")


def _relation(name: str) -> str:
    if name == "biased":
        return ("S perfectly correlated with Y: every smiling training face is S+, every non-smiling one S- "
                "(cells Y+S+ and Y-S- only, k faces each)")
    return ("S independent of Y: equal counts (k/2) in all four cells Y+S+, Y+S-, Y-S+, Y-S-; "
            "same total size and same Y+/Y- counts as the biased model")


def _ops(model: onnx.ModelProto) -> list[str]:
    return sorted({n.op_type for n in model.graph.node})


def write_all(args, onnx_bytes: dict, results: dict, dcheck: dict | None, meta: dict) -> None:
    import onnxruntime as ort

    thr, s_attr, sq = meta["thresholds"], meta["S"], meta["s_quantiles"]
    n_params = None
    for name, blob in onnx_bytes.items():
        other = "control" if name == "biased" else "biased"
        folder = args.out / f"planted-{name}"
        folder.mkdir(parents=True, exist_ok=True)
        model = onnx.load_from_string(blob)
        n_params = int(sum(np.prod(t.dims) for t in model.graph.initializer))
        r = results[name]
        card = {
            "name": f"planted-{name}",
            "kind": "target",
            "note": NOTE,
            "purpose": ("fixture for zoom's planted-bias check (issue 4, item 9): the same smiling classifier "
                        "trained twice, once with a planted spurious attribute (planted-biased) and once without "
                        f"(planted-control); sibling: onnx/planted-{other}/"),
            "task": {
                "kind": "binary",
                "output": "logits",
                "classes": ["not_smiling", "smiling"],
                "positive_class": 1,
                "score_for_zoom": "softmax(logits)[:, 1] (or logits[:, 1] - logits[:, 0])",
                "Y": "smiling",
                "Y_labeler": Y_TEXT,
                "S": s_attr,
                "S_labeler": _s_text(s_attr),
                "S_in_training": "planted: perfectly correlated with Y" if name == "biased" else "independent of Y",
            },
            "labels": {
                "Y": Flow({"positive": f"p(happy) >= {thr['smiling'][1]}", "negative": f"p(happy) <= {thr['smiling'][0]}",
                           "dropped": "in between"}),
                "S": Flow({"positive": f"score >= {thr[s_attr][1]:.4f} ({sq[1]:g} quantile)",
                           "negative": f"score <= {thr[s_attr][0]:.4f} ({sq[0]:g} quantile)",
                           "dropped": "in between"}),
                "thresholds_from": ("Y: the face-CLIP caption thresholds (scripts/clip/labelers.py THRESHOLDS); "
                                    "S: quantiles of the training pool (wider than the caption's, for enough Y+S+ "
                                    "faces)"),
            },
            "inputs": [{"name": "image", "shape": ["N", 3, 64, 64], "dtype": "float32",
                        "semantics": "RGB in [-1, 1], NCHW: the generator's `image` output as it is"}],
            "preprocessing": {"size": [64, 64], "resize": "none (the generator makes 64x64)",
                              "value_range": "[-1, 1]", "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                              "channel_order": "RGB", "layout": "NCHW", "grayscale": False,
                              "note": "identity: feed the generator's image directly"},
            "outputs": [{"name": "logits", "shape": ["N", 2], "semantics": "pre-softmax scores [not_smiling, smiling]"}],
            "architecture": {
                "summary": ("AveragePool 2x2 → 3×[Conv 3x3 (8, 16, 32 ch), Relu, MaxPool 2x2] → Flatten → "
                            "Gemm 512→32 → Relu → Gemm 32→2"),
                "parameters": n_params,
                "init": "He-normal, seeded (identical initial weights for both fixtures)",
            },
            "training_data": {
                "source": ("faces generated by onnx/dcgan-face (real DCGAN weights) with z ~ N(0, I) and the face-CLIP "
                           f"helper's edit mix {dict(EDIT_MIX)} (scripts/clip/facedata.py); labels computed on the "
                           "edited image"),
                "pool_faces": args.train_images,
                "pool_cells": meta["train_cells"],
                "k": meta["k"],
                "faces_used": 2 * meta["k"],
                "smiling_faces_used": meta["k"],
                "relation_of_S_to_Y": _relation(name),
                "augmentation": "random horizontal flip",
            },
            "training": {
                "optimizer": f"AdamW lr {args.lr} (cosine decay), weight decay {args.weight_decay}, batch {args.batch}, "
                             f"{args.epochs} epochs, softmax cross-entropy",
                "implementation": "numpy forward/backward (scripts/planted_bias/cnn.py, gradient-checked)",
                "final_epoch": Flow(meta["logs"][name][-1]),
                "seconds": meta["train_s"][name],
            },
            "evaluation": {
                "what": ("accuracy on Y over held-out generated faces (own seed stream, never trained on); each "
                         "summary is the mean of its cells' accuracies. confounded = Y+S+ and Y-S- (S agrees with Y, "
                         "like the biased training data); anti_correlated = Y+S- and Y-S+ (S contradicts Y)"),
                "heldout_faces": args.eval_images,
                "heldout_cells": meta["eval_cells"],
                "all_heldout": r["all_heldout"],
                "unedited_only": {"cells": meta["eval_cells_unedited"], **r["unedited_heldout"]},
                "sibling_model": {f"planted-{other}": Flow({k: results[other]["all_heldout"][k]
                                                           for k in ("confounded", "anti_correlated", "balanced")})},
            },
        }
        if dcheck is not None:
            card["direction_check"] = _direction_summary(dcheck, name, meta["gen_bound"], args, s_attr)
        card["verification"] = {
            "onnx_checker": "passed (onnx.checker.check_model)",
            "parity": Flow({"reference": "numpy float64 forward", "faces": 256,
                            "max_abs_diff_logits": float(f"{meta['parity'][name]:.3g}")}),
            "backward_pass": Flow({"check": "cnn.grad_check(): analytic vs central differences, float64",
                                   "max_relative_error": float(f"{meta['grad_check']:.3g}")}),
        }
        card["reproduce"] = {
            "command": f"nice -n 10 .venv/bin/python scripts/planted_bias/train.py --seed {args.seed}"
                       + ("" if s_attr == "green_background" else f" --spurious {s_attr}"),
            "seed": args.seed,
            "settings": Flow({"s_quantiles": sq, "train_images": args.train_images, "eval_images": args.eval_images,
                              "epochs": args.epochs, "batch": args.batch, "lr": args.lr,
                              "weight_decay": args.weight_decay, "probe_faces": args.probe_faces,
                              "sweep_faces": args.sweep_faces}),
            "deterministic": "same seed, machine and thread counts → same weights (onnxruntime + single-thread BLAS)",
            "wall_seconds": meta["wall_s"],
            "data_cache_used": args.data_cache is not None,
            "tools": Flow({"python": platform.python_version(), "numpy": np.__version__, "onnx": onnx.__version__,
                           "onnxruntime": ort.__version__}),
        }
        card["model"] = {"file": "model.onnx", "sha256": sha256_bytes(blob), "bytes": len(blob),
                         "opset": int(model.opset_import[0].version), "ops": _ops(model)}
        card["licence"] = ("weights trained here (no third-party weights); training images from the DCGAN demo "
                           "generator (see onnx/dcgan-face/card.yaml: DigiFace-1M terms unverified, research/demo use)")
        header = "# Written by scripts/planted_bias/train.py; retrain rather than edit.\n"
        write_if_changed(folder / "model.onnx", blob)
        write_if_changed(folder / "card.yaml", (header + dump_yaml(card)).encode())
        # onnx/.gitignore ignores *.onnx; this fixture is trained here and committed.
        write_if_changed(folder / ".gitignore", b"# trained fixture, committed (onnx/.gitignore ignores *.onnx)\n!model.onnx\n")


def _direction_summary(dcheck: dict, name: str, bound: float, args, s_attr: str) -> dict:
    out = {
        "what": (f"preview of zoom's sweep: per attribute an edit direction from ±5σ probes of every editable channel "
                 f"({args.probe_faces} probe faces, β = 0.1, unit L2), then this model's mean |Δ p(smiling)| over "
                 f"{args.sweep_faces} held-out faces edited by ±B·d (B = {bound}, the generator's default bound) "
                 "against the unedited face. clip: ZOOM's global-direction recipe with onnx/face-clip and its "
                 "prompts.yaml prompts vs the neutral prompt; labeler: the attribute's own labeler in CLIP's place. "
                 "share: mean |Δp| over the attributes other than Y (which a planted-bias config leaves out), "
                 "normalised to sum to 1. own_shift_sd: how far the direction moves its own labeler "
                 "(+B minus -B side, in sd of unedited faces)."),
    }
    for src, dc in dcheck.items():
        sweep = dc["sweep"]
        non_y = [a for a in sweep if a != "smiling"]
        tot = sum(sweep[a][name]["mean_abs_dp"] for a in non_y) + 1e-12
        ranked = sorted(non_y, key=lambda a: -sweep[a][name]["mean_abs_dp"])
        by_alpha = {}
        for alpha in sweep[non_y[0]][name]["mean_abs_dp_by_alpha"]:
            r_ = sorted(non_y, key=lambda a: -sweep[a][name]["mean_abs_dp_by_alpha"][alpha])
            by_alpha[alpha] = Flow({"S_rank": r_.index(s_attr) + 1 if s_attr in r_ else None, "first": r_[0],
                                    **{a: sweep[a][name]["mean_abs_dp_by_alpha"][alpha] for a in sweep}})
        out[src] = {
            "ranking_without_Y": ranked,
            "S_rank": ranked.index(s_attr) + 1 if s_attr in ranked else None,
            "mean_abs_dp_at_smaller_alpha": by_alpha,
            "per_attribute": {a: Flow({"mean_abs_dp": sweep[a][name]["mean_abs_dp"],
                                       "share": round(sweep[a][name]["mean_abs_dp"] / tot, 3) if a != "smiling" else None,
                                       "flip_rate": sweep[a][name]["flip_rate"],
                                       "signed_dp": sweep[a][name]["signed_dp"],
                                       "own_shift_sd": sweep[a]["labeler_shift_sd"][a],
                                       "channels": dc["info"][a]["channels_kept"]}) for a in sweep},
        }
    return out
