// DwTrainLayer (runtime/dw_train.h): forward per branch, backward-data summed over branches and
// backward-weight per branch, on blocked buffers, against the naive double-precision reference
// (runtime/reference_dwconv.h). Tolerance: 1e-5 of the largest |reference| value per output
// (f32 sums of at most N*H*W terms of |x*dy| <= 1).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "runtime/dw_train.h"
#include "runtime/reference_dwconv.h"

namespace lkc {
namespace {

std::vector<double> random_values(size_t n, std::mt19937& g) {
    std::uniform_real_distribution<double> u(-1, 1);
    std::vector<double> v(n);
    for (double& x : v) x = float(u(g));  // exactly representable in f32
    return v;
}

Tensor tensor_of(const std::vector<double>& v, const Shape& s) {
    Tensor t(DType::F32, s);
    for (size_t i = 0; i < v.size(); ++i) t.data<float>()[i] = float(v[i]);
    return t;
}

void expect_close(const std::vector<double>& want, const float* got, const std::string& what) {
    double scale = 0;
    for (double v : want) scale = std::max(scale, std::fabs(v));
    double worst = 0;
    for (size_t i = 0; i < want.size(); ++i)
        worst = std::max(worst, std::fabs(double(got[i]) - want[i]));
    EXPECT_LE(worst, 1e-5 * std::max(1.0, scale)) << what << ": max |error| " << worst;
}

struct Case {
    int n, c, h, w, stride;
    std::vector<Branch> branches;
    bool bias;
};

// Lane-block row masks for run_case (B == 1): density per (block, kernel row), the weights of
// pruned rows 0; `variants` names the three passes' kernels (empty: measure_variants picks).
struct RowMask {
    double density = 0;
    std::vector<std::string> variants;
};

void run_case(const Case& k, const RowMask& rm = {}) {
    std::mt19937 gen(7);
    const int N = k.n, C = k.c, H = k.h, W = k.w, s = k.stride;
    DwTrainLayer layer(N, C, H, W, s, k.branches);
    const int OH = layer.out_h(), OW = layer.out_w();
    const size_t B = k.branches.size();
    const auto x = random_values(size_t(N) * C * H * W, gen);
    std::vector<std::vector<double>> ws, bs, dys;
    std::vector<uint8_t> rows;
    std::vector<const float*> wp, bp;
    std::vector<Tensor> wt, bt;
    for (const Branch& b : k.branches) {
        ws.push_back(random_values(size_t(C) * b.kh * b.kw, gen));
        bs.push_back(k.bias ? random_values(size_t(C), gen) : std::vector<double>());
        dys.push_back(random_values(size_t(N) * C * OH * OW, gen));
        if (rm.density > 0) {
            std::bernoulli_distribution keep(rm.density);
            const int CB = (C + 15) / 16;
            rows.assign(size_t(CB) * b.kh, 0);
            for (auto& r : rows) r = keep(gen);
            rows[0] = 0;  // block 0 loses its first row, block 0 keeps its centre row
            rows[size_t(b.kh / 2)] = 1;
            for (int ch = 0; ch < C; ++ch)
                for (int u = 0; u < b.kh; ++u)
                    if (!rows[size_t((ch / 16) * b.kh + u)])
                        for (int v = 0; v < b.kw; ++v)
                            ws.back()[size_t((ch * b.kh + u) * b.kw + v)] = 0;
        }
        wt.push_back(tensor_of(ws.back(), {C, 1, b.kh, b.kw}));
        wp.push_back(wt.back().data<float>());
        if (k.bias) {
            bt.push_back(tensor_of(bs.back(), {C}));
            bp.push_back(bt.back().data<float>());
        }
    }
    layer.set_weights(wp, bp);
    const Blocked xb = to_blocked(tensor_of(x, {N, C, H, W}));
    bool rows_bw = false;
    if (rm.density > 0) {
        layer.set_row_mask(rows);
        if (rm.variants.empty()) {
            layer.measure_variants(xb, 1);
        } else {
            layer.use_variants(rm.variants[0], rm.variants[1], rm.variants[2]);
        }
        rows_bw = layer.variant_names()[2].find("_rows_") != std::string::npos;
    }

    // Outputs start as NaN: every lane the layers own must be written (padding lanes as 0).
    Stacked ys = layer.make_outputs();
    ys.fill(std::nanf(""));
    layer.forward(xb, ys);
    Stacked dyb = layer.make_outputs();
    for (size_t i = 0; i < B; ++i) {
        Blocked view = dyb.sliced(3, int(i));
        to_blocked_into(tensor_of(dys[i], {N, C, OH, OW}), view);
    }
    Blocked dx = make_blocked(N, C, H, W);
    dx.fill(std::nanf(""));
    layer.backward_data(dyb, dx);
    std::vector<std::vector<float>> dw(B), db(B);
    std::vector<float*> dwp, dbp;
    for (size_t i = 0; i < B; ++i) {
        // Accumulates: start from 1 and subtract it below.
        dw[i].assign(ws[i].size(), 1.0f);
        db[i].assign(size_t(C), 1.0f);
        dwp.push_back(dw[i].data());
        dbp.push_back(db[i].data());
    }
    layer.backward_weight(xb, dyb, dwp, dbp);

    std::vector<double> dx_ref(x.size(), 0.0);
    for (size_t i = 0; i < B; ++i) {
        const Branch& b = k.branches[i];
        const std::string tag = "branch " + std::to_string(i) + " " + std::to_string(b.kh) + "x" +
                                std::to_string(b.kw) + "d" + std::to_string(b.dilation);
        const auto y = ref::dwconv_fwd(x, ws[i], bs[i], N, C, H, W, b.kh, b.kw, s, b.dilation);
        Blocked yv = ys.sliced(3, int(i));
        const Tensor yt = from_blocked(yv, C);
        expect_close(y, yt.data<float>(), tag + " forward");
        const auto dxi = ref::dwconv_bwd_data(dys[i], ws[i], N, C, H, W, b.kh, b.kw, s, b.dilation);
        for (size_t e = 0; e < dx_ref.size(); ++e) dx_ref[e] += dxi[e];
        std::vector<double> dwr, dbr;
        ref::dwconv_bwd_weight(x, dys[i], N, C, H, W, b.kh, b.kw, s, b.dilation, &dwr, &dbr);
        for (float& v : dw[i]) v -= 1.0f;
        for (float& v : db[i]) v -= 1.0f;
        if (rows_bw) {
            // Row-mask backward-weight: the gradient of pruned rows is exactly 0.
            int nonzero = 0;
            for (int ch = 0; ch < C; ++ch)
                for (int u = 0; u < b.kh; ++u)
                    if (!rows[size_t((ch / 16) * b.kh + u)])
                        for (int v = 0; v < b.kw; ++v) {
                            const size_t e = size_t((ch * b.kh + u) * b.kw + v);
                            dwr[e] = 0;
                            nonzero += dw[i][e] != 0.0f;
                        }
            EXPECT_EQ(nonzero, 0) << tag << ": pruned rows with a gradient";
        }
        expect_close(dwr, dw[i].data(), tag + " backward-weight");
        expect_close(dbr, db[i].data(), tag + " bias gradient");
    }
    const Tensor dxt = from_blocked(dx, C);
    expect_close(dx_ref, dxt.data<float>(), "backward-data");
    // Padding lanes of dx and of every output are written as zero, everywhere.
    int bad_lanes = 0;
    dx.for_each_element([&](int l, int x, int y, int cb, int n) {
        if (cb * 16 + l >= C && dx(l, x, y, cb, n) != 0.0f) ++bad_lanes;
    });
    ys.for_each_element([&](int l, int x, int y, int s, int cb, int n) {
        if (cb * 16 + l >= C && ys(l, x, y, s, cb, n) != 0.0f) ++bad_lanes;
    });
    EXPECT_EQ(bad_lanes, 0) << "padding lanes not written as 0 (or left NaN)";
}

TEST(DwTrainLayer, SlakThreeBranchesMatchReference) {
    run_case({2, 21, 8, 8, 1, {{13, 5, 1}, {5, 13, 1}, {5, 5, 1}}, false});
}

TEST(DwTrainLayer, DilatedBranchesWithBiasMatchReference) {
    run_case({2, 19, 11, 9, 1, {{7, 7, 1}, {5, 5, 2}, {3, 3, 3}}, true});
}

TEST(DwTrainLayer, RepLKNetLargeAndSmallOnALargerMap) {
    run_case({1, 37, 14, 14, 1, {{31, 31, 1}, {5, 5, 1}}, false});
}

// Row-mask variants: pruned kernel rows of a lane block are skipped (forward, backward-data) and
// get gradient 0 (backward-weight); kept rows match the reference. Tap-form, unstaged and
// pixel-form variants, a kernel cropped to the map (13x13 on 4x4), dilation, and the measured
// choice among all variants with the mask set.
TEST(DwTrainLayer, RowMaskVariantsMatchReference) {
    const std::vector<std::string> tap = {"dwconv2d_fwd_rows_t14c5_ns_cpu",
                                          "dwconv2d_bwd_data_rows_t14c5_cpu",
                                          "dwconv2d_bwd_weight_rows_t5c8_cpu"};
    const std::vector<std::string> px = {"dwconv2d_fwd_rows_t7c8_px_cpu",
                                         "dwconv2d_bwd_data_rows_t7c7_px_r4_cpu",
                                         "dwconv2d_bwd_weight_rows_t7c4_cpu"};
    run_case({2, 40, 8, 8, 1, {{13, 5, 1}}, true}, {0.6, tap});
    run_case({2, 40, 8, 8, 1, {{13, 13, 1}}, false}, {0.6, px});
    run_case({1, 17, 4, 4, 1, {{13, 13, 1}}, true}, {0.5, px});
    run_case({2, 21, 9, 7, 1, {{5, 13, 1}}, false}, {0.6, tap});
    run_case({2, 19, 11, 9, 1, {{5, 5, 2}}, true}, {0.6, tap});
    run_case({2, 33, 8, 8, 1, {{13, 5, 1}}, false}, {0.6, {}});
}

TEST(DwTrainLayer, RowMasksRejectBadInput) {
    DwTrainLayer l(1, 20, 8, 8, 1, {{5, 5, 1}});
    EXPECT_THROW(l.set_row_mask(std::vector<uint8_t>(5, 1)), std::invalid_argument);
    EXPECT_THROW(
        l.use_variants("dwconv2d_fwd_rows_t14c5_cpu", l.variant_names()[1], l.variant_names()[2]),
        std::invalid_argument);  // a row-mask variant without a mask
    EXPECT_THROW(l.use_variants("no_such_kernel", l.variant_names()[1], l.variant_names()[2]),
                 std::invalid_argument);
    DwTrainLayer s2(1, 20, 8, 8, 2, {{5, 5, 1}});
    EXPECT_THROW(s2.set_row_mask(std::vector<uint8_t>(10, 1)), std::invalid_argument);
    DwTrainLayer multi(1, 20, 8, 8, 1, {{5, 5, 1}, {3, 3, 1}});
    EXPECT_THROW(multi.set_row_mask(std::vector<uint8_t>(10, 1)), std::invalid_argument);
    l.set_row_mask(std::vector<uint8_t>(10, 1));
    l.use_variants("dwconv2d_fwd_rows_t14c5_cpu", l.variant_names()[1], l.variant_names()[2]);
    l.set_row_mask({});  // dropping the mask drops the row-mask variants
    EXPECT_EQ(l.variant_names()[0].find("_rows_"), std::string::npos);
}

TEST(DwTrainLayer, SingleDenseKernelStrideTwo) { run_case({2, 33, 9, 10, 2, {{7, 7, 1}}, true}); }

TEST(DwTrainLayer, SingleDenseDilated) { run_case({2, 17, 12, 12, 1, {{5, 3, 2}}, false}); }

// Kernels larger than the map run their centred sub-kernel that can meet it (13x13 on 4x4: 7x7;
// 31x5 d2 on 6x9: 5x5): outputs and gradients still match the full-kernel reference, the
// outer taps' gradients 0.
TEST(DwTrainLayer, KernelLargerThanTheMap) {
    run_case({2, 40, 4, 4, 1, {{13, 13, 1}}, true});
    run_case({1, 21, 6, 9, 1, {{31, 5, 2}}, false});
    run_case({2, 18, 5, 4, 2, {{13, 11, 1}}, true});
    run_case({2, 18, 9, 7, 2, {{13, 9, 2}}, false});  // stride 2 and dilation 2: 9x7
    // Several branches, a dilated one reaching past the map (the row-table plan drops its taps).
    run_case({2, 20, 6, 6, 1, {{5, 5, 1}, {7, 7, 3}, {13, 3, 1}}, true});
}

TEST(DwTrainLayer, RejectsBadConfigurations) {
    EXPECT_THROW(DwTrainLayer(1, 16, 8, 8, 1, {{4, 5, 1}}), std::invalid_argument);
    EXPECT_THROW(DwTrainLayer(1, 16, 8, 8, 2, {{5, 5, 1}, {3, 3, 1}}), std::invalid_argument);
    EXPECT_THROW(DwTrainLayer(1, 16, 8, 8, 1, {}), std::invalid_argument);
    EXPECT_THROW(DwTrainLayer(1, 16, 8, 8, 1, {{5, 5, 1}}, Device::OpenCL), std::invalid_argument);
    DwTrainLayer l(1, 16, 8, 8, 1, {{5, 5, 1}, {3, 3, 1}});
    Stacked wrong(16, 8, 8, 1, 1, 1);  // one slot for two branches
    const Blocked x = make_blocked(1, 16, 8, 8);
    try {
        l.forward(x, wrong);
        FAIL() << "a one-slot output for two branches was accepted";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("outputs is (16, 8, 8, 1, 1, 1), expected"),
                  std::string::npos)
            << e.what();
    }
}

}  // namespace
}  // namespace lkc
