// GPU schedules (CUDA, OpenCL) for the row-table generators (multi-branch, shift-wise).
//
// Forward: one thread per (channel, output column, output row) of a 16 x tile x gpu_rows block
// (896 threads by default; consecutive threads read consecutive channels, one 64-byte
// transaction per pixel); each thread walks the entry table with its accumulator in a register
// and reads the input through the cache (the reach of a table is only known at run time, so
// there is no shared-memory strip as in the dense kernel). Backward weight: one thread per
// (channel, lane) of an entry, reducing over the image; partials summed over images in a second
// kernel. Checked on PoCL and by ptxas (sm_80/sm_90); no GPU timings exist for this project.
#include "schedules/dwconv2d_taps_schedule.h"

namespace lkc::sched {

void schedule_taps_fwd_gpu(TapsFwdStages& s, const TapsParams& p, const Target& t) {
    (void)t;
    Var ci("ci"), x("x"), y("y"), o("o"), cb("cb"), n("n"), xo("xo"), xi("xi"), yo("yo"), yi("yi"),
        ocb("ocb"), ocbn("ocbn");
    Func out = s.output;
    out.split(x, xo, xi, p.tile, TailStrategy::GuardWithIf)
        .split(y, yo, yi, p.gpu_rows, TailStrategy::GuardWithIf)
        .reorder(ci, xi, yi, xo, yo, o, cb, n)
        .fuse(o, cb, ocb)
        .fuse(ocb, n, ocbn)
        .gpu_blocks(xo, yo, ocbn)
        .gpu_threads(ci, xi, yi);
    s.acc.compute_at(out, ci);
    for (int k = 0; k < kTapClasses; ++k) s.acc.update(k).unroll(s.r[k].x);
}

void schedule_taps_wgrad_gpu(TapsWgradStages& s, const TapsParams& p, const Target& t) {
    (void)t;
    (void)p;
    Var ci("ci"), l("l"), e("e"), cb("cb"), n("n"), o("o"), cbn("cbn");
    for (int k = 0; k < kTapClasses; ++k) {
        s.part[k]
            .compute_root()
            .reorder(ci, l, e, cb, n)
            .fuse(cb, n, cbn)
            .gpu_blocks(e, cbn)
            .gpu_threads(ci, l);
        s.acc[k].compute_at(s.part[k], ci);
        s.acc[k].update().unroll(s.r[k].z);
        s.out[k].gpu_blocks(e, cb).gpu_threads(ci, l);
        s.out[k].update().reorder(s.rn[k].x, ci, l, e, cb).gpu_blocks(e, cb).gpu_threads(ci, l);
    }
    s.db.gpu_blocks(o, cb).gpu_threads(ci);
    s.db.update().reorder(s.rdb.x, s.rdb.y, s.rdb.z, ci, o, cb).gpu_blocks(o, cb).gpu_threads(ci);
}

}  // namespace lkc::sched
