// Halide generators for the dense depth-wise conv: forward, backward-data, backward-weight.
// Semantics: ../shared/reference/large_kernel_ops.md §0 (cross-correlation, zero "same" padding
// ph = d*(Kh-1)/2, output ceil(H/s)). Layouts: see dwconv2d_algorithm.h.
#include "generators/dwconv2d_algorithm.h"
#include "schedules/dwconv2d_schedule.h"

namespace lkc::gen {
namespace {

// The register tile is sized for 32 zmm registers (AVX-512). On AVX2 (16 ymm) and SSE (16 xmm) a
// 16-lane vector takes 2 or 4 registers, so the tile shrinks by that factor; otherwise LLVM spills
// heavily and the pixel-form kernels took minutes to compile per target.
int tile_for(const Target& t, int tile) {
    if (t.has_gpu_feature() || t.has_feature(Target::AVX512)) return tile;
    return std::max(1, t.has_feature(Target::AVX2) ? tile / 2 : tile / 4);
}

sched::DwParams params_of(const Target& t, int tile, int chunk, int gpu_rows, bool par_rows,
                          bool pixels = false, bool stage = true, int rows_per_task = 8) {
    sched::DwParams p;
    p.rows_per_task = rows_per_task;
    p.pixels = pixels;
    p.stage = stage;
    p.tile = tile_for(t, tile);
    p.chunk = chunk;
    p.gpu_rows = gpu_rows;
    p.par_rows = par_rows;
    return p;
}

// Blocked-activation estimates for the autoschedulers and bounds hints (default N1 C128 56x56).
template <typename B>
void estimate_blocked(B& b, int w, int h, int c = 128, int n = 1) {
    b.dim(0).set_estimate(0, kLanes).dim(1).set_estimate(0, w).dim(2).set_estimate(0, h);
    b.dim(3).set_estimate(0, (c + kLanes - 1) / kLanes).dim(4).set_estimate(0, n);
}

// The workload the estimates describe. They change nothing in the hand schedules; Halide's
// autoschedulers plan for them (the tuner's comparison builds set them per workload).
#define LKC_ESTIMATE_PARAMS                              \
    GeneratorParam<int> est_n{"est_n", 1, 1, 1 << 20};   \
    GeneratorParam<int> est_c{"est_c", 128, 1, 1 << 20}; \
    GeneratorParam<int> est_h{"est_h", 56, 1, 1 << 20};  \
    GeneratorParam<int> est_w{"est_w", 56, 1, 1 << 20};  \
    GeneratorParam<int> est_kh{"est_kh", 31, 1, 63};     \
    GeneratorParam<int> est_kw{"est_kw", 31, 1, 63};     \
    GeneratorParam<int> est_s{"est_s", 1, 1, 2};         \
    GeneratorParam<int> est_d{"est_d", 1, 1, 7};

// Lane-block row sparsity (training): `row_mask` variants take one more input, rows (Kh,
// ceil(C/16)) of uint8, 1 where kernel row u of channel block cb is kept; pruned rows cost
// nothing and get gradient 0. Registered under their own generator names (*_rows) so the runtime
// can tell the signatures apart.
using RowsInput = GeneratorInput<Buffer<uint8_t, 2>>;
#define LKC_ROW_MASK_PARAMS                           \
    GeneratorParam<bool> row_mask{"row_mask", false}; \
    RowsInput* rows = nullptr;

template <typename G>
void add_row_mask(G& gen, bool on, RowsInput*& rows) {
    if (on) rows = gen.template add_input<Buffer<uint8_t, 2>>("rows");
}

// keep(u, cb) for a row mask (flip: the kernel rotated by 180 degrees, backward data).
RowKeep row_keep(RowsInput* rows, Expr kh, bool flip) {
    if (!rows) return nullptr;
    return [rows, kh, flip](Expr u, Expr cb) { return (*rows)(flip ? kh - 1 - u : u, cb) != 0; };
}

void constrain_rows(RowsInput* rows, int kh) {
    if (!rows) return;
    rows->dim(0).set_min(0);
    rows->dim(1).set_min(0);
    rows->set_estimates({{0, kh}, {0, 8}});
}

// The 16-lane dim of every blocked buffer is dense and exactly 16 wide; the x stride is 16.
template <typename B>
void constrain_blocked(B& b) {
    b.dim(0).set_min(0).set_extent(kLanes).set_stride(1);
    b.dim(1).set_min(0).set_stride(kLanes);
    b.dim(2).set_min(0);
    b.dim(3).set_min(0);
    b.dim(4).set_min(0);
}

class DwConv2dFwd : public Generator<DwConv2dFwd> {
  public:
    // Storage type of every buffer (f32 now; f16/bf16 later), accumulation is always f32.
    GeneratorParam<Type> storage{"storage", Float(32)};
    GeneratorParam<int> tile{"tile", 14, 1, 64};
    GeneratorParam<int> chunk{"chunk", 8, 1, 64};
    GeneratorParam<int> gpu_rows{"gpu_rows", 4, 1, 64};
    // Reduce over input pixels instead of kernel taps (dilation 1 only; for kernels wider than
    // the map). See correlate_pixels.
    GeneratorParam<bool> pixels{"pixels", false};
    // Stage a zero-extended copy of the input per task (see schedules/cpu).
    GeneratorParam<bool> stage{"stage", true};
    GeneratorParam<bool> par_rows{"par_rows", true};
    // Output rows per parallel task when par_rows (CPU).
    GeneratorParam<int> rows_per_task{"rows_per_task", 8, 1, 64};
    LKC_ESTIMATE_PARAMS

