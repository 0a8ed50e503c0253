// Block-sparse GEMMs by compaction (runtime/lane_blocks.h): the kept output or input blocks of a
// Linear, gathered, multiplied by the dense kernels and scattered back, against naive double
// loops over the block-masked weights (forward with bias on pruned output rows, dx, dW onto a
// running sum); the
// GEMM and weight-gradient variants give bitwise-equal results (the trainer times them and
// keeps the fastest); bad block lists and shapes are refused naming the problem.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/lane_blocks.h"
#include "runtime/ops.h"
#include "runtime/train_ops.h"

namespace lkc::test {
namespace {

namespace to = train_ops;

struct Case {
    int n, ci, co, h, w;
    bool out_axis;
    std::vector<uint8_t> flags;  // per block of the axis
};

Tensor random_tensor(const Shape& s, std::mt19937& g) {
    Tensor t(DType::F32, s);
    std::uniform_real_distribution<float> u(-1, 1);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(g);
    return t;
}

float at(const Tensor& t, int i, int c, int y, int x) {
    return t.data<float>()[((int64_t(i) * t.dim(1) + c) * t.dim(2) + y) * t.dim(3) + x];
}

// |got - want| <= 1e-5 * sum |terms| + 1e-6 over a whole NCHW tensor.
void expect_close(const Tensor& got, const std::vector<double>& want,
                  const std::vector<double>& mag, const std::string& what) {
    ASSERT_EQ(size_t(got.numel()), want.size()) << what;
    size_t bad = 0;
    std::string first;
    for (size_t k = 0; k < want.size(); ++k)
        if (!(std::fabs(got.data<float>()[k] - want[k]) <= 1e-5 * mag[k] + 1e-6) && bad++ == 0)
            first = "element " + std::to_string(k) + ": got " +
                    std::to_string(got.data<float>()[k]) + ", want " + std::to_string(want[k]);
    EXPECT_EQ(bad, 0u) << what << ": " << bad << " bad, first " << first;
}

void run_case(const Case& s, uint32_t seed) {
    std::mt19937 g(seed);
    const std::string name = std::to_string(s.ci) + "->" + std::to_string(s.co) +
                             (s.out_axis ? " output blocks" : " input blocks");
    const std::vector<int> kept = to::kept_blocks(s.flags);
    auto on = [&](int o, int c) { return s.flags[size_t((s.out_axis ? o : c) / 16)] != 0; };
    Tensor w = random_tensor({s.co, s.ci}, g), b = random_tensor({s.co}, g);
    const Tensor x = random_tensor({s.n, s.ci, s.h, s.w}, g);
    const Tensor dy = random_tensor({s.n, s.co, s.h, s.w}, g);
    // The pruned weights are zero, as the trainer keeps them (w * mask after every step).
    for (int o = 0; o < s.co; ++o)
        for (int c = 0; c < s.ci; ++c)
            if (!on(o, c)) w.data<float>()[int64_t(o) * s.ci + c] = 0;
    const ops::PackedLinear full = ops::pack_linear(w, &b);
    ops::PackedLinear wc = to::make_linear_blocks(full, kept, s.out_axis);
    ops::PackedLinear wct = to::make_linear_transposed(wc);
    to::transpose_linear(wc, wct);
    const ops::BlockedTensor xb = ops::to_blocked_tensor(x), dyb = ops::to_blocked_tensor(dy);

    // Reference in double.
    const size_t ny = size_t(s.n) * s.co * s.h * s.w, nx = size_t(s.n) * s.ci * s.h * s.w;
    std::vector<double> y(ny), ym(ny), dx(nx), dxm(nx), dw(size_t(s.co) * s.ci), dwm(dw.size());
    for (int i = 0; i < s.n; ++i)
        for (int yy = 0; yy < s.h; ++yy)
            for (int xx = 0; xx < s.w; ++xx)
                for (int o = 0; o < s.co; ++o) {
                    const size_t ky = ((size_t(i) * s.co + o) * s.h + yy) * s.w + xx;
                    y[ky] = b.data<float>()[o];
                    ym[ky] = std::fabs(y[ky]);
                    for (int c = 0; c < s.ci; ++c) {
                        const size_t kx = ((size_t(i) * s.ci + c) * s.h + yy) * s.w + xx;
                        const double wv = w.data<float>()[int64_t(o) * s.ci + c];
                        y[ky] += wv * at(x, i, c, yy, xx);
                        ym[ky] += std::fabs(wv * at(x, i, c, yy, xx));
                        dx[kx] += wv * at(dy, i, o, yy, xx);
                        dxm[kx] += std::fabs(wv * at(dy, i, o, yy, xx));
                        if (on(o, c)) {
                            const double t = double(at(dy, i, o, yy, xx)) * at(x, i, c, yy, xx);
                            dw[size_t(o) * s.ci + c] += t;
                            dwm[size_t(o) * s.ci + c] += std::fabs(t);
                        }
                    }
                }

    ops::BlockedTensor yb = ops::make_blocked_tensor(s.n, s.co, s.h, s.w);
    ops::BlockedTensor dxb = ops::make_blocked_tensor(s.n, s.ci, s.h, s.w);
    // Stale values in the outputs must be overwritten everywhere.
    yb.buf.fill(7.0f);
    dxb.buf.fill(7.0f);
    // dW starts from a running sum (an earlier micro-batch): the kept blocks come in, the kernel
    // accumulates onto them, they go back; the pruned blocks keep their values.
    const Tensor prior = random_tensor({s.co, s.ci}, g);
    Halide::Runtime::Buffer<float, 3> dwb = ops::pack_linear(prior, nullptr).weight;
    Halide::Runtime::Buffer<float, 3> dwc =
        to::make_linear_weight_grad(wc.in_channels, wc.out_channels);
    to::copy_linear_grad(dwb, kept, s.out_axis, dwc, true);
    if (s.out_axis) {
        ops::BlockedTensor yc = to::make_compact(yb, kept), dyc = to::make_compact(dyb, kept);
        ops::gemm(xb, wc, ops::Epilogue{}, yc);
        to::scatter_blocks(yc, kept, &full.bias, yb);
        to::gather_blocks(dyb, kept, dyc);
        to::linear_backward_data(dyc, wct, dxb);
        to::linear_backward_weight(xb, dyc, dwc, nullptr, Device::Cpu, true);
    } else {
        ops::BlockedTensor xc = to::make_compact(xb, kept), dxc = to::make_compact(xb, kept);
        to::gather_blocks(xb, kept, xc);
        ops::gemm(xc, wc, ops::Epilogue{}, yb);
        to::linear_backward_data(dyb, wct, dxc);
        to::scatter_blocks(dxc, kept, nullptr, dxb);
        to::linear_backward_weight(xc, dyb, dwc, nullptr, Device::Cpu, true);
    }
    to::copy_linear_grad(dwb, kept, s.out_axis, dwc, false);
    expect_close(ops::from_blocked_tensor(yb), y, ym, name + " y");
    expect_close(ops::from_blocked_tensor(dxb), dx, dxm, name + " dx");
    for (size_t k = 0; k < dw.size(); ++k) {
        dw[k] += prior.data<float>()[k];
        dwm[k] += std::fabs(prior.data<float>()[k]);
    }
    expect_close(to::unpack_linear(dwb, s.ci, s.co), dw, dwm, name + " dW (onto a prior sum)");
    // Padding lanes of the outputs stay zero at every pixel.
    for (ops::BlockedTensor* t : {&yb, &dxb}) {
        ops::to_host(*t);
        for (int i = 0; i < t->n(); ++i)
            for (int c = t->channels; c < t->blocks() * 16; ++c)
                for (int yy = 0; yy < t->h(); ++yy)
                    for (int xx = 0; xx < t->w(); ++xx)
                        ASSERT_EQ(t->buf(c % 16, xx, yy, c / 16, i), 0.0f)
                            << name << " padding lane " << c;
    }
}

TEST(LaneBlocks, CompactGemmsMatchTheMaskedReference) {
    // Partial last blocks on both axes; first, middle and last blocks pruned.
    run_case({2, 37, 45, 3, 5, true, {1, 0, 1}}, 1);
    run_case({2, 37, 45, 3, 5, true, {0, 1, 1}}, 2);
    run_case({3, 70, 21, 4, 2, false, {1, 0, 0, 1, 1}}, 3);
    run_case({1, 70, 21, 2, 3, false, {0, 1, 1, 0, 1}}, 4);
}

// ops::gemm's and the weight gradient's variants differ in tiles and loop order, not in the
// reduction order: bitwise-equal outputs, which lets the trainer pick by time alone.
TEST(LaneBlocks, GemmAndWeightGradientVariantsAreBitwiseEqual) {
    const std::vector<std::string> gemms = ops::gemm_kernel_names(Device::Cpu);
    const std::vector<std::string> wgrads = to::linear_wgrad_kernel_names(Device::Cpu);
    ASSERT_GE(gemms.size(), 2u);
    ASSERT_GE(wgrads.size(), 2u);
    std::mt19937 g(9);
    for (const auto& [n, ci, co, h, w] : std::vector<std::array<int, 5>>{
             {3, 48, 112, 8, 8}, {2, 96, 40, 4, 4}, {1, 19, 37, 5, 9}}) {
        const Tensor wt = random_tensor({co, ci}, g), bt = random_tensor({co}, g);
        const ops::PackedLinear p = ops::pack_linear(wt, &bt);
        const ops::BlockedTensor x = ops::to_blocked_tensor(random_tensor({n, ci, h, w}, g));
        const ops::BlockedTensor dy = ops::to_blocked_tensor(random_tensor({n, co, h, w}, g));
        std::vector<float> first;
        for (const std::string& k : gemms) {
            ops::BlockedTensor y = ops::make_blocked_tensor(n, co, h, w);
            ops::gemm(x, p, ops::Epilogue{}, y, Device::Cpu, k);
            const Tensor t = ops::from_blocked_tensor(y);
            std::vector<float> v(t.data<float>(), t.data<float>() + t.numel());
            if (first.empty()) first = v;
            EXPECT_EQ(std::memcmp(first.data(), v.data(), v.size() * sizeof(float)), 0)
                << k << " differs from " << gemms[0] << " at " << ci << "->" << co;
        }
        first.clear();
        for (const std::string& k : wgrads) {
            Halide::Runtime::Buffer<float, 3> dw = to::make_linear_weight_grad(ci, co);
            to::linear_backward_weight(x, dy, dw, nullptr, Device::Cpu, false, k);
            std::vector<float> v(dw.data(), dw.data() + dw.number_of_elements());
            if (first.empty()) first = v;
            EXPECT_EQ(std::memcmp(first.data(), v.data(), v.size() * sizeof(float)), 0)
                << k << " differs from " << wgrads[0] << " at " << ci << "->" << co;
        }
    }
}

TEST(LaneBlocks, BadBlockListsAndShapesAreRefused) {
    const ops::BlockedTensor x = ops::make_blocked_tensor(1, 48, 2, 2);
    ops::BlockedTensor c2 = to::make_compact(x, {0, 2});
    auto expect_msg = [](auto fn, const std::string& part) {
        try {
            fn();
            ADD_FAILURE() << "accepted; expected an error containing '" << part << "'";
        } catch (const std::invalid_argument& e) {
            EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
        }
    };
    expect_msg([&] { to::gather_blocks(x, {2, 0}, c2); }, "not an ascending block index");
    expect_msg([&] { to::gather_blocks(x, {0, 3}, c2); }, "below 3");
    expect_msg([&] { to::gather_blocks(x, {0}, c2); }, "'out' has 2 blocks, expected 1");
    ops::BlockedTensor other = ops::make_blocked_tensor(2, 48, 2, 2);
    expect_msg([&] { to::scatter_blocks(c2, {0, 2}, nullptr, other); }, "differ in N, H or W");
    expect_msg([&] { to::make_compact(x, {}); }, "no kept blocks");
    Tensor w(DType::F32, {48, 20});
    const ops::PackedLinear p = ops::pack_linear(w, nullptr);
    expect_msg([&] { to::make_linear_blocks(p, {0, 3}, true); }, "below 3");
    ops::PackedLinear wc = to::make_linear_blocks(p, {0, 2}, true);
    expect_msg([&] { to::gather_linear(p, {1}, true, wc); }, "not the compact shape");
    Halide::Runtime::Buffer<float, 3> dw = to::make_linear_weight_grad(20, 48);
    expect_msg([&] { to::copy_linear_grad(dw, {0}, true, wc.weight, false); }, "'dwc'");
}

}  // namespace
}  // namespace lkc::test
