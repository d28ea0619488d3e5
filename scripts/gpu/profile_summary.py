#!/usr/bin/env python3
"""Summarise ONNX Runtime profiles (zoom's `runtime.profile: DIR`): time per operator and provider.

Usage: profile_summary.py DIR [--top 12]
For each profile file (one per session): the number of runs, the total node time, the
operators taking the most time, each as `Op@Provider total ms (share)`, and the slowest single
nodes with the input shapes they ran at (a slow layer shows up here, not in the totals). Memcpy nodes are the
transfers ONNX Runtime inserts where a node falls back to another provider. Standard library only.
"""
import argparse
import collections
import json
from pathlib import Path


def summarise(path, top):
    events = json.loads(path.read_text())
    per_op = collections.Counter()
    per_node = collections.Counter()
    node_shapes = {}
    runs = 0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            runs += 1
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        provider = args.get("provider", "?").replace("ExecutionProvider", "")
        per_op[f"{args.get('op_name', '?')}@{provider}"] += e.get("dur", 0)
        node = e["name"][: -len("_kernel_time")]
        shapes = [list(t.values())[0] for t in args.get("input_type_shape", []) if t]
        key = (node, args.get("op_name", "?"), json.dumps(shapes))
        per_node[key] += e.get("dur", 0)
    total = sum(per_op.values())
    name = path.name.rsplit("_2", 1)[0]
    print(f"{name}: {runs} runs, node time {total / 1e3:.1f} ms")
    for op, us in per_op.most_common(top):
        print(f"    {op:<28} {us / 1e3:9.1f} ms  {100 * us / max(total, 1):5.1f} %")
    print("  slowest nodes:")
    for (node, op, shapes), us in per_node.most_common(5):
        print(f"    {node} ({op}) {shapes}: {us / 1e3:.1f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    for p in sorted(Path(a.dir).glob("*.json")):
        summarise(p, a.top)


if __name__ == "__main__":
    main()
