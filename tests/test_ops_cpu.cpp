// Whole-network ops (runtime/ops.h) on the CPU against naive double-precision loops written out
// here from graph/ir.h's op table, on blocked activations with channel counts that are not
// multiples of 16 (3, 20, 124, 249, 499), N = 1 and 3, odd H and W, every fused epilogue, the
// stride / groups / padding / dilation cases of the dense conv, plus bad-input errors.
//
// Data and tolerances:
//  - small integers (x in -3..3, weights in -2..2, biases in -4..4): every sum is an integer
//    below 2^24, so GEMM, conv, affine, add, mul, select, concat and pool must be exact;
//  - random floats in [-1, 1]: GEMM / conv |out - ref| <= 1e-5 * (sum of |terms|) + 1e-6 (fp32
//    rounding of the sum, whatever the order); GELU / sigmoid / LayerNorm / softmax / GRN within
//    the relative bounds stated at each check (fp32 transcendental and normalisation error).
// Every output's padding lanes (channels >= C) must be exactly zero.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "runtime/ops.h"
#include "runtime/registry.h"

namespace lkc::test {
namespace {

using ops::BlockedTensor;
using Vec = std::vector<double>;

enum class Data { SmallInt, Float };

// An NCHW activation held as doubles plus its f32 blocked copy.
struct Act4 {
    int n = 0, c = 0, h = 0, w = 0;
    Vec v;  // NCHW
    double& at(int i, int ch, int y, int x) { return v[((size_t(i) * c + ch) * h + y) * w + x]; }
    double at(int i, int ch, int y, int x) const {
        return v[((size_t(i) * c + ch) * h + y) * w + x];
    }
};

Vec random_vec(size_t count, Data data, int range, std::mt19937& g) {
    Vec v(count);
    std::uniform_int_distribution<int> ui(-range, range);
    std::uniform_real_distribution<double> uf(-1.0, 1.0);
    for (double& x : v) x = data == Data::SmallInt ? ui(g) : static_cast<float>(uf(g));
    return v;
}

Act4 random_act(int n, int c, int h, int w, Data data, std::mt19937& g, int range = 3) {
    Act4 a{n, c, h, w, random_vec(size_t(n) * c * h * w, data, range, g)};
    return a;
}

Tensor tensor_of(const Vec& v, const Shape& s) {
    Tensor t(DType::F32, s);
    for (size_t i = 0; i < v.size(); ++i) t.data<float>()[i] = static_cast<float>(v[i]);
    return t;
}

BlockedTensor blocked(const Act4& a) {
    return ops::to_blocked_tensor(tensor_of(a.v, {a.n, a.c, a.h, a.w}));
}

struct Check {
    size_t bad = 0;
    std::string first;
};

// Compares a blocked result with the reference (allowed error per element from `tol`), and
// checks that the padding lanes are zero.
Check compare(BlockedTensor& y, const Act4& want, const std::function<double(size_t)>& tol) {
    Check c;
    ops::to_host(y);
    EXPECT_EQ(y.shape(), (Shape{want.n, want.c, want.h, want.w}));
    for (int i = 0; i < want.n; ++i)
        for (int ch = 0; ch < y.blocks() * 16; ++ch)
            for (int yy = 0; yy < want.h; ++yy)
                for (int x = 0; x < want.w; ++x) {
                    const double got = y.buf(ch % 16, x, yy, ch / 16, i);
                    double ref = 0, allowed = 0;
                    if (ch < want.c) {
                        const size_t k = ((size_t(i) * want.c + ch) * want.h + yy) * want.w + x;
                        ref = want.v[k];
                        allowed = tol ? tol(k) : 0.0;
                    }
                    if (!(std::fabs(got - ref) <= allowed)) {
                        if (c.bad == 0) {
                            c.first = "n" + std::to_string(i) + " c" + std::to_string(ch) + " y" +
                                      std::to_string(yy) + " x" + std::to_string(x) + ": got " +
                                      std::to_string(got) + ", want " + std::to_string(ref) +
                                      (ch >= want.c ? " (padding lane)" : "");
                        }
                        ++c.bad;
                    }
                }
    return c;
}

#define EXPECT_MATCH(check, what)                                                          \
    EXPECT_EQ((check).bad, 0u) << (what) << ": " << (check).bad << " bad elements, first " \
                               << (check).first

double gelu(double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }
double act_of(ops::Act a, double v) {
    if (a == ops::Act::Relu) return v > 0 ? v : 0.0;
    if (a == ops::Act::Gelu) return gelu(v);
    return v;
}
const char* act_name(ops::Act a) {
    return a == ops::Act::None ? "none" : a == ops::Act::Relu ? "relu" : "gelu";
}

// ---- GEMM ---------------------------------------------------------------------------------

struct GemmCase {
    int n, ci, co, h, w;
};
const GemmCase kGemmCases[] = {
    {1, 124, 249, 7, 9},  {3, 20, 3, 5, 13},   {1, 3, 499, 3, 3}, {3, 249, 124, 1, 1},
    {1, 499, 20, 13, 11}, {1, 64, 96, 14, 14}, {3, 16, 48, 7, 7}, {1, 1, 17, 2, 15},
};

std::string gemm_name(const GemmCase& s) {
    return "n" + std::to_string(s.n) + "ci" + std::to_string(s.ci) + "co" + std::to_string(s.co) +
           "h" + std::to_string(s.h) + "w" + std::to_string(s.w);
}

// Runs one GEMM with every piece of the epilogue as asked and checks it.
void check_gemm(const GemmCase& s, Data data, ops::Act act, bool residual, bool scale,
                const std::string& kernel, uint32_t seed) {
    std::mt19937 g(seed);
    const Act4 x = random_act(s.n, s.ci, s.h, s.w, data, g);
    const Vec w = random_vec(size_t(s.co) * s.ci, data, 2, g);
    const Vec b = random_vec(size_t(s.co), data, 4, g);
    const Vec gamma = random_vec(size_t(s.co), data, 2, g);
    const Act4 r = random_act(s.n, s.co, s.h, s.w, data, g);
    const Tensor bt = tensor_of(b, {s.co});
    const ops::PackedLinear pwb = ops::pack_linear(tensor_of(w, {s.co, s.ci, 1, 1}), &bt);
    const ops::ChannelVector sc = ops::pack_channels(tensor_of(gamma, {s.co}), "gamma");
    const BlockedTensor xb = blocked(x);
    const BlockedTensor rb = blocked(r);
    BlockedTensor y = ops::make_blocked_tensor(s.n, s.co, s.h, s.w);
    ops::Epilogue e;
    e.act = act;
    if (residual) e.residual = &rb;
    if (scale) e.scale = &sc;
    ops::gemm(xb, pwb, e, y, Device::Cpu, kernel);

    Act4 want{s.n, s.co, s.h, s.w, Vec(size_t(s.n) * s.co * s.h * s.w)};
    Vec mag(want.v.size());
    for (int i = 0; i < s.n; ++i)
        for (int o = 0; o < s.co; ++o)
            for (int yy = 0; yy < s.h; ++yy)
                for (int xx = 0; xx < s.w; ++xx) {
                    double acc = b[o], m = std::fabs(b[o]);
                    for (int k = 0; k < s.ci; ++k) {
                        acc += w[size_t(o) * s.ci + k] * x.at(i, k, yy, xx);
                        m += std::fabs(w[size_t(o) * s.ci + k] * x.at(i, k, yy, xx));
                    }
                    double v = act_of(act, acc);
                    if (scale) v *= gamma[o], m *= std::fabs(gamma[o]);
                    if (residual) v += r.at(i, o, yy, xx), m += std::fabs(r.at(i, o, yy, xx));
                    want.at(i, o, yy, xx) = v;
                    mag[((size_t(i) * s.co + o) * s.h + yy) * s.w + xx] = m;
                }
    const bool exact = data == Data::SmallInt && act != ops::Act::Gelu;
    std::function<double(size_t)> tol;
    if (!exact) {
        // fp32 sum rounding (1e-5 of the magnitude; GELU's slope is below 1.13) plus GELU's erf
        // (a few ulp of the result).
        tol = [&](size_t k) { return 1.2e-5 * mag[k] + 2e-6 * std::fabs(want.v[k]) + 1e-6; };
    }
    const Check c = compare(y, want, tol);
    EXPECT_MATCH(c, gemm_name(s) + (data == Data::SmallInt ? " ints" : " floats") + " act " +
                        act_name(act) + (residual ? " +residual" : "") + (scale ? " *scale" : "") +
                        " kernel " +
                        (kernel.empty() ? ops::gemm_kernel_name(xb, pwb, Device::Cpu) : kernel));
}

const ops::Act kActs[] = {ops::Act::None, ops::Act::Relu, ops::Act::Gelu};

TEST(OpsGemm, EveryShapeExactOnSmallIntegers) {
    uint32_t seed = 1;
    for (const GemmCase& s : kGemmCases)
        check_gemm(s, Data::SmallInt, ops::Act::None, false, false, "", seed++);
}

TEST(OpsGemm, EveryShapeRandomFloats) {
    uint32_t seed = 100;
    for (const GemmCase& s : kGemmCases)
        check_gemm(s, Data::Float, ops::Act::None, false, false, "", seed++);
}

TEST(OpsGemm, EveryEpilogue) {
    uint32_t seed = 200;
    for (const GemmCase& s : {kGemmCases[0], kGemmCases[1], kGemmCases[3]})
        for (ops::Act a : kActs)
            for (bool res : {false, true})
                for (bool sc : {false, true})
                    for (Data d : {Data::SmallInt, Data::Float})
                        check_gemm(s, d, a, res, sc, "", seed++);
}

// Every compiled CPU GEMM variant, not only the one the cost rule picks.
TEST(OpsGemm, EveryVariant) {
    int variants = 0;
    uint32_t seed = 300;
    for (const KernelInfo& k : all_kernels()) {
        if (k.kind != KernelKind::OpsGemm || k.device != Device::Cpu) continue;
        ++variants;
        for (const GemmCase& s : kGemmCases) {
            check_gemm(s, Data::SmallInt, ops::Act::Relu, true, true, k.name, seed++);
            check_gemm(s, Data::Float, ops::Act::Gelu, true, false, k.name, seed++);
        }
    }
    EXPECT_GE(variants, 2);
}

TEST(OpsGemm, PicksTheVariantForTheShape) {
    const BlockedTensor x1 = ops::make_blocked_tensor(8, 64, 1, 1);
    const BlockedTensor x56 = ops::make_blocked_tensor(1, 64, 56, 56);
    const ops::PackedLinear p = ops::pack_linear(Tensor(DType::F32, {128, 64}), nullptr);
    EXPECT_NE(ops::gemm_kernel_name(x1, p, Device::Cpu).find("t1c8"), std::string::npos);
    EXPECT_EQ(ops::gemm_kernel_name(x56, p, Device::Cpu), "ops_gemm_t7c2_cpu");
    // 56x56 512 -> 128: 6.4 MB of input per image, 256 KB of weights: co tiles inside.
    const BlockedTensor big = ops::make_blocked_tensor(1, 512, 56, 56);
    const ops::PackedLinear fc2 = ops::pack_linear(Tensor(DType::F32, {128, 512}), nullptr);
    EXPECT_EQ(ops::gemm_kernel_name(big, fc2, Device::Cpu), "ops_gemm_t7c2_ci_cpu");
}

// The residual may be the output buffer itself (y += f(x)).
TEST(OpsGemm, ResidualInPlace) {
    std::mt19937 g(5);
    const GemmCase s{3, 20, 40, 5, 9};
    const Act4 x = random_act(s.n, s.ci, s.h, s.w, Data::SmallInt, g);
    const Act4 r = random_act(s.n, s.co, s.h, s.w, Data::SmallInt, g);
    const Vec w = random_vec(size_t(s.co) * s.ci, Data::SmallInt, 2, g);
    const ops::PackedLinear p = ops::pack_linear(tensor_of(w, {s.co, s.ci}), nullptr);
    BlockedTensor y = blocked(r);
    ops::Epilogue e;
    e.residual = &y;
    ops::gemm(blocked(x), p, e, y);
    Act4 want = r;
    for (int i = 0; i < s.n; ++i)
        for (int o = 0; o < s.co; ++o)
            for (int yy = 0; yy < s.h; ++yy)
                for (int xx = 0; xx < s.w; ++xx)
                    for (int k = 0; k < s.ci; ++k)
                        want.at(i, o, yy, xx) += w[size_t(o) * s.ci + k] * x.at(i, k, yy, xx);
    EXPECT_MATCH(compare(y, want, nullptr), "in-place residual");
}

// ---- Dense conv ---------------------------------------------------------------------------

struct ConvCase {
    int n, ci, co, h, w, kh, kw;
    ops::ConvGeometry g;
    ops::Act act;
};
const ConvCase kConvCases[] = {
    {1, 3, 32, 15, 17, 3, 3, {2, 1, 1, 1, 1}, ops::Act::Relu},     // stem 3x3 s2 3 -> C/2
    {3, 3, 20, 16, 16, 4, 4, {4, 0, 0, 1, 1}, ops::Act::None},     // stem 4x4 s4 3 -> C
    {1, 3, 124, 13, 21, 4, 4, {4, 0, 0, 1, 1}, ops::Act::None},    // stem, W not a multiple
    {1, 124, 249, 14, 14, 2, 2, {2, 0, 0, 1, 1}, ops::Act::None},  // down-sampling 2x2 s2
    {3, 20, 40, 13, 11, 3, 3, {2, 1, 1, 1, 1}, ops::Act::Gelu},    // down-sampling 3x3 s2 p1
    {1, 249, 20, 9, 7, 3, 3, {2, 1, 1, 1, 1}, ops::Act::Relu},     // C not multiple of 16
    {1, 32, 64, 9, 9, 3, 3, {1, 2, 2, 2, 4}, ops::Act::None},      // groups 4, dilation 2
    {1, 12, 18, 8, 10, 3, 3, {1, 1, 1, 1, 3}, ops::Act::Relu},     // groups 3, 6 out per group
    {1, 48, 48, 7, 7, 3, 3, {1, 1, 1, 1, 48}, ops::Act::None},     // depth-wise as groups = C
    {3, 40, 20, 6, 9, 1, 3, {1, 0, 1, 1, 2}, ops::Act::None},      // rectangular, pad w only
    {1, 17, 33, 11, 12, 5, 5, {3, 2, 1, 1, 1}, ops::Act::Relu},    // stride 3, uneven pads
};

std::string conv_name(const ConvCase& s) {
    return "n" + std::to_string(s.n) + "ci" + std::to_string(s.ci) + "co" + std::to_string(s.co) +
           "h" + std::to_string(s.h) + "w" + std::to_string(s.w) + "k" + std::to_string(s.kh) +
           "x" + std::to_string(s.kw) + "s" + std::to_string(s.g.stride) + "p" +
           std::to_string(s.g.pad_h) + "," + std::to_string(s.g.pad_w) + "d" +
           std::to_string(s.g.dilation) + "g" + std::to_string(s.g.groups) + " " + act_name(s.act);
}

void check_conv(const ConvCase& s, Data data, uint32_t seed, bool bias) {
    std::mt19937 g(seed);
    const int cig = s.ci / s.g.groups, cog = s.co / s.g.groups;
    const Act4 x = random_act(s.n, s.ci, s.h, s.w, data, g);
    const Vec w = random_vec(size_t(s.co) * cig * s.kh * s.kw, data, 2, g);
    const Vec b = bias ? random_vec(size_t(s.co), data, 4, g) : Vec(size_t(s.co), 0.0);
    const Tensor bt = tensor_of(b, {s.co});
    const ops::PackedConv2d p =
        ops::pack_conv2d(tensor_of(w, {s.co, cig, s.kh, s.kw}), bias ? &bt : nullptr, s.g);
    const int oh = p.out_h(s.h), ow = p.out_w(s.w);
    BlockedTensor y = ops::make_blocked_tensor(s.n, s.co, oh, ow);
    ops::conv2d(blocked(x), p, s.act, y);
    Act4 want{s.n, s.co, oh, ow, Vec(size_t(s.n) * s.co * oh * ow)};
    Vec mag(want.v.size());
    for (int i = 0; i < s.n; ++i)
        for (int o = 0; o < s.co; ++o)
            for (int yy = 0; yy < oh; ++yy)
                for (int xx = 0; xx < ow; ++xx) {
                    double acc = b[o], m = std::fabs(b[o]);
                    const int grp = o / cog;
                    for (int cl = 0; cl < cig; ++cl)
                        for (int u = 0; u < s.kh; ++u)
                            for (int v = 0; v < s.kw; ++v) {
                                const int iy = yy * s.g.stride + u * s.g.dilation - s.g.pad_h;
                                const int ix = xx * s.g.stride + v * s.g.dilation - s.g.pad_w;
                                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                                const double t = w[((size_t(o) * cig + cl) * s.kh + u) * s.kw + v] *
                                                 x.at(i, grp * cig + cl, iy, ix);
                                acc += t;
                                m += std::fabs(t);
                            }
                    want.at(i, o, yy, xx) = act_of(s.act, acc);
                    mag[((size_t(i) * s.co + o) * oh + yy) * ow + xx] = m;
                }
    std::function<double(size_t)> tol;
    if (data == Data::Float || s.act == ops::Act::Gelu) {
        tol = [&](size_t k) { return 1.2e-5 * mag[k] + 2e-6 * std::fabs(want.v[k]) + 1e-6; };
    }
    EXPECT_MATCH(
        compare(y, want, tol),
        conv_name(s) + (data == Data::SmallInt ? " ints" : " floats") + (bias ? "" : " no bias"));
}

TEST(OpsConv2d, EveryCaseExactOnSmallIntegers) {
    uint32_t seed = 400;
    for (const ConvCase& s : kConvCases) check_conv(s, Data::SmallInt, seed++, true);
}

TEST(OpsConv2d, EveryCaseRandomFloats) {
    uint32_t seed = 500;
    for (const ConvCase& s : kConvCases) check_conv(s, Data::Float, seed++, true);
}

TEST(OpsConv2d, WithoutBiasAndEveryAct) {
    uint32_t seed = 600;
    for (ops::Act a : kActs) {
        ConvCase s = kConvCases[4];
        s.act = a;
        check_conv(s, Data::SmallInt, seed++, false);
        ConvCase gcase = kConvCases[7];
        gcase.act = a;
        check_conv(gcase, Data::Float, seed++, false);
    }
}

// ---- Element-wise -------------------------------------------------------------------------

struct Shape4 {
    int n, c, h, w;
};
const Shape4 kShapes[] = {
    {1, 124, 7, 9}, {3, 249, 5, 3}, {1, 499, 1, 1}, {3, 20, 13, 11}, {1, 3, 9, 15}};

std::string shape_name(const Shape4& s) {
    return "n" + std::to_string(s.n) + "c" + std::to_string(s.c) + "h" + std::to_string(s.h) + "w" +
           std::to_string(s.w);
}

// Applies f element-wise to the reference.
Act4 map(const Act4& x, const std::function<double(double, int)>& f) {
    Act4 y = x;
    for (int i = 0; i < x.n; ++i)
        for (int c = 0; c < x.c; ++c)
            for (int yy = 0; yy < x.h; ++yy)
                for (int xx = 0; xx < x.w; ++xx) y.at(i, c, yy, xx) = f(x.at(i, c, yy, xx), c);
    return y;
}

TEST(OpsAffine, LayerScaleAndShiftExactEveryAct) {
    uint32_t seed = 700;
    for (const Shape4& s : kShapes)
        for (ops::Act a : kActs) {
            std::mt19937 g(seed++);
            const Act4 x = random_act(s.n, s.c, s.h, s.w, Data::SmallInt, g);
            const Vec sc = random_vec(size_t(s.c), Data::SmallInt, 2, g);
            const Vec sh = random_vec(size_t(s.c), Data::SmallInt, 4, g);
            ops::ChannelAffine af{ops::pack_channels(tensor_of(sc, {s.c}), "scale"),
                                  ops::pack_channels(tensor_of(sh, {s.c}), "shift")};
            BlockedTensor y = ops::make_blocked_tensor(s.n, s.c, s.h, s.w);
            ops::affine(blocked(x), af, a, y);
            const Act4 want = map(x, [&](double v, int c) { return act_of(a, v * sc[c] + sh[c]); });
            std::function<double(size_t)> tol;
            // |pre-activation| <= 3 * 2 + 4: GELU's abs error <= 2.5e-7 * 10.
            if (a == ops::Act::Gelu)
                tol = [&](size_t k) { return 2.5e-6 + 2e-6 * std::fabs(want.v[k]); };
            EXPECT_MATCH(compare(y, want, tol), shape_name(s) + " affine " + act_name(a));
        }
}

TEST(OpsAffine, BatchNormInferenceWithRelu) {
    uint32_t seed = 800;
    for (const Shape4& s : kShapes) {
        std::mt19937 g(seed++);
        const Act4 x = random_act(s.n, s.c, s.h, s.w, Data::Float, g);
        Vec wt = random_vec(size_t(s.c), Data::Float, 1, g),
            bs = random_vec(size_t(s.c), Data::Float, 1, g);
        Vec mu = random_vec(size_t(s.c), Data::Float, 1, g),
            var = random_vec(size_t(s.c), Data::Float, 1, g);
        for (double& v : var) v = std::fabs(v) + 0.1;
        const double eps = 1e-5;
        const ops::ChannelAffine af =
            ops::batchnorm_affine(tensor_of(wt, {s.c}), tensor_of(bs, {s.c}), tensor_of(mu, {s.c}),
                                  tensor_of(var, {s.c}), eps);
        for (ops::Act a : {ops::Act::None, ops::Act::Relu}) {
            BlockedTensor y = ops::make_blocked_tensor(s.n, s.c, s.h, s.w);
            ops::affine(blocked(x), af, a, y);
            const Act4 want = map(x, [&](double v, int c) {
                return act_of(a, (v - mu[c]) / std::sqrt(var[c] + eps) * wt[c] + bs[c]);
            });
            // fp32 scale / shift and one fused multiply-add: a few ulp of the terms.
            const Check c = compare(y, want, [&](size_t k) {
                return 1e-6 * (std::fabs(x.v[k]) * 4 + 4) + 1e-6 * std::fabs(want.v[k]);
            });
            EXPECT_MATCH(c, shape_name(s) + " batchnorm " + act_name(a));
        }
    }
}

TEST(OpsUnary, ReluGeluSigmoid) {
    uint32_t seed = 900;
    for (const Shape4& s : kShapes) {
        std::mt19937 g(seed++);
        Act4 x = random_act(s.n, s.c, s.h, s.w, Data::Float, g);
        for (double& v : x.v) v = static_cast<float>(v * 6.0);  // exercise the erf / exp range
        const std::pair<ops::Unary, std::function<double(double, int)>> fs[] = {
            {ops::Unary::Relu, [](double v, int) { return v > 0 ? v : 0.0; }},
            {ops::Unary::Gelu, [](double v, int) { return gelu(v); }},
            {ops::Unary::Sigmoid, [](double v, int) { return 1.0 / (1.0 + std::exp(-v)); }},
        };
        for (const auto& [op, f] : fs) {
            BlockedTensor y = ops::make_blocked_tensor(s.n, s.c, s.h, s.w);
            ops::unary(op, blocked(x), y);
            const Act4 want = map(x, f);
            // ReLU exact; sigmoid: Halide's exp is accurate to a few ulp; GELU: the rational erf
            // (generators/ops_algorithm.h) has abs error <= 4.2e-7, times |v| / 2 in the result.
            std::function<double(size_t)> tol;
            if (op == ops::Unary::Sigmoid)
                tol = [&](size_t k) { return 4e-7 * std::fabs(want.v[k]) + 4e-7; };
            if (op == ops::Unary::Gelu) {
                tol = [&](size_t k) {
                    return 2.5e-7 * std::fabs(x.v[k]) + 4e-7 * std::fabs(want.v[k]) + 1e-7;
                };
            }
            EXPECT_MATCH(compare(y, want, tol),
                         shape_name(s) + " unary " + std::to_string(int(op)));
        }
    }
}

// Element-wise ops may run in place.
TEST(OpsUnary, InPlace) {
    std::mt19937 g(17);
    const Act4 x = random_act(3, 20, 5, 7, Data::Float, g);
    BlockedTensor y = blocked(x);
    ops::unary(ops::Unary::Sigmoid, y, y);
    const Act4 want = map(x, [](double v, int) { return 1.0 / (1.0 + std::exp(-v)); });
    EXPECT_MATCH(compare(y, want, [&](size_t k) { return 4e-7 * std::fabs(want.v[k]) + 4e-7; }),
                 "in-place sigmoid");
}

Act4 broadcast_op(const Act4& a, const Act4& b, ops::Binary op) {
    Act4 y{std::max(a.n, b.n), std::max(a.c, b.c), std::max(a.h, b.h), std::max(a.w, b.w), {}};
    y.v.resize(size_t(y.n) * y.c * y.h * y.w);
    for (int i = 0; i < y.n; ++i)
        for (int c = 0; c < y.c; ++c)
            for (int yy = 0; yy < y.h; ++yy)
                for (int xx = 0; xx < y.w; ++xx) {
                    const double u = a.at(a.n == 1 ? 0 : i, a.c == 1 ? 0 : c, a.h == 1 ? 0 : yy,
                                          a.w == 1 ? 0 : xx);
                    const double v = b.at(b.n == 1 ? 0 : i, b.c == 1 ? 0 : c, b.h == 1 ? 0 : yy,
                                          b.w == 1 ? 0 : xx);
                    y.at(i, c, yy, xx) = op == ops::Binary::Add ? u + v : u * v;
                }
    return y;
}

TEST(OpsBinary, AddMulWithBroadcasting) {
    // (a shape, b shape): same shape, SE scale [N,C,1,1], batch broadcast, channel broadcast,
    // both sides broadcast.
    const std::pair<Shape4, Shape4> cases[] = {
        {{3, 249, 5, 3}, {3, 249, 5, 3}}, {{1, 124, 7, 9}, {1, 124, 1, 1}},
        {{3, 20, 13, 11}, {3, 20, 1, 1}}, {{3, 20, 13, 11}, {1, 20, 13, 11}},
        {{1, 499, 3, 5}, {1, 1, 3, 5}},   {{1, 1, 7, 9}, {1, 124, 7, 9}},
        {{1, 3, 1, 9}, {3, 3, 7, 1}},
    };
    uint32_t seed = 1000;
    for (const auto& [sa, sb] : cases)
        for (ops::Binary op : {ops::Binary::Add, ops::Binary::Mul})
            for (Data d : {Data::SmallInt, Data::Float}) {
                std::mt19937 g(seed++);
                const Act4 a = random_act(sa.n, sa.c, sa.h, sa.w, d, g);
                const Act4 b = random_act(sb.n, sb.c, sb.h, sb.w, d, g);
                Act4 want = broadcast_op(a, b, op);
                for (double& v : want.v) v = static_cast<float>(v);  // one fp32 rounding: exact
                BlockedTensor y = ops::make_blocked_tensor(want.n, want.c, want.h, want.w);
                ops::binary(op, blocked(a), blocked(b), y);
                EXPECT_MATCH(
                    compare(y, want, nullptr),
                    shape_name(sa) + (op == ops::Binary::Add ? " + " : " * ") + shape_name(sb));
            }
}

// ---- Reductions ---------------------------------------------------------------------------

TEST(OpsLayerNorm, PerPixelAcrossChannelBlocks) {
    uint32_t seed = 1100;
    for (const Shape4& s : kShapes) {
        std::mt19937 g(seed++);
        Act4 x = random_act(s.n, s.c, s.h, s.w, Data::Float, g);
        for (double& v : x.v) v = static_cast<float>(v * 3.0 + 0.5);  // non-zero mean
        const Vec wt = random_vec(size_t(s.c), Data::Float, 1, g),
                  bs = random_vec(size_t(s.c), Data::Float, 1, g);
        const ops::LayerNormParams p =
            ops::pack_layer_norm(tensor_of(wt, {s.c}), tensor_of(bs, {s.c}), 1e-6);
        BlockedTensor y = ops::make_blocked_tensor(s.n, s.c, s.h, s.w);
        ops::layer_norm(blocked(x), p, y);
        Act4 want = x;
        for (int i = 0; i < s.n; ++i)
            for (int yy = 0; yy < s.h; ++yy)
                for (int xx = 0; xx < s.w; ++xx) {
                    double mean = 0, var = 0;
                    for (int c = 0; c < s.c; ++c) mean += x.at(i, c, yy, xx);
                    mean /= s.c;
                    for (int c = 0; c < s.c; ++c) var += std::pow(x.at(i, c, yy, xx) - mean, 2);
                    var /= s.c;
                    for (int c = 0; c < s.c; ++c)
                        want.at(i, c, yy, xx) =
                            (x.at(i, c, yy, xx) - mean) / std::sqrt(var + 1e-6) * wt[c] + bs[c];
                }
        // fp32 mean / variance over C terms: ~1e-6 relative on the normalised value (|z| < 5).
        EXPECT_MATCH(compare(y, want, [&](size_t) { return 1e-5; }), shape_name(s) + " layer_norm");
    }
}

TEST(OpsLayerNorm, SingleChannelAndInPlace) {
    std::mt19937 g(23);
    const Act4 x = random_act(3, 1, 4, 5, Data::Float, g);
    const ops::LayerNormParams p =
        ops::pack_layer_norm(tensor_of({2.0}, {1}), tensor_of({0.5}, {1}), 1e-6);
    BlockedTensor y = blocked(x);
    ops::layer_norm(y, p, y);
    const Act4 want = map(x, [](double, int) { return 0.5; });  // x - mean = 0
    EXPECT_MATCH(compare(y, want, [](size_t) { return 1e-6; }), "C = 1 in place");
}

TEST(OpsSoftmax, OverChannels) {
    uint32_t seed = 1200;
    for (const Shape4& s : kShapes) {
        std::mt19937 g(seed++);
        Act4 x = random_act(s.n, s.c, s.h, s.w, Data::Float, g);
        for (double& v : x.v) v = static_cast<float>(v * 8.0);
        BlockedTensor y = ops::make_blocked_tensor(s.n, s.c, s.h, s.w);
        ops::softmax(blocked(x), y);
        Act4 want = x;
        for (int i = 0; i < s.n; ++i)
            for (int yy = 0; yy < s.h; ++yy)
                for (int xx = 0; xx < s.w; ++xx) {
                    double m = -1e300, sum = 0;
                    for (int c = 0; c < s.c; ++c) m = std::max(m, x.at(i, c, yy, xx));
                    for (int c = 0; c < s.c; ++c) sum += std::exp(x.at(i, c, yy, xx) - m);
                    for (int c = 0; c < s.c; ++c)
                        want.at(i, c, yy, xx) = std::exp(x.at(i, c, yy, xx) - m) / sum;
                }
        // exp to a few ulp, sum of C fp32 terms: 2e-6 relative.
        EXPECT_MATCH(compare(y, want, [&](size_t k) { return 2e-6 * want.v[k] + 1e-9; }),
                     shape_name(s) + " softmax");
    }
}

TEST(OpsGrn, MatchesTheDefinition) {
    uint32_t seed = 1300;
    for (const Shape4& s : kShapes)
        for (bool with_beta : {true, false}) {
            std::mt19937 g(seed++);
            const Act4 x = random_act(s.n, s.c, s.h, s.w, Data::Float, g);
            const Vec gamma = random_vec(size_t(s.c), Data::Float, 1, g);
            const Vec beta =
                with_beta ? random_vec(size_t(s.c), Data::Float, 1, g) : Vec(size_t(s.c), 0.0);
            const Tensor bt = tensor_of(beta, {1, 1, 1, s.c});
            const ops::GrnParams p =
                ops::pack_grn(tensor_of(gamma, {1, 1, 1, s.c}), with_beta ? &bt : nullptr, 1e-6);
            BlockedTensor y = ops::make_blocked_tensor(s.n, s.c, s.h, s.w);
            ops::grn(blocked(x), p, y);
            Act4 want = x;
            Vec mag(x.v.size());
            for (int i = 0; i < s.n; ++i) {
                Vec G(size_t(s.c), 0.0);
                double mean = 0;
                for (int c = 0; c < s.c; ++c) {
                    for (int yy = 0; yy < s.h; ++yy)
                        for (int xx = 0; xx < s.w; ++xx)
                            G[c] += x.at(i, c, yy, xx) * x.at(i, c, yy, xx);
                    G[c] = std::sqrt(G[c]);
                    mean += G[c] / s.c;
                }
                for (int c = 0; c < s.c; ++c)
                    for (int yy = 0; yy < s.h; ++yy)
                        for (int xx = 0; xx < s.w; ++xx) {
                            const double nx = G[c] / (mean + 1e-6);
                            const size_t k = ((size_t(i) * s.c + c) * s.h + yy) * s.w + xx;
                            want.v[k] = (gamma[c] * nx + 1.0) * x.v[k] + beta[c];
                            mag[k] = (std::fabs(gamma[c] * nx) + 1.0) * std::fabs(x.v[k]) +
                                     std::fabs(beta[c]);
                        }
            }
            EXPECT_MATCH(compare(y, want, [&](size_t k) { return 4e-6 * mag[k] + 1e-7; }),
                         shape_name(s) + " grn" + (with_beta ? "" : " no beta"));
        }
}

TEST(OpsAvgPool, ExactOnSmallIntegersAndFloats) {
    uint32_t seed = 1400;
    for (const Shape4& s : kShapes)
        for (Data d : {Data::SmallInt, Data::Float}) {
            std::mt19937 g(seed++);
            const Act4 x = random_act(s.n, s.c, s.h, s.w, d, g);
            BlockedTensor y = ops::make_blocked_tensor(s.n, s.c, 1, 1);
            ops::global_avg_pool(blocked(x), y);
            Act4 want{s.n, s.c, 1, 1, Vec(size_t(s.n) * s.c)};
            for (int i = 0; i < s.n; ++i)
                for (int c = 0; c < s.c; ++c) {
                    double sum = 0;
                    for (int yy = 0; yy < s.h; ++yy)
                        for (int xx = 0; xx < s.w; ++xx) sum += x.at(i, c, yy, xx);
                    want.at(i, c, 0, 0) = sum / (s.h * s.w);
                }
            // Integer sums are exact and the division is correctly rounded.
            std::function<double(size_t)> tol = [&](size_t k) {
                return d == Data::SmallInt ? 1e-7 * std::fabs(want.v[k]) : 1e-6;
            };
            EXPECT_MATCH(compare(y, want, tol), shape_name(s) + " avgpool");
        }
}

// ---- Channel gather / concat --------------------------------------------------------------

TEST(OpsChannelSelect, GathersByIndexTable) {
    uint32_t seed = 1500;
    for (const Shape4& s : kShapes)
        for (int k : {1, 7, 16, 33}) {
            std::mt19937 g(seed++);
            const Act4 x = random_act(s.n, s.c, s.h, s.w, Data::Float, g);
            std::vector<int64_t> idx(static_cast<size_t>(k));
            std::uniform_int_distribution<int> u(0, s.c - 1);
            for (auto& v : idx) v = u(g);
            Tensor it(DType::I64, {k});
            std::copy(idx.begin(), idx.end(), it.data<int64_t>());
            const ops::ChannelIndex ci = ops::pack_channel_index(it, s.c);
            BlockedTensor y = ops::make_blocked_tensor(s.n, k, s.h, s.w);
            ops::channel_select(blocked(x), ci, y);
            Act4 want{s.n, k, s.h, s.w, Vec(size_t(s.n) * k * s.h * s.w)};
            for (int i = 0; i < s.n; ++i)
                for (int c = 0; c < k; ++c)
                    for (int yy = 0; yy < s.h; ++yy)
                        for (int xx = 0; xx < s.w; ++xx)
                            want.at(i, c, yy, xx) = x.at(i, int(idx[c]), yy, xx);
            EXPECT_MATCH(compare(y, want, nullptr),
                         shape_name(s) + " select K=" + std::to_string(k));
        }
}

TEST(OpsConcat, AlignedAndUnaligned) {
    const std::pair<int, int> cases[] = {{16, 20}, {32, 3}, {20, 16}, {3, 124}, {249, 499}, {1, 1}};
    uint32_t seed = 1600;
    for (const auto& [ca, cb] : cases)
        for (const Shape4& s : {Shape4{1, 0, 7, 9}, Shape4{3, 0, 5, 3}}) {
            std::mt19937 g(seed++);
            const Act4 a = random_act(s.n, ca, s.h, s.w, Data::Float, g);
            const Act4 b = random_act(s.n, cb, s.h, s.w, Data::Float, g);
            BlockedTensor y = ops::make_blocked_tensor(s.n, ca + cb, s.h, s.w);
            ops::concat(blocked(a), blocked(b), y);
            Act4 want{s.n, ca + cb, s.h, s.w, Vec(size_t(s.n) * (ca + cb) * s.h * s.w)};
            for (int i = 0; i < s.n; ++i)
                for (int c = 0; c < ca + cb; ++c)
                    for (int yy = 0; yy < s.h; ++yy)
                        for (int xx = 0; xx < s.w; ++xx)
                            want.at(i, c, yy, xx) =
                                c < ca ? a.at(i, c, yy, xx) : b.at(i, c - ca, yy, xx);
            EXPECT_MATCH(compare(y, want, nullptr), "concat " + std::to_string(ca) + " + " +
                                                        std::to_string(cb) + " n" +
                                                        std::to_string(s.n));
        }
}

// ---- Layout helpers -----------------------------------------------------------------------

TEST(OpsLayout, RoundTripNchwAndNc) {
    std::mt19937 g(29);
    const Vec v = random_vec(3 * 20 * 5 * 7, Data::Float, 1, g);
    BlockedTensor b = ops::to_blocked_tensor(tensor_of(v, {3, 20, 5, 7}));
    EXPECT_EQ(b.shape(), (Shape{3, 20, 5, 7}));
    EXPECT_EQ(b.blocks(), 2);
    const Tensor back = ops::from_blocked_tensor(b);
    for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(back.data<float>()[i], float(v[i]));
    BlockedTensor nc = ops::to_blocked_tensor(tensor_of(Vec(v.begin(), v.begin() + 60), {3, 20}));
    EXPECT_EQ(nc.shape(), (Shape{3, 20, 1, 1}));
    EXPECT_EQ(ops::from_blocked_tensor(nc, true).shape(), (Shape{3, 20}));
}

// The comparison itself catches a wrong value and a non-zero padding lane.
TEST(OpsHarness, DetectsAWrongElementAndANonZeroPaddingLane) {
    std::mt19937 g(31);
    const Act4 x = random_act(1, 20, 3, 5, Data::SmallInt, g);
    BlockedTensor y = blocked(x);
    EXPECT_EQ(compare(y, x, nullptr).bad, 0u);
    y.buf(3, 1, 2, 0, 0) += 1.0f;
    EXPECT_EQ(compare(y, x, nullptr).bad, 1u);
    y.buf(3, 1, 2, 0, 0) -= 1.0f;
    y.buf(7, 0, 0, 1, 0) = 0.5f;  // channel 23 >= C = 20
    const Check c = compare(y, x, nullptr);
    EXPECT_EQ(c.bad, 1u);
    EXPECT_NE(c.first.find("padding"), std::string::npos) << c.first;
}

// ---- Bad inputs ---------------------------------------------------------------------------

// Runs f and expects std::invalid_argument whose message contains every one of `parts`.
void expect_invalid(const std::function<void()>& f, const std::vector<std::string>& parts) {
    try {
        f();
        ADD_FAILURE() << "no exception; expected one mentioning " << parts.front();
    } catch (const std::invalid_argument& e) {
        const std::string m = e.what();
        for (const std::string& p : parts)
            EXPECT_NE(m.find(p), std::string::npos) << "message '" << m << "' lacks '" << p << "'";
    }
}

TEST(OpsErrors, ShapeMismatchesNameTheTensorAndTheExpectedShape) {
    Tensor w(DType::F32, {32, 20});
    const ops::PackedLinear p = ops::pack_linear(w, nullptr);
    const BlockedTensor x = ops::make_blocked_tensor(1, 20, 7, 7);
    const BlockedTensor x_bad = ops::make_blocked_tensor(1, 24, 7, 7);
    BlockedTensor y = ops::make_blocked_tensor(1, 32, 7, 7);
    BlockedTensor y_bad = ops::make_blocked_tensor(1, 32, 7, 8);
    expect_invalid([&] { ops::gemm(x_bad, p, {}, y); }, {"'x'", "[1, 24, 7, 7]", "20"});
    expect_invalid([&] { ops::gemm(x, p, {}, y_bad); },
                   {"'y'", "[1, 32, 7, 8]", "expected [1, 32, 7, 7]"});
    ops::Epilogue e;
    e.residual = &x;
    expect_invalid([&] { ops::gemm(x, p, e, y); }, {"'residual'", "expected [1, 32, 7, 7]"});
    const ops::ChannelVector sc = ops::constant_channels(31, 1.0f);
    ops::Epilogue es;
    es.scale = &sc;
    expect_invalid([&] { ops::gemm(x, p, es, y); }, {"'scale'", "31", "32"});
    expect_invalid([&] { ops::gemm(x, p, {}, y, Device::Cpu, "no_such_kernel"); },
                   {"no_such_kernel"});

    expect_invalid(
        [&] {
            ops::pack_linear(Tensor(DType::F32, {32, 20, 3}), nullptr);
        },
        {"weight", "[32, 20, 3]", "expected [Co, Ci] or [Co, Ci, 1, 1]"});
    const Tensor b_bad(DType::F32, {31});
    expect_invalid([&] { ops::pack_linear(w, &b_bad); }, {"bias", "[31]", "expected [32]"});

    const ops::PackedConv2d c =
        ops::pack_conv2d(Tensor(DType::F32, {32, 20, 3, 3}), nullptr, {2, 1, 1, 1, 1});
    BlockedTensor yc = ops::make_blocked_tensor(1, 32, 7, 7);
    expect_invalid([&] { ops::conv2d(x, c, ops::Act::None, yc); },
                   {"'y'", "expected [1, 32, 4, 4]"});
    expect_invalid([&] { ops::conv2d(x_bad, c, ops::Act::None, yc); }, {"'x'", "20"});
    expect_invalid(
        [&] {
            ops::pack_conv2d(Tensor(DType::F32, {30, 4, 3, 3}), nullptr, {1, 1, 1, 1, 4});
        },
        {"groups", "[30, 4, 3, 3]"});
    expect_invalid(
        [&] {
            ops::pack_conv2d(Tensor(DType::F32, {30, 4, 3}), nullptr, {});
        },
        {"weight", "expected [Co, Ci/groups, kh, kw]"});

    const ops::LayerNormParams ln =
        ops::pack_layer_norm(Tensor(DType::F32, {24}), Tensor(DType::F32, {24}), 1e-6);
    BlockedTensor yl = ops::make_blocked_tensor(1, 20, 7, 7);
    expect_invalid([&] { ops::layer_norm(x, ln, yl); }, {"'weight'", "24", "20"});
    expect_invalid(
        [&] { ops::pack_layer_norm(Tensor(DType::F32, {24}), Tensor(DType::F32, {20}), 1e-6); },
        {"bias", "[20]"});

    const BlockedTensor a = ops::make_blocked_tensor(1, 20, 7, 7),
                        bb = ops::make_blocked_tensor(1, 20, 5, 7);
    BlockedTensor yb = ops::make_blocked_tensor(1, 20, 7, 7);
    expect_invalid([&] { ops::binary(ops::Binary::Add, a, bb, yb); },
                   {"'a'", "'b'", "[1, 20, 5, 7]"});
    BlockedTensor yp = ops::make_blocked_tensor(1, 20, 7, 7);
    expect_invalid([&] { ops::global_avg_pool(a, yp); }, {"'y'", "expected [1, 20, 1, 1]"});

    Tensor idx(DType::I32, {3});
    idx.data<int32_t>()[1] = 20;
    expect_invalid([&] { ops::pack_channel_index(idx, 20); }, {"index element 1", "20", "[0, 20)"});
    idx.data<int32_t>()[1] = 2;
    const ops::ChannelIndex ci = ops::pack_channel_index(idx, 20);
    BlockedTensor ys = ops::make_blocked_tensor(1, 4, 7, 7);
    expect_invalid([&] { ops::channel_select(a, ci, ys); }, {"'y'", "expected [1, 3, 7, 7]"});
    BlockedTensor ycat = ops::make_blocked_tensor(1, 39, 7, 7);
    expect_invalid([&] { ops::concat(a, a, ycat); }, {"'y'", "expected [1, 40, 7, 7]"});

    BlockedTensor y_alias = ops::make_blocked_tensor(1, 20, 7, 7);
    const ops::PackedLinear sq = ops::pack_linear(Tensor(DType::F32, {20, 20}), nullptr);
    expect_invalid([&] { ops::gemm(y_alias, sq, {}, y_alias); }, {"'y'", "'x'"});
}

}  // namespace
}  // namespace lkc::test