    Input<Buffer<void, 5>> input{"input"};    // x, blocked (16, W, H, ceil(C/16), N)
    Input<Buffer<void, 4>> weight{"weight"};  // [C,1,Kh,Kw] = Halide (Kw, Kh, 1, C)
    Input<Buffer<void, 1>> bias{"bias"};      // [C]; pass zeros for "no bias"
    Input<int> stride{"stride", 1, 1, 2};
    Input<int> dilation{"dilation", 1, 1, 7};
    Output<Buffer<void, 5>> output{
        "output"};  // y, blocked (16, ceil(W/s), ceil(H/s), ceil(C/16), N)
    LKC_ROW_MASK_PARAMS

    void configure() {
        input.set_type(storage);
        weight.set_type(storage);
        bias.set_type(storage);
        output.set_type(storage);
        add_row_mask(*this, row_mask, rows);
    }

    void generate() {
        const sched::DwParams p =
            params_of(get_target(), tile, chunk, gpu_rows, par_rows, pixels, stage, rows_per_task);
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n"), c("c");
        ConvGeom g;
        g.kw = weight.dim(0).extent();
        g.kh = weight.dim(1).extent();
        g.stride = stride;
        g.dil = dilation;
        g.ph = dilation * (g.kh - 1) / 2;
        g.pw = dilation * (g.kw - 1) / 2;
        g.in_w = input.dim(1).extent();
        g.in_h = input.dim(2).extent();

        sched::CorrStages s;
        s.xp = zero_extended(input, "xp");
        s.wp = pack_weights(weight, p.chunk, /*flip=*/false, "wp");
        Expr nc = bias.dim(0).extent();
        s.bp = Func("bp");
        s.bp(ci, cb) = select(cb * kLanes + ci < nc,
                              cast<float>(bias(clamp(cb * kLanes + ci, 0, nc - 1))), 0.0f);
        Var t("t"), jt("jt");
        const RowKeep keep = row_keep(rows, g.kh, false);
        Correlation corr =
            pixels ? correlate_pixels(s.xp, s.wp, g, p.tile, p.chunk, s.bp(ci, cb), "acc", keep)
                   : correlate(s.xp, s.wp, g, p.tile, p.chunk, s.bp(ci, cb), "acc", keep);
        s.acc = corr.acc;
        s.r = corr.r;
        s.output = Func("out");
        output(ci, x, y, cb, n) = cast(output.type(), s.acc(ci, x % p.tile, x / p.tile, y, cb, n));
        s.output = output;
        s.stride = stride;
        s.dil = dilation;

        constrain_blocked(input);
        constrain_blocked(output);
        weight.dim(0).set_min(0).set_stride(1);
        weight.dim(1).set_min(0);
        weight.dim(2).set_min(0).set_extent(1);
        weight.dim(3).set_min(0);
        bias.dim(0).set_min(0);
        estimate_blocked(input, est_w, est_h, est_c, est_n);
        const int es = est_s;
        estimate_blocked(output, (est_w + es - 1) / es, (est_h + es - 1) / es, est_c, est_n);
        weight.set_estimates({{0, est_kw}, {0, est_kh}, {0, 1}, {0, est_c}});
        bias.set_estimates({{0, est_c}});
        stride.set_estimate(est_s);
        dilation.set_estimate(est_d);
        constrain_rows(rows, est_kh);

        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            sched::schedule_corr_gpu(s, p, get_target());
        } else {
            sched::schedule_corr_cpu(s, p, get_target());
        }
    }
};

// Backward data, stride 1: dx = correlation of dy with the kernel rotated by 180 degrees, same
// padding (ph' = d*(Kh-1) - ph = ph for odd kernels), so it reuses the forward tile.
class DwConv2dBwdData : public Generator<DwConv2dBwdData> {
  public:
    // Storage type of every buffer (f32 now; f16/bf16 later), accumulation is always f32.
    GeneratorParam<Type> storage{"storage", Float(32)};
    GeneratorParam<int> tile{"tile", 14, 1, 64};
    GeneratorParam<int> chunk{"chunk", 8, 1, 64};
    GeneratorParam<int> gpu_rows{"gpu_rows", 4, 1, 64};
    // Reduce over input pixels instead of kernel taps (dilation 1 only; for kernels wider than
    // the map). See correlate_pixels.
    GeneratorParam<bool> pixels{"pixels", false};
    // Stage a zero-extended copy of the input per task (see schedules/cpu).
    GeneratorParam<bool> stage{"stage", true};
    GeneratorParam<bool> par_rows{"par_rows", true};
    // Output rows per parallel task when par_rows (CPU).
    GeneratorParam<int> rows_per_task{"rows_per_task", 8, 1, 64};
    LKC_ESTIMATE_PARAMS

