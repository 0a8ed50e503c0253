// Training kernels of the GEMM (1x1 conv / Linear) and the dense k x k conv (runtime/ops.h
// gemm / conv2d), on the blocked layout (ops_algorithm.h):
//
//   train_gemm_wgrad        dW[co, k] (+)= sum_{n, p} dy[n, co, p] x[n, k, p]: the weight
//                           gradient of y = W x + b over every pixel of every image, in the
//                           forward's packed weight layout (co lane 16, 16*ceil(K/16),
//                           ceil(Co/16)). On im2col columns it is the dense conv's dW.
//   train_linear_transpose  packed W (16, 16*ceil(Ci/16), ceil(Co/16)) -> packed W^T
//                           (16, 16*ceil(Co/16), ceil(Ci/16)): dX = W^T dY runs ops::gemm.
//   train_im2col            columns of a dense conv: cols[n, (tap, ci), i, j] =
//                           x[n, ci, i*s + u*d - pad_h, j*s + v*d - pad_w] (0 outside), tap =
//                           u*kw + v; channel (tap, ci) = tap * cstride + ci.
//   train_col2im            dx[n, ci, y, x] = sum over taps (u, v) with y = i*s + u*d - pad_h,
//                           x = j*s + v*d - pad_w for some output pixel (i, j) of
//                           dcol[n, (tap, ci), i, j]: the adjoint of im2col.
//   train_conv_wgrad_unpack dW of a (grouped) conv in PyTorch layout [Co, Ci/groups, kh, kw]
//                           (Halide dims (kw, kh, cig, Co)) from the packed column gradient.
//
// The conv backward is im2col + train_gemm_wgrad (dW) and ops::gemm + train_col2im (dx): every
// FLOP of it runs in a register-tiled GEMM.
#include "generators/train_algorithm.h"
#include "schedules/train_eltwise_schedule.h"
#include "schedules/train_gemm_schedule.h"

namespace lkc::gen::train {
namespace {

using ops::channel_of;
using ops::constrain_blocked;
using ops::estimate_blocked;

void schedule_pointwise(Func out, const sched::Specialisations& spec, const Target& t) {
    if (t.has_gpu_feature()) {
        sched::schedule_pointwise_gpu(out, spec, t);
    } else {
        sched::schedule_pointwise_cpu(out, spec, t);
    }
}

void schedule_rows(Func out, bool lanes, const Target& t) {
    if (t.has_gpu_feature()) {
        sched::schedule_rows_gpu(out, lanes, t);
    } else {
        sched::schedule_rows_cpu(out, lanes, t);
    }
}

// The register tile is sized for 32 zmm (AVX-512). With AVX2 (16 ymm) a 16-lane vector takes 2
// registers, with SSE 4: shrink the tile so it still fits.
sched::WgradParams wgrad_params(const Target& t, int tile, int cob, int gpu_tiles) {
    sched::WgradParams p;
    p.tile = tile;
    p.cob = cob;
    p.gpu_tiles = gpu_tiles;
    if (!t.has_gpu_feature() && !t.has_feature(Target::AVX512)) {
        const bool avx2 = t.has_feature(Target::AVX2);
        p.tile = std::max(1, avx2 ? tile / 2 : tile / 4);
        p.cob = 1;
    }
    return p;
}

class TrainGemmWgrad : public Generator<TrainGemmWgrad> {
  public:
    GeneratorParam<int> tile{"tile", 8, 1, 16};  // input channels per register tile (divides 16)
    GeneratorParam<int> cob{"cob", 2, 1, 8};     // output blocks per register tile
    GeneratorParam<int> pixels{"pixels", 128, 1, 4096};  // pixels per reduction block
    GeneratorParam<int> gpu_tiles{"gpu_tiles", 8, 1, 64};

