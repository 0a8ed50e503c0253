// x86 CPU schedules for the dense depth-wise conv (AVX-512: 16 fp32 lanes = one channel block).
//
// Forward / stride-1 backward-data: one output row segment of `tile` pixels x 16 channels lives in
// `tile` zmm accumulators; per kernel row and column chunk the chunk's weights (one vector per
// tap) and the tile + chunk - 1 input vectors are loaded once and each weight feeds `tile` FMAs
// (tile 14, chunk 8: 29 loads per 112 FMAs). 14 accumulators cover the 8 needed to hide the
// 4-cycle FMA latency on two pipes. Numbers: docs/kernels.md.
#include "schedules/dwconv2d_schedule.h"

namespace lkc::sched {

namespace {
// Stride/dilation pairs that get their own code path (constants fold into addresses and loads
// shared between taps are found); everything else runs the generic path.
const int kSpecialised[][2] = {{1, 1}, {1, 2}, {1, 3}, {2, 1}};

// One channel block (16 lanes) is one Halide vector on every x86 target; LLVM splits it into 2 ymm
// (AVX2) or 4 xmm (SSE). Splitting it in Halide instead (vectorize 8 + unroll) made the AVX2 and
// SSE builds of the pixel-form kernels take > 2 minutes each in Halide's lowering.
int vector_lanes(const Target&) { return 16; }
}  // namespace

void schedule_corr_cpu(CorrStages& s, const DwParams& p, const Target& t) {
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), tt("t"), jt("jt"), xo("xo"), xi("xi"),
        cbn("cbn"), yo("yo"), yi("yi");
    const int vl = vector_lanes(t);
    Func out = s.output;
    out.split(x, xo, xi, p.tile, TailStrategy::GuardWithIf)
        .reorder(ci, xi, xo, y, cb, n)
        .vectorize(ci, vl)
        .fuse(cb, n, cbn)
        .parallel(cbn);
    // Nested parallelism over bands of rows keeps both cores busy when N x C/16 is small; bands
    // (not single rows) keep a task >= ~10 us for 7x7 kernels (per-task overhead ~1 us).
    if (p.par_rows) {
        out.split(y, yo, yi, p.rows_per_task, TailStrategy::GuardWithIf).parallel(yo);
    }

    s.acc.compute_at(out, xo).vectorize(ci, vl).unroll(tt);
    s.acc.update()
        .reorder(ci, tt, s.r.z, s.r.y, s.r.x, jt, y, cb, n)
        .vectorize(ci, vl)
        .unroll(tt)
        .unroll(s.r.z);

    // Input staging. stage=true: a zero-extended copy of the (image, channel block), made once per
    // task, read without tests; pays off for tall kernels that reuse each row Kh times (51x5 on
    // 56x56: 146 vs 97 useful GF/s). stage=false: no copy; partly padded chunks read through a
    // masked load (a scalar column test per load), better for short kernels (7x7: ~110 vs ~100).
    if (p.stage) s.xp.compute_at(out, cbn).vectorize(ci, vl);
    s.wp.compute_root().vectorize(ci, vl);
    if (s.bp.defined()) s.bp.compute_root().vectorize(ci, vl);

    if (p.pixels) {
        out.specialize(s.stride == 1);  // dilation is always 1 in the pixel form
        return;
    }
    for (const auto& sd : kSpecialised) {
        out.specialize(s.stride == sd[0] && s.dil == sd[1]);
    }
}

void schedule_transposed_cpu(TransposedStages& s, const DwParams& p, const Target& t) {
    (void)p;
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), cbn("cbn");
    const int vl = vector_lanes(t);
    Func out = s.output;
    out.reorder(ci, x, y, cb, n).vectorize(ci, vl).fuse(cb, n, cbn).parallel(cbn).parallel(y);
    s.acc.compute_at(out, x).vectorize(ci, vl);
    s.acc.update().reorder(ci, s.r.y, s.r.x).vectorize(ci, vl);
    s.dyp.compute_at(out, cbn).vectorize(ci, vl);
    s.wp.compute_root().vectorize(ci, vl);
}

// Backward weight: `tile` kernel columns x 16 channels in zmm accumulators; per output row and
// chunk of `chunk` output columns, chunk dy vectors and chunk + tile - 1 input vectors feed
// tile * chunk FMAs. Each (group of images, channel block) produces a partial gradient (its x
// and dy stay in L2), summed over the groups afterwards; a group is one image on maps of 16x16
// and more, several on smaller maps (the generator's G).
void schedule_wgrad_cpu(WgradStages& s, const DwParams& p, const Target& t) {
    Var ci("ci"), v("v"), vi("vi"), vt("vt"), u("u"), cb("cb"), n("n"), c("c"), z("z"), cbn("cbn");
    const int vl = vector_lanes(t);
    s.part.compute_root()
        .split(v, vt, vi, p.tile, TailStrategy::RoundUp)
        .reorder(ci, vi, vt, u, cb, n)
        .vectorize(ci, vl)
        .fuse(cb, n, cbn)
        .parallel(cbn);
    if (p.par_rows) s.part.parallel(u);  // a task is one kernel row over the whole image

    s.acc.compute_at(s.part, vt).vectorize(ci, vl).unroll(vi);
    s.acc.update()
        .reorder(ci, vi, s.r.z, s.r.y, s.r.x, s.r.w, vt, u, cb, n)
        .vectorize(ci, vl)
        .unroll(vi)
        .unroll(s.r.z);
    s.xp.compute_at(s.part, cbn).vectorize(ci, vl);
    s.dyp.compute_at(s.part, cbn).vectorize(ci, vl);

    for (const auto& sd : kSpecialised) {
        s.part.specialize(s.stride == sd[0] && s.dil == sd[1]);
    }

    // Sum over images and transpose to [C,1,Kh,Kw]: C*Kh*Kw values, negligible.
    s.gsum.compute_root().vectorize(ci, vl).parallel(u);
    s.gsum.update().reorder(ci, s.rn.x, v, u, cb).vectorize(ci, vl).parallel(u);
    s.dbsum.compute_root().vectorize(ci, vl);
    s.dbsum.update().reorder(ci, s.rdb.x, s.rdb.y, s.rdb.z, cb).vectorize(ci, vl);
}

}  // namespace lkc::sched
