// x86 CPU schedule of the GEMM (1x1 conv / Linear) and the dense conv.
//
// Register tile (AVX-512): `tile` = 7 output pixels x `cob` output-channel blocks of 16 lanes
// (GEMM 7 x 2 = 14 zmm accumulators, conv 7 x 3 = 21). Per input channel `cob` weight vectors
// are loaded and 7 input values broadcast (vbroadcastss, each feeding `cob` FMAs): 14 FMAs for 9
// loads. The 16 input lanes of a block are unrolled (224 FMAs per loop iteration). The machine
// (AMD EPYC Zen 4, 2 vCPUs) has two 256-bit FMA pipes, i.e. one zmm FMA per cycle, 4-cycle
// latency: 14 independent accumulators cover it, and 7 x 2 measured best (or within noise) of 7
// tile shapes on every model shape; 7 x 4 spilled (28 accumulators + 4 weights + the
// broadcasts > 32 zmm). Pixel tiles run along x: 7 divides every map width of these networks
// (224, 112, 56, 28, 14, 7).
//
// Loop order (co_inner = false): a task is `rows_per_task` output rows of one image for one co
// tile, so the tile's weight panel (128 B per input channel: 16 KB at Ci = 128) is reused by
// every pixel tile of the task from L1/L2. co_inner = true: the co tiles loop inside each pixel
// tile (input tile in L1, the whole weight matrix from L2), for large maps with small weights.
//
// Time (bench_ops, 2 threads sharing the VM with other jobs, docs/ops.md): 56x56x128->512 in
// 3.8 ms = 411 MFLOP at 107 GFLOP/s = 89 % of the FMA peak measured alongside (121 GFLOP/s,
// the other core busy), 0.86-0.88x oneDNN's time; 14x14x512->2048 85 %, 7x7x1024->4096 83 %.
//
// AVX2 / SSE builds keep the structure with a smaller tile (16-lane vectors take 2 ymm / 4 xmm).
#include "schedules/ops_gemm_schedule.h"

namespace lkc::sched {

namespace {

void specialise(Stage st, const std::vector<std::vector<Expr>>& levels, size_t i) {
    if (i == levels.size()) return;
    for (const Expr& c : levels[i]) specialise(st.specialize(c), levels, i + 1);
    specialise(st, levels, i + 1);
}

}  // namespace

void schedule_gemm_cpu(GemmStages& s, const GemmParams& p, const Target& t) {
    (void)t;
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), tt("t"), xt("xt"), cj("cj"), cbt("cbt"),
        xo("xo"), xi("xi"), cbo("cbo"), cbi("cbi"), yo("yo"), yi("yi"), task("task"), t1("t1");
    Func out = s.output;
    out.split(x, xo, xi, p.tile, TailStrategy::GuardWithIf)
        .split(cb, cbo, cbi, p.cob, TailStrategy::GuardWithIf)
        .split(y, yo, yi, p.rows_per_task, TailStrategy::GuardWithIf);
    if (p.co_inner) {
        out.reorder(ci, xi, cbi, cbo, xo, yi, yo, n).fuse(yo, n, task);
    } else {
        out.reorder(ci, xi, cbi, xo, yi, yo, cbo, n).fuse(yo, cbo, t1).fuse(t1, n, task);
    }
    out.vectorize(ci, 16).unroll(xi).unroll(cbi).parallel(task);

    // One tile per realisation: bound_extent makes the tile's storage constant-size, so LLVM
    // keeps it in registers (GuardWithIf bounds alone leave xt / cbt extents symbolic).
    s.acc.compute_at(out, p.co_inner ? cbo : xo)
        .bound_extent(xt, 1)
        .bound_extent(cbt, 1)
        .vectorize(ci, 16)
        .unroll(tt)
        .unroll(cj);
    std::vector<VarOrRVar> order = {ci, tt, cj};
    for (const RVar& r : s.rvars) order.push_back(r);
    for (const Var& v : {xt, cbt, y, n}) order.push_back(v);
    Stage upd = s.acc.update();
    upd.reorder(order).vectorize(ci, 16).unroll(tt).unroll(cj);
    if (!s.rvars.empty()) upd.unroll(s.rvars[0]);

    // Conv: one zero-extended copy of the input per call (a pass over the input, small next to
    // the k*k*Ci FMAs per output), so the tile's loads need no bounds tests.
    if (s.xp.defined()) {
        s.xp.compute_root().vectorize(s.xp.args()[0], p.lanes).parallel(s.xp.args()[2]);
    }
    specialise(out, s.specialize, 0);
}

}  // namespace lkc::sched
