// Row-table depth-wise generators: dwconv2d_multi (fused branches) and shiftwise run on these.
//
// Every such op is a sum of depth-wise correlations whose taps are known only at run time (branch
// shapes and dilations, shift-wise slot tables). The runtime (runtime/dwconv2d_taps.cpp) turns
// them into a table of entries; an entry is a horizontal run of `chunk[k]` consecutive taps
//   (dy, dx, in, out, woff): out[o](p) += sum_{l < chunk} W[woff + l] * in[s](p + (dy, dx + l))
// with per-channel weights W (zero where a run is padded). Coinciding taps of different branches
// are summed into one weight, so each input vector is read once per distinct offset. Entries are
// sorted by width class (chunk 8, 5, 3, 1 by default); each class is one update of the same
// register tile, so all branches accumulate in registers and the input tile is read once per pass.
//
// Layouts: blocked channels as in dwconv2d_algorithm.h, with a stack dimension s/o between y and
// cb: activations (ci 16, x, y, s, ceil(C/16), n); weights (ci 16, slot, ceil(C/16)).
#include "generators/dwconv2d_algorithm.h"
#include "schedules/dwconv2d_taps_schedule.h"

namespace lkc::gen {
namespace {

using sched::kTapClasses;

int tile_for_target(const Target& t, int tile) {
    if (t.has_gpu_feature() || t.has_feature(Target::AVX512)) return tile;
    return std::max(1, t.has_feature(Target::AVX2) ? tile / 2 : tile / 4);
}

template <typename B>
void constrain_stacked(B& b) {
    b.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
    b.dim(1).set_min(0).set_stride(kLanes);
    for (int i = 2; i < 6; ++i) b.dim(i).set_min(0);
}

template <typename B>
void estimate_stacked(B& b, int slots) {
    b.set_estimates({{0, kLanes}, {0, 56}, {0, 56}, {0, slots}, {0, 8}, {0, 1}});
}

// Zero-extended fp32 view of a stacked blocked buffer (x and y bounded).
template <typename B>
Func zero_extended6(const B& in, const std::string& name) {
    Var ci("ci"), x("x"), y("y"), s("s"), cb("cb"), n("n");
    Func bounded = BoundaryConditions::constant_exterior(
        in, cast(in.type(), 0),
        {Range(), {0, in.dim(1).extent()}, {0, in.dim(2).extent()}, Range(), Range(), Range()});
    Func f(name);
    f(ci, x, y, s, cb, n) = cast<float>(bounded(ci, x, y, s, cb, n));
    return f;
}

// Table fields with the ranges the runtime guarantees (TapPlan builds reach, slots and offsets
// from the same entries), promised rather than clamped: bounds inference gets the staged input's
// extent, and the entry loop carries no clamp code (8 cmovs and their reloads per entry).
struct Entry {
    Expr dy, dx, in, out, woff;
};
template <typename T>
Entry entry_at(const T& rows, Expr e, Expr left, Expr right, Expr top, Expr bottom, Expr slots,
               Expr nslots_w, int chunk) {
    Entry en;
    en.dy = unsafe_promise_clamped(rows(0, e), -top, bottom);
    en.dx = unsafe_promise_clamped(rows(1, e), -left, right);
    en.in = unsafe_promise_clamped(rows(2, e), 0, slots - 1);
    en.out = rows(3, e);
    en.woff = unsafe_promise_clamped(rows(4, e), 0, nslots_w - chunk);
    return en;
}

sched::TapsParams taps_params(const Target& t, int tile, const int (&chunk)[kTapClasses],
                              int gpu_rows, int rows_per_task = 8, int wcols = 8) {
    sched::TapsParams p;
    p.rows_per_task = rows_per_task;
    p.wcols = wcols;
    p.tile = tile_for_target(t, tile);
    for (int k = 0; k < kTapClasses; ++k) p.chunk[k] = chunk[k];
    p.gpu_rows = gpu_rows;
    return p;
}

// Entry segments: class k owns entries [seg[k], seg[k+1]); seg[0] = 0, seg[kTapClasses] = R.
template <typename S>
std::vector<Expr> segments(const S& seg_inputs, Expr R) {
    std::vector<Expr> seg = {0};
    for (const auto* in : seg_inputs) seg.push_back(clamp(Expr(*in), seg.back(), R));
    seg.push_back(R);
    return seg;
}

class DwConv2dTapsFwd : public Generator<DwConv2dTapsFwd> {
  public:
    GeneratorParam<int> tile{"tile", 14, 1, 64};
    GeneratorParam<int> chunk0{"chunk0", 8, 1, 16};
    GeneratorParam<int> chunk1{"chunk1", 5, 1, 16};
    GeneratorParam<int> chunk2{"chunk2", 3, 1, 16};
    GeneratorParam<int> chunk3{"chunk3", 1, 1, 16};
    GeneratorParam<int> gpu_rows{"gpu_rows", 4, 1, 64};
    GeneratorParam<int> rows_per_task{"rows_per_task", 8, 1, 64};  // CPU: output rows per task