    Input<Buffer<void, 5>> dy{"dy"};          // blocked (16, W, H, ceil(C/16), N)
    Input<Buffer<void, 4>> weight{"weight"};  // [C,1,Kh,Kw]
    Input<int> dilation{"dilation", 1, 1, 7};
    Output<Buffer<void, 5>> dx{"dx"};  // blocked, same shape as dy
    LKC_ROW_MASK_PARAMS

    void configure() {
        dy.set_type(storage);
        weight.set_type(storage);
        dx.set_type(storage);
        add_row_mask(*this, row_mask, rows);
    }

    void generate() {
        const sched::DwParams p =
            params_of(get_target(), tile, chunk, gpu_rows, par_rows, pixels, stage, rows_per_task);
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        ConvGeom g;
        g.kw = weight.dim(0).extent();
        g.kh = weight.dim(1).extent();
        g.stride = 1;
        g.dil = dilation;
        g.ph = dilation * (g.kh - 1) / 2;
        g.pw = dilation * (g.kw - 1) / 2;
        g.in_w = dy.dim(1).extent();
        g.in_h = dy.dim(2).extent();

        sched::CorrStages s;
        s.xp = zero_extended(dy, "dyp");
        s.wp = pack_weights(weight, p.chunk, /*flip=*/true, "wp");
        const RowKeep keep = row_keep(rows, g.kh, true);
        Correlation corr = pixels
                               ? correlate_pixels(s.xp, s.wp, g, p.tile, p.chunk, 0.0f, "acc", keep)
                               : correlate(s.xp, s.wp, g, p.tile, p.chunk, 0.0f, "acc", keep);
        s.acc = corr.acc;
        s.r = corr.r;
        dx(ci, x, y, cb, n) = cast(dx.type(), s.acc(ci, x % p.tile, x / p.tile, y, cb, n));
        s.output = dx;
        s.stride = 1;
        s.dil = dilation;

        constrain_blocked(dy);
        constrain_blocked(dx);
        weight.dim(0).set_min(0).set_stride(1);
        weight.dim(1).set_min(0);
        weight.dim(2).set_min(0).set_extent(1);
        weight.dim(3).set_min(0);
        estimate_blocked(dy, est_w, est_h, est_c, est_n);
        estimate_blocked(dx, est_w, est_h, est_c, est_n);
        weight.set_estimates({{0, est_kw}, {0, est_kh}, {0, 1}, {0, est_c}});
        dilation.set_estimate(est_d);
        constrain_rows(rows, est_kh);

        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            sched::schedule_corr_gpu(s, p, get_target());
        } else {
            sched::schedule_corr_cpu(s, p, get_target());
        }
    }
};

