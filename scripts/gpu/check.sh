#!/usr/bin/env bash
# The GPU check: what CI (CPU only) cannot show. Run it on a machine with an NVIDIA GPU, a GPU
# build of ONNX Runtime and zoom built with `--features cuda` (scripts/gpu/README.md says how to
# prepare all three, also for a machine that cannot build Rust or reach the internet).
#
#   scripts/gpu/check.sh STAGE...     stages, in any order:
#     env       GPU, driver, the ONNX Runtime library and whether zoom gets the CUDA provider
#     graph     zoom-graph's test suite with every graph on the CUDA provider (ZOOM_GRAPH_TEST_EP)
#     bench     VJP/forward cost of the architecture graphs on CUDA, with per-operator placement
#     diagnose  the demo diagnoses on cpu/fp32, cuda/fp32 and cuda/fp16, compared number by number
#               (DIAGNOSE_VARIANTS="cpu:fp32 cuda:fp32 cuda:fp16 cuda:fp32:exhaustive" to choose)
#
# Environment (defaults in brackets):
#   ZOOM_BIN          zoom built with --features cuda            [target/release/zoom]
#   ZOOM_GRAPH_TESTS  zoom-graph's unit-test binary               [newest target/*/deps/zoom_graph-*]
#   ORT_DYLIB_PATH    libonnxruntime.so of onnxruntime-gpu        [required]
#   CUDA_LIB_DIRS     folders with libcudart/libcublas/libcudnn   [found in python3's nvidia packages]
#   OUT               where logs and the summary go               [runs/gpu-check]
#   RUNS              where the diagnose stage writes its runs    [$OUT/runs]
#   DIAGNOSE_CONFIGS  configs for the diagnose stage              [configs/demo-gender.yaml configs/demo-landmarks.yaml]
#   DIAGNOSE_VARIANTS EP:PRECISION[:CUDNN_SEARCH] list            [cpu:fp32 cuda:fp32 cuda:fp16]
#   DIAGNOSE_TIMEOUT  seconds per diagnosis                        [600]
#   DIAGNOSE_SET      extra config overrides, e.g. "samples=8"      []
#   DIAGNOSE_PROFILE  non-empty: ONNX Runtime profiles of every session, summarised in profiles.txt
#
# Every stage logs to $OUT/<stage>.log and appends its verdict to $OUT/summary.txt; a failing
# stage does not stop the next one, so one run on a borrowed machine shows everything.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
OUT=${OUT:-$ROOT/runs/gpu-check}
RUNS=${RUNS:-$OUT/runs}
mkdir -p "$OUT" "$RUNS"
ZOOM_BIN=${ZOOM_BIN:-$ROOT/target/release/zoom}
if [[ -z "${ZOOM_GRAPH_TESTS:-}" ]]; then
    ZOOM_GRAPH_TESTS=$(ls -t "$ROOT"/target/*/deps/zoom_graph-* 2>/dev/null | grep -v '\.d$' | head -1)
fi
: "${ORT_DYLIB_PATH:?set ORT_DYLIB_PATH to the libonnxruntime.so of onnxruntime-gpu}"
export ORT_DYLIB_PATH

if [[ -z "${CUDA_LIB_DIRS:-}" ]]; then
    site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' 2>/dev/null)
    CUDA_LIB_DIRS=$(find "$site/nvidia" -name 'lib*.so*' -printf '%h\n' 2>/dev/null | sort -u | paste -sd:)
fi
export LD_LIBRARY_PATH="$(dirname "$ORT_DYLIB_PATH"):${CUDA_LIB_DIRS}:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"

summary() { echo "$*" | tee -a "$OUT/summary.txt"; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }

stage_env() {
    {
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        echo "ORT: $ORT_DYLIB_PATH"
        echo "CUDA libs: $CUDA_LIB_DIRS"
        ldd "$(dirname "$ORT_DYLIB_PATH")/libonnxruntime_providers_cuda.so" | grep -E 'not found|cublas|cudart|curand'
        "$ZOOM_BIN" doctor --ep cuda
    } >"$OUT/env.log" 2>&1
    if grep -q "not found" "$OUT/env.log"; then
        summary "env: FAIL (a CUDA library is missing, see env.log)"
    else
        summary "env: $(head -2 "$OUT/env.log" | tail -1)"
    fi
}

stage_graph() {
    # One test thread: sessions created concurrently on one GPU fail with "operation not
    # permitted when stream is capturing" (cuDNN's frontend captures a CUDA graph while another
    # thread synchronises the device).
    local t0 t1
    t0=$(now)
    (cd "$ROOT/crates/zoom-graph" && ZOOM_GRAPH_TEST_EP=cuda "$ZOOM_GRAPH_TESTS" --test-threads 1) \
        >"$OUT/graph.log" 2>&1
    local rc=$?
    t1=$(now)
    summary "graph (zoom-graph tests on CUDA): rc=$rc, $(grep -E '^test result' "$OUT/graph.log" | tail -1) [$(secs "$t0" "$t1") s]"
    grep -E '^test .* FAILED|^    [a-z_:]+$' "$OUT/graph.log" | head -40 >>"$OUT/summary.txt"
}

stage_bench() {
    # Batch 16 so that the GPU has work; fp16 timings of the same graphs alongside.
    (cd "$ROOT/crates/zoom-graph" && ZOOM_GRAPH_TEST_EP=cuda ZOOM_BENCH_PROFILE=1 \
        ZOOM_BENCH_BATCH=${ZOOM_BENCH_BATCH:-16} ZOOM_BENCH_FP16=1 \
        "$ZOOM_GRAPH_TESTS" --ignored --nocapture --exact autodiff::arch_tests::vjp_cost_ratio) \
        >"$OUT/bench.log" 2>&1
    summary "bench (VJP/forward on CUDA, wall): rc=$?"
    grep -E '^[A-Za-z].*(ratio|fp16 min wall)' "$OUT/bench.log" |
        sed -E 's/^([^:]*):.*min wall ([0-9.]+) \/ ([0-9.]+) ms, ratio ([0-9.]+).*/  \1: forward \2 ms, VJP \3 ms, ratio \4/' \
            >>"$OUT/summary.txt"
}

