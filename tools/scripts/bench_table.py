#!/usr/bin/env python3
"""Render bench_dwconv2d's CSV as Markdown tables (one per pass), lkc and oneDNN side by side.

Usage: tools/scripts/bench_table.py bench_dwconv2d.csv > table.md
"""
import csv
import math
import sys


def main(path):
    rows = list(csv.DictReader(open(path, newline="")))
    peak = next((float(r["peak_gflops"]) for r in rows if r.get("peak_gflops")), float("nan"))
    by = {}
    for r in rows:
        by.setdefault(r["workload"], {})[r["impl"]] = r
    print(f"Measured FMA peak: {peak:.1f} GFLOP/s (2 threads). ratio = lkc time / oneDNN time "
          "(median of interleaved pairs); GF/s are useful-tap GFLOP/s.\n")
    for p in ("fwd", "bwd_data", "bwd_weight"):
        print(f"### {p}\n")
        print("| workload | lkc ms | oneDNN ms | ratio | lkc GF/s | % peak | lkc nominal GF/s | "
              "oneDNN GF/s | lkc variant | oneDNN impl |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        logs = []
        for wl, d in by.items():
            if f":{p}:" not in wl or "lkc" not in d or "onednn" not in d:
                continue
            a, b = d["lkc"], d["onednn"]
            ratio = float(a["ratio_vs_onednn"]) if a["ratio_vs_onednn"] else float("nan")
            if not math.isnan(ratio):
                logs.append(math.log(ratio))
            short = wl.split(":", 2)[2].replace(":f32", "")
            print(f"| {short} | {float(a['median_ms']):.3f} | {float(b['median_ms']):.3f} | "
                  f"{ratio:.3f} | {float(a['useful_gflops']):.0f} | {float(a['pct_peak']):.0f} | "
                  f"{float(a['nominal_gflops']):.0f} | {float(b['useful_gflops']):.1f} | "
                  f"{a['impl_detail']} | {b['impl_detail']} |")
        if logs:
            print(f"\ngeomean ratio over {len(logs)} workloads: "
                  f"{math.exp(sum(logs) / len(logs)):.3f}\n")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
