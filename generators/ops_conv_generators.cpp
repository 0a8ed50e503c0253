// Dense / grouped k x k convolution on blocked activations: stems (3x3 s2 3 -> C/2, 4x4 s4
// 3 -> C), down-sampling (2x2 s2, 3x3 s2 pad 1), any other Conv2d of graph/ir.h that is not
// depth-wise or 1x1 (those have their own kernels):
//
//   y[n, co, i, j] = act(bias[co] + sum_{ci in group(co), u, v}
//                         W[co, ci - g0(co), u, v] * x[n, ci, i*s + u*d - pad_h, j*s + v*d -
//                         pad_w])
//
// with zero padding, OH = (H + 2 pad_h - d (kh - 1) - 1) / s + 1 (the output buffer's extent).
// act in {none, ReLU, GELU} is a run-time input.
//
// Layouts: x, y blocked (16, W, H, ceil(C/16), N) (ops_algorithm.h); the 3-channel image is one
// block with 13 zero lanes. Weights are packed once per model load by runtime/ops.cpp
// (pack_conv2d) as (co lane 16, ci lane 16, kw, kh, kb, ceil(Co/16)): output block ob reads input
// blocks kbase[ob] + kb, kb < K/16, for a dense conv kbase = 0 and K = 16 * ceil(Ci/16); for a
// grouped conv the runner gives each output block the aligned input-block range that covers the
// groups of its 16 channels and zeros every weight outside a lane's own group. Weights of padding
// input lanes and padding output channels are zero, so padding channels of y are zero.
#include "generators/ops_algorithm.h"
#include "schedules/ops_gemm_schedule.h"

namespace lkc::gen::ops {
namespace {

sched::GemmParams conv_params(const Target& t, int tile, int cob, int rows, int gpu_tiles,
                              int lanes) {
    sched::GemmParams p;
    p.lanes = lanes;
    p.tile = tile;
    p.cob = cob;
    p.rows_per_task = rows;
    p.gpu_tiles = gpu_tiles;
    if (!t.has_gpu_feature() && !t.has_feature(Target::AVX512)) {
        const bool avx2 = t.has_feature(Target::AVX2);
        p.tile = std::max(1, avx2 ? tile / 2 : tile / 4);
        p.cob = std::max(1, cob / 2);
    }
    return p;
}

class OpsConv2d : public Generator<OpsConv2d> {
  public:
    GeneratorParam<int> tile{"tile", 7, 1, 16};  // output pixels (along x) per register tile
    GeneratorParam<int> cob{"cob", 3, 1, 8};     // output blocks per register tile
    GeneratorParam<int> rows_per_task{"rows_per_task", 4, 1, 64};  // CPU task height
    GeneratorParam<int> gpu_tiles{"gpu_tiles", 8, 1, 64};          // GPU: tiles along x per block
    // Input lanes reduced per input block: 16, or fewer for inputs with at most that many
    // channels (the 3-channel image: 4 lanes instead of 16 skips 12 zero lanes of work and of
    // the staged copy). The runner uses a variant with lanes < 16 only when Ci <= lanes.
    GeneratorParam<int> lanes{"lanes", 16, 1, 16};

    Input<Buffer<float, 5>> input{"input"};    // x, blocked (16, W, H, ceil(Ci/16), N)
    Input<Buffer<float, 6>> weight{"weight"};  // packed (16, 16, kw, kh, K/16, ceil(Co/16))
    Input<Buffer<int32_t, 1>> kbase{"kbase"};  // [ceil(Co/16)] first input block per out block
    Input<Buffer<float, 2>> bias{"bias"};      // (16, ceil(Co/16)), zero-padded
    Input<int> stride{"stride", 1, 1, 8};
    Input<int> pad_h{"pad_h", 0, 0, 64};
    Input<int> pad_w{"pad_w", 0, 0, 64};
    Input<int> dilation{"dilation", 1, 1, 16};
    Input<bool> grouped{"grouped", false};  // false: kbase is all zero (the dense fast path)
    Input<int> act{"act", kActNone, kActNone, kActGelu};
    Output<Buffer<float, 5>> output{"output"};  // y, blocked (16, OW, OH, ceil(Co/16), N)