    Input<Buffer<float, 6>> input{"input"};      // stacked inputs (16, W, H, S, ceil(C/16), N)
    Input<Buffer<int32_t, 2>> rows{"rows"};      // (5, R): dy, dx, in, out, woff per entry
    Input<Buffer<float, 3>> weights{"weights"};  // (16, slots, ceil(C/16))
    Input<Buffer<float, 3>> bias{"bias"};        // (16, O, ceil(C/16))
    Input<int> seg1{"seg1"};  // entries [0, seg1) class 0, [seg1, seg2) class 1, ...,
    Input<int> seg2{"seg2"};  // [seg3, R) class 3
    Input<int> seg3{"seg3"};
    Input<int> left{"left"}, right{"right"};    // max -dx and max dx over entries (>= 0)
    Input<int> top{"top"}, bottom{"bottom"};    // max -dy and max dy
    Output<Buffer<float, 6>> output{"output"};  // (16, W, H, O, ceil(C/16), N)

    void generate() {
        const sched::TapsParams p = taps_params(
            get_target(), tile, {chunk0, chunk1, chunk2, chunk3}, gpu_rows, rows_per_task);
        Var ci("ci"), x("x"), y("y"), o("o"), cb("cb"), n("n"), t("t"), jt("jt");
        Expr W = input.dim(1).extent(), H = input.dim(2).extent(), S = input.dim(3).extent();
        Expr R = rows.dim(1).extent(), T = weights.dim(1).extent();
        const std::vector<Expr> seg = segments(std::vector<Input<int>*>{&seg1, &seg2, &seg3}, R);

        sched::TapsFwdStages s;
        s.xp = zero_extended6(input, "xp");
        s.acc = Func("acc");
        s.acc(ci, t, jt, y, o, cb, n) = bias(ci, o, cb);
        for (int k = 0; k < kTapClasses; ++k) {
            const int c = p.chunk[k];
            RDom r(0, c, seg[k], seg[k + 1] - seg[k], "r" + std::to_string(k));
            Entry e = entry_at(rows, r.y, left, right, top, bottom, S, T, c);
            Expr iy = y + e.dy;
            Expr x_lo = jt * p.tile + e.dx, x_hi = jt * p.tile + p.tile - 1 + e.dx + c - 1;
            r.where(e.out == o && iy >= 0 && iy < H && x_hi >= 0 && x_lo < W);
            s.acc(ci, t, jt, y, o, cb, n) +=
                weights(ci, e.woff + r.x, cb) *
                s.xp(ci, jt * p.tile + t + e.dx + r.x, iy, e.in, cb, n);
            s.r.push_back(r);
        }
        output(ci, x, y, o, cb, n) = s.acc(ci, x % p.tile, x / p.tile, y, o, cb, n);
        s.output = output;

        constrain_stacked(input);
        constrain_stacked(output);
        rows.dim(0).set_min(0).set_extent(5).set_stride(1);
        rows.dim(1).set_min(0).set_stride(5);
        // Dense weight and bias blocks: slot and output strides are 16 floats, so every weight
        // address of an entry folds into an immediate offset.
        weights.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
        weights.dim(1).set_min(0).set_stride(kLanes);
        weights.dim(2).set_min(0);
        bias.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
        bias.dim(1).set_min(0).set_stride(kLanes);
        bias.dim(2).set_min(0);
        estimate_stacked(input, 1);
        estimate_stacked(output, 1);
        rows.set_estimates({{0, 5}, {0, 64}});
        weights.set_estimates({{0, kLanes}, {0, 512}, {0, 8}});
        bias.set_estimates({{0, kLanes}, {0, 1}, {0, 8}});
        seg1.set_estimate(40);
        seg2.set_estimate(50);
        seg3.set_estimate(60);
        left.set_estimate(25);
        right.set_estimate(25);
        top.set_estimate(25);
        bottom.set_estimate(25);

        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            sched::schedule_taps_fwd_gpu(s, p, get_target());
        } else {
            sched::schedule_taps_fwd_cpu(s, p, get_target());
        }
    }
};

// Backward weight: for every entry e of class k and lane l < chunk[k],
//   g[k](l, e) = sum_{n, pixels p} in[s_e](p + (dy_e, dx_e + l)) * dy[o_e](p),
// the gradient of the weight slot woff_e + l; db(o) = sum dy[o]. `partials[k]` independent sums
// per lane (output columns interleaved) keep enough FMA chains in flight for narrow classes.
class DwConv2dTapsWgrad : public Generator<DwConv2dTapsWgrad> {
  public:
    GeneratorParam<int> chunk0{"chunk0", 8, 1, 16};
    GeneratorParam<int> chunk1{"chunk1", 5, 1, 16};
    GeneratorParam<int> chunk2{"chunk2", 3, 1, 16};
    GeneratorParam<int> chunk3{"chunk3", 1, 1, 16};
    GeneratorParam<int> gpu_rows{"gpu_rows", 4, 1, 64};
    // Output columns unrolled per step (split into `partials` interleaved partial sums per class).
    GeneratorParam<int> wcols{"wcols", 8, 1, 32};