    Input<Buffer<float, 5>> input{"input"};  // x, blocked (16, W, H, ceil(K/16), N)
    Input<Buffer<float, 5>> grad{"grad"};    // dy, blocked (16, W, H, ceil(Co/16), N)
    Input<Buffer<float, 3>> prior{"prior"};  // like the output; read only if accumulate
    Input<bool> accumulate{"accumulate", false};
    Output<Buffer<float, 3>> output{"output"};  // dW packed (16, 16*ceil(K/16), ceil(Co/16))

    void generate() {
        const sched::WgradParams p = wgrad_params(get_target(), tile, cob, gpu_tiles);
        const int T = p.tile, CJ = p.cob;
        if (kLanes % T != 0) {
            throw std::invalid_argument("train_gemm_wgrad: tile must divide 16");
        }
        Var l("l"), t("t"), cj("cj"), kt("kt"), obt("obt"), b("b"), k("k"), ob("ob");
        Expr W = input.dim(1).extent(), H = input.dim(2).extent(), N = input.dim(4).extent();
        Expr COB = grad.dim(3).extent();
        Expr R = max(1, Expr(int(pixels)) / W);  // rows per pixel block
        Expr rows = N * H;
        Expr blocks = (rows + R - 1) / R;

        RDom r(0, W, 0, R, "r");  // (pixel x, row in block)
        Expr row = b * R + r.y;
        r.where(row < rows);
        // n clamped: bounds inference does not narrow `row` by the where clause, so without it
        // the last partial block's rows past N H are taken as reads beyond the last image.
        Expr n = min(row / H, N - 1), y = row % H;
        Expr kk = kt * T + t;
        // Output-block tiles beyond the last block are clamped (recomputed, not stored).
        Expr o = min(obt * CJ + cj, COB - 1);
        Func acc("acc");
        acc(l, t, cj, kt, obt, b) = 0.0f;
        acc(l, t, cj, kt, obt, b) +=
            grad(l, r.x, y, o, n) * input(kk % kLanes, r.x, y, kk / kLanes, n);

        RDom rb(0, blocks, "rb");
        output(l, k, ob) = select(accumulate, prior(l, k, ob), 0.0f);
        output(l, k, ob) += acc(l, k % T, ob % CJ, k / T, ob / CJ, rb);

        constrain_blocked(input);
        constrain_blocked(grad);
        prior.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
        prior.dim(1).set_min(0).set_stride(kLanes);
        prior.dim(2).set_min(0);
        output.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
        output.dim(1).set_min(0).set_stride(kLanes);
        output.dim(2).set_min(0);
        // Estimates: the ConvNeXt-style MLP's first Linear, 56x56 128 -> 512, N = 8.
        estimate_blocked(input, 56, 56, 8, 8);
        estimate_blocked(grad, 56, 56, 32, 8);
        prior.set_estimates({{0, kLanes}, {0, 128}, {0, 32}});
        output.set_estimates({{0, kLanes}, {0, 128}, {0, 32}});
        accumulate.set_estimate(false);

        if (using_autoscheduler()) return;
        sched::WgradStages s;
        s.output = output;
        s.rb = rb;
        s.acc = acc;
        s.rvars = {r.x, r.y};
        if (get_target().has_gpu_feature()) {
            sched::schedule_wgrad_gpu(s, p, get_target());
        } else {
            sched::schedule_wgrad_cpu(s, p, get_target());
        }
    }
};

class TrainLinearTranspose : public Generator<TrainLinearTranspose> {
  public:
    Input<Buffer<float, 3>> input{"input"};     // packed W (16, 16*ceil(Ci/16), ceil(Co/16))
    Output<Buffer<float, 3>> output{"output"};  // packed W^T (16, 16*ceil(Co/16), ceil(Ci/16))

