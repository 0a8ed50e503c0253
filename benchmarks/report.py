#!/usr/bin/env python3
"""The performance report, regenerated from the recorded benchmark CSVs (./lkc.sh report):
docs/report.md plus PNG plots in docs/report/.

Inputs (each written by its benchmark; a missing one is reported and its section skipped):
  docs/bench/bench_dwconv2d.csv   bench_dwconv2d --csv        kernels vs oneDNN, % of peak
  docs/tuning/grid_summary.csv    lkc tune (grid summary)     tuned vs hand default
  docs/bench/bench_models.csv     bench_models --csv          whole networks, % of peak
  docs/bench/bench_e2e.csv        benchmarks/bench_e2e.py     AOT vs lkc run vs ONNX Runtime
  docs/train/*.csv                lkc train --log             training curves

  python3 benchmarks/report.py [--root .]
"""
import argparse
import csv
import glob
import math
import os
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def geomean(v):
    return math.exp(sum(math.log(x) for x in v) / len(v)) if v else float("nan")


def kernel_key(k):
    # "31x31" -> (31, 31); dilated "7x7" sorts with its size
    try:
        a, b = k.split("x")[:2]
        return (int(a) * int(b), k)
    except ValueError:
        return (0, k)


def kernels_section(root, out, md):
    path = os.path.join(root, "docs/bench/bench_dwconv2d.csv")
    if not os.path.exists(path):
        md.append(f"_{path} missing: run `./lkc.sh bench` with `BENCH_ARGS=--csv=...`._\n")
        return
    r = rows(path)
    ratio = defaultdict(lambda: defaultdict(list))  # pass -> kernel -> ratios (lkc / oneDNN)
    peak = defaultdict(lambda: defaultdict(list))  # impl -> kernel -> fwd % of peak (useful)
    for x in r:
        if x["impl"] == "lkc" and x["ratio_vs_onednn"]:
            ratio[x["pass"]][x["kernel"]].append(float(x["ratio_vs_onednn"]))
        if x["pass"] == "fwd" and x["pct_peak"]:
            peak[x["impl"]][x["kernel"]].append(float(x["pct_peak"]) * float(x["useful_gflops"]) /
                                                float(x["nominal_gflops"]))
    fig, ax = plt.subplots(figsize=(8, 4))
    for p in sorted(ratio):
        ks = sorted(ratio[p], key=kernel_key)
        ax.plot(ks, [geomean(ratio[p][k]) for k in ks], marker="o", label=p)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("lkc time / oneDNN time (geomean over shapes)")
    ax.set_xlabel("kernel")
    ax.set_title("Depth-wise kernels vs oneDNN (lower is faster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "kernels_vs_onednn.png"), dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 4))
    for impl in sorted(peak):
        ks = sorted(peak[impl], key=kernel_key)
        ax.plot(ks, [sum(peak[impl][k]) / len(peak[impl][k]) for k in ks], marker="o", label=impl)
    ax.set_ylabel("% of measured FMA peak (useful taps)")
    ax.set_xlabel("kernel")
    ax.set_title("Forward depth-wise conv, mean over shapes")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "kernels_pct_peak.png"), dpi=110)
    plt.close(fig)

    md.append("## Depth-wise kernels vs oneDNN\n")
    md.append("![](report/kernels_vs_onednn.png)\n\n![](report/kernels_pct_peak.png)\n")
    md.append("| pass | workloads | geomean lkc / oneDNN |\n|---|---|---|")
    for p in sorted(ratio):
        allr = [v for k in ratio[p] for v in ratio[p][k]]
        md.append(f"| {p} | {len(allr)} | {geomean(allr):.3f} |")
    md.append("")


