// GPU schedules (CUDA and OpenCL) of the memory-bound ops. A thread block is the 16 lanes of a
// channel block times 16 pixels of a row (256 threads, consecutive threads read consecutive
// floats); reductions across channels run one thread per pixel, reductions across pixels one
// thread per channel. Correctness is checked on PoCL; no GPU timings exist for this project.
#include "schedules/ops_eltwise_schedule.h"

namespace lkc::sched {

namespace {

constexpr int kLanes = 16;
constexpr int kPixels = 16;  // pixels per thread block

void specialise(Stage st, const Specialisations& levels, size_t i) {
    if (i == levels.size()) return;
    for (const Expr& c : levels[i]) specialise(st.specialize(c), levels, i + 1);
    specialise(st, levels, i + 1);
}

}  // namespace

void schedule_pointwise_gpu(Func out, const Specialisations& spec, const Target& t) {
    (void)t;
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), xo("xo"), xi("xi"), cbn("cbn");
    out.split(x, xo, xi, kPixels, TailStrategy::GuardWithIf)
        .reorder(ci, xi, xo, y, cb, n)
        .fuse(cb, n, cbn)
        .gpu_blocks(xo, y, cbn)
        .gpu_threads(ci, xi);
    specialise(out, spec, 0);
}

void schedule_channel_stats_gpu(ChannelStatsStages& s, const Target& t) {
    for (size_t i = 0; i < s.totals.size(); ++i) {
        Func tot = s.totals[i], lp = s.lane_partials[i];
        const std::vector<Var> a = tot.args();  // (x, y, n)
        Var xo("xo"), xi("xi");
        tot.compute_root()
            .split(a[0], xo, xi, kPixels, TailStrategy::GuardWithIf)
            .gpu_blocks(xo, a[1], a[2])
            .gpu_threads(xi);
        tot.update()
            .split(a[0], xo, xi, kPixels, TailStrategy::GuardWithIf)
            .reorder(s.rl, xi, xo, a[1], a[2])
            .gpu_blocks(xo, a[1], a[2])
            .gpu_threads(xi);
        // The 16 lane partials of a pixel live in the thread's registers.
        lp.compute_at(tot, xi).unroll(lp.args()[0]);
        lp.update().reorder(lp.args()[0], s.rb).unroll(lp.args()[0]);
    }
    for (Func f : s.per_pixel) {
        const std::vector<Var> a = f.args();  // (x, y, n)
        Var xo("xo"), xi("xi");
        f.compute_root()
            .split(a[0], xo, xi, kPixels, TailStrategy::GuardWithIf)
            .gpu_blocks(xo, a[1], a[2])
            .gpu_threads(xi);
    }
    schedule_pointwise_gpu(s.output, {}, t);
}

void schedule_pixel_stats_gpu(PixelStatsStages& s, const Target& t) {
    Var ci("ci"), cb("cb"), n("n");
    s.sum.compute_root().gpu_blocks(cb, n).gpu_threads(ci);
    s.sum.update().reorder(s.rp.x, s.rp.y, ci, cb, n).gpu_blocks(cb, n).gpu_threads(ci);
    if (s.total.defined()) {
        s.total.compute_root().gpu_single_thread();
        s.total.update().gpu_single_thread();
        s.factor.compute_root().gpu_blocks(cb, n).gpu_threads(ci);
        schedule_pointwise_gpu(s.output, {}, t);
    } else {
        s.output.gpu_blocks(s.output.args()[3], s.output.args()[4]).gpu_threads(ci);
    }
}

}  // namespace lkc::sched