    void generate() {
        Var l("l"), c("c"), b("b");
        output(l, c, b) = input(c % kLanes, b * kLanes + l, c / kLanes);
        input.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
        input.dim(1).set_min(0).set_stride(kLanes);
        input.dim(2).set_min(0);
        output.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
        output.dim(1).set_min(0).set_stride(kLanes);
        output.dim(2).set_min(0);
        input.set_estimates({{0, kLanes}, {0, 512}, {0, 128}});
        output.set_estimates({{0, kLanes}, {0, 2048}, {0, 32}});
        if (using_autoscheduler()) return;
        schedule_rows(output, true, get_target());
    }
};

class TrainIm2col : public Generator<TrainIm2col> {
  public:
    Input<Buffer<float, 5>> input{"input"};  // x, blocked (16, W, H, ceil(Ci/16), N)
    Input<int> kh{"kh", 3, 1, 64};
    Input<int> kw{"kw", 3, 1, 64};
    Input<int> stride{"stride", 1, 1, 64};
    Input<int> pad_h{"pad_h", 0, 0, 64};
    Input<int> pad_w{"pad_w", 0, 0, 64};
    Input<int> dilation{"dilation", 1, 1, 16};
    Input<int> channels{"channels", 16, 1, 1 << 24};  // Ci
    // Column channel of (tap, ci) = tap * cstride + ci. Aligned: cstride = 16 * ceil(Ci/16) (a
    // column block is an input block: whole-vector copies); compact: cstride = Ci (fewer
    // columns for few input channels, e.g. the 3-channel image: 27 instead of 144 for 3x3).
    Input<int> cstride{"cstride", 16, 1, 1 << 24};
    Input<bool> aligned{"aligned", true};
    Output<Buffer<float, 5>> output{"output"};  // cols, blocked (16, OW, OH, ceil(K/16), N)

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr W = input.dim(1).extent(), H = input.dim(2).extent();
        Expr CIB = input.dim(3).extent();
        Expr taps = kh * kw;
        auto sample = [&](const Expr& lane, const Expr& blk, const Expr& tap) {
            Expr u = tap / kw, v = tap % kw;
            Expr ix = x * stride + v * dilation - pad_w;
            Expr iy = y * stride + u * dilation - pad_h;
            Expr inside = ix >= 0 && ix < W && iy >= 0 && iy < H && tap < taps;
            return select(inside, input(lane, clamp(ix, 0, W - 1), clamp(iy, 0, H - 1), blk, n),
                          0.0f);
        };
        // Aligned: column block cb is input block cb % CIB of tap cb / CIB.
        Expr v_aligned = sample(ci, cb % CIB, cb / CIB);
        Expr k = channel_of(ci, cb);
        Expr tap = k / cstride, c = k % cstride;
        Expr cc = clamp(c, 0, channels - 1);
        Expr v_compact = select(c < channels, sample(cc % kLanes, cc / kLanes, tap), 0.0f);
        output(ci, x, y, cb, n) = select(aligned, v_aligned, v_compact);

        constrain_blocked(input);
        constrain_blocked(output);
        estimate_blocked(input, 56, 56, 6);
        estimate_blocked(output, 28, 28, 54);
        kh.set_estimate(3);
        kw.set_estimate(3);
        stride.set_estimate(2);
        pad_h.set_estimate(1);
        pad_w.set_estimate(1);
        dilation.set_estimate(1);
        channels.set_estimate(96);
        cstride.set_estimate(96);
        aligned.set_estimate(true);
        if (using_autoscheduler()) return;
        schedule_pointwise(output, {{aligned}}, get_target());
    }
};

class TrainCol2im : public Generator<TrainCol2im> {
  public:
    Input<Buffer<float, 5>> input{"input"};  // dcol, blocked (16, OW, OH, kh*kw*ceil(Ci/16), N)
    Input<int> kh{"kh", 3, 1, 64};
    Input<int> kw{"kw", 3, 1, 64};
    Input<int> stride{"stride", 1, 1, 64};
    Input<int> pad_h{"pad_h", 0, 0, 64};
    Input<int> pad_w{"pad_w", 0, 0, 64};
    Input<int> dilation{"dilation", 1, 1, 16};
    Output<Buffer<float, 5>> output{"output"};  // dx, blocked (16, W, H, ceil(Ci/16), N)

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr OW = input.dim(1).extent(), OH = input.dim(2).extent();
        Expr CIB = output.dim(3).extent();
        RDom r(0, kw, 0, kh, "r");  // (v, u)
        Expr tx = x + pad_w - r.x * dilation, ty = y + pad_h - r.y * dilation;
        Expr j = tx / stride, i = ty / stride;
        Expr valid = tx >= 0 && ty >= 0 && tx % stride == 0 && ty % stride == 0 && j < OW && i < OH;
        Func acc("acc");
        acc(ci, x, y, cb, n) = 0.0f;
        acc(ci, x, y, cb, n) += select(
            valid,
            input(ci, clamp(j, 0, OW - 1), clamp(i, 0, OH - 1), (r.y * kw + r.x) * CIB + cb, n),
            0.0f);
        output(ci, x, y, cb, n) = acc(ci, x, y, cb, n);

