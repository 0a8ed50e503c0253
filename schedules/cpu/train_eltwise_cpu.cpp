// x86 CPU schedules of the memory-bound training kernels (schedules/train_eltwise_schedule.h).
// Every kernel here moves a few bytes per FLOP: the schedules aim at one pass over each tensor
// they read, 16-lane vectors (one zmm per pixel and channel block), and parallel tasks large
// enough for the two cores (rows of ~128 KB, or one image x channel block for pixel reductions).
// Measured numbers: docs/training.md.
#include "schedules/train_eltwise_schedule.h"

namespace lkc::sched {

namespace {

constexpr int kLanes = 16;

void specialise(Stage st, const Specialisations& levels, size_t i) {
    if (i == levels.size()) return;
    for (const Expr& c : levels[i]) specialise(st.specialize(c), levels, i + 1);
    specialise(st, levels, i + 1);
}

}  // namespace

void schedule_gather_sum_cpu(Func out, Func acc, const std::vector<RVar>& r,
                             const Specialisations& spec, const Target& t) {
    Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
    // The accumulator of one output vector lives in a register; its update loops over the
    // (small) reduction domain with the 16 lanes vectorised.
    acc.compute_at(out, x).vectorize(ci, kLanes);
    std::vector<VarOrRVar> order = {ci};
    for (const RVar& v : r) order.push_back(v);
    for (const Var& v : {x, y, cb, n}) order.push_back(v);
    acc.update().reorder(order).vectorize(ci, kLanes);
    schedule_pointwise_cpu(out, spec, t);
}

void schedule_rows_cpu(Func out, bool lanes, const Target& t) {
    (void)t;
    const std::vector<Var> a = out.args();
    if (lanes) out.vectorize(a[0], kLanes);
    out.parallel(a.back());
}

void schedule_flat_cpu(Func out, const Specialisations& spec, const Target& t) {
    (void)t;
    Var i = out.args()[0], io("io"), ii("ii"), iv("iv"), il("il");
    // GuardWithIf everywhere: the optimizers update their state in place, so no element may be
    // computed twice (ShiftInwards would recompute the last vector's overlap).
    out.split(i, io, ii, 8192, TailStrategy::GuardWithIf)
        .split(ii, iv, il, kLanes, TailStrategy::GuardWithIf)
        .vectorize(il)
        .parallel(io);
    specialise(out, spec, 0);
}

void schedule_channel_partials_cpu(Func part, const Target& t) {
    (void)t;
    Var ci("ci"), cb("cb"), n("n"), cbn("cbn");
    part.compute_root().vectorize(ci, kLanes).fuse(cb, n, cbn).parallel(cbn);
    for (int u = 0; u < part.num_update_definitions(); ++u) {
        std::vector<VarOrRVar> order = {ci};
        for (const RVar& r : part.rvars(u)) order.push_back(r);
        for (const Var& v : {cb, n}) order.push_back(v);
        part.update(u).reorder(order).vectorize(ci, kLanes).fuse(cb, n, cbn).parallel(cbn);
    }
}

void schedule_channel_vector_cpu(Func f, const Target& t) {
    (void)t;
    Var ci = f.args()[0];
    f.compute_root().vectorize(ci, kLanes);
    for (int u = 0; u < f.num_update_definitions(); ++u) {
        std::vector<VarOrRVar> order = {ci};
        for (const RVar& r : f.rvars(u)) order.push_back(r);
        for (size_t k = 1; k < f.args().size(); ++k) order.push_back(f.args()[k]);
        f.update(u).reorder(order).vectorize(ci, kLanes);
    }
}

void schedule_per_image_cpu(Func f, const Target& t) {
    (void)t;
    Var n = f.args()[0];
    f.compute_root().parallel(n);
    for (int u = 0; u < f.num_update_definitions(); ++u) f.update(u).parallel(n);
}

void schedule_row_stats_cpu(RowStats& s, const Target& t) {
    (void)t;
    const std::vector<Var> a = s.stats.args();
    Var level = a.back();
    if (a.size() == 3) {
        Var row("row");
        s.stats.compute_root().fuse(a[1], a[2], row).parallel(row);
        level = row;
    } else {
        s.stats.compute_root().parallel(level);
    }
    for (size_t i = 0; i < s.totals.size(); ++i) {
        Func lp = s.lane_partials[i], tot = s.totals[i];
        tot.compute_at(s.stats, level);
        if (tot.outputs() == 1) tot.update().atomic().vectorize(s.rl);
        const std::vector<Var> la = lp.args();  // (ci, [x, y,] n)
        lp.compute_at(s.stats, level).vectorize(la[0], kLanes);
        if (la.size() == 4) {
            lp.update().reorder(la[0], la[1], s.rb).vectorize(la[0], kLanes);
        } else {
            lp.update().reorder(la[0], s.rb).vectorize(la[0], kLanes);
        }
    }
}

}  // namespace lkc::sched
