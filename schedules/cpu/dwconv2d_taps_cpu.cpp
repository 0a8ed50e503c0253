// x86 CPU schedules for the row-table generators (multi-branch, shift-wise).
//
// Forward: the dense forward's register tile (tile output columns x 16 channels in zmm
// accumulators), with the kernel rows replaced by table entries: per entry of width c, c weight
// vectors and tile + c - 1 input vectors feed tile * c FMAs (c = 8: 29 loads per 112 FMAs).
// All classes update the same tile, so every branch / output accumulates before the store.
// Outputs (o) loop inside output rows so the staged rows are reused from L1 across yh, yv, ys.
#include "schedules/dwconv2d_taps_schedule.h"

namespace lkc::sched {

void schedule_taps_fwd_cpu(TapsFwdStages& s, const TapsParams& p, const Target& t) {
    (void)t;
    Var ci("ci"), x("x"), y("y"), o("o"), cb("cb"), n("n"), tt("t"), jt("jt"), xo("xo"), xi("xi"),
        cbn("cbn"), yo("yo"), yi("yi");
    Func out = s.output;
    out.split(x, xo, xi, p.tile, TailStrategy::GuardWithIf)
        .reorder(ci, xi, xo, o, y, cb, n)
        .vectorize(ci, 16)
        .fuse(cb, n, cbn)
        .parallel(cbn)
        .split(y, yo, yi, p.rows_per_task, TailStrategy::GuardWithIf)
        .parallel(yo);
    s.acc.compute_at(out, xo).vectorize(ci, 16).unroll(tt);
    for (int k = 0; k < kTapClasses; ++k) {
        s.acc.update(k)
            .reorder(ci, tt, s.r[k].x, s.r[k].y, jt, y, o, cb, n)
            .vectorize(ci, 16)
            .unroll(tt)
            .unroll(s.r[k].x);
    }
    s.xp.compute_at(out, cbn).vectorize(ci, 16);
}

// Backward weight, per class: chunk lanes x partials accumulators (8x1, 5x2, 3x3, 1x8: 8-10
// FMA chains), reduced over output rows and column steps; per step the x vectors of neighbouring
// lanes / columns coincide and are loaded once. x and dy are staged zero-extended once (root).
void schedule_taps_wgrad_cpu(TapsWgradStages& s, const TapsParams& p, const Target& t) {
    (void)t;
    (void)p;
    Var ci("ci"), l("l"), pp("p"), e("e"), cb("cb"), n("n"), o("o"), cbn("cbn"), x("x"), y("y"),
        sv("s");
    for (int k = 0; k < kTapClasses; ++k) {
        s.part[k]
            .compute_root()
            .reorder(ci, l, e, cb, n)
            .vectorize(ci, 16)
            .fuse(cb, n, cbn)
            .parallel(cbn);
        s.acc[k].compute_at(s.part[k], e).vectorize(ci, 16).unroll(l).unroll(pp);
        s.acc[k]
            .update()
            .reorder(ci, l, pp, s.r[k].z, s.r[k].y, s.r[k].x, e, cb, n)
            .vectorize(ci, 16)
            .unroll(l)
            .unroll(pp)
            .unroll(s.r[k].z);
        s.out[k].vectorize(ci, 16);
        s.out[k].update().reorder(ci, s.rn[k].x, l, e, cb).vectorize(ci, 16);
    }
    s.xp.compute_root()
        .reorder(ci, x, y, sv, cb, n)
        .vectorize(ci, 16)
        .fuse(cb, n, cbn)
        .parallel(cbn);
    s.dyp.compute_root()
        .reorder(ci, x, y, sv, cb, n)
        .vectorize(ci, 16)
        .fuse(cb, n, cbn)
        .parallel(cbn);
    s.db.vectorize(ci, 16);
    s.db.update().reorder(ci, s.rdb.x, s.rdb.y, s.rdb.z, o, cb).vectorize(ci, 16);
}

}  // namespace lkc::sched