# One diagnosis per (config, variant); variants are EP:PRECISION[:CUDNN_SEARCH], e.g. cuda:fp16 or
# cuda:fp32:exhaustive. The log keeps zoom's -v lines with seconds since the start, which time
# the phases (channel relevance, search).
run_diagnosis() {
    local config=$1 variant=$2 ep precision search name t0 t1 rc
    IFS=: read -r ep precision search <<<"$variant"
    name=$(basename "$config" .yaml)@$ep-$precision${search:+-$search}
    # Each run gets its own direction cache, so every run times the same work.
    local extra=(--set "directions.cache=$RUNS/$name.cache")
    [[ -n "$search" ]] && extra+=(--set "runtime.cudnn_conv_search=$search")
    for kv in ${DIAGNOSE_SET:-}; do extra+=(--set "$kv"); done
    [[ -n "${DIAGNOSE_PROFILE:-}" ]] && extra+=(--set "runtime.profile=$RUNS/$name.profile")
    t0=$(now)
    timeout "${DIAGNOSE_TIMEOUT:-600}" "$ZOOM_BIN" diagnose "$config" --out "$RUNS/$name" --ep "$ep" --precision "$precision" \
        "${extra[@]}" -v 2>&1 | python3 -u -c '
import sys, time
t0 = time.time()
for line in sys.stdin:
    print(f"{time.time() - t0:7.1f}s {line.rstrip()}")' >"$RUNS/$name.log"
    rc=${PIPESTATUS[0]}
    t1=$(now)
    echo "$name rc=$rc wall=$(secs "$t0" "$t1")s" >>"$RUNS/times.txt"
    if [[ -d "$RUNS/$name.profile" ]]; then
        { echo "== $name"; python3 "$ROOT/scripts/gpu/profile_summary.py" "$RUNS/$name.profile"; } \
            >>"$OUT/profiles.txt" 2>&1
    fi
}

stage_diagnose() {
    : >"$RUNS/times.txt"
    local configs=${DIAGNOSE_CONFIGS:-configs/demo-gender.yaml configs/demo-landmarks.yaml}
    local variants=${DIAGNOSE_VARIANTS:-cpu:fp32 cuda:fp32 cuda:fp16}
    for c in $configs; do
        for v in $variants; do
            run_diagnosis "$c" "$v"
        done
    done
    python3 "$ROOT/scripts/gpu/compare_reports.py" "$RUNS" >"$OUT/diagnose.log" 2>&1
    summary "diagnose: rc=$?"
    cat "$RUNS/times.txt" "$OUT/diagnose.log" >>"$OUT/summary.txt"
    # The reports and logs travel back as one file (the runs hold many images).
    tar -czf "$OUT/reports.tar.gz" -C "$RUNS" --exclude='*.png' --exclude='*.svg' --exclude='*.cache' --exclude='*.profile' . 2>/dev/null
}

for s in "$@"; do
    case $s in
    env | graph | bench | diagnose) "stage_$s" ;;
    *) echo "unknown stage $s (env, graph, bench, diagnose)" >&2 ;;
    esac
done