    Input<Buffer<float, 6>> input{"input"};  // stacked x (16, W, H, S, ceil(C/16), N)
    Input<Buffer<float, 6>> dy{"dy"};        // stacked dy (16, W, H, O, ceil(C/16), N)
    Input<Buffer<int32_t, 2>> rows{"rows"};  // (5, R) as in the forward (woff unused)
    Input<int> seg1{"seg1"};
    Input<int> seg2{"seg2"};
    Input<int> seg3{"seg3"};
    Input<int> left{"left"}, right{"right"};
    Input<int> top{"top"}, bottom{"bottom"};
    Output<Buffer<float, 4>> g0{"g0"};  // (16, chunk0, seg1, ceil(C/16))
    Output<Buffer<float, 4>> g1{"g1"};  // (16, chunk1, seg2 - seg1, ceil(C/16))
    Output<Buffer<float, 4>> g2{"g2"};  // (16, chunk2, seg3 - seg2, ceil(C/16))
    Output<Buffer<float, 4>> g3{"g3"};  // (16, chunk3, R - seg3, ceil(C/16))
    Output<Buffer<float, 3>> db{"db"};  // (16, O, ceil(C/16))

    void generate() {
        sched::TapsParams p =
            taps_params(get_target(), 14, {chunk0, chunk1, chunk2, chunk3}, gpu_rows, 8, wcols);
        Var ci("ci"), l("l"), pp("p"), e("e"), cb("cb"), n("n"), o("o");
        Expr W = input.dim(1).extent(), H = input.dim(2).extent(), S = input.dim(3).extent();
        Expr R = rows.dim(1).extent(), N = input.dim(5).extent();
        const std::vector<Expr> seg = segments(std::vector<Input<int>*>{&seg1, &seg2, &seg3}, R);

        sched::TapsWgradStages s;
        s.xp = zero_extended6(input, "xp");
        s.dyp = zero_extended6(dy, "dyp");
        Output<Buffer<float, 4>>* outs[kTapClasses] = {&g0, &g1, &g2, &g3};
        for (int k = 0; k < kTapClasses; ++k) {
            const std::string ks = std::to_string(k);
            const int P = p.partials[k], Q = std::max(1, p.wcols / P), J = P * Q;
            Expr ge = clamp(e + seg[k], 0, R - 1);  // entry index in the table
            Entry en = entry_at(rows, ge, left, right, top, bottom, S, 1 << 30, 0);
            // Output columns in steps of J: j = jc*J + jq*P + p.
            RDom r(0, H, 0, (W + J - 1) / J, 0, Q, "rw" + ks);
            Expr i = r.x, j = r.y * J + r.z * P + pp;
            Expr iy = i + en.dy;
            Expr x_lo = r.y * J + en.dx, x_hi = r.y * J + J - 1 + en.dx + p.chunk[k] - 1;
            r.where(iy >= 0 && iy < H && x_hi >= 0 && x_lo < W);
            Func acc("wacc" + ks);
            acc(ci, l, pp, e, cb, n) = 0.0f;
            acc(ci, l, pp, e, cb, n) +=
                s.xp(ci, j + en.dx + l, iy, en.in, cb, n) *
                s.dyp(ci, j, i, clamp(en.out, 0, dy.dim(3).extent() - 1), cb, n);
            Func part("wpart" + ks);
            Expr sum_p = acc(ci, l, 0, e, cb, n);
            for (int q = 1; q < P; ++q) sum_p += acc(ci, l, q, e, cb, n);
            part(ci, l, e, cb, n) = sum_p;
            RDom rn(0, N, "rn" + ks);
            Func g = *outs[k];
            g(ci, l, e, cb) = 0.0f;
            g(ci, l, e, cb) += part(ci, l, e, cb, rn);
            s.acc.push_back(acc);
            s.part.push_back(part);
            s.out.push_back(g);
            s.r.push_back(r);
            s.rn.push_back(rn);
        }
        RDom rdb(0, W, 0, H, 0, N, "rdb");
        s.rdb = rdb;
        db(ci, o, cb) = 0.0f;
        db(ci, o, cb) += dy(ci, rdb.x, rdb.y, o, cb, rdb.z);
        s.db = db;

        constrain_stacked(input);
        constrain_stacked(dy);
        rows.dim(0).set_min(0).set_extent(5).set_stride(1);
        rows.dim(1).set_min(0).set_stride(5);
        for (int k = 0; k < kTapClasses; ++k) {
            outs[k]->dim(0).set_min(0).set_extent(kLanes).set_stride(1);
            outs[k]->dim(1).set_min(0).set_extent(p.chunk[k]);
            for (int d = 2; d < 4; ++d) outs[k]->dim(d).set_min(0);
        }
        db.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
        db.dim(1).set_min(0);
        db.dim(2).set_min(0);
        estimate_stacked(input, 1);
        estimate_stacked(dy, 1);
        rows.set_estimates({{0, 5}, {0, 64}});
        g0.set_estimates({{0, kLanes}, {0, int(chunk0)}, {0, 40}, {0, 8}});
        g1.set_estimates({{0, kLanes}, {0, int(chunk1)}, {0, 10}, {0, 8}});
        g2.set_estimates({{0, kLanes}, {0, int(chunk2)}, {0, 10}, {0, 8}});
        g3.set_estimates({{0, kLanes}, {0, int(chunk3)}, {0, 10}, {0, 8}});
        db.set_estimates({{0, kLanes}, {0, 1}, {0, 8}});
        seg1.set_estimate(40);
        seg2.set_estimate(50);
        seg3.set_estimate(60);
        left.set_estimate(25);
        right.set_estimate(25);
        top.set_estimate(25);
        bottom.set_estimate(25);

        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            sched::schedule_taps_wgrad_gpu(s, p, get_target());
        } else {
            sched::schedule_taps_wgrad_cpu(s, p, get_target());
        }
    }
};

}  // namespace
}  // namespace lkc::gen

HALIDE_REGISTER_GENERATOR(lkc::gen::DwConv2dTapsFwd, dwconv2d_taps_fwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::DwConv2dTapsWgrad, dwconv2d_taps_wgrad)
