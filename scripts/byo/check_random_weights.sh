#!/usr/bin/env bash
# Developer check of the bring-your-own path on the REAL architectures with RANDOM weights
# (nothing here is a trained model): StyleGAN2 256 px config-f shapes from the official code,
# OpenCLIP ViT-B/32, and a random ResNet-18 target with one logit. It
#   1. exports each with --check (ONNX vs PyTorch parity, zoom grad builds, gradient checks;
#      the numbers go into each card.yaml),
#   2. runs a short `zoom diagnose` of configs/byo/ffhq.yaml on them end to end (exact gradients
#      through one VJP graph over generator, target and CLIP).
# Needs PyTorch (scripts/byo/setup.sh makes .venv-byo) and a checkout of NVlabs/stylegan3 (or
# stylegan2-ada-pytorch) for the official generator classes. Not part of CI: about 7 min on 2
# CPU cores once .venv-byo and the release build exist.
#
#   bash scripts/byo/check_random_weights.sh --stylegan-repo DIR [--work DIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work=/tmp/zoom-byo-check
repo=""
while [ $# -gt 0 ]; do
    case "$1" in
        --stylegan-repo) repo="$2"; shift 2 ;;
        --work) work="$2"; shift 2 ;;
        *) echo "unknown argument $1 (expected --stylegan-repo DIR [--work DIR])" >&2; exit 2 ;;
    esac
done
if [ -z "$repo" ] || [ ! -f "$repo/legacy.py" ]; then
    echo "--stylegan-repo must point at a checkout of NVlabs/stylegan3 or stylegan2-ada-pytorch (it has legacy.py)" >&2
    exit 2
fi
cd "$root"
bash scripts/byo/setup.sh
py=.venv-byo/bin/python
[ -x target/release/zoom ] || cargo build --release
zoom="$root/target/release/zoom"
export ZOOM_BIN="$zoom"
mkdir -p "$work"
log() { echo "== $(date +%H:%M:%S) $*"; }

log "StyleGAN2 256 px config-f, random weights"
$py scripts/export_stylegan.py --random-weights stylegan2-256-config-f --stylegan-repo "$repo" \
    --seed 0 --scale-samples 64 --out "$work/stylegan2-256" --check
log "CLIP ViT-B/32, random weights"
$py scripts/export_clip.py --model ViT-B-32 --random-weights --seed 0 --out "$work/clip-vit-b32" --check
log "target: ResNet-18, one logit, random weights"
$py scripts/byo/export_random_target.py --out "$work/target"

log "zoom diagnose configs/byo/ffhq.yaml (short)"
rm -rf "$work/run"
"$zoom" diagnose configs/byo/ffhq.yaml --out "$work/run" \
    --set "generator.model=$work/stylegan2-256/model.onnx" \
    --set "generator.card=$work/stylegan2-256/card.yaml" \
    --set "clip.image=$work/clip-vit-b32/image.onnx" \
    --set "clip.text=$work/clip-vit-b32/text.onnx" \
    --set "clip.tokenizer=$work/clip-vit-b32/tokenizer.json" \
    --set "target.model=$work/target/model.onnx" \
    --set samples=2 --set search.iterations=2 --set search.null_directions=1 \
    --set directions.method=gradient --set directions.probe_samples=2 \
    --set "directions.cache=$work/cache" --set runtime.ep=[cpu] \
    --set "attributes.prompts=[{name: smiling, prompt: a Smiling face}, {name: beard, prompt: a face with Beard}]"
"$py" - "$work/run/report.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["settings"]
print("gradient:", s["gradient"])
print("batch_size_used:", s["config"].get("batch_size_used"))
for a in r["attributes"]:
    print(f'  {a["name"]:10s} sensitivity {a["sensitivity"]:.3f}  mean |change| {a["mean_abs_change"]:.4f}')
assert s["gradient"].startswith("exact ("), "the exact path was not used"
PY
log "done: $work (cards: stylegan2-256/card.yaml, clip-vit-b32/card.yaml; report: run/report.html)"