def tuning_section(root, out, md):
    path = os.path.join(root, "docs/tuning/grid_summary.csv")
    if not os.path.exists(path):
        md.append(f"_{path} missing._\n")
        return
    r = rows(path)
    sp = [float(x["speedup"]) for x in r]
    fam = defaultdict(list)
    for x in r:
        op, p = x["workload"].split(":")[:2]
        fam[f"{op}:{p}"].append(float(x["speedup"]))
    fig, ax = plt.subplots(figsize=(8, 4))
    ks = sorted(fam)
    ax.bar(range(len(ks)), [geomean(fam[k]) for k in ks])
    ax.set_xticks(range(len(ks)), ks, rotation=60, ha="right", fontsize=8)
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_ylabel("hand default / tuned time (geomean)")
    ax.set_title(f"Tuned vs hand default, {len(sp)} workloads (geomean {geomean(sp):.3f}x)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "tuned_vs_default.png"), dpi=110)
    plt.close(fig)
    md.append("## Tuned vs hand-default schedules\n")
    md.append("![](report/tuned_vs_default.png)\n")
    md.append(f"{len(sp)} workloads, geomean speed-up {geomean(sp):.3f}×, max {max(sp):.2f}×, "
              f"default already fastest in {sum(1 for s in sp if s <= 1.0)}.\n")


def models_section(root, out, md):
    mpath = os.path.join(root, "docs/bench/bench_models.csv")
    epath = os.path.join(root, "docs/bench/bench_e2e.csv")
    if os.path.exists(mpath):
        md.append("## Whole networks (graph executor)\n")
        md.append("| model | batch | ms | img/s | % of peak | arena / sequential min |\n|---|---|---|---|---|---|")
        for x in rows(mpath):
            md.append(f"| {x['model']} | {x['batch']} | {float(x['median_ms']):.1f} | "
                      f"{float(x['img_per_s']):.2f} | {float(x['pct_peak']):.1f} % | "
                      f"{float(x['arena_ratio']):.2f} |")
        md.append("")
    else:
        md.append(f"_{mpath} missing._\n")
    if not os.path.exists(epath):
        md.append(f"_{epath} missing._\n")
        return
    r = rows(epath)
    labels = [f"{x['model']}\nb{x['batch']}" for x in r]
    fig, ax = plt.subplots(figsize=(9, 4))
    w = 0.27
    for i, (key, name) in enumerate([("aot_ms", "lkc AOT"), ("lkc_run_ms", "lkc run"),
                                     ("ort_ms", "ONNX Runtime")]):
        ax.bar([j + (i - 1) * w for j in range(len(r))],
               [float(x[key]) / float(x["batch"]) for x in r], w, label=name)
    ax.set_xticks(range(len(r)), labels, fontsize=8)
    ax.set_ylabel("ms per image")
    ax.set_title("Model latency per image, 224², 2 threads")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "models_vs_ort.png"), dpi=110)
    plt.close(fig)
    md.append("## AOT binary vs `lkc run` vs ONNX Runtime\n")
    md.append("![](report/models_vs_ort.png)\n")
    md.append("| model | batch | AOT ms | ORT ms | AOT vs ORT | % of peak | start-up × steady |\n"
              "|---|---|---|---|---|---|---|")
    for x in r:
        md.append(f"| {x['model']} | {x['batch']} | {float(x['aot_ms']):.1f} | {float(x['ort_ms']):.1f} | "
                  f"{float(x['speedup_vs_ort']):.2f}× | {float(x['aot_pct_peak']):.1f} % | "
                  f"{float(x['startup_over_steady']):.2f} |")
    md.append("")


def training_section(root, out, md):
    logs = sorted(glob.glob(os.path.join(root, "docs/train/*.csv")))
    if not logs:
        md.append("_docs/train/*.csv missing._\n")
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    md.append("## Training curves (`lkc train`)\n")
    md.append("![](report/training.png)\n")
    md.append("| run | steps | training s (summed over resumed chunks) | final test accuracy |\n|---|---|---|---|")
    for path in logs:
        name = os.path.splitext(os.path.basename(path))[0]
        steps, loss, ev_s, ev_a, final = [], [], [], [], None
        trained_s = 0.0  # a run resumed in chunks ends each invocation with its own final row
        for x in rows(path):
            if x["loss"]:
                steps.append(int(x["step"]))
                loss.append(float(x["loss"]))
            if x["test_acc"]:
                ev_s.append(int(x["step"]))
                ev_a.append(float(x["test_acc"]))
                if not x["loss"]:
                    trained_s += float(x["elapsed_s"])
                    final = (int(x["step"]), trained_s, float(x["test_acc"]))
        k = 100  # moving average over 100 steps
        sm = [sum(loss[max(0, i - k + 1):i + 1]) / len(loss[max(0, i - k + 1):i + 1]) for i in range(len(loss))]
        a1.plot(steps, sm, label=name)
        a2.plot(ev_s, ev_a, marker="o", label=name)
        if final:
            md.append(f"| {name} | {final[0]} | {final[1]:.0f} | {final[2]:.4f} |")
    a1.set_xlabel("step")
    a1.set_ylabel("training loss (100-step mean, label smoothing 0.1)")
    a2.set_xlabel("step")
    a2.set_ylabel("test accuracy")
    a1.legend()
    a2.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "training.png"), dpi=110)
    plt.close(fig)
    md.append("")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    a = ap.parse_args()
    out = os.path.join(a.root, "docs/report")
    os.makedirs(out, exist_ok=True)
    md = ["# lkc performance report\n",
          "Generated by `./lkc.sh report` (benchmarks/report.py) from the CSVs in docs/bench/, "
          "docs/tuning/ and docs/train/; the narrative and the targets are in docs/kernels.md, "
          "kernel_families.md, tuning.md, graph.md, aot.md and training.md.\n"]
    for section in (kernels_section, tuning_section, models_section, training_section):
        section(a.root, out, md)
    tmp = os.path.join(a.root, "docs/report.md.tmp")
    with open(tmp, "w") as f:
        f.write("\n".join(md) + "\n")
    os.replace(tmp, os.path.join(a.root, "docs/report.md"))
    print(f"wrote {os.path.join(a.root, 'docs/report.md')} and {len(os.listdir(out))} plots in {out}")


if __name__ == "__main__":
    sys.exit(main())
