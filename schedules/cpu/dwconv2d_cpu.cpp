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

int vector_lanes(const Target& t) { return t.has_feature(Target::AVX512) ? 16 : (t.has_feature(Target::AVX2) ? 8 : 4); }
}  // namespace

void schedule_corr_cpu(CorrStages& s, const DwParams& p, const Target& t) {
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), tt("t"), jt("jt"), xo("xo"), xi("xi"),
        cbn("cbn");
    const int vl = vector_lanes(t);
    Func out = s.output;
    out.split(x, xo, xi, p.tile, TailStrategy::GuardWithIf)
        .reorder(ci, xi, xo, y, cb, n)
        .vectorize(ci, vl)
        .fuse(cb, n, cbn)
        .parallel(cbn);
    if (p.par_rows) out.parallel(y);

    s.acc.compute_at(out, xo).vectorize(ci, vl).unroll(tt);
    s.acc.update()
        .reorder(ci, tt, s.r.z, s.r.y, s.r.x, jt, y, cb, n)
        .vectorize(ci, vl)
        .unroll(tt)
        .unroll(s.r.z);
    if (vl < 16) s.acc.update().unroll(ci);

    s.xp.compute_at(out, cbn).vectorize(ci, vl);
    s.wp.compute_root().vectorize(ci, vl);
    if (s.bp.defined()) s.bp.compute_root().vectorize(ci, vl);

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
// tile * chunk FMAs. Each (image, channel block) produces a partial gradient (its x and dy stay in
// L2), summed over images afterwards.
void schedule_wgrad_cpu(WgradStages& s, const DwParams& p, const Target& t) {
    Var ci("ci"), v("v"), vi("vi"), vt("vt"), u("u"), cb("cb"), n("n"), c("c"), z("z"),
        cbn("cbn");
    const int vl = vector_lanes(t);
    s.part.compute_root()
        .split(v, vt, vi, p.tile, TailStrategy::RoundUp)
        .reorder(ci, vi, vt, u, cb, n)
        .vectorize(ci, vl)
        .fuse(cb, n, cbn)
        .parallel(cbn);
    if (p.par_rows) s.part.parallel(u);

    s.acc.compute_at(s.part, vt).vectorize(ci, vl).unroll(vi);
    s.acc.update()
        .reorder(ci, vi, s.r.z, s.r.y, s.r.x, vt, u, cb, n)
        .vectorize(ci, vl)
        .unroll(vi)
        .unroll(s.r.z);
    if (vl < 16) s.acc.update().unroll(ci);
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