// Backward data for any stride: the transposed conv written as a gather,
// dx[i] = sum over taps u with (i + ph - u*d) divisible by s of w[u] * dy[(i + ph - u*d) / s].
// Used for stride 2 (the models' 3x3 down-sampling convs); not the large-kernel fast path.
class DwConv2dBwdDataStrided : public Generator<DwConv2dBwdDataStrided> {
  public:
    // Storage type of every buffer (f32 now; f16/bf16 later), accumulation is always f32.
    GeneratorParam<Type> storage{"storage", Float(32)};
    GeneratorParam<int> gpu_rows{"gpu_rows", 4, 1, 64};

    Input<Buffer<void, 5>> dy{"dy"};          // blocked (16, OW, OH, ceil(C/16), N)
    Input<Buffer<void, 4>> weight{"weight"};  // [C,1,Kh,Kw]
    Input<int> stride{"stride", 2, 1, 2};
    Input<int> dilation{"dilation", 1, 1, 7};
    Output<Buffer<void, 5>> dx{"dx"};  // blocked (16, W, H, ceil(C/16), N)

    void configure() {
        dy.set_type(storage);
        weight.set_type(storage);
        dx.set_type(storage);
    }

    void generate() {
        Var ci("ci"), x("x"), y("y"), cb("cb"), n("n");
        Expr kw = weight.dim(0).extent(), kh = weight.dim(1).extent();
        Expr ph = dilation * (kh - 1) / 2, pw = dilation * (kw - 1) / 2;
        Expr oh = dy.dim(2).extent(), ow = dy.dim(1).extent();

        sched::TransposedStages s;
        s.dyp = zero_extended(dy, "dyp");
        s.wp = pack_weights(weight, 1, /*flip=*/false, "wp");
        RDom r(0, kh, 0, kw, "r");
        Expr ny = y + ph - r.x * dilation, nx = x + pw - r.y * dilation;
        // Rows are trimmed by the predicate on y; columns on x (per element, vectorised over ci).
        r.where(ny >= 0 && ny % stride == 0 && ny / stride < oh && nx >= 0 && nx % stride == 0 &&
                nx / stride < ow);
        s.acc = Func("acc");
        s.acc(ci, x, y, cb, n) = 0.0f;
        s.acc(ci, x, y, cb, n) +=
            s.wp(ci, r.y, r.x, cb) * s.dyp(ci, nx / stride, ny / stride, cb, n);
        s.r = r;
        dx(ci, x, y, cb, n) = cast(dx.type(), s.acc(ci, x, y, cb, n));
        s.output = dx;

        constrain_blocked(dy);
        constrain_blocked(dx);
        weight.dim(0).set_min(0).set_stride(1);
        weight.dim(1).set_min(0);
        weight.dim(2).set_min(0).set_extent(1);
        weight.dim(3).set_min(0);
        estimate_blocked(dy, 28, 28);
        estimate_blocked(dx, 56, 56);
        weight.set_estimates({{0, 3}, {0, 3}, {0, 1}, {0, 128}});
        stride.set_estimate(2);
        dilation.set_estimate(1);

        if (using_autoscheduler()) return;
        sched::DwParams p;
        p.gpu_rows = gpu_rows;
        if (get_target().has_gpu_feature()) {
            sched::schedule_transposed_gpu(s, p, get_target());
        } else {
            sched::schedule_transposed_cpu(s, p, get_target());
        }
    }
};