        constrain_blocked(input);
        constrain_blocked(output);
        estimate_blocked(input, 28, 28, 54);
        estimate_blocked(output, 56, 56, 6);
        kh.set_estimate(3);
        kw.set_estimate(3);
        stride.set_estimate(2);
        pad_h.set_estimate(1);
        pad_w.set_estimate(1);
        dilation.set_estimate(1);
        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            sched::schedule_gather_sum_gpu(output, acc, {r.x, r.y}, {}, get_target());
        } else {
            sched::schedule_gather_sum_cpu(output, acc, {r.x, r.y}, {}, get_target());
        }
    }
};

class TrainConvWgradUnpack : public Generator<TrainConvWgradUnpack> {
  public:
    Input<Buffer<float, 3>> input{"input"};  // packed column gradient (16, 16*ceil(K/16), COB)
    Input<Buffer<float, 4>> prior{"prior"};  // like the output; read only if accumulate
    Input<int> groups{"groups", 1, 1, 1 << 24};
    Input<int> cstride{"cstride", 16, 1, 1 << 24};  // column channel of (tap, ci) = tap*cstride+ci
    Input<bool> accumulate{"accumulate", false};
    Output<Buffer<float, 4>> output{"output"};  // dW (kw, kh, cig, Co): PyTorch [Co, cig, kh, kw]

    void generate() {
        Var v("v"), u("u"), cl("cl"), co("co");
        Expr KW = output.dim(0).extent(), CIG = output.dim(2).extent();
        Expr CO = output.dim(3).extent();
        Expr cog = CO / groups;
        Expr k = (u * KW + v) * cstride + (co / cog) * CIG + cl;
        Expr g = input(co % kLanes, k, co / kLanes);
        output(v, u, cl, co) = select(accumulate, prior(v, u, cl, co) + g, g);

        input.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
        input.dim(1).set_min(0).set_stride(kLanes);
        input.dim(2).set_min(0);
        for (int i = 0; i < 4; ++i) {
            output.dim(i).set_min(0);
            prior.dim(i).set_min(0);
        }
        output.dim(0).set_stride(1);
        prior.dim(0).set_stride(1);
        input.set_estimates({{0, kLanes}, {0, 864}, {0, 12}});
        prior.set_estimates({{0, 3}, {0, 3}, {0, 96}, {0, 192}});
        output.set_estimates({{0, 3}, {0, 3}, {0, 96}, {0, 192}});
        groups.set_estimate(1);
        cstride.set_estimate(96);
        accumulate.set_estimate(false);
        if (using_autoscheduler()) return;
        schedule_rows(output, false, get_target());
    }
};

}  // namespace
}  // namespace lkc::gen::train

HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainGemmWgrad, train_gemm_wgrad)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainLinearTranspose, train_linear_transpose)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainIm2col, train_im2col)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainCol2im, train_col2im)
HALIDE_REGISTER_GENERATOR(lkc::gen::train::TrainConvWgradUnpack, train_conv_wgrad_unpack)
