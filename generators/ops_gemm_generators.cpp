// 1x1 conv / Linear as a GEMM on blocked activations, with fused epilogues.
//
//   y[n, co, p] = residual[n, co, p] + scale[co] * act(bias[co] + sum_ci W[co, ci] * x[n, ci, p])
//
// act in {none, ReLU, GELU (erf)} and the residual are run-time inputs (the schedule specialises
// on them: 6 code paths); scale is always applied (the runner passes ones for "no layer scale").
// ConvNeXt / SLaK / UniRepLKNet blocks need Linear -> GELU and Linear -> gamma * -> + x; RepLKNet
// 1x1 convs (BN folded) need none / ReLU.
//
// Layouts (ops_algorithm.h): x and y blocked (16, W, H, ceil(C/16), N); 2-D [N, F] tensors with
// W = H = 1. Weights are packed once per model load by runtime/ops.cpp (pack_linear) as
// (co lane 16, ci 16 * ceil(Ci/16), ceil(Co/16)): for one input channel the 16 weights of an
// output block are one vector. Input channels >= Ci and output channels >= Co are zero in the
// packed weights, bias and scale, so padding channels of y come out as zero.
#include "generators/ops_algorithm.h"
#include "schedules/ops_gemm_schedule.h"

namespace lkc::gen::ops {
namespace {

// The register tile is sized for 32 zmm (AVX-512). With AVX2 (16 ymm) a 16-lane vector takes 2
// registers, with SSE 4: shrink the tile so it still fits.
sched::GemmParams gemm_params(const Target& t, int tile, int cob, int rows, int gpu_tiles,
                              bool co_inner) {
    sched::GemmParams p;
    p.co_inner = co_inner;
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

class OpsGemm : public Generator<OpsGemm> {
  public:
    GeneratorParam<int> tile{"tile", 7, 1, 16};  // output pixels per register tile
    GeneratorParam<int> cob{"cob", 2, 1, 8};     // output blocks per register tile
    GeneratorParam<int> rows_per_task{"rows_per_task", 8, 1, 64};  // CPU task height
    GeneratorParam<int> gpu_tiles{"gpu_tiles", 8, 1, 64};          // GPU: tiles along x per block
    // CPU loop order: output-block tiles inside the pixel tiles (see GemmParams::co_inner).
    GeneratorParam<bool> co_inner{"co_inner", false};

    Input<Buffer<float, 5>> input{"input"};        // x, blocked (16, W, H, ceil(Ci/16), N)
    Input<Buffer<float, 3>> weight{"weight"};      // packed (16, 16*ceil(Ci/16), ceil(Co/16))
    Input<Buffer<float, 2>> bias{"bias"};          // (16, ceil(Co/16)), zero-padded
    Input<Buffer<float, 2>> scale{"scale"};        // (16, ceil(Co/16)), layer scale (ones: none)
    Input<Buffer<float, 5>> residual{"residual"};  // like output; read only if has_residual
    Input<int> act{"act", kActNone, kActNone, kActGelu};  // kAct* (ops_algorithm.h)
    Input<bool> has_residual{"has_residual", false};
    Output<Buffer<float, 5>> output{"output"};  // y, blocked (16, W, H, ceil(Co/16), N)

    void generate() {
        const sched::GemmParams p =
            gemm_params(get_target(), tile, cob, rows_per_task, gpu_tiles, co_inner);
        const int T = p.tile, CJ = p.cob;
        Var ci("ci"), t("t"), xt("xt"), cj("cj"), cbt("cbt"), x("x"), y("y"), cb("cb"), n("n");
        Expr W = input.dim(1).extent();
        Expr CIB = input.dim(3).extent();
        Expr COB = weight.dim(2).extent();

        // Tile coordinates beyond the map / the last block are clamped (recomputing the last
        // pixel / block); the output stage does not store them.
        Expr px = min(xt * T + t, W - 1);
        Expr ob = min(cbt * CJ + cj, COB - 1);
        RDom r(0, kLanes, 0, CIB, "r");  // (input lane, input block)
        Func acc("acc");
        acc(ci, t, xt, cj, cbt, y, n) = bias(ci, ob);
        acc(ci, t, xt, cj, cbt, y, n) +=
            weight(ci, r.y * kLanes + r.x, ob) * input(r.x, px, y, r.y, n);

        Expr v = acc(ci, x % T, x / T, cb % CJ, cb / CJ, y, n);
        v = apply_act(act, v) * scale(ci, cb);
        v = select(has_residual, v + residual(ci, x, y, cb, n), v);
        output(ci, x, y, cb, n) = v;

        constrain_blocked(input);
        constrain_blocked(output);
        constrain_blocked(residual);
        weight.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
        weight.dim(1).set_min(0).set_stride(kLanes);
        weight.dim(2).set_min(0);
        constrain_channels(bias);
        constrain_channels(scale);
        // Estimates: a SLaK-T stage-1 MLP layer, 56x56, 96 -> 384 (fwd, N = 1).
        estimate_blocked(input, 56, 56, 6);
        estimate_blocked(output, 56, 56, 24);
        estimate_blocked(residual, 56, 56, 24);
        weight.set_estimates({{0, kLanes}, {0, 96}, {0, 24}});
        bias.set_estimates({{0, kLanes}, {0, 24}});
        scale.set_estimates({{0, kLanes}, {0, 24}});
        act.set_estimate(kActGelu);
        has_residual.set_estimate(false);

        if (using_autoscheduler()) return;
        sched::GemmStages s;
        s.output = output;
        s.acc = acc;
        s.rvars = {r.x, r.y};
        s.specialize = {{has_residual}, {act == kActNone, act == kActRelu}};
        if (get_target().has_gpu_feature()) {
            sched::schedule_gemm_gpu(s, p, get_target());
        } else {
            sched::schedule_gemm_cpu(s, p, get_target());
        }
    }
};

}  // namespace
}  // namespace lkc::gen::ops

HALIDE_REGISTER_GENERATOR(lkc::gen::ops::OpsGemm, ops_gemm)
