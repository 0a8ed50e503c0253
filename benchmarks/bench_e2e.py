#!/usr/bin/env python3
"""End-to-end inference, one run, same machine (issue 7, point 4): the AOT binary (lkc compile)
vs `lkc run` vs ONNX Runtime (CPU, all graph optimisations, 2 threads) on the same model, batch
and image. Per model and batch: median latency, img/s, % of the measured FMA peak on the model's
nominal FLOPs (the published dense count), ratios, and the AOT binary's start-up time.

The three are separate processes, so they are interleaved in rounds (AOT, lkc run, ORT, AOT, ...)
and each reports the median of its runs; the table shows the median over rounds.

  python3 benchmarks/bench_e2e.py [--build build] [--models replknet-31b,slak-t,unireplknet-t,
      shiftwise-t] [--batches 1,8] [--repeat 10] [--rounds 3] [--work DIR] [--csv FILE]
"""
import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import time


def sh(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def write_ppm(path, w=320, h=256):
    # A deterministic synthetic photo-like image (gradients and rings); the models run without
    # their checkpoints here, so the classes do not matter, only the shapes and the work.
    import math
    rows = []
    for y in range(h):
        for x in range(w):
            r = int(127 + 127 * math.sin(x / 17.0 + y / 29.0))
            g = int(127 + 127 * math.cos(math.hypot(x - w / 2, y - h / 2) / 11.0))
            b = (x * y) % 256
            rows.append(bytes((r, g, b)))
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h) + b"".join(rows))


def ort_time(onnx_path, batch, size, repeat, threads):
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((batch, 3, size, size)).astype(np.float32)
    sess.run(None, {"x": x})  # warm-up
    ms = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--models", default="replknet-31b,slak-t,unireplknet-t,shiftwise-t")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/tmp/lkc_bench_e2e")
    ap.add_argument("--csv", default="bench_e2e.csv")
    a = ap.parse_args()
    lkc = os.path.join(a.build, "tools", "lkc")
    os.makedirs(a.work, exist_ok=True)
    img = os.path.join(a.work, "img.ppm")
    write_ppm(img)
    env = dict(os.environ, HL_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    peak = float(re.search(r"FMA peak ([0-9.]+)", sh([os.path.join(a.build, "benchmarks", "bench_models"),
                                                          "--models=", "--csv="], env=env)).group(1))
    print(f"FMA peak {peak:.1f} GFLOP/s ({a.threads} threads)", flush=True)
    rows = []
    for m in a.models.split(","):
        onnx_path = os.path.join(a.work, m + ".onnx")
        sh([lkc, "export", "--onnx", "--model", m, "-o", onnx_path], env=env)
        for b in [int(x) for x in a.batches.split(",")]:
            out = os.path.join(a.work, f"{m}_b{b}")
            sh([lkc, "compile", "--model", m, "--batch", str(b), "-o", out], env=env)
            aot, run, ort_ms, start = [], [], [], []
            flops = None
            for _ in range(a.rounds):
                o = sh([os.path.join(out, m), "--input", img, "--repeat", str(a.repeat)], env=env)
                mm = re.search(r"median ([0-9.]+) ms .*start-up ([0-9.]+) ms", o)
                aot.append(float(mm.group(1)))
                start.append(float(mm.group(2)))
                o = sh([lkc, "run", "--model", m, "--batch", str(b), "--input", img, "--repeat",
                        str(a.repeat)], env=env)
                mm = re.search(r"median ([0-9.]+) ms", o)
                run.append(float(mm.group(1)))
                ort_ms.append(ort_time(onnx_path, b, 224, a.repeat, a.threads))
            # Nominal FLOPs: the train-form count lkc inspect prints (2 x MACs).
            o = sh([lkc, "inspect", "--model", m, "--batch", str(b)], env=env)
            flops = float(re.search(r"FLOPs = 2 x MACs = ([0-9.]+) G", o).group(1)) * 1e9
            t_aot, t_run, t_ort = (statistics.median(v) for v in (aot, run, ort_ms))
            row = dict(model=m, batch=b, aot_ms=t_aot, lkc_run_ms=t_run, ort_ms=t_ort,
                       aot_img_s=b * 1e3 / t_aot, ort_img_s=b * 1e3 / t_ort,
                       aot_pct_peak=100 * flops / (t_aot * 1e-3) / 1e9 / peak,
                       ort_pct_peak=100 * flops / (t_ort * 1e-3) / 1e9 / peak,
                       speedup_vs_ort=t_ort / t_aot, aot_vs_run=t_aot / t_run,
                       startup_ms=statistics.median(start), startup_over_steady=statistics.median(start) / t_aot,
                       nominal_gflop=flops * 1e-9, peak_gflops=peak)
            rows.append(row)
            print(f"{m:14s} b{b}: AOT {t_aot:8.2f} ms ({row['aot_img_s']:6.1f} img/s, {row['aot_pct_peak']:4.1f}% peak) | "
                  f"lkc run {t_run:8.2f} | ORT {t_ort:8.2f} ms ({row['ort_pct_peak']:4.1f}%) | "
                  f"AOT {row['speedup_vs_ort']:.2f}x faster than ORT | start-up {row['startup_ms']:.0f} ms "
                  f"= {row['startup_over_steady']:.2f}x steady", flush=True)
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            w.writeheader()
            w.writerows(rows)
        print("wrote", a.csv)


if __name__ == "__main__":
    sys.exit(main())
