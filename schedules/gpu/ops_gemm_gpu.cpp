// GPU schedule (CUDA and OpenCL) of the GEMM (1x1 conv / Linear) and the dense conv.
//
// A thread owns one output lane of `cob` output blocks x `tile` pixels (tile * cob accumulators in
// registers, 28 by default) and runs the whole reduction serially. A block is 16 lanes x
// `gpu_tiles` pixel tiles along x (128 threads by default) for one output row and one co tile:
// consecutive threads of a warp read consecutive output lanes of a weight vector (one 64-byte
// transaction per block per input channel), and the 16 threads of one pixel read the same input
// value (a broadcast). No shared-memory staging yet; correctness is checked on PoCL and the PTX
// is assembled by ptxas (tests/ptx). No GPU timings exist for this project.
#include "schedules/ops_gemm_schedule.h"

namespace lkc::sched {

namespace {
void specialise(Stage st, const std::vector<std::vector<Expr>>& levels, size_t i) {
    if (i == levels.size()) return;
    for (const Expr& c : levels[i]) specialise(st.specialize(c), levels, i + 1);
    specialise(st, levels, i + 1);
}
}  // namespace

void schedule_gemm_gpu(GemmStages& s, const GemmParams& p, const Target& t) {
    (void)t;
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), tt("t"), cj("cj"), xo("xo"), xi("xi"),
        cbo("cbo"), cbi("cbi"), xb("xb"), xth("xth"), cbn("cbn");
    Func out = s.output;
    out.split(x, xo, xi, p.tile, TailStrategy::GuardWithIf)
        .split(xo, xb, xth, p.gpu_tiles, TailStrategy::GuardWithIf)
        .split(cb, cbo, cbi, p.cob, TailStrategy::GuardWithIf)
        .reorder(xi, cbi, ci, xth, xb, y, cbo, n)
        .unroll(xi)
        .unroll(cbi)
        .fuse(cbo, n, cbn)
        .gpu_blocks(xb, y, cbn)
        .gpu_threads(ci, xth);

    s.acc.compute_at(out, ci).unroll(tt).unroll(cj);
    Stage upd = s.acc.update();
    std::vector<VarOrRVar> order = {tt, cj};
    for (const RVar& r : s.rvars) order.push_back(r);
    upd.reorder(order).unroll(tt).unroll(cj);
    if (!s.rvars.empty()) upd.unroll(s.rvars[0]);

    if (s.xp.defined()) {
        const std::vector<Var> a = s.xp.args();  // (ci, x, y, cb, n)
        Var bx("bx"), tx("tx"), bn("bn");
        s.xp.compute_root()
            .split(a[1], bx, tx, 16, TailStrategy::GuardWithIf)
            .fuse(a[3], a[4], bn)
            .reorder(a[0], tx, bx, a[2], bn)
            .gpu_blocks(bx, a[2], bn)
            .gpu_threads(a[0], tx);
    }
    specialise(out, s.specialize, 0);
}

}  // namespace lkc::sched
