// GPU schedules (CUDA and OpenCL) of the memory-bound training kernels
// (schedules/train_eltwise_schedule.h): element-wise outputs 16 lanes x 16 pixels per thread
// block (the forward ops' schedule), reductions over pixels one thread per channel lane,
// reductions over channels one thread per pixel, flat buffers 256 threads per block. Simple and
// unmeasured: correctness is checked on PoCL (tests/test_train_ops_gpu.cpp).
#include "schedules/train_eltwise_schedule.h"

namespace lkc::sched {

namespace {

constexpr int kPixels = 16;

void specialise(Stage st, const Specialisations& levels, size_t i) {
    if (i == levels.size()) return;
    for (const Expr& c : levels[i]) specialise(st.specialize(c), levels, i + 1);
    specialise(st, levels, i + 1);
}

}  // namespace

void schedule_gather_sum_gpu(Func out, Func acc, const std::vector<RVar>& r,
                             const Specialisations& spec, const Target& t) {
    (void)r;
    // One output value per thread; its accumulator is a register of the thread.
    acc.compute_at(out, Var("ci"));
    schedule_pointwise_gpu(out, spec, t);
}

void schedule_rows_gpu(Func out, bool lanes, const Target& t) {
    (void)t;
    (void)lanes;
    // Threads along dim 0 (16 per block), blocks along the outermost dim; the dims between
    // loop inside each thread (these outputs are small: weights and their gradients).
    const std::vector<Var> a = out.args();
    Var o("o"), i("i");
    out.split(a[0], o, i, 16, TailStrategy::GuardWithIf);
    std::vector<VarOrRVar> order;
    for (size_t k = 1; k + 1 < a.size(); ++k) order.push_back(a[k]);
    order.push_back(i);
    order.push_back(o);
    if (a.size() > 1) order.push_back(a.back());
    out.reorder(order);
    if (a.size() > 1) {
        out.gpu_blocks(o, a.back()).gpu_threads(i);
    } else {
        out.gpu_blocks(o).gpu_threads(i);
    }
}

void schedule_flat_gpu(Func out, const Specialisations& spec, const Target& t) {
    (void)t;
    Var i = out.args()[0], io("io"), ii("ii");
    out.gpu_tile(i, io, ii, 256, TailStrategy::GuardWithIf);
    specialise(out, spec, 0);
}

void schedule_channel_partials_gpu(Func part, const Target& t) {
    (void)t;
    Var ci("ci"), cb("cb"), n("n");
    part.compute_root().gpu_blocks(cb, n).gpu_threads(ci);
    for (int u = 0; u < part.num_update_definitions(); ++u) {
        std::vector<VarOrRVar> order;
        for (const RVar& r : part.rvars(u)) order.push_back(r);
        for (const Var& v : {ci, cb, n}) order.push_back(v);
        part.update(u).reorder(order).gpu_blocks(cb, n).gpu_threads(ci);
    }
}

void schedule_channel_vector_gpu(Func f, const Target& t) {
    (void)t;
    const std::vector<Var> a = f.args();  // (ci, cb)
    f.compute_root().gpu_blocks(a[1]).gpu_threads(a[0]);
    for (int u = 0; u < f.num_update_definitions(); ++u) {
        std::vector<VarOrRVar> order;
        for (const RVar& r : f.rvars(u)) order.push_back(r);
        for (const Var& v : a) order.push_back(v);
        f.update(u).reorder(order).gpu_blocks(a[1]).gpu_threads(a[0]);
    }
}

void schedule_per_image_gpu(Func f, const Target& t) {
    (void)t;
    Var n = f.args()[0];
    f.compute_root().gpu_blocks(n);
    for (int u = 0; u < f.num_update_definitions(); ++u) f.update(u).gpu_blocks(n);
}

void schedule_row_stats_gpu(RowStats& s, const Target& t) {
    (void)t;
    const std::vector<Var> a = s.stats.args();
    Var o("o"), i("i");
    s.stats.compute_root().split(a[0], o, i, kPixels, TailStrategy::GuardWithIf);
    if (a.size() == 3) {
        s.stats.gpu_blocks(o, a[1], a[2]).gpu_threads(i);
    } else {
        s.stats.gpu_blocks(o).gpu_threads(i);
    }
    for (size_t k = 0; k < s.totals.size(); ++k) {
        Func lp = s.lane_partials[k], tot = s.totals[k];
        tot.compute_at(s.stats, i);
        // The 16 lane partials of a pixel live in the thread's registers.
        const std::vector<Var> la = lp.args();
        lp.compute_at(s.stats, i).unroll(la[0]);
        lp.update().reorder(la[0], s.rb).unroll(la[0]);
    }
}

}  // namespace lkc::sched