// Backward weight: dW[c,u,v] = sum_{n,i,j} x[n,c,i*s+u*d-ph, j*s+v*d-pw] * dy[n,c,i,j],
// db[c] = sum dy. Register tile: `tile` kernel columns x 16 channels, reduced over output pixels
// with `chunk` output columns unrolled (a sliding window: chunk + tile - 1 input vectors feed
// chunk * tile FMAs). Rows and column chunks that only read padding are skipped.
class DwConv2dBwdWeight : public Generator<DwConv2dBwdWeight> {
  public:
    // Storage type of every buffer (f32 now; f16/bf16 later), accumulation is always f32.
    GeneratorParam<Type> storage{"storage", Float(32)};
    GeneratorParam<int> tile{"tile", 12, 1, 64};
    GeneratorParam<int> chunk{"chunk", 8, 1, 64};
    GeneratorParam<int> gpu_rows{"gpu_rows", 4, 1, 64};
    // Nested parallelism over kernel rows made tasks too small: 7x7 on 56x56 took 0.43 ms
    // with it, 0.30 ms without (N1 C128, 2 threads); 14x14 maps 0.057 vs 0.035 ms.
    GeneratorParam<bool> par_rows{"par_rows", false};
    LKC_ESTIMATE_PARAMS

    Input<Buffer<void, 5>> input{"input"};  // x, blocked (16, W, H, ceil(C/16), N)
    Input<Buffer<void, 5>> dy{"dy"};        // blocked (16, OW, OH, ceil(C/16), N)
    Input<int> kernel_h{"kernel_h", 3, 1, 63};
    Input<int> kernel_w{"kernel_w", 3, 1, 63};
    Input<int> stride{"stride", 1, 1, 2};
    Input<int> dilation{"dilation", 1, 1, 7};
    Output<Buffer<void, 4>> dw{"dw"};  // [C,1,Kh,Kw] = Halide (Kw, Kh, 1, C)
    Output<Buffer<void, 1>> db{"db"};  // [C]
    LKC_ROW_MASK_PARAMS

    void configure() {
        input.set_type(storage);
        dy.set_type(storage);
        dw.set_type(storage);
        db.set_type(storage);
        add_row_mask(*this, row_mask, rows);
    }

