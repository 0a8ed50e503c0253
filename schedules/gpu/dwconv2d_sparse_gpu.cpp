// GPU schedules (CUDA and OpenCL) for the sparse depth-wise conv.
//
// Forward / backward-data: a block owns a `tile` x `rows` output tile of one (phase, channel,
// image), one output per thread; every thread walks the taps of the channel that reach its output
// row (one index range of the sorted list: threads of a row run the same entries, so table loads
// are uniform across each row of the block) and accumulates in a register. Inputs are read from
// the zero-extended plane staged in device memory by a first kernel (the CPU layout, one copy);
// neighbouring threads read neighbouring columns, so each tap's loads of a warp coalesce.
// Correctness is checked on PoCL; the PTX is assembled by ptxas for sm_80/sm_90 (no GPU timings
// exist for this project).
#include "schedules/dwconv2d_sparse_schedule.h"

namespace lkc::sched {

namespace {
// Staged input planes on the device (a pure definition on GPUs, see staged_planes_pure): one
// thread per element, so the tables' offsets index a device buffer laid out as on the CPU.
void stage_planes_gpu(Func f) {
    const std::vector<Var> a = f.args();  // (z, p, c, n)
    Var zo("zo"), zi("zi");
    f.compute_root()
        .split(a[0], zo, zi, 256, TailStrategy::GuardWithIf)
        .reorder(zi, zo, a[1], a[2], a[3])
        .gpu_blocks(zo, a[1], a[2])
        .gpu_threads(zi);
}
}  // namespace

void schedule_sparse_corr_gpu(SparseCorrStages& s, const SparseParams& p, const Target& t) {
    (void)t;
    Var j("j"), i("i"), q("q"), c("c"), n("n"), jl("jl"), il("il"), jt("jt"), it("it"), qc("qc"),
        qcn("qcn");
    Func out = s.output;
    out.split(j, jt, jl, p.tile, TailStrategy::RoundUp)
        .split(i, it, il, p.rows, TailStrategy::RoundUp)
        .reorder(jl, il, jt, it, q, c, n)
        .fuse(q, c, qc)
        .fuse(qc, n, qcn)
        .gpu_blocks(jt, it, qcn)
        .gpu_threads(jl, il);
    // One accumulator per thread (acc is per pixel on GPUs, see tap_correlate_pixels), the tap
    // loop serial inside the thread with exact per-row bounds.
    s.acc.compute_at(out, jl);
    stage_planes_gpu(s.xs);
}

// Backward-weight: a GPU block owns `chunk` taps x 8 lanes of one (channel, image); each thread
// reduces its (tap, lane) over the output rows and column vectors with two partial sums in
// registers. Lanes and images are summed by two small kernels.
void schedule_sparse_wgrad_gpu(SparseWgradStages& s, const SparseParams& p, const Target& t) {
    (void)t;
    (void)p;
    Var lane("lane"), e("e"), b("b"), pv("pv"), tb("tb"), c("c"), n("n"), tt("t"), cn("cn"),
        to("to"), ti("ti"), co("co"), ci("ci");
    s.acc_out.compute_root()
        .reorder(e, pv, lane, b, tb, c, n)
        .fuse(c, n, cn)
        .gpu_blocks(tb, cn)
        .gpu_threads(lane, b);
    s.acc.compute_at(s.acc_out, lane).unroll(e).unroll(pv);
    s.acc.update().reorder(s.r[0], s.r[1], s.r[2], pv, lane, b, tb, c, n).unroll(s.r[0]);
    for (Func f : {s.oy_lo, s.oy_hi}) {
        f.compute_root().gpu_tile(f.args()[0], f.args()[1], to, co, ti, ci, 8, 8,
                                  TailStrategy::GuardWithIf);
    }
    stage_planes_gpu(s.xs);
    stage_planes_gpu(s.dys);
    s.part.compute_root().gpu_tile(tt, c, to, co, ti, ci, 32, 4, TailStrategy::GuardWithIf);
    s.dwt.compute_root().gpu_tile(tt, c, to, co, ti, ci, 32, 4, TailStrategy::GuardWithIf);
    s.dwt.update().gpu_tile(tt, c, to, co, ti, ci, 32, 4, TailStrategy::GuardWithIf);
    s.dbacc.compute_root().gpu_blocks(c).gpu_threads(lane);
    s.dbacc.update().reorder(s.rdb.x, s.rdb.y, s.rdb.z, lane, c).gpu_blocks(c).gpu_threads(lane);
    s.db.compute_root().gpu_tile(c, co, ci, 32, TailStrategy::GuardWithIf);
}

}  // namespace lkc::sched
