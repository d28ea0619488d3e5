#!/usr/bin/env python3
"""Compare the diagnoses of one config run on several providers/precisions (scripts/gpu/check.sh).

Usage: compare_reports.py RUNS_DIR
RUNS_DIR holds <config>@<variant>/ run folders (variant: cpu-fp32, cuda-fp16, cuda-fp32-exhaustive,
...). For each config the cpu-fp32 run (else the first) is the reference; every other run is
compared with it:
  - score_before: the target's score on the unedited generated image, per sample. This isolates
    the forward pass (generator + target) from the search, so it is the direct measure of what a
    provider or float16 changes.
  - per attribute: sensitivity and flip rate, as the report states them.
  - the gradient source line (start-up check of exact gradients against finite differences).
Only the standard library is used: the GPU machine may have nothing else.
"""
import json
import sys
from pathlib import Path

REFERENCE = "cpu-fp32"


def load(run):
    report = json.loads((run / "report.json").read_text())
    before = {}
    for line in (run / "samples.jsonl").read_text().splitlines():
        rec = json.loads(line)
        before[rec["sample"]] = rec["score_before"]
    return report, before


def main():
    runs = Path(sys.argv[1])
    by_config = {}
    for d in sorted(p for p in runs.iterdir() if p.is_dir() and "@" in p.name):
        config, variant = d.name.split("@", 1)
        by_config.setdefault(config, {})[variant] = d
    failed = False
    for config, variants in by_config.items():
        print(f"== {config}")
        loaded = {}
        for v in sorted(variants, key=lambda v: (v != REFERENCE, v)):
            if not (variants[v] / "report.json").exists():
                print(f"  {v}: no report (see {variants[v].name}.log)")
                failed = True
                continue
            loaded[v] = load(variants[v])
        if not loaded:
            continue
        ref_name = next(iter(loaded))
        ref, ref_before = loaded[ref_name]
        for v, (rep, before) in loaded.items():
            s = rep["settings"]
            print(f"  {v}: providers {' '.join(f'{r}={p}' for r, p in s['providers'])}")
            print(f"    gradient: {s['gradient']}")
            if v == ref_name:
                continue
            common = sorted(set(before) & set(ref_before))
            diffs = [abs(before[i] - ref_before[i]) for i in common]
            print(
                f"    score_before vs {ref_name}: max |diff| {max(diffs):.2e}, "
                f"mean {sum(diffs) / len(diffs):.2e} over {len(common)} samples"
            )
            ref_attr = {a["name"]: a for a in ref["attributes"]}
            for a in rep["attributes"]:
                r = ref_attr.get(a["name"])
                if r is None:
                    continue
                print(
                    f"    {a['name']:>20}: sensitivity {a['sensitivity']:.3f} (ref {r['sensitivity']:.3f}), "
                    f"flip rate {a['flip_rate']:.2f} (ref {r['flip_rate']:.2f})"
                )
            ranked = [a["name"] for a in sorted(rep["attributes"], key=lambda a: -a["sensitivity"])]
            ref_ranked = [a["name"] for a in sorted(ref["attributes"], key=lambda a: -a["sensitivity"])]
            print(f"    ranking same as {ref_name}: {ranked == ref_ranked} ({' > '.join(ranked)})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