    void generate() {
        const sched::DwParams p = params_of(get_target(), tile, chunk, gpu_rows, par_rows);
        const int V = p.tile, J = p.chunk;
        Var ci("ci"), vi("vi"), vt("vt"), u("u"), cb("cb"), n("n"), v("v"), c("c"), z("z");
        Expr kh = kernel_h, kw = kernel_w;
        Expr ph = dilation * (kh - 1) / 2, pw = dilation * (kw - 1) / 2;
        Expr H = input.dim(2).extent(), W = input.dim(1).extent();
        Expr OH = dy.dim(2).extent(), OW = dy.dim(1).extent();

        sched::WgradStages s;
        s.xp = zero_extended(input, "xp");
        s.dyp = zero_extended(dy, "dyp");
        Expr njc = (OW + (J - 1)) / J;
        Expr N = input.dim(4).extent();
        // Images per task (CPU): a task reduces >= ~256 output pixels, so small maps do not pay
        // a task and a partial gradient per image (8x8: 4 images, 4x4: 16; 16x16 and larger: 1,
        // as before). Measured (N 64, 13x13, 2 threads): 4x4 c64 0.14 -> 0.10 ms, 8x8 c48
        // 0.61 -> 0.48 ms; 1024 pixels per task was slower on 8x8 c32 (8 tasks).
        Expr G = get_target().has_gpu_feature() ? Expr(1) : clamp(256 / max(1, OH * OW), 1, 64);
        RDom r(0, OH, 0, njc, 0, J, 0, G, "r");
        Expr i = r.x, jc = r.y, jj = r.z;
        Expr img = min(n * G + r.w, N - 1);
        Expr iy = i * stride + u * dilation - ph;
        Expr x_lo = jc * J * stride + vt * V * dilation - pw;
        Expr x_hi = (jc * J + J - 1) * stride + (vt * V + V - 1) * dilation - pw;
        Expr ok = iy >= 0 && iy < H && x_hi >= 0 && x_lo < W && n * G + r.w < N;
        if (rows) ok = ok && (*rows)(clamp(u, 0, kh - 1), cb) != 0;
        r.where(ok);
        s.acc = Func("acc");
        s.acc(ci, vi, vt, u, cb, n) = 0.0f;
        Expr j = jc * J + jj;
        Expr ix = j * stride + (vt * V + vi) * dilation - pw;
        s.acc(ci, vi, vt, u, cb, n) += s.xp(ci, ix, iy, cb, img) * s.dyp(ci, j, i, cb, img);
        s.r = r;

        s.part = Func("part");
        s.part(ci, v, u, cb, n) = s.acc(ci, v % V, v / V, u, cb, n);

        RDom rn(0, (N + G - 1) / G, "rn");
        s.rn = rn;
        Func& gsum = s.gsum;
        gsum = Func("gsum");
        gsum(ci, v, u, cb) = 0.0f;
        gsum(ci, v, u, cb) += s.part(ci, v, u, cb, rn);
        dw(v, u, z, c) = cast(dw.type(), gsum(c % kLanes, v, u, c / kLanes));
        s.dw = dw;

        RDom rdb(0, OW, 0, OH, 0, N, "rdb");
        s.rdb = rdb;
        Func& dbsum = s.dbsum;
        dbsum = Func("dbsum");
        dbsum(ci, cb) = 0.0f;
        dbsum(ci, cb) += cast<float>(dy(ci, rdb.x, rdb.y, cb, rdb.z));
        db(c) = cast(db.type(), dbsum(c % kLanes, c / kLanes));
        s.db = db;
        s.stride = stride;
        s.dil = dilation;

        constrain_blocked(input);
        constrain_blocked(dy);
        dw.dim(0).set_min(0).set_stride(1);
        dw.dim(1).set_min(0);
        dw.dim(2).set_min(0).set_extent(1);
        dw.dim(3).set_min(0);
        db.dim(0).set_min(0);
        estimate_blocked(input, est_w, est_h, est_c, est_n);
        const int es = est_s;
        estimate_blocked(dy, (est_w + es - 1) / es, (est_h + es - 1) / es, est_c, est_n);
        dw.set_estimates({{0, est_kw}, {0, est_kh}, {0, 1}, {0, est_c}});
        db.set_estimates({{0, est_c}});
        kernel_h.set_estimate(est_kh);
        kernel_w.set_estimate(est_kw);
        stride.set_estimate(est_s);
        dilation.set_estimate(est_d);
        constrain_rows(rows, est_kh);

        if (using_autoscheduler()) return;
        if (get_target().has_gpu_feature()) {
            sched::schedule_wgrad_gpu(s, p, get_target());
        } else {
            sched::schedule_wgrad_cpu(s, p, get_target());
        }
    }
};

}  // namespace
}  // namespace lkc::gen

HALIDE_REGISTER_GENERATOR(lkc::gen::DwConv2dFwd, dwconv2d_fwd)
HALIDE_REGISTER_GENERATOR(lkc::gen::DwConv2dBwdData, dwconv2d_bwd_data)
HALIDE_REGISTER_GENERATOR(lkc::gen::DwConv2dBwdDataStrided, dwconv2d_bwd_data_strided)
HALIDE_REGISTER_GENERATOR(lkc::gen::DwConv2dBwdWeight, dwconv2d_bwd_weight)
// The same generators with row_mask=true set by the build (cmake/lkc_variants.cmake).
HALIDE_REGISTER_GENERATOR(lkc::gen::DwConv2dFwd, dwconv2d_fwd_rows)
HALIDE_REGISTER_GENERATOR(lkc::gen::DwConv2dBwdData, dwconv2d_bwd_data_rows)
HALIDE_REGISTER_GENERATOR(lkc::gen::DwConv2dBwdWeight, dwconv2d_bwd_weight_rows)