    void generate() {
        const sched::GemmParams p =
            conv_params(get_target(), tile, cob, rows_per_task, gpu_tiles, lanes);
        const int T = p.tile, CJ = p.cob;
        Var ci("ci"), t("t"), xt("xt"), cj("cj"), cbt("cbt"), x("x"), y("y"), cb("cb"), n("n");
        Expr OW = output.dim(1).extent();
        Expr KW = weight.dim(2).extent(), KH = weight.dim(3).extent();
        Expr KB = weight.dim(4).extent(), COB = weight.dim(5).extent();

        Func xp("xp");
        {
            Var a("ci"), b("x"), c("y"), e("cb"), f("n");
            Func bounded = BoundaryConditions::constant_exterior(input, 0.0f,
                                                                 {Range(),
                                                                  {0, input.dim(1).extent()},
                                                                  {0, input.dim(2).extent()},
                                                                  Range(),
                                                                  Range()});
            xp(a, b, c, e, f) = bounded(a, b, c, e, f);
        }

        Expr px = min(xt * T + t, OW - 1);
        Expr ob = min(cbt * CJ + cj, COB - 1);
        RDom r(0, lanes, 0, KW, 0, KH, 0, KB, "r");  // (input lane, v, u, input block)
        Expr ix = px * stride + r.y * dilation - pad_w;
        Expr iy = y * stride + r.z * dilation - pad_h;
        // kbase + KB <= ceil(Ci/16) is checked by the runner (promised, not clamped: no clamp in
        // the reduction loop).
        Expr ib = select(
            grouped, unsafe_promise_clamped(kbase(ob) + r.w, 0, input.dim(3).extent() - 1), r.w);
        Func acc("acc");
        acc(ci, t, xt, cj, cbt, y, n) = bias(ci, ob);
        acc(ci, t, xt, cj, cbt, y, n) +=
            weight(ci, r.x, r.y, r.z, r.w, ob) * xp(r.x, ix, iy, ib, n);

        output(ci, x, y, cb, n) = apply_act(act, acc(ci, x % T, x / T, cb % CJ, cb / CJ, y, n));

        constrain_blocked(input);
        constrain_blocked(output);
        weight.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
        weight.dim(1).set_min(0).set_extent(kLanes).set_stride(kLanes);
        for (int i = 2; i < 6; ++i) weight.dim(i).set_min(0);
        kbase.dim(0).set_min(0);
        constrain_channels(bias);
        // Estimates: a down-sampling layer, 3x3 s2 pad 1, 56x56x128 -> 28x28x256.
        estimate_blocked(input, 56, 56, 8);
        estimate_blocked(output, 28, 28, 16);
        weight.set_estimates({{0, kLanes}, {0, kLanes}, {0, 3}, {0, 3}, {0, 8}, {0, 16}});
        kbase.set_estimates({{0, 16}});
        bias.set_estimates({{0, kLanes}, {0, 16}});
        stride.set_estimate(2);
        pad_h.set_estimate(1);
        pad_w.set_estimate(1);
        dilation.set_estimate(1);
        grouped.set_estimate(false);
        act.set_estimate(kActNone);

        if (using_autoscheduler()) return;
        sched::GemmStages s;
        s.output = output;
        s.acc = acc;
        s.rvars = {r.x, r.y, r.z, r.w};
        s.xp = xp;
        s.specialize = {{!grouped}, {act == kActNone, act == kActRelu}};
        if (get_target().has_gpu_feature()) {
            sched::schedule_gemm_gpu(s, p, get_target());
        } else {
            sched::schedule_gemm_cpu(s, p, get_target());
        }
    }
};

}  // namespace
}  // namespace lkc::gen::ops

HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsConv2d, ops_conv2d)
