// x86 CPU schedules of the memory-bound ops: one zmm per (pixel, channel block), rows in
// parallel. These ops do a few FLOPs per 8-12 bytes moved, so they are bound by memory (STREAM
// triad 38-42 GB/s here: a 56x56x128 fp32 tensor is 1.6 MB) or, when the tensor is cache-resident,
// by the per-vector work; the schedules aim at one pass over the data and tasks of ~128 KB so
// the two cores share the work without fine-grained task overhead. Measured (bench_ops, busy
// VM): add / affine+ReLU 56x56x128 in 39 us (81-122 GB/s, cache-resident), GRN 56x56x512 in
// 0.29 ms (67 GB/s), LayerNorm 56x56x128 in 97 us (33 GB/s: one horizontal sum per pixel and
// statistic), GELU 56x56x512 in 0.5 ms (25 GB/s: erf-bound). docs/ops.md.
#include "schedules/ops_eltwise_schedule.h"

namespace lkc::sched {

namespace {

constexpr int kLanes = 16;

void specialise(Stage st, const Specialisations& levels, size_t i) {
    if (i == levels.size()) return;
    for (const Expr& c : levels[i]) specialise(st.specialize(c), levels, i + 1);
    specialise(st, levels, i + 1);
}

// Output rows per parallel task: ~2048 vectors (128 KB) per task, at least one row.
Expr rows_per_task(const Func& out) {
    return max(1, 2048 / max(1, out.output_buffer().dim(1).extent()));
}

}  // namespace

void schedule_pointwise_cpu(Func out, const Specialisations& spec, const Target& t) {
    (void)t;
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), r("r"), row("row"), task("task"), ri("ri");
    out.vectorize(ci, kLanes)
        .fuse(y, cb, r)
        .fuse(r, n, row)
        .split(row, task, ri, rows_per_task(out), TailStrategy::GuardWithIf)
        .parallel(task);
    specialise(out, spec, 0);
}

// A task is one output row (W pixels x all channels, 28 KB at 56 x 128 or 7 x 1024): its
// statistics pass over the row's blocks (vector adds per pixel, one horizontal sum per pixel and
// statistic), then the output pass. The row stays in L1/L2 between the passes.
void schedule_channel_stats_cpu(ChannelStatsStages& s, const Target& t) {
    (void)t;
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), row("row");
    Func out = s.output;
    out.reorder(ci, x, cb, y, n).vectorize(ci, kLanes).fuse(y, n, row).parallel(row);
    for (size_t i = 0; i < s.totals.size(); ++i) {
        Func lp = s.lane_partials[i], tot = s.totals[i];
        tot.compute_at(out, row);
        tot.update().atomic().vectorize(s.rl);
        lp.compute_at(out, row).vectorize(lp.args()[0], kLanes);
        lp.update().reorder(lp.args()[0], lp.args()[1], s.rb).vectorize(lp.args()[0], kLanes);
    }
    for (Func f : s.per_pixel) f.compute_at(out, row);
}

// GRN / pool: per (channel block, image) a vectorised sum over the image's pixels (parallel over
// blocks and images), then GRN's per-image mean of G (C values) and the element-wise output.
void schedule_pixel_stats_cpu(PixelStatsStages& s, const Target& t) {
    Var ci("ci"), cb("cb"), n("n"), cbn("cbn");
    s.sum.compute_root().vectorize(ci, kLanes).fuse(cb, n, cbn).parallel(cbn);
    s.sum.update()
        .reorder(ci, s.rp.x, s.rp.y, cb, n)
        .vectorize(ci, kLanes)
        .fuse(cb, n, cbn)
        .parallel(cbn);
    if (s.total.defined()) {
        s.total.compute_root();
        s.factor.compute_root().vectorize(ci, kLanes);
        schedule_pointwise_cpu(s.output, {}, t);
    } else {
        // Pool: the output is (16, 1, 1, blocks, N); the sum is the work.
        s.output.vectorize(ci, kLanes);
    }
}

}  // namespace lkc::sched
