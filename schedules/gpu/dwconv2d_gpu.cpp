// GPU schedules (CUDA and OpenCL) for the dense depth-wise conv.
//
// Forward / stride-1 backward-data: a block owns `tile` output columns x `gpu_rows` rows x 16
// channels (one thread each; 16 x 14 x 4 = 896 threads by default, consecutive threads read
// consecutive channels, so a pixel is one 64-byte transaction). Kernel rows are a serial loop at
// block level: per kernel row the block stages the input strip it needs (gpu_rows rows x
// (tile - 1) * s + chunks * chunk * d columns x 16 channels, 3-5 KiB for 31x31) in shared/local
// memory, then every thread runs the row's column taps from it. Whole-tile staging would need
// 90+ KiB for 31x31, above the 48 KiB static shared-memory limit. Rows and chunks that only read
// padding are skipped (same predicate as on the CPU). Correctness is checked on PoCL; the PTX is
// assembled by ptxas for sm_80/sm_90 (docs/kernels.md). No GPU timings exist for this project.
#include "schedules/dwconv2d_schedule.h"

namespace lkc::sched {

void schedule_corr_gpu(CorrStages& s, const DwParams& p, const Target& t) {
    (void)t;
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), tt("t"), jt("jt"), xo("xo"), xi("xi"), yo("yo"),
        yi("yi"), cbn("cbn"), sx("sx"), sxo("sxo"), sxi("sxi");
    Func out = s.output;
    out.split(x, xo, xi, p.tile, TailStrategy::GuardWithIf)
        .split(y, yo, yi, p.gpu_rows, TailStrategy::GuardWithIf)
        .reorder(ci, xi, yi, xo, yo, cb, n)
        .fuse(cb, n, cbn)
        .gpu_blocks(xo, yo, cbn)
        .gpu_threads(ci, xi, yi);

    // Accumulators at block level (one element per thread), kernel rows serial outside the
    // thread loops so the staged strip can be shared.
    s.acc.compute_at(out, xo).gpu_threads(ci, tt, y);
    s.acc.update()
        .reorder(s.r.z, s.r.y, ci, tt, y, s.r.x, jt, cb, n)
        .gpu_threads(ci, tt, y)
        .unroll(s.r.z);

    // Input strip for one kernel row, loaded cooperatively with the same thread shape.
    // Both strip dims are split by the block's thread shape so the work-group size stays
    // 16 x tile x gpu_rows whatever stride and dilation make the strip's extent.
    Var syo("syo"), syi("syi");
    s.xp.compute_at(s.acc, s.r.x)
        .split(x, sxo, sxi, p.tile, TailStrategy::GuardWithIf)
        .split(y, syo, syi, p.gpu_rows, TailStrategy::GuardWithIf)
        .reorder(ci, sxi, syi, sxo, syo)
        .gpu_threads(ci, sxi, syi);

    s.wp.compute_root().reorder(ci, s.wp.args()[1], s.wp.args()[2], s.wp.args()[3]);
    s.wp.gpu_blocks(s.wp.args()[2], s.wp.args()[3]).gpu_threads(ci);
    if (s.bp.defined()) s.bp.compute_root().gpu_blocks(cb).gpu_threads(ci);
}

void schedule_transposed_gpu(TransposedStages& s, const DwParams& p, const Target& t) {
    (void)t;
    (void)p;
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), xo("xo"), xi("xi"), cbn("cbn");
    Func out = s.output;
    out.split(x, xo, xi, 8, TailStrategy::GuardWithIf)
        .reorder(ci, xi, xo, y, cb, n)
        .fuse(cb, n, cbn)
        .gpu_blocks(xo, y, cbn)
        .gpu_threads(ci, xi);
    s.acc.compute_at(out, ci);
    Func wp = s.wp;
    wp.compute_root().gpu_blocks(wp.args()[2], wp.args()[3]).gpu_threads(ci);
}

// Backward weight: one thread per (channel, kernel column) of a `tile`-column block of one kernel
// row; each thread reduces over the image's output pixels in registers (dy and x through the
// cache). Per-image partials are summed in a second small kernel.
void schedule_wgrad_gpu(WgradStages& s, const DwParams& p, const Target& t) {
    (void)t;
    Var ci("ci"), v("v"), vi("vi"), vt("vt"), u("u"), cb("cb"), n("n"), c("c"), z("z"), cbn("cbn"),
        vo("vo"), co("co"), cI("cI");
    s.part.compute_root()
        .split(v, vt, vi, p.tile, TailStrategy::RoundUp)
        .reorder(ci, vi, vt, u, cb, n)
        .fuse(cb, n, cbn)
        .gpu_blocks(vt, u, cbn)
        .gpu_threads(ci, vi);
    s.acc.compute_at(s.part, ci);
    s.acc.update().unroll(s.r.z);

    s.gsum.compute_root()
        .split(v, vo, vi, 8, TailStrategy::GuardWithIf)
        .reorder(ci, vi, vo, u, cb)
        .gpu_blocks(vo, u, cb)
        .gpu_threads(ci, vi);
    s.gsum.update()
        .split(v, vo, vi, 8, TailStrategy::GuardWithIf)
        .reorder(s.rn.x, ci, vi, vo, u, cb)
        .gpu_blocks(vo, u, cb)
        .gpu_threads(ci, vi);
    s.dbsum.compute_root().gpu_blocks(cb).gpu_threads(ci);
    s.dbsum.update().reorder(s.rdb.x, s.rdb.y, s.rdb.z, ci, cb).gpu_blocks(cb).gpu_threads(ci);
    s.dw.split(c, co, cI, 16, TailStrategy::GuardWithIf)
        .reorder(v, z, cI, u, co)
        .gpu_blocks(u, co)
        .gpu_threads(cI);
    s.db.split(c, co, cI, 16, TailStrategy::GuardWithIf).gpu_blocks(co).gpu_threads(cI);
}

}  // namespace lkc::sched
