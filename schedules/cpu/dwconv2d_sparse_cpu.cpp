// x86 CPU schedules for the sparse depth-wise conv (see generators/dwconv2d_sparse_algorithm.h).
//
// Forward / backward-data: one task per (image, channel) stages the zero-extended input plane
// (two copies per row, so no load crosses a cache line), then sweeps register tiles of `tile`
// output columns x `rows` output rows (8-lane ymm vectors; 7 x 4 = 28 accumulators, in the 32
// registers of AVX-512VL). Per listed tap: two table loads and one weight broadcast, then up to
// tile/8 * rows FMAs with the input vectors as memory operands (loads: 1 + ~3/28 per FMA, the
// limit of this design: Zen 4 issues two 256-bit loads and two 256-bit FMAs per cycle).
// Measured (N1 C128 56x56, 31x31, 2 threads, paired with the dense kernel): 0.42x the dense
// kernel's time at density 0.3, 0.78x at 0.6, 1.23x at 1.0.
#include "schedules/dwconv2d_sparse_schedule.h"

namespace lkc::sched {

namespace {
// The zero-extended input planes once per task: a vector fill, then a vector copy of the image
// (per copy). Rows are 64-byte aligned and start at a multiple of 16 columns, so the kernel's loads
// (see staged_column) never cross a cache line.
void stage_planes(Func f, const RDom& r, const SparseParams& p, Func consumer, const Var& at) {
    const Var x = f.args()[0];
    f.compute_at(consumer, at)
        .align_bounds(x, 2 * p.vec)
        .align_storage(x, 2 * p.vec)
        .vectorize(x, p.vec, TailStrategy::RoundUp);
    // Distinct (r.x, b) write distinct columns (x = r.x + b*(pitch - 8), pitch > image width);
    // Halide cannot prove it for that LHS.
    f.update().allow_race_conditions().vectorize(r.x, p.vec, TailStrategy::GuardWithIf);
}
}  // namespace

void schedule_sparse_corr_cpu(SparseCorrStages& s, const SparseParams& p, const Target& t) {
    (void)t;
    Var j("j"), i("i"), q("q"), c("c"), n("n"), lane("lane"), v("v"), jl("jl"), il("il"), jt("jt"),
        it("it"), cn("cn");
    const int vl = p.vec;
    Func out = s.output;
    out.split(j, jt, jl, p.tile, TailStrategy::RoundUp)
        .split(i, it, il, p.rows, TailStrategy::RoundUp)
        .split(jl, v, lane, vl)
        .reorder(lane, v, il, jt, it, q, c, n)
        .vectorize(lane)
        .fuse(c, n, cn)
        .parallel(cn);

    s.acc.compute_at(out, jt).vectorize(lane).unroll(v).unroll(il);
    s.acc.update()
        .reorder(lane, il, s.r.x, s.r.y, s.r.z, jt, it, q, c, n)
        .vectorize(lane)
        .unroll(il)
        .unroll(s.r.x)
        .unroll(s.r.z);

    stage_planes(s.xs, s.xs_r, p, out, cn);

    out.specialize(s.in_stride == 1 && s.single);
    out.specialize(s.in_stride == 1);
}

// Backward-weight: one task per (image, channel) stages x and dy; per block of taps the output
// rows are swept with the block's accumulators in registers (vector loop unrolled, so each dy
// vector of a row is loaded once for the block). Per-image partial gradients are summed after.
void schedule_sparse_wgrad_cpu(SparseWgradStages& s, const SparseParams& p, const Target& t) {
    (void)t;
    Var lane("lane"), e("e"), b("b"), pv("pv"), tb("tb"), c("c"), n("n"), tt("t"), cn("cn");
    const int vl = p.vec;
    s.part.compute_root()
        .split(tt, tb, b, p.rows, TailStrategy::RoundUp)
        .reorder(b, tb, c, n)
        .fuse(c, n, cn)
        .parallel(cn);
    s.acc.compute_at(s.part, tb).vectorize(lane, vl).unroll(e).unroll(b).unroll(pv);
    s.acc.update()
        .reorder(lane, b, s.r[0], s.r[1], s.r[2], pv, tb, c, n)
        .vectorize(lane, vl)
        .unroll(b)
        .unroll(s.r[0])
        .unroll(pv);
    for (Func f : {s.oy_lo, s.oy_hi}) f.compute_at(s.part, cn);
    stage_planes(s.xs, s.xs_r, p, s.part, cn);
    stage_planes(s.dys, s.dys_r, p, s.part, cn);
    s.part.specialize(s.in_stride == 1 && s.single);
    s.part.specialize(s.in_stride == 1);

    s.dwt.compute_root().vectorize(tt, vl, TailStrategy::GuardWithIf).parallel(c);
    s.dwt.update().reorder(tt, s.rn, c).vectorize(tt, vl, TailStrategy::GuardWithIf).parallel(c);

    s.dbacc.compute_at(s.db, c).vectorize(lane, vl);
    s.dbacc.update().vectorize(lane, vl);
    s.db.compute_root().parallel(c);
}

}  // namespace lkc::sched
