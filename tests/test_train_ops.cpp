// Training kernels (runtime/train_ops.h) on the CPU against independent double-precision
// references written out here: naive loops for the forward ops, gradients derived by hand, and
// for the non-linear ops (GELU, sigmoid, BatchNorm, LayerNorm, GRN, cross-entropy) a central
// finite-difference check of those hand-derived gradients against a double forward. Channel
// counts 19, 21, 37 (not multiples of 16) exercise the block padding; every blocked output's and
// per-channel gradient's padding lanes must be exactly zero.
//
// Tolerances (stated again at each check):
//  - sums (GEMM, conv, reductions): |got - ref| <= 1e-5 * sum of |terms| + 1e-6;
//  - data movement (select, slice, concat, ReLU, mask): exact;
//  - normalisations: |got - ref| <= rel * max |ref| over the tensor (cancellation in x - mean
//    makes small elements carry the absolute error of large ones);
//  - optimizers: |got - ref| <= 1e-6 |ref| + 1e-7 (a few fp32 roundings per step);
//  - hand-derived gradient vs finite differences (both double): <= 1e-6 (1 + |g|).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "runtime/ops.h"
#include "runtime/registry.h"
#include "runtime/train_ops.h"

namespace lkc::test {
namespace {

using ops::BlockedTensor;
using ops::ChannelVector;
using Vec = std::vector<double>;
namespace to = train_ops;

// NCHW values in double, each exactly representable in f32.
struct Act4 {
    int n = 0, c = 0, h = 0, w = 0;
    Vec v;
    size_t idx(int i, int ch, int y, int x) const { return ((size_t(i) * c + ch) * h + y) * w + x; }
    double& at(int i, int ch, int y, int x) { return v[idx(i, ch, y, x)]; }
    double at(int i, int ch, int y, int x) const { return v[idx(i, ch, y, x)]; }
    size_t size() const { return v.size(); }
};

Act4 zeros4(int n, int c, int h, int w) { return {n, c, h, w, Vec(size_t(n) * c * h * w, 0.0)}; }

Vec random_vec(size_t count, double lo, double hi, std::mt19937& g) {
    std::uniform_real_distribution<double> u(lo, hi);
    Vec v(count);
    for (double& x : v) x = static_cast<float>(u(g));
    return v;
}

Vec random_ints(size_t count, int range, std::mt19937& g) {
    std::uniform_int_distribution<int> u(-range, range);
    Vec v(count);
    for (double& x : v) x = u(g);
    return v;
}

Act4 random_act(int n, int c, int h, int w, std::mt19937& g, double lo = -1, double hi = 1) {
    Act4 a = zeros4(n, c, h, w);
    a.v = random_vec(a.size(), lo, hi, g);
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

ChannelVector channels_of(const Vec& v) {
    return ops::pack_channels(tensor_of(v, {int64_t(v.size())}), "test");
}

struct Check {
    size_t bad = 0;
    std::string first;
    void fail(const std::string& where, double got, double want) {
        if (bad++ == 0) {
            first = where + ": got " + std::to_string(got) + ", want " + std::to_string(want);
        }
    }
};

#define EXPECT_MATCH(check, what)                                                          \
    EXPECT_EQ((check).bad, 0u) << (what) << ": " << (check).bad << " bad elements, first " \
                               << (check).first

using Tol = std::function<double(size_t)>;

// A blocked result against the reference (allowed error per element from tol; null: exact);
// padding lanes must be zero.
Check compare(BlockedTensor& y, const Act4& want, const Tol& tol) {
    Check c;
    ops::to_host(y);
    EXPECT_EQ(y.shape(), (Shape{want.n, want.c, want.h, want.w}));
    if (y.shape() != Shape{want.n, want.c, want.h, want.w}) {
        c.fail("shape", 0, 0);
        return c;
    }
    for (int i = 0; i < want.n; ++i)
        for (int ch = 0; ch < y.blocks() * 16; ++ch)
            for (int yy = 0; yy < want.h; ++yy)
                for (int x = 0; x < want.w; ++x) {
                    const double got = y.buf(ch % 16, x, yy, ch / 16, i);
                    const bool real = ch < want.c;
                    const size_t k = real ? want.idx(i, ch, yy, x) : 0;
                    const double ref = real ? want.v[k] : 0.0;
                    const double allowed = real && tol ? tol(k) : 0.0;
                    if (!(std::fabs(got - ref) <= allowed)) {
                        c.fail("n" + std::to_string(i) + " c" + std::to_string(ch) + " y" +
                                   std::to_string(yy) + " x" + std::to_string(x) +
                                   (real ? "" : " (padding lane)"),
                               got, ref);
                    }
                }
    return c;
}

// A per-channel vector against the reference; padding lanes must be zero.
Check compare(const ChannelVector& v, const Vec& want, const Tol& tol) {
    Check c;
    EXPECT_EQ(v.channels, int(want.size()));
    const std::vector<float> got = to::channel_values(v);
    for (size_t i = 0; i < want.size() && i < got.size(); ++i)
        if (!(std::fabs(got[i] - want[i]) <= (tol ? tol(i) : 0.0)))
            c.fail("channel " + std::to_string(i), got[i], want[i]);
    for (int l = v.channels; l < v.buf.dim(1).extent() * 16; ++l)
        if (v.buf(l % 16, l / 16) != 0.0f)
            c.fail("padding lane " + std::to_string(l), v.buf(l % 16, l / 16), 0);
    return c;
}

// A flat f32 buffer against the reference.
template <int D>
Check compare_flat(const Halide::Runtime::Buffer<float, D>& b, const Vec& want, const Tol& tol) {
    Check c;
    const float* p = b.data();
    EXPECT_EQ(size_t(b.number_of_elements()), want.size());
    for (size_t i = 0; i < want.size(); ++i)
        if (!(std::fabs(p[i] - want[i]) <= (tol ? tol(i) : 0.0)))
            c.fail("element " + std::to_string(i), p[i], want[i]);
    return c;
}

double max_abs(const Vec& v) {
    double m = 0;
    for (double x : v) m = std::max(m, std::fabs(x));
    return m;
}

Tol sum_tol(const Vec& mag) {
    return [&mag](size_t k) { return 1e-5 * mag[k] + 1e-6; };
}
Tol scaled_tol(double rel, const Vec& ref) {
    const double s = rel * std::max(max_abs(ref), 1e-30);
    return [s](size_t) { return s; };
}

// d(sum dy * f(x)) / dx by central differences in double.
Vec fd_grad(const std::function<Vec(const Vec&)>& f, Vec x, const Vec& dy, double h = 1e-5) {
    Vec g(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        const double x0 = x[i];
        x[i] = x0 + h;
        const Vec up = f(x);
        x[i] = x0 - h;
        const Vec dn = f(x);
        x[i] = x0;
        double s = 0;
        for (size_t k = 0; k < dy.size(); ++k) s += dy[k] * (up[k] - dn[k]);
        g[i] = s / (2 * h);
    }
    return g;
}

// Hand-derived gradient vs finite differences: <= 1e-6 (1 + |g|).
void expect_fd_match(const Vec& analytic, const Vec& fd, const std::string& what) {
    ASSERT_EQ(analytic.size(), fd.size());
    size_t bad = 0;
    std::string first;
    for (size_t i = 0; i < fd.size(); ++i)
        if (!(std::fabs(analytic[i] - fd[i]) <= 1e-6 * (1 + std::fabs(fd[i]))) && bad++ == 0)
            first = std::to_string(i) + ": " + std::to_string(analytic[i]) + " vs fd " +
                    std::to_string(fd[i]);
    EXPECT_EQ(bad, 0u) << what << " reference gradient vs finite differences, first " << first;
}

// Runs f and expects std::invalid_argument whose message contains every one of `parts`.
void expect_invalid(const std::function<void()>& f, const std::vector<std::string>& parts) {
    try {
        f();
        ADD_FAILURE() << "no exception (expected one mentioning " << parts[0] << ")";
    } catch (const std::invalid_argument& e) {
        for (const std::string& p : parts)
            EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
                << "'" << e.what() << "' does not mention '" << p << "'";
    }
}

std::vector<const KernelInfo*> cpu_kernels(KernelKind kind) {
    std::vector<const KernelInfo*> r;
    for (const KernelInfo& k : all_kernels())
        if (k.kind == kind && k.device == Device::Cpu) r.push_back(&k);
    return r;
}

double gelu(double v) { return 0.5 * v * (1.0 + std::erf(v / std::sqrt(2.0))); }
double gelu_grad(double v) {
    return 0.5 * (1.0 + std::erf(v / std::sqrt(2.0))) +
           v * std::exp(-0.5 * v * v) / std::sqrt(2 * 3.14159265358979323846);
}
double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// ---- Helpers of the API ----------------------------------------------------------------------

TEST(TrainHelpers, ChannelGradFlatRefAndPackedLayouts) {
    const ChannelVector z = to::make_channel_grad(19);
    EXPECT_EQ(z.channels, 19);
    EXPECT_EQ(z.buf.dim(0).extent(), 16);
    EXPECT_EQ(z.buf.dim(1).extent(), 2);
    EXPECT_MATCH(compare(z, Vec(19, 0.0), nullptr), "make_channel_grad");
    const Vec vals = {1, -2, 3.5, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
    EXPECT_MATCH(compare(channels_of(vals), vals, nullptr), "channel_values");
    EXPECT_EQ(to::FlatRef(z).numel(), 32);

    Halide::Runtime::Buffer<float, 3> dw = to::make_linear_weight_grad(19, 37);
    EXPECT_EQ(dw.dim(0).extent(), 16);
    EXPECT_EQ(dw.dim(1).extent(), 32);
    EXPECT_EQ(dw.dim(2).extent(), 3);
    EXPECT_EQ(to::FlatRef(dw).numel(), 16 * 32 * 3);
    for (float v : std::vector<float>(dw.data(), dw.data() + dw.number_of_elements()))
        EXPECT_EQ(v, 0.0f);

    // unpack_linear inverts ops::pack_linear exactly.
    std::mt19937 g(5);
    const Vec w = random_vec(37 * 19, -1, 1, g);
    const ops::PackedLinear p = ops::pack_linear(tensor_of(w, {37, 19}), nullptr);
    const Tensor back = to::unpack_linear(p.weight, 19, 37);
    ASSERT_EQ(back.shape(), (Shape{37, 19}));
    for (size_t i = 0; i < w.size(); ++i) EXPECT_EQ(back.data<float>()[i], float(w[i]));

    // Conv weight gradient: Halide (kw, kh, Ci/g, Co) = PyTorch [Co, Ci/g, kh, kw].
    const Vec cw = random_vec(20 * 5 * 3 * 2, -1, 1, g);
    ops::ConvGeometry geo;
    geo.groups = 2;
    const to::PackedConv2dBackward pc = to::pack_conv2d_backward(tensor_of(cw, {20, 5, 3, 2}), geo);
    EXPECT_EQ(pc.in_channels, 10);
    EXPECT_EQ(pc.out_channels, 20);
    Halide::Runtime::Buffer<float, 4> cg = to::make_conv2d_weight_grad(pc);
    EXPECT_EQ(cg.dim(0).extent(), 2);
    EXPECT_EQ(cg.dim(1).extent(), 3);
    EXPECT_EQ(cg.dim(2).extent(), 5);
    EXPECT_EQ(cg.dim(3).extent(), 20);
    cg.for_each_element([&](int v, int u, int cl, int co) {
        cg(v, u, cl, co) = float(((co * 5 + cl) * 3 + u) * 2 + v);
    });
    const Tensor ct = to::conv2d_weight_grad_tensor(cg);
    ASSERT_EQ(ct.shape(), (Shape{20, 5, 3, 2}));
    for (int64_t i = 0; i < ct.numel(); ++i) EXPECT_EQ(ct.data<float>()[i], float(i));

    const to::BatchNormSaved s = to::make_batchnorm_saved(37);
    EXPECT_MATCH(compare(s.mean, Vec(37, 0.0), nullptr), "saved mean");
    EXPECT_MATCH(compare(s.rstd, Vec(37, 0.0), nullptr), "saved rstd");
}

// ---- GEMM backward ---------------------------------------------------------------------------

struct LinCase {
    int n, ci, co, h, w;
};
const LinCase kLinCases[] = {{2, 19, 37, 3, 5}, {3, 37, 21, 9, 11}, {1, 3, 19, 1, 1}};

std::string lin_name(const LinCase& s) {
    return "n" + std::to_string(s.n) + "ci" + std::to_string(s.ci) + "co" + std::to_string(s.co) +
           "h" + std::to_string(s.h) + "w" + std::to_string(s.w);
}

TEST(TrainLinear, TransposeMatchesPackTransposed) {
    std::mt19937 g(11);
    for (const LinCase& s : kLinCases) {
        const Vec w = random_vec(size_t(s.co) * s.ci, -1, 1, g);
        const Tensor wt = tensor_of(w, {s.co, s.ci});
        const ops::PackedLinear p = ops::pack_linear(wt, nullptr);
        const ops::PackedLinear want = to::pack_linear_transposed(wt);
        ops::PackedLinear got = to::make_linear_transposed(p);
        EXPECT_EQ(got.in_channels, s.co);
        EXPECT_EQ(got.out_channels, s.ci);
        to::transpose_linear(p, got);
        // A permutation: exact, padding included.
        ASSERT_EQ(got.weight.number_of_elements(), want.weight.number_of_elements());
        for (size_t i = 0; i < got.weight.number_of_elements(); ++i)
            ASSERT_EQ(got.weight.data()[i], want.weight.data()[i])
                << lin_name(s) << " element " << i;
        // Also [Co, Ci, 1, 1] (1x1 conv) input to pack_linear_transposed.
        const ops::PackedLinear w4 = to::pack_linear_transposed(tensor_of(w, {s.co, s.ci, 1, 1}));
        for (size_t i = 0; i < w4.weight.number_of_elements(); ++i)
            ASSERT_EQ(w4.weight.data()[i], want.weight.data()[i]);
    }
}

TEST(TrainLinear, BackwardDataAndAccumulate) {
    std::mt19937 g(12);
    for (const LinCase& s : kLinCases) {
        const Vec w = random_vec(size_t(s.co) * s.ci, -1, 1, g);
        const Act4 dy = random_act(s.n, s.co, s.h, s.w, g);
        const Act4 prior = random_act(s.n, s.ci, s.h, s.w, g);
        const ops::PackedLinear wt = to::pack_linear_transposed(tensor_of(w, {s.co, s.ci}));
        Act4 want = zeros4(s.n, s.ci, s.h, s.w);
        Vec mag(want.size(), 0.0);
        for (int i = 0; i < s.n; ++i)
            for (int c = 0; c < s.ci; ++c)
                for (int y = 0; y < s.h; ++y)
                    for (int x = 0; x < s.w; ++x)
                        for (int o = 0; o < s.co; ++o) {
                            const double t = w[size_t(o) * s.ci + c] * dy.at(i, o, y, x);
                            want.at(i, c, y, x) += t;
                            mag[want.idx(i, c, y, x)] += std::fabs(t);
                        }
        const BlockedTensor dyb = blocked(dy);
        BlockedTensor dx = ops::make_blocked_tensor(s.n, s.ci, s.h, s.w);
        to::linear_backward_data(dyb, wt, dx);
        // fp32 sum: 1e-5 * sum |terms| + 1e-6.
        EXPECT_MATCH(compare(dx, want, sum_tol(mag)), lin_name(s) + " dx");
        // accumulate: dx = prior + W^T dy.
        BlockedTensor acc = blocked(prior);
        to::linear_backward_data(dyb, wt, acc, Device::Cpu, true);
        Act4 want2 = want;
        Vec mag2 = mag;
        for (size_t k = 0; k < want2.size(); ++k) {
            want2.v[k] += prior.v[k];
            mag2[k] += std::fabs(prior.v[k]);
        }
        EXPECT_MATCH(compare(acc, want2, sum_tol(mag2)), lin_name(s) + " dx accumulate");
    }
}

// dW[co, ci] = sum dy x, db = sum dy, in the packed layout with zero padding.
void check_wgrad(const LinCase& s, const std::string& kernel, uint32_t seed) {
    std::mt19937 g(seed);
    const Act4 x = random_act(s.n, s.ci, s.h, s.w, g);
    const Act4 dy = random_act(s.n, s.co, s.h, s.w, g);
    Vec dw(size_t(s.co) * s.ci, 0.0), mag(dw.size(), 0.0), db(s.co, 0.0), dbm(s.co, 0.0);
    for (int i = 0; i < s.n; ++i)
        for (int y = 0; y < s.h; ++y)
            for (int xx = 0; xx < s.w; ++xx)
                for (int o = 0; o < s.co; ++o) {
                    db[o] += dy.at(i, o, y, xx);
                    dbm[o] += std::fabs(dy.at(i, o, y, xx));
                    for (int c = 0; c < s.ci; ++c) {
                        const double t = dy.at(i, o, y, xx) * x.at(i, c, y, xx);
                        dw[size_t(o) * s.ci + c] += t;
                        mag[size_t(o) * s.ci + c] += std::fabs(t);
                    }
                }
    const std::string what = lin_name(s) + " kernel " + (kernel.empty() ? "(default)" : kernel);
    const BlockedTensor xb = blocked(x), dyb = blocked(dy);
    Halide::Runtime::Buffer<float, 3> dwb = to::make_linear_weight_grad(s.ci, s.co);
    ChannelVector dbv = to::make_channel_grad(s.co);
    for (int pass = 1; pass <= 2; ++pass) {
        // Pass 2 accumulates: twice the sums.
        to::linear_backward_weight(xb, dyb, dwb, &dbv, Device::Cpu, pass == 2, kernel);
        const Tensor got = to::unpack_linear(dwb, s.ci, s.co);
        Check c;
        for (size_t k = 0; k < dw.size(); ++k)
            if (!(std::fabs(got.data<float>()[k] - pass * dw[k]) <= 1e-5 * pass * mag[k] + 1e-6))
                c.fail("dW element " + std::to_string(k), got.data<float>()[k], pass * dw[k]);
        // Packed padding (co >= Co lanes, ci >= Ci rows) stays zero.
        dwb.for_each_element([&](int l, int k, int ob) {
            if ((ob * 16 + l >= s.co || k >= s.ci) && dwb(l, k, ob) != 0.0f)
                c.fail("dW padding l" + std::to_string(l) + " k" + std::to_string(k), dwb(l, k, ob),
                       0);
        });
        EXPECT_MATCH(c, what + " dW pass " + std::to_string(pass));
        Vec dbw = db, dbt = dbm;
        for (size_t o = 0; o < db.size(); ++o) dbw[o] *= pass, dbt[o] *= pass;
        EXPECT_MATCH(compare(dbv, dbw, sum_tol(dbt)), what + " db pass " + std::to_string(pass));
    }
}

TEST(TrainLinear, BackwardWeightEveryVariantAndAccumulate) {
    const auto variants = cpu_kernels(KernelKind::TrainGemmWgrad);
    ASSERT_FALSE(variants.empty());
    uint32_t seed = 20;
    for (const LinCase& s : kLinCases) {
        check_wgrad(s, "", seed++);
        for (const KernelInfo* k : variants) check_wgrad(s, k->name, seed++);
    }
    // The runner's choice is one of the compiled weight-gradient variants.
    const BlockedTensor x = ops::make_blocked_tensor(1, 19, 3, 3),
                        dy = ops::make_blocked_tensor(1, 37, 3, 3);
    const std::string name = to::linear_wgrad_kernel_name(x, dy, Device::Cpu);
    bool found = false;
    for (const KernelInfo* k : variants) found = found || name == k->name;
    EXPECT_TRUE(found) << name;
}

// ---- Dense conv backward ---------------------------------------------------------------------

struct ConvCase {
    int n, ci, co, h, w, kh, kw;
    ops::ConvGeometry g;
    const char* name;
};
const ConvCase kConvCases[] = {
    {2, 19, 21, 7, 6, 3, 3, {1, 1, 1, 1, 1}, "3x3 s1 p1"},
    {2, 19, 21, 9, 8, 3, 3, {2, 1, 1, 1, 1}, "3x3 s2 p1"},
    {1, 19, 37, 8, 9, 3, 3, {1, 2, 2, 2, 1}, "3x3 d2 p2"},
    {2, 3, 19, 9, 7, 3, 3, {2, 1, 1, 1, 1}, "stem 3ch s2 (compact columns)"},
    {1, 21, 19, 5, 9, 1, 5, {1, 0, 2, 1, 1}, "1x5 p0x2"},
    {2, 10, 18, 6, 5, 3, 3, {1, 1, 1, 1, 2}, "groups 2"},
    {1, 38, 38, 5, 5, 3, 3, {2, 0, 1, 1, 19}, "groups 19 s2 pad 0x1"},
};

TEST(TrainConv2d, BackwardDataWeightBiasAndAccumulate) {
    uint32_t seed = 40;
    for (const ConvCase& s : kConvCases) {
        std::mt19937 g(seed++);
        const ops::ConvGeometry& geo = s.g;
        const int cig = s.ci / geo.groups, cog = s.co / geo.groups;
        const Vec w = random_vec(size_t(s.co) * cig * s.kh * s.kw, -1, 1, g);
        const to::PackedConv2dBackward pw =
            to::pack_conv2d_backward(tensor_of(w, {s.co, cig, s.kh, s.kw}), geo);
        const int oh = pw.out_h(s.h), ow = pw.out_w(s.w);
        ASSERT_GT(oh, 0);
        ASSERT_GT(ow, 0);
        const Act4 x = random_act(s.n, s.ci, s.h, s.w, g);
        const Act4 dy = random_act(s.n, s.co, oh, ow, g);
        // Transpose of the forward loop y[n, co, i, j] += w x[n, g cig + cl, i s + u d - ph, ...].
        Act4 dx = zeros4(s.n, s.ci, s.h, s.w);
        Vec dxm(dx.size(), 0.0), dw(w.size(), 0.0), dwm(w.size(), 0.0), db(s.co, 0.0),
            dbm(s.co, 0.0);
        for (int i = 0; i < s.n; ++i)
            for (int o = 0; o < s.co; ++o)
                for (int oy = 0; oy < oh; ++oy)
                    for (int ox = 0; ox < ow; ++ox) {
                        const double d = dy.at(i, o, oy, ox);
                        db[o] += d;
                        dbm[o] += std::fabs(d);
                        for (int cl = 0; cl < cig; ++cl)
                            for (int u = 0; u < s.kh; ++u)
                                for (int v = 0; v < s.kw; ++v) {
                                    const int iy = oy * geo.stride + u * geo.dilation - geo.pad_h;
                                    const int ix = ox * geo.stride + v * geo.dilation - geo.pad_w;
                                    if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                                    const int c = (o / cog) * cig + cl;
                                    const size_t wk =
                                        ((size_t(o) * cig + cl) * s.kh + u) * s.kw + v;
                                    dx.at(i, c, iy, ix) += w[wk] * d;
                                    dxm[dx.idx(i, c, iy, ix)] += std::fabs(w[wk] * d);
                                    dw[wk] += x.at(i, c, iy, ix) * d;
                                    dwm[wk] += std::fabs(x.at(i, c, iy, ix) * d);
                                }
                    }
        const BlockedTensor xb = blocked(x), dyb = blocked(dy);
        BlockedTensor dxb = ops::make_blocked_tensor(s.n, s.ci, s.h, s.w);
        Halide::Runtime::Buffer<float, 4> dwb = to::make_conv2d_weight_grad(pw);
        ChannelVector dbv = to::make_channel_grad(s.co);
        for (int pass = 1; pass <= 2; ++pass) {
            // Pass 2: dW and db accumulate (twice the sums), dx is written again.
            to::conv2d_backward(xb, dyb, pw, &dxb, &dwb, &dbv, Device::Cpu, pass == 2);
            const std::string what = std::string(s.name) + " pass " + std::to_string(pass);
            // fp32 sums: 1e-5 * sum |terms| + 1e-6.
            EXPECT_MATCH(compare(dxb, dx, sum_tol(dxm)), what + " dx");
            const Tensor got = to::conv2d_weight_grad_tensor(dwb);
            Check c;
            for (size_t k = 0; k < dw.size(); ++k)
                if (!(std::fabs(got.data<float>()[k] - pass * dw[k]) <=
                      1e-5 * pass * dwm[k] + 1e-6))
                    c.fail("dW element " + std::to_string(k), got.data<float>()[k], pass * dw[k]);
            EXPECT_MATCH(c, what + " dW");
            Vec dbw = db, dbt = dbm;
            for (size_t o = 0; o < db.size(); ++o) dbw[o] *= pass, dbt[o] *= pass;
            EXPECT_MATCH(compare(dbv, dbw, sum_tol(dbt)), what + " db");
        }
        // Optional outputs: dW alone.
        Halide::Runtime::Buffer<float, 4> dw_only = to::make_conv2d_weight_grad(pw);
        to::conv2d_backward(xb, dyb, pw, nullptr, &dw_only, nullptr);
        const Tensor got = to::conv2d_weight_grad_tensor(dw_only);
        for (size_t k = 0; k < dw.size(); ++k)
            ASSERT_NEAR(got.data<float>()[k], dw[k], 1e-5 * dwm[k] + 1e-6) << s.name << " dW only";
    }
}

// ---- Element-wise backward -------------------------------------------------------------------

TEST(TrainUnary, ReluGeluSigmoidBackward) {
    std::mt19937 g(60);
    Act4 x = random_act(2, 37, 3, 4, g, -4, 4);
    for (size_t k = 0; k < x.size(); k += 17) x.v[k] = 0.0;  // ReLU'(0) = 0 (PyTorch)
    const Act4 dy = random_act(2, 37, 3, 4, g);
    Act4 relu_y = x, sig_y = x;
    for (double& v : relu_y.v) v = v > 0 ? v : 0.0;
    for (double& v : sig_y.v) v = static_cast<float>(sigmoid(v));

    // Analytic derivatives vs finite differences (double).
    {
        Vec ga(x.size()), gs(x.size());
        for (size_t k = 0; k < x.size(); ++k) {
            ga[k] = gelu_grad(x.v[k]) * dy.v[k];
            gs[k] = sigmoid(x.v[k]) * (1 - sigmoid(x.v[k])) * dy.v[k];
        }
        // Finite differences of an element-wise map: one perturbation per element.
        Vec fa(x.size()), fs(x.size());
        for (size_t k = 0; k < x.size(); ++k) {
            const double h = 1e-5, v = x.v[k];
            fa[k] = (gelu(v + h) - gelu(v - h)) / (2 * h) * dy.v[k];
            fs[k] = (sigmoid(v + h) - sigmoid(v - h)) / (2 * h) * dy.v[k];
        }
        expect_fd_match(ga, fa, "gelu");
        expect_fd_match(gs, fs, "sigmoid");
    }

    struct U {
        to::UnaryGrad op;
        const Act4* v;
        const char* name;
        double rel;  // |got - ref| <= rel * |dy| (0: exact)
    };
    const U cases[] = {
        {to::UnaryGrad::Relu, &x, "relu from x", 0},
        {to::UnaryGrad::Relu, &relu_y, "relu from y", 0},
        // fp32 erf / exp: a few ulp of the O(1) derivative.
        {to::UnaryGrad::Gelu, &x, "gelu", 2e-6},
        // y (1 - y) in fp32 from the fp32 y.
        {to::UnaryGrad::Sigmoid, &sig_y, "sigmoid from y", 3e-7},
        // sigmoid(x) in fp32, then s (1 - s).
        {to::UnaryGrad::SigmoidFromX, &x, "sigmoid from x", 1e-6},
    };
    const BlockedTensor dyb = blocked(dy);
    for (const U& u : cases) {
        Act4 want = zeros4(2, 37, 3, 4);
        for (size_t k = 0; k < want.size(); ++k) {
            const double v = u.v->v[k];
            double d = 0;
            switch (u.op) {
                case to::UnaryGrad::Relu:
                    d = v > 0 ? 1 : 0;
                    break;
                case to::UnaryGrad::Gelu:
                    d = gelu_grad(v);
                    break;
                case to::UnaryGrad::Sigmoid:
                    d = v * (1 - v);
                    break;
                case to::UnaryGrad::SigmoidFromX:
                    d = sigmoid(v) * (1 - sigmoid(v));
                    break;
            }
            want.v[k] = d * dy.v[k];
        }
        const BlockedTensor vb = blocked(*u.v);
        BlockedTensor dx = ops::make_blocked_tensor(2, 37, 3, 4);
        to::unary_backward(u.op, vb, dyb, dx);
        const double rel = u.rel;
        EXPECT_MATCH(compare(dx, want, [&](size_t k) { return rel * std::fabs(dy.v[k]); }), u.name);
    }
}

struct BinCase {
    Shape a, b;
    const char* name;
};
const BinCase kBinCases[] = {
    {{2, 37, 3, 4}, {2, 37, 3, 4}, "same shape"},
    {{2, 37, 3, 4}, {2, 37, 1, 1}, "SE [N, C, 1, 1]"},
    {{2, 37, 3, 4}, {1, 37, 1, 1}, "[1, C, 1, 1]"},
    {{2, 19, 3, 4}, {2, 1, 3, 4}, "one channel"},
    {{2, 1, 1, 1}, {2, 19, 3, 4}, "a [N, 1, 1, 1]"},
    {{1, 19, 3, 1}, {2, 19, 3, 4}, "a [1, C, H, 1]"},
    {{2, 21, 1, 4}, {1, 1, 3, 1}, "both broadcast"},
};

TEST(TrainBinary, AddMulWithBroadcasting) {
    uint32_t seed = 70;
    for (const BinCase& s : kBinCases)
        for (ops::Binary op : {ops::Binary::Add, ops::Binary::Mul}) {
            std::mt19937 g(seed++);
            const std::string what =
                std::string(s.name) + (op == ops::Binary::Add ? " add" : " mul");
            auto act = [&](const Shape& sh) {
                return random_act(int(sh[0]), int(sh[1]), int(sh[2]), int(sh[3]), g);
            };
            const Act4 a = act(s.a), b = act(s.b);
            Shape ys(4);
            for (int i = 0; i < 4; ++i) ys[i] = std::max(s.a[i], s.b[i]);
            const Act4 dy = act(ys);
            Act4 da = zeros4(a.n, a.c, a.h, a.w), db = zeros4(b.n, b.c, b.h, b.w);
            Vec dam(da.size(), 0.0), dbm(db.size(), 0.0);
            auto bidx = [](const Act4& t, int i, int c, int y, int x) {
                return t.idx(t.n == 1 ? 0 : i, t.c == 1 ? 0 : c, t.h == 1 ? 0 : y,
                             t.w == 1 ? 0 : x);
            };
            for (int i = 0; i < dy.n; ++i)
                for (int c = 0; c < dy.c; ++c)
                    for (int y = 0; y < dy.h; ++y)
                        for (int x = 0; x < dy.w; ++x) {
                            const size_t ka = bidx(a, i, c, y, x), kb = bidx(b, i, c, y, x);
                            const double d = dy.at(i, c, y, x);
                            const double ta = op == ops::Binary::Add ? d : d * b.v[kb];
                            const double tb = op == ops::Binary::Add ? d : d * a.v[ka];
                            da.v[ka] += ta;
                            dam[ka] += std::fabs(ta);
                            db.v[kb] += tb;
                            dbm[kb] += std::fabs(tb);
                        }
            const BlockedTensor ab = blocked(a), bb = blocked(b), dyb = blocked(dy);
            BlockedTensor dab = ops::make_blocked_tensor(a.n, a.c, a.h, a.w);
            BlockedTensor dbb = ops::make_blocked_tensor(b.n, b.c, b.h, b.w);
            to::binary_backward(op, ab, bb, dyb, &dab, &dbb);
            // fp32 sums over the broadcast extents: 1e-5 * sum |terms| + 1e-6.
            EXPECT_MATCH(compare(dab, da, sum_tol(dam)), what + " da");
            EXPECT_MATCH(compare(dbb, db, sum_tol(dbm)), what + " db");
            // Either output alone.
            BlockedTensor db2 = ops::make_blocked_tensor(b.n, b.c, b.h, b.w);
            to::binary_backward(op, ab, bb, dyb, nullptr, &db2);
            EXPECT_MATCH(compare(db2, db, sum_tol(dbm)), what + " db alone");
        }
}

TEST(TrainAffine, ScaleShiftGradientsOptionalAndAccumulate) {
    std::mt19937 g(80);
    const int n = 2, c = 37, h = 3, w = 5;
    const Act4 x = random_act(n, c, h, w, g), dy = random_act(n, c, h, w, g);
    const Vec scale = random_vec(c, -2, 2, g);
    Act4 dx = zeros4(n, c, h, w);
    Vec ds(c, 0.0), dsm(c, 0.0), dt(c, 0.0), dtm(c, 0.0);
    for (int i = 0; i < n; ++i)
        for (int ch = 0; ch < c; ++ch)
            for (int y = 0; y < h; ++y)
                for (int xx = 0; xx < w; ++xx) {
                    const double d = dy.at(i, ch, y, xx);
                    dx.at(i, ch, y, xx) = scale[ch] * d;
                    ds[ch] += x.at(i, ch, y, xx) * d;
                    dsm[ch] += std::fabs(x.at(i, ch, y, xx) * d);
                    dt[ch] += d;
                    dtm[ch] += std::fabs(d);
                }
    const BlockedTensor xb = blocked(x), dyb = blocked(dy);
    const ChannelVector sc = channels_of(scale);
    BlockedTensor dxb = ops::make_blocked_tensor(n, c, h, w);
    ChannelVector dsv = to::make_channel_grad(c), dtv = to::make_channel_grad(c);
    to::affine_backward(xb, sc, dyb, &dxb, &dsv, &dtv);
    // dx: one fp32 product (<= 1 ulp); sums: 1e-5 * sum |terms| + 1e-6.
    EXPECT_MATCH(compare(dxb, dx, [&](size_t k) { return 1.2e-7 * std::fabs(dx.v[k]); }), "dx");
    EXPECT_MATCH(compare(dsv, ds, sum_tol(dsm)), "dscale");
    EXPECT_MATCH(compare(dtv, dt, sum_tol(dtm)), "dshift");
    to::affine_backward(xb, sc, dyb, nullptr, &dsv, &dtv, Device::Cpu, true);
    Vec ds2 = ds, dt2 = dt, dsm2 = dsm, dtm2 = dtm;
    for (int ch = 0; ch < c; ++ch) ds2[ch] *= 2, dt2[ch] *= 2, dsm2[ch] *= 2, dtm2[ch] *= 2;
    EXPECT_MATCH(compare(dsv, ds2, sum_tol(dsm2)), "dscale accumulate");
    EXPECT_MATCH(compare(dtv, dt2, sum_tol(dtm2)), "dshift accumulate");
    // Each parameter gradient alone.
    ChannelVector s_only = to::make_channel_grad(c), t_only = to::make_channel_grad(c);
    to::affine_backward(xb, sc, dyb, nullptr, &s_only, nullptr);
    to::affine_backward(xb, sc, dyb, nullptr, nullptr, &t_only);
    EXPECT_MATCH(compare(s_only, ds, sum_tol(dsm)), "dscale alone");
    EXPECT_MATCH(compare(t_only, dt, sum_tol(dtm)), "dshift alone");
}

TEST(TrainBias, SumOverImagesAndPixelsAndAccumulate) {
    std::mt19937 g(90);
    for (const Shape& s : {Shape{3, 19, 2, 5}, Shape{1, 37, 9, 11}, Shape{4, 21, 1, 1}}) {
        const Act4 dy = random_act(int(s[0]), int(s[1]), int(s[2]), int(s[3]), g);
        Vec db(dy.c, 0.0), dbm(dy.c, 0.0);
        for (int i = 0; i < dy.n; ++i)
            for (int c = 0; c < dy.c; ++c)
                for (int y = 0; y < dy.h; ++y)
                    for (int x = 0; x < dy.w; ++x) {
                        db[c] += dy.at(i, c, y, x);
                        dbm[c] += std::fabs(dy.at(i, c, y, x));
                    }
        const BlockedTensor dyb = blocked(dy);
        ChannelVector v = channels_of(Vec(dy.c, 123.0));  // overwritten without accumulate
        to::bias_backward(dyb, v);
        EXPECT_MATCH(compare(v, db, sum_tol(dbm)), "dbias " + shape_to_string(s));
        to::bias_backward(dyb, v, Device::Cpu, true);
        for (int c = 0; c < dy.c; ++c) db[c] *= 2, dbm[c] *= 2;
        EXPECT_MATCH(compare(v, db, sum_tol(dbm)), "dbias accumulate " + shape_to_string(s));
    }
}

// ---- BatchNorm training ----------------------------------------------------------------------

struct BnRef {
    Vec mean, var, rstd;  // biased var
};
BnRef bn_stats(const Act4& x, double eps) {
    BnRef r{Vec(x.c, 0.0), Vec(x.c, 0.0), Vec(x.c, 0.0)};
    const double m = double(x.n) * x.h * x.w;
    for (int c = 0; c < x.c; ++c) {
        for (int i = 0; i < x.n; ++i)
            for (int y = 0; y < x.h; ++y)
                for (int xx = 0; xx < x.w; ++xx) r.mean[c] += x.at(i, c, y, xx);
        r.mean[c] /= m;
        for (int i = 0; i < x.n; ++i)
            for (int y = 0; y < x.h; ++y)
                for (int xx = 0; xx < x.w; ++xx)
                    r.var[c] += std::pow(x.at(i, c, y, xx) - r.mean[c], 2);
        r.var[c] /= m;
        r.rstd[c] = 1.0 / std::sqrt(r.var[c] + eps);
    }
    return r;
}

Act4 bn_forward(const Act4& x, const Vec& gamma, const Vec& beta, double eps) {
    const BnRef s = bn_stats(x, eps);
    Act4 y = x;
    for (int i = 0; i < x.n; ++i)
        for (int c = 0; c < x.c; ++c)
            for (int yy = 0; yy < x.h; ++yy)
                for (int xx = 0; xx < x.w; ++xx)
                    y.at(i, c, yy, xx) =
                        (x.at(i, c, yy, xx) - s.mean[c]) * s.rstd[c] * gamma[c] + beta[c];
    return y;
}

TEST(TrainBatchNorm, ForwardBatchStatisticsAndRunningAverages) {
    std::mt19937 g(100);
    const int n = 3, c = 19, h = 4, w = 5;
    const double M = n * h * w, eps = 1e-5;
    Act4 x = random_act(n, c, h, w, g);
    for (int i = 0; i < n; ++i)
        for (int ch = 0; ch < c; ++ch)
            for (int y = 0; y < h; ++y)
                for (int xx = 0; xx < w; ++xx)
                    x.at(i, ch, y, xx) =
                        static_cast<float>(x.at(i, ch, y, xx) * (0.5 + 0.1 * ch) + 0.3 * ch - 2);
    const Vec gamma = random_vec(c, 0.5, 1.5, g), beta = random_vec(c, -1, 1, g);
    const Vec rm0 = random_vec(c, -1, 1, g), rv0 = random_vec(c, 0.5, 2, g);
    for (double momentum : {0.1, 0.3}) {
        to::BatchNormTrain bn =
            to::pack_batchnorm_train(tensor_of(gamma, {c}), tensor_of(beta, {c}),
                                     tensor_of(rm0, {c}), tensor_of(rv0, {c}), eps, momentum);
        to::BatchNormSaved saved = to::make_batchnorm_saved(c);
        const BlockedTensor xb = blocked(x);
        BlockedTensor yb = ops::make_blocked_tensor(n, c, h, w);
        const BnRef s = bn_stats(x, eps);
        const Act4 want = bn_forward(x, gamma, beta, eps);
        Vec rm = rm0, rv = rv0;
        for (int step = 1; step <= 2; ++step) {
            to::batchnorm_forward_train(xb, bn, yb, saved);
            // PyTorch: running = (1 - momentum) running + momentum stat, unbiased variance.
            for (int ch = 0; ch < c; ++ch) {
                rm[ch] = (1 - momentum) * rm[ch] + momentum * s.mean[ch];
                rv[ch] = (1 - momentum) * rv[ch] + momentum * s.var[ch] * M / (M - 1);
            }
            const std::string what =
                "momentum " + std::to_string(momentum) + " step " + std::to_string(step);
            // y: normalised O(1) values, fp32 two-pass statistics over M = 60: 1e-5 of max |y|.
            EXPECT_MATCH(compare(yb, want, scaled_tol(1e-5, want.v)), what + " y");
            // mean: 1e-6 of the channel's max |x| (fp32 sum of 60 terms).
            EXPECT_MATCH(compare(saved.mean, s.mean, [&](size_t) { return 1e-6 * max_abs(x.v); }),
                         what + " saved mean");
            // rstd = 1 / sqrt(biased var + eps): 1e-5 relative (cancellation in x - mean).
            EXPECT_MATCH(compare(saved.rstd, s.rstd, [&](size_t k) { return 1e-5 * s.rstd[k]; }),
                         what + " saved rstd");
            // Running statistics: 1e-5 relative. (Biased instead of unbiased var differs by
            // M / (M - 1) = 1.7%.)
            EXPECT_MATCH(compare(bn.running_mean, rm,
                                 [&](size_t k) { return 1e-5 * std::fabs(rm[k]) + 1e-6; }),
                         what + " running_mean");
            EXPECT_MATCH(compare(bn.running_var, rv, [&](size_t k) { return 1e-5 * rv[k]; }),
                         what + " running_var");
        }
    }
}

TEST(TrainBatchNorm, BackwardMatchesAnalyticAndFiniteDifferences) {
    std::mt19937 g(110);
    const int n = 2, c = 21, h = 3, w = 4;
    const double M = n * h * w, eps = 1e-5;
    const Act4 x = random_act(n, c, h, w, g, -1.5, 2.0), dy = random_act(n, c, h, w, g);
    const Vec gamma = random_vec(c, 0.5, 1.5, g), beta = random_vec(c, -1, 1, g);
    const BnRef s = bn_stats(x, eps);
    // dbeta = sum dy, dgamma = sum dy x^, dx = gamma rstd / M (M dy - dbeta - x^ dgamma).
    Act4 dx = zeros4(n, c, h, w);
    Vec dg(c, 0.0), dgm(c, 0.0), dbt(c, 0.0), dbm(c, 0.0);
    auto xhat = [&](int i, int ch, int y, int xx) {
        return (x.at(i, ch, y, xx) - s.mean[ch]) * s.rstd[ch];
    };
    for (int i = 0; i < n; ++i)
        for (int ch = 0; ch < c; ++ch)
            for (int y = 0; y < h; ++y)
                for (int xx = 0; xx < w; ++xx) {
                    const double d = dy.at(i, ch, y, xx);
                    dbt[ch] += d;
                    dbm[ch] += std::fabs(d);
                    dg[ch] += d * xhat(i, ch, y, xx);
                    dgm[ch] += std::fabs(d * xhat(i, ch, y, xx));
                }
    for (int i = 0; i < n; ++i)
        for (int ch = 0; ch < c; ++ch)
            for (int y = 0; y < h; ++y)
                for (int xx = 0; xx < w; ++xx)
                    dx.at(i, ch, y, xx) =
                        gamma[ch] * s.rstd[ch] / M *
                        (M * dy.at(i, ch, y, xx) - dbt[ch] - xhat(i, ch, y, xx) * dg[ch]);
    expect_fd_match(dx.v,
                    fd_grad(
                        [&](const Vec& v) {
                            Act4 t = x;
                            t.v = v;
                            return bn_forward(t, gamma, beta, eps).v;
                        },
                        x.v, dy.v),
                    "batchnorm dx");

    to::BatchNormTrain bn = to::pack_batchnorm_train(tensor_of(gamma, {c}), tensor_of(beta, {c}),
                                                     tensor_of(Vec(c, 0.0), {c}),
                                                     tensor_of(Vec(c, 1.0), {c}), eps, 0.1);
    to::BatchNormSaved saved = to::make_batchnorm_saved(c);
    const BlockedTensor xb = blocked(x), dyb = blocked(dy);
    BlockedTensor yb = ops::make_blocked_tensor(n, c, h, w);
    to::batchnorm_forward_train(xb, bn, yb, saved);
    BlockedTensor dxb = ops::make_blocked_tensor(n, c, h, w);
    ChannelVector dgv = to::make_channel_grad(c), dbv = to::make_channel_grad(c);
    to::batchnorm_backward(xb, dyb, bn.gamma, saved, dxb, dgv, dbv);
    // dx: 2e-5 of max |dx| (fp32 saved statistics and the cancelling three-term difference).
    EXPECT_MATCH(compare(dxb, dx, scaled_tol(2e-5, dx.v)), "dx");
    // dgamma: sums plus the fp32 x^ (1e-5 relative): 2e-5 * sum |terms| + 1e-6.
    EXPECT_MATCH(compare(dgv, dg, [&](size_t k) { return 2e-5 * dgm[k] + 1e-6; }), "dgamma");
    EXPECT_MATCH(compare(dbv, dbt, sum_tol(dbm)), "dbeta");
    to::batchnorm_backward(xb, dyb, bn.gamma, saved, dxb, dgv, dbv, Device::Cpu, true);
    Vec dg2 = dg, db2 = dbt, dgm2 = dgm, dbm2 = dbm;
    for (int ch = 0; ch < c; ++ch) dg2[ch] *= 2, db2[ch] *= 2, dgm2[ch] *= 2, dbm2[ch] *= 2;
    EXPECT_MATCH(compare(dgv, dg2, [&](size_t k) { return 2e-5 * dgm2[k] + 1e-6; }),
                 "dgamma accumulate");
    EXPECT_MATCH(compare(dbv, db2, sum_tol(dbm2)), "dbeta accumulate");
    EXPECT_MATCH(compare(dxb, dx, scaled_tol(2e-5, dx.v)), "dx after accumulate (written)");
}

// ---- LayerNorm, GRN --------------------------------------------------------------------------

Act4 ln_forward(const Act4& x, const Vec& wt, const Vec& bs, double eps) {
    Act4 y = x;
    for (int i = 0; i < x.n; ++i)
        for (int yy = 0; yy < x.h; ++yy)
            for (int xx = 0; xx < x.w; ++xx) {
                double mean = 0, var = 0;
                for (int c = 0; c < x.c; ++c) mean += x.at(i, c, yy, xx);
                mean /= x.c;
                for (int c = 0; c < x.c; ++c) var += std::pow(x.at(i, c, yy, xx) - mean, 2);
                var /= x.c;
                for (int c = 0; c < x.c; ++c)
                    y.at(i, c, yy, xx) =
                        (x.at(i, c, yy, xx) - mean) / std::sqrt(var + eps) * wt[c] + bs[c];
            }
    return y;
}

TEST(TrainLayerNorm, BackwardMatchesAnalyticAndFiniteDifferences) {
    std::mt19937 g(120);
    const double eps = 1e-6;
    for (const Shape& sh : {Shape{2, 37, 3, 3}, Shape{3, 19, 1, 1}}) {
        const int n = int(sh[0]), c = int(sh[1]), h = int(sh[2]), w = int(sh[3]);
        const Act4 x = random_act(n, c, h, w, g, -1, 2), dy = random_act(n, c, h, w, g);
        const Vec wt = random_vec(c, 0.5, 1.5, g), bs = random_vec(c, -1, 1, g);
        // Per pixel: g = dy w, dx = rstd (g - mean_c g - x^ mean_c (g x^)); dw = sum dy x^,
        // db = sum dy.
        Act4 dx = zeros4(n, c, h, w);
        Vec dw(c, 0.0), dwm(c, 0.0), db(c, 0.0), dbm(c, 0.0);
        for (int i = 0; i < n; ++i)
            for (int yy = 0; yy < h; ++yy)
                for (int xx = 0; xx < w; ++xx) {
                    double mean = 0, var = 0;
                    for (int ch = 0; ch < c; ++ch) mean += x.at(i, ch, yy, xx);
                    mean /= c;
                    for (int ch = 0; ch < c; ++ch) var += std::pow(x.at(i, ch, yy, xx) - mean, 2);
                    var /= c;
                    const double rstd = 1 / std::sqrt(var + eps);
                    double mg = 0, mgx = 0;
                    for (int ch = 0; ch < c; ++ch) {
                        const double xh = (x.at(i, ch, yy, xx) - mean) * rstd;
                        const double gg = dy.at(i, ch, yy, xx) * wt[ch];
                        mg += gg / c;
                        mgx += gg * xh / c;
                        dw[ch] += dy.at(i, ch, yy, xx) * xh;
                        dwm[ch] += std::fabs(dy.at(i, ch, yy, xx) * xh);
                        db[ch] += dy.at(i, ch, yy, xx);
                        dbm[ch] += std::fabs(dy.at(i, ch, yy, xx));
                    }
                    for (int ch = 0; ch < c; ++ch) {
                        const double xh = (x.at(i, ch, yy, xx) - mean) * rstd;
                        dx.at(i, ch, yy, xx) =
                            rstd * (dy.at(i, ch, yy, xx) * wt[ch] - mg - xh * mgx);
                    }
                }
        const std::string what = shape_to_string(sh);
        expect_fd_match(dx.v,
                        fd_grad(
                            [&](const Vec& v) {
                                Act4 t = x;
                                t.v = v;
                                return ln_forward(t, wt, bs, eps).v;
                            },
                            x.v, dy.v),
                        "layer_norm dx " + what);
        const ops::LayerNormParams p =
            ops::pack_layer_norm(tensor_of(wt, {c}), tensor_of(bs, {c}), eps);
        const BlockedTensor xb = blocked(x), dyb = blocked(dy);
        BlockedTensor dxb = ops::make_blocked_tensor(n, c, h, w);
        ChannelVector dwv = to::make_channel_grad(c), dbv = to::make_channel_grad(c);
        to::layer_norm_backward(xb, p, dyb, dxb, dwv, dbv);
        // dx: 2e-5 of max |dx| (fp32 statistics over C, cancelling differences).
        EXPECT_MATCH(compare(dxb, dx, scaled_tol(2e-5, dx.v)), what + " dx");
        // dweight: sums of dy x^ with fp32 x^: 2e-5 * sum |terms| + 1e-6.
        EXPECT_MATCH(compare(dwv, dw, [&](size_t k) { return 2e-5 * dwm[k] + 1e-6; }),
                     what + " dweight");
        EXPECT_MATCH(compare(dbv, db, sum_tol(dbm)), what + " dbias");
        to::layer_norm_backward(xb, p, dyb, dxb, dwv, dbv, Device::Cpu, true);
        for (int ch = 0; ch < c; ++ch) dw[ch] *= 2, dwm[ch] *= 2, db[ch] *= 2, dbm[ch] *= 2;
        EXPECT_MATCH(compare(dwv, dw, [&](size_t k) { return 2e-5 * dwm[k] + 1e-6; }),
                     what + " dweight accumulate");
        EXPECT_MATCH(compare(dbv, db, sum_tol(dbm)), what + " dbias accumulate");
    }
}

// GRN: G = ||x[n, c]||_2 over H, W; Nx = G / (mean_c G + eps); y = (gamma Nx + 1) x + beta.
Act4 grn_forward(const Act4& x, const Vec& gamma, const Vec& beta, double eps) {
    Act4 y = x;
    for (int i = 0; i < x.n; ++i) {
        Vec G(x.c, 0.0);
        double mean = 0;
        for (int c = 0; c < x.c; ++c) {
            for (int yy = 0; yy < x.h; ++yy)
                for (int xx = 0; xx < x.w; ++xx) G[c] += x.at(i, c, yy, xx) * x.at(i, c, yy, xx);
            G[c] = std::sqrt(G[c]);
            mean += G[c] / x.c;
        }
        for (int c = 0; c < x.c; ++c)
            for (int yy = 0; yy < x.h; ++yy)
                for (int xx = 0; xx < x.w; ++xx)
                    y.at(i, c, yy, xx) =
                        (gamma[c] * G[c] / (mean + eps) + 1) * x.at(i, c, yy, xx) + beta[c];
    }
    return y;
}

TEST(TrainGrn, BackwardMatchesAnalyticAndFiniteDifferences) {
    std::mt19937 g(130);
    const int n = 2, c = 19, h = 3, w = 4;
    const double eps = 1e-6;
    const Act4 x = random_act(n, c, h, w, g), dy = random_act(n, c, h, w, g);
    const Vec gamma = random_vec(c, -1, 1, g), beta = random_vec(c, -1, 1, g);
    // With A = sum_p dy x, D = mean_c G + eps, T = sum_c gamma A G:
    // dx = (gamma Nx + 1) dy + x / G (gamma A / D - T / (C D^2)); dgamma = sum_n Nx A.
    Act4 dx = zeros4(n, c, h, w);
    Vec dg(c, 0.0), db(c, 0.0), dbm(c, 0.0);
    for (int i = 0; i < n; ++i) {
        Vec G(c, 0.0), A(c, 0.0);
        double mean = 0, T = 0;
        for (int ch = 0; ch < c; ++ch) {
            for (int yy = 0; yy < h; ++yy)
                for (int xx = 0; xx < w; ++xx) {
                    G[ch] += x.at(i, ch, yy, xx) * x.at(i, ch, yy, xx);
                    A[ch] += dy.at(i, ch, yy, xx) * x.at(i, ch, yy, xx);
                    db[ch] += dy.at(i, ch, yy, xx);
                    dbm[ch] += std::fabs(dy.at(i, ch, yy, xx));
                }
            G[ch] = std::sqrt(G[ch]);
            mean += G[ch] / c;
        }
        const double D = mean + eps;
        for (int ch = 0; ch < c; ++ch) T += gamma[ch] * A[ch] * G[ch];
        for (int ch = 0; ch < c; ++ch) {
            dg[ch] += G[ch] / D * A[ch];
            for (int yy = 0; yy < h; ++yy)
                for (int xx = 0; xx < w; ++xx)
                    dx.at(i, ch, yy, xx) =
                        (gamma[ch] * G[ch] / D + 1) * dy.at(i, ch, yy, xx) +
                        x.at(i, ch, yy, xx) / G[ch] * (gamma[ch] * A[ch] / D - T / (c * D * D));
        }
    }
    expect_fd_match(dx.v,
                    fd_grad(
                        [&](const Vec& v) {
                            Act4 t = x;
                            t.v = v;
                            return grn_forward(t, gamma, beta, eps).v;
                        },
                        x.v, dy.v),
                    "grn dx");
    expect_fd_match(
        dg, fd_grad([&](const Vec& gm) { return grn_forward(x, gm, beta, eps).v; }, gamma, dy.v),
        "grn dgamma");

    const Tensor bt = tensor_of(beta, {1, 1, 1, c});
    for (bool with_beta : {true, false}) {
        const ops::GrnParams p =
            ops::pack_grn(tensor_of(gamma, {1, 1, 1, c}), with_beta ? &bt : nullptr, eps);
        const BlockedTensor xb = blocked(x), dyb = blocked(dy);
        BlockedTensor dxb = ops::make_blocked_tensor(n, c, h, w);
        ChannelVector dgv = to::make_channel_grad(c), dbv = to::make_channel_grad(c);
        const std::string what = with_beta ? "with beta" : "without beta";
        to::grn_backward(xb, p, dyb, dxb, dgv, dbv);
        // dx: 2e-5 of max |dx|; dgamma: 2e-5 of max |dgamma| (fp32 norms and sums).
        EXPECT_MATCH(compare(dxb, dx, scaled_tol(2e-5, dx.v)), what + " dx");
        EXPECT_MATCH(compare(dgv, dg, scaled_tol(2e-5, dg)), what + " dgamma");
        EXPECT_MATCH(compare(dbv, db, sum_tol(dbm)), what + " dbeta");
        to::grn_backward(xb, p, dyb, dxb, dgv, dbv, Device::Cpu, true);
        Vec dg2 = dg, db2 = db, dbm2 = dbm;
        for (int ch = 0; ch < c; ++ch) dg2[ch] *= 2, db2[ch] *= 2, dbm2[ch] *= 2;
        EXPECT_MATCH(compare(dgv, dg2, scaled_tol(2e-5, dg2)), what + " dgamma accumulate");
        EXPECT_MATCH(compare(dbv, db2, sum_tol(dbm2)), what + " dbeta accumulate");
    }
}

// ---- Pooling and channel movement ------------------------------------------------------------

TEST(TrainPool, GlobalAvgPoolBackward) {
    std::mt19937 g(140);
    for (const Shape& s : {Shape{2, 37, 3, 5}, Shape{1, 19, 7, 7}, Shape{3, 21, 1, 1}}) {
        const int n = int(s[0]), c = int(s[1]), h = int(s[2]), w = int(s[3]);
        const Act4 dy = random_act(n, c, 1, 1, g);
        Act4 want = zeros4(n, c, h, w);
        for (int i = 0; i < n; ++i)
            for (int ch = 0; ch < c; ++ch)
                for (int y = 0; y < h; ++y)
                    for (int x = 0; x < w; ++x) want.at(i, ch, y, x) = dy.at(i, ch, 0, 0) / (h * w);
        const BlockedTensor dyb = blocked(dy);
        BlockedTensor dx = ops::make_blocked_tensor(n, c, h, w);
        to::global_avg_pool_backward(dyb, dx);
        // dy * fp32(1 / (H W)): two roundings.
        EXPECT_MATCH(compare(dx, want, [&](size_t k) { return 2.5e-7 * std::fabs(want.v[k]); }),
                     "avg pool backward " + shape_to_string(s));
    }
}

TEST(TrainChannels, SelectBackwardSumsRepeatedIndices) {
    std::mt19937 g(150);
    const int n = 2, c = 19, h = 3, w = 4;
    // K = 23 picks: channel 5 three times, 18 twice, channels 0, 7, 11 never.
    const std::vector<int32_t> index = {5,  3,  18, 5,  1,  2,  4, 6, 8, 9, 10, 12,
                                        13, 14, 15, 16, 17, 18, 5, 3, 2, 1, 9};
    const int K = int(index.size());
    Tensor it(DType::I32, {K});
    for (int k = 0; k < K; ++k) it.data<int32_t>()[k] = index[size_t(k)];
    const ops::ChannelIndex ci = ops::pack_channel_index(it, c);
    const to::ChannelSelectBackward sb = to::pack_channel_select_backward(ci);
    EXPECT_EQ(sb.in_channels, c);
    EXPECT_EQ(sb.out_channels, K);
    Act4 dy = zeros4(n, K, h, w);
    dy.v = random_ints(dy.size(), 3, g);
    Act4 want = zeros4(n, c, h, w);
    for (int i = 0; i < n; ++i)
        for (int k = 0; k < K; ++k)
            for (int y = 0; y < h; ++y)
                for (int x = 0; x < w; ++x) want.at(i, index[size_t(k)], y, x) += dy.at(i, k, y, x);
    const BlockedTensor dyb = blocked(dy);
    BlockedTensor dx = ops::make_blocked_tensor(n, c, h, w);
    to::channel_select_backward(dyb, sb, dx);
    // Small integers: exact.
    EXPECT_MATCH(compare(dx, want, nullptr), "select backward");
}

TEST(TrainChannels, SliceAndConcatBackward) {
    std::mt19937 g(160);
    const int n = 2, h = 3, w = 5;
    Act4 x = zeros4(n, 37, h, w);
    x.v = random_vec(x.size(), -1, 1, g);
    auto slice = [&](const Act4& src, int off, int cy) {
        Act4 y = zeros4(src.n, cy, src.h, src.w);
        for (int i = 0; i < src.n; ++i)
            for (int c = 0; c < cy; ++c)
                for (int yy = 0; yy < src.h; ++yy)
                    for (int xx = 0; xx < src.w; ++xx)
                        y.at(i, c, yy, xx) = src.at(i, off + c, yy, xx);
        return y;
    };
    const BlockedTensor xb = blocked(x);
    // Unaligned and aligned offsets; exact.
    for (const auto& [off, cy] :
         std::vector<std::pair<int, int>>{{5, 19}, {16, 21}, {0, 37}, {36, 1}, {3, 32}}) {
        BlockedTensor y = ops::make_blocked_tensor(n, cy, h, w);
        to::channel_slice(xb, off, y);
        EXPECT_MATCH(compare(y, slice(x, off, cy), nullptr),
                     "slice offset " + std::to_string(off) + " channels " + std::to_string(cy));
    }
    for (const auto& [ca, cb] : std::vector<std::pair<int, int>>{{19, 18}, {16, 21}, {1, 36}}) {
        BlockedTensor da = ops::make_blocked_tensor(n, ca, h, w),
                      db = ops::make_blocked_tensor(n, cb, h, w);
        to::concat_backward(xb, da, db);
        const std::string what = "concat " + std::to_string(ca) + " + " + std::to_string(cb);
        EXPECT_MATCH(compare(da, slice(x, 0, ca), nullptr), what + " da");
        EXPECT_MATCH(compare(db, slice(x, ca, cb), nullptr), what + " db");
    }
}

// ---- Softmax cross-entropy -------------------------------------------------------------------

struct XentRef {
    double loss = 0;
    int correct = 0;
    Vec grad;  // [N, K]
};
// target t = (1 - eps) onehot + eps / K; loss = mean_n (lse - sum_k t z); d = (p - t) / N.
XentRef xent_ref(const Vec& z, int n, int K, const std::vector<int32_t>& labels, double eps) {
    XentRef r;
    r.grad.assign(z.size(), 0.0);
    for (int i = 0; i < n; ++i) {
        const double* zi = &z[size_t(i) * K];
        double mx = zi[0];
        int arg = 0;
        for (int k = 1; k < K; ++k)
            if (zi[k] > mx) mx = zi[k], arg = k;
        double se = 0;
        for (int k = 0; k < K; ++k) se += std::exp(zi[k] - mx);
        const double lse = mx + std::log(se);
        for (int k = 0; k < K; ++k) {
            const double t = (k == labels[size_t(i)] ? 1 - eps : 0.0) + eps / K;
            r.loss += (lse - zi[k]) * t / n;
            r.grad[size_t(i) * K + k] = (std::exp(zi[k] - lse) - t) / n;
        }
        r.correct += arg == labels[size_t(i)];
    }
    return r;
}

TEST(TrainLoss, SoftmaxCrossEntropyWithLabelSmoothing) {
    std::mt19937 g(170);
    const int n = 5, K = 37;
    Vec z = random_vec(size_t(n) * K, -3, 3, g);
    std::vector<int32_t> labels = {3, 36, 0, 17, 20};
    // Row 0: the label is the max (correct). Row 1: a tie at 2 and 36, the first (2) wins,
    // label 36 is not correct. Row 4: a tie at 20 and 30, label 20 is correct.
    z[0 * K + 3] = 5;
    z[1 * K + 2] = 6;
    z[1 * K + 36] = 6;
    z[4 * K + 20] = 7;
    z[4 * K + 30] = 7;
    z[2 * K + 5] = 8;  // rows 2, 3: the label is not the max
    z[3 * K + 4] = 8;
    for (double eps : {0.0, 0.1}) {
        const XentRef r = xent_ref(z, n, K, labels, eps);
        // The hand-derived gradient vs finite differences of the double loss.
        const Vec fd = fd_grad(
            [&](const Vec& v) { return Vec{xent_ref(v, n, K, labels, eps).loss}; }, z, Vec{1.0});
        expect_fd_match(r.grad, fd, "xent eps " + std::to_string(eps));

        const std::string what = "smoothing " + std::to_string(eps);
        Act4 za = zeros4(n, K, 1, 1);
        za.v = z;
        const BlockedTensor zb = blocked(za);
        BlockedTensor dz = ops::make_blocked_tensor(n, K, 1, 1);
        const to::LossResult lr = to::softmax_cross_entropy(zb, labels, eps, dz);
        // loss: fp32 log-sum-exp, 1e-5 relative; gradient: 1e-6 / N absolute (p within 1e-6).
        EXPECT_NEAR(lr.loss, r.loss, 1e-5 * r.loss) << what;
        EXPECT_EQ(lr.correct, r.correct) << what;
        EXPECT_EQ(r.correct, 2);  // rows 0 and 4
        Act4 gw = zeros4(n, K, 1, 1);
        gw.v = r.grad;
        EXPECT_MATCH(compare(dz, gw, [&](size_t) { return 1e-6 / n; }), what + " dlogits");

        // Plain [N, K] tensors, with and without the gradient.
        Tensor dt;
        const to::LossResult lt = to::softmax_cross_entropy(tensor_of(z, {n, K}), labels, eps, &dt);
        EXPECT_NEAR(lt.loss, r.loss, 1e-5 * r.loss) << what << " tensor";
        EXPECT_EQ(lt.correct, r.correct);
        ASSERT_EQ(dt.shape(), (Shape{n, K}));
        for (size_t k = 0; k < r.grad.size(); ++k)
            ASSERT_NEAR(dt.data<float>()[k], r.grad[k], 1e-6 / n)
                << what << " tensor dlogits " << k;
        const to::LossResult ln =
            to::softmax_cross_entropy(tensor_of(z, {n, K}), labels, eps, nullptr);
        EXPECT_NEAR(ln.loss, r.loss, 1e-5 * r.loss);
    }
}

// ---- Optimizers ------------------------------------------------------------------------------

using Buf1 = Halide::Runtime::Buffer<float, 1>;
using Buf2 = Halide::Runtime::Buffer<float, 2>;

template <typename B>
Vec values(const B& b) {
    return Vec(b.data(), b.data() + b.number_of_elements());
}
template <typename B>
void set_values(B& b, const Vec& v) {
    for (size_t i = 0; i < v.size(); ++i) b.data()[i] = static_cast<float>(v[i]);
    b.set_host_dirty();
}

Tol opt_tol(const Vec& ref) {
    // A few fp32 roundings per step.
    return [&ref](size_t k) { return 1e-6 * std::fabs(ref[k]) + 1e-7; };
}

TEST(TrainOptim, AdamWTwoStepsBiasCorrectionDecoupledDecay) {
    std::mt19937 g(200);
    // A 2-D parameter (FlatRef over any rank) of 13 x 77 elements.
    const int a = 13, b = 77;
    const size_t numel = size_t(a) * b;
    Buf2 p(a, b), gr(a, b), m(a, b), v(a, b);
    const Vec p0 = random_vec(numel, -1, 1, g);
    set_values(p, p0);
    m.fill(0.0f);
    v.fill(0.0f);
    to::AdamWConfig c;
    c.lr = 1e-2;
    c.beta1 = 0.9;
    c.beta2 = 0.99;
    c.eps = 1e-8;
    c.weight_decay = 0.05;
    const double gs = 0.5;
    Vec rp = p0, rm(numel, 0.0), rv(numel, 0.0);
    for (int t = 1; t <= 3; ++t) {
        const Vec gv = random_vec(numel, -1, 1, g);
        set_values(gr, gv);
        to::adamw_step(p, gr, m, v, c, t, Device::Cpu, gs);
        // PyTorch AdamW: p *= 1 - lr wd; m, v; p -= lr / bc1 m / (sqrt(v) / sqrt(bc2) + eps).
        const double bc1 = 1 - std::pow(c.beta1, t), bc2 = 1 - std::pow(c.beta2, t);
        for (size_t k = 0; k < numel; ++k) {
            const double gg = gv[k] * gs;
            rp[k] *= 1 - c.lr * c.weight_decay;
            rm[k] = c.beta1 * rm[k] + (1 - c.beta1) * gg;
            rv[k] = c.beta2 * rv[k] + (1 - c.beta2) * gg * gg;
            rp[k] -= c.lr / bc1 * rm[k] / (std::sqrt(rv[k]) / std::sqrt(bc2) + c.eps);
        }
        const std::string what = "step " + std::to_string(t);
        // 1e-6 |ref| + 1e-7; the update is ~lr = 1e-2, so a missing bias correction or decay
        // is off by >= 5e-4.
        EXPECT_MATCH(compare_flat(p, rp, opt_tol(rp)), what + " param");
        EXPECT_MATCH(compare_flat(m, rm, opt_tol(rm)), what + " m");
        // v ~ 1e-3 g^2: relative only.
        EXPECT_MATCH(compare_flat(v, rv, [&](size_t k) { return 2e-6 * rv[k] + 1e-12; }),
                     what + " v");
    }
    // A ChannelVector parameter (its padded buffer as FlatRef), no weight decay.
    ChannelVector cp = channels_of(random_vec(19, -1, 1, g));
    ChannelVector cg = channels_of(random_vec(19, -1, 1, g));
    ChannelVector cm = to::make_channel_grad(19), cv = to::make_channel_grad(19);
    const std::vector<float> before = to::channel_values(cp), grad = to::channel_values(cg);
    to::AdamWConfig c1;
    c1.lr = 0.1;
    to::adamw_step(cp, cg, cm, cv, c1, 1);
    const std::vector<float> after = to::channel_values(cp);
    for (int k = 0; k < 19; ++k) {
        // Step 1: m / sqrt(v) after bias correction = g / (|g| + eps'), update lr sign(g).
        const double gg = grad[size_t(k)];
        const double want = before[size_t(k)] - c1.lr * gg / (std::fabs(gg) + c1.eps);
        EXPECT_NEAR(after[size_t(k)], want, 1e-6 * std::fabs(want) + 1e-7) << "channel " << k;
    }
    // Padding lanes stay zero (zero grad, zero param).
    EXPECT_MATCH(compare(cp, Vec(after.begin(), after.end()), nullptr), "channel param padding");
}

TEST(TrainOptim, SgdPlainMomentumDampeningNesterov) {
    struct S {
        to::SgdConfig c;
        const char* name;
    };
    std::vector<S> cases(4);
    cases[0] = {{0.1, 0.0, 0.0, 0.01, false}, "plain + wd"};
    cases[1] = {{0.1, 0.9, 0.0, 0.0, false}, "momentum"};
    cases[2] = {{0.05, 0.9, 0.2, 0.01, false}, "momentum + dampening + wd"};
    cases[3] = {{0.1, 0.9, 0.0, 0.02, true}, "nesterov + wd"};
    uint32_t seed = 210;
    for (const S& s : cases) {
        std::mt19937 g(seed++);
        const size_t numel = 1003;
        const int ne = static_cast<int>(numel);
        Buf1 p(ne), gr(ne), buf(ne);
        const Vec p0 = random_vec(numel, -1, 1, g);
        set_values(p, p0);
        buf.fill(7.0f);  // sentinel: never read on step 1; kept when momentum is 0
        const double gs = 0.25;
        Vec rp = p0, rb(numel, 7.0);
        for (int t = 1; t <= 3; ++t) {
            const Vec gv = random_vec(numel, -1, 1, g);
            set_values(gr, gv);
            to::sgd_step(p, gr, buf, s.c, t, Device::Cpu, gs);
            // PyTorch SGD: d = g + wd p; buf = d (step 1) or mu buf + (1 - damp) d;
            // d = d + mu buf (Nesterov) or buf; p -= lr d.
            for (size_t k = 0; k < numel; ++k) {
                double d = gv[k] * gs + s.c.weight_decay * rp[k];
                if (s.c.momentum != 0) {
                    rb[k] = t == 1 ? d : s.c.momentum * rb[k] + (1 - s.c.dampening) * d;
                    d = s.c.nesterov ? d + s.c.momentum * rb[k] : rb[k];
                }
                rp[k] -= s.c.lr * d;
            }
            const std::string what = std::string(s.name) + " step " + std::to_string(t);
            // 1e-6 |ref| + 1e-7.
            EXPECT_MATCH(compare_flat(p, rp, opt_tol(rp)), what + " param");
            EXPECT_MATCH(compare_flat(buf, rb, opt_tol(rb)), what + " buf");
        }
    }
}

TEST(TrainOptim, EmaAxpbyScaleZeroAccumulateMask) {
    std::mt19937 g(220);
    const int n = 517;
    const Vec e0 = random_vec(n, -1, 1, g), w0 = random_vec(n, -1, 1, g);
    Buf1 e(n), w(n);
    set_values(e, e0);
    set_values(w, w0);
    to::ema_update(e, w, 0.999);
    Vec want(n);
    for (int k = 0; k < n; ++k) want[k] = 0.999 * e0[k] + (1 - 0.999) * w0[k];
    // fp32 (1 - decay) has relative error 6e-5 on a 1e-3 weight: 1e-7 absolute.
    EXPECT_MATCH(
        compare_flat(e, want, [&](size_t k) { return 2.5e-7 * std::fabs(want[k]) + 1e-7; }), "ema");

    // y = a x + b y: two products and a sum, 1 ulp each of |a x| + |b y|.
    Buf1 y(n);
    set_values(y, e0);
    to::axpby(2.0, w, -0.5, y);
    for (int k = 0; k < n; ++k) want[k] = 2.0 * w0[k] - 0.5 * e0[k];
    auto ulp_tol = [&](double a, double b, const Vec& x, const Vec& yy) {
        return [a, b, &x, &yy](size_t k) {
            return 2.4e-7 * (std::fabs(a * x[k]) + std::fabs(b * yy[k]));
        };
    };
    EXPECT_MATCH(compare_flat(y, want, ulp_tol(2.0, -0.5, w0, e0)), "axpby");

    set_values(y, e0);
    to::scale_buffer(y, 3.0);
    for (int k = 0; k < n; ++k) want[k] = 3.0 * e0[k];
    EXPECT_MATCH(compare_flat(y, want, ulp_tol(0, 3.0, w0, e0)), "scale_buffer");

    // Zeroing a buffer holding NaN / inf gives zero; a zero factor never reads its operand.
    Vec junk(n);
    for (int k = 0; k < n; ++k)
        junk[k] = k % 3 == 0   ? std::numeric_limits<double>::quiet_NaN()
                  : k % 3 == 1 ? std::numeric_limits<double>::infinity()
                               : 5.0;
    set_values(y, junk);
    to::zero_buffer(y);
    EXPECT_MATCH(compare_flat(y, Vec(n, 0.0), nullptr), "zero_buffer over NaN");
    set_values(y, junk);
    to::axpby(1.5, w, 0.0, y);  // b = 0: y = 1.5 w even though y held NaN
    for (int k = 0; k < n; ++k) want[k] = 1.5 * w0[k];
    EXPECT_MATCH(compare_flat(y, want, ulp_tol(1.5, 0, w0, e0)), "axpby b = 0 over NaN");
    Buf1 nanx(n);
    set_values(nanx, junk);
    set_values(y, e0);
    to::axpby(0.0, nanx, 2.0, y);  // a = 0: x not read
    for (int k = 0; k < n; ++k) want[k] = 2.0 * e0[k];
    EXPECT_MATCH(compare_flat(y, want, ulp_tol(0, 2.0, w0, e0)), "axpby a = 0 with NaN x");

    // accumulate: acc += g (one rounding).
    Buf1 acc(n);
    set_values(acc, e0);
    to::accumulate(acc, w);
    for (int k = 0; k < n; ++k) want[k] = e0[k] + w0[k];
    EXPECT_MATCH(compare_flat(acc, want, ulp_tol(1, 1, w0, e0)), "accumulate");

    // mask_multiply: exact; 0 where the mask is 0 whatever w holds (NaN / inf included).
    Vec mask(n), wm = junk;
    for (int k = 0; k < n; ++k) {
        mask[k] = k % 3 == 2 && k % 5 != 0 ? 1.0 : 0.0;  // 0 over every NaN / inf and some finite w
        if (k % 3 == 2) wm[k] = w0[k];
    }
    Buf1 wb(n), mb(n);
    set_values(wb, wm);
    set_values(mb, mask);
    to::mask_multiply(wb, mb);
    for (int k = 0; k < n; ++k) want[k] = mask[k] != 0 ? wm[k] : 0.0;
    EXPECT_MATCH(compare_flat(wb, want, nullptr), "mask_multiply");
}

// ---- Bad inputs ------------------------------------------------------------------------------

TEST(TrainErrors, ShapeMismatchesThrowInvalidArgument) {
    const BlockedTensor x = ops::make_blocked_tensor(1, 19, 3, 3);
    const BlockedTensor dy37 = ops::make_blocked_tensor(1, 37, 3, 3);
    BlockedTensor dx = ops::make_blocked_tensor(1, 19, 3, 3);
    BlockedTensor dx_bad = ops::make_blocked_tensor(1, 20, 3, 3);
    const ops::PackedLinear wt = to::pack_linear_transposed(Tensor(DType::F32, {37, 19}));
    expect_invalid([&] { to::linear_backward_data(x, wt, dx); }, {"'dy'", "37"});
    expect_invalid([&] { to::linear_backward_data(dy37, wt, dx_bad); },
                   {"'dx'", "expected [1, 19, 3, 3]"});
    expect_invalid(
        [&] {
            to::pack_linear_transposed(Tensor(DType::F32, {37, 19, 3, 3}));
        },
        {"weight", "[37, 19, 3, 3]"});

    Halide::Runtime::Buffer<float, 3> dw_bad = to::make_linear_weight_grad(19, 16);
    expect_invalid([&] { to::linear_backward_weight(x, dy37, dw_bad, nullptr); },
                   {"'dweight'", "expected"});
    Halide::Runtime::Buffer<float, 3> dw = to::make_linear_weight_grad(19, 37);
    ChannelVector db_bad = to::make_channel_grad(36);
    expect_invalid([&] { to::linear_backward_weight(x, dy37, dw, &db_bad); },
                   {"'dbias'", "36", "37"});
    expect_invalid(
        [&] {
            to::linear_backward_weight(x, dy37, dw, nullptr, Device::Cpu, false, "no_such_kernel");
        },
        {"no_such_kernel"});
    const BlockedTensor dy_n2 = ops::make_blocked_tensor(2, 37, 3, 3);
    expect_invalid([&] { to::linear_backward_weight(x, dy_n2, dw, nullptr); },
                   {"'dy'", "[2, 37, 3, 3]"});

    const to::PackedConv2dBackward pc =
        to::pack_conv2d_backward(Tensor(DType::F32, {21, 19, 3, 3}), {1, 1, 1, 1, 1});
    const BlockedTensor dyc_bad = ops::make_blocked_tensor(1, 21, 2, 3);
    expect_invalid([&] { to::conv2d_backward(x, dyc_bad, pc, &dx, nullptr, nullptr); },
                   {"'dy'", "expected [1, 21, 3, 3]"});
    ops::ConvGeometry g3;
    g3.groups = 4;
    expect_invalid(
        [&] {
            to::pack_conv2d_backward(Tensor(DType::F32, {21, 5, 3, 3}), g3);
        },
        {"groups"});

    expect_invalid([&] { to::unary_backward(to::UnaryGrad::Gelu, x, x, dx_bad); }, {"'dx'"});
    const BlockedTensor b_bad = ops::make_blocked_tensor(1, 19, 2, 3);
    expect_invalid([&] { to::binary_backward(ops::Binary::Add, x, b_bad, x, &dx, nullptr); },
                   {"do not broadcast"});
    expect_invalid(
        [&] { to::affine_backward(x, ops::constant_channels(20, 1.0f), x, &dx, nullptr, nullptr); },
        {"'scale'", "20", "19"});

    to::BatchNormTrain bn =
        to::pack_batchnorm_train(Tensor(DType::F32, {19}), Tensor(DType::F32, {19}),
                                 Tensor(DType::F32, {19}), Tensor(DType::F32, {19}));
    to::BatchNormSaved saved = to::make_batchnorm_saved(19);
    const BlockedTensor one = ops::make_blocked_tensor(1, 19, 1, 1);
    BlockedTensor y1 = ops::make_blocked_tensor(1, 19, 1, 1);
    expect_invalid([&] { to::batchnorm_forward_train(one, bn, y1, saved); },
                   {"more than one value"});
    expect_invalid(
        [&] {
            to::pack_batchnorm_train(Tensor(DType::F32, {19}), Tensor(DType::F32, {18}),
                                     Tensor(DType::F32, {19}), Tensor(DType::F32, {19}));
        },
        {"bias", "[18]", "expected [19]"});

    BlockedTensor ys = ops::make_blocked_tensor(1, 10, 3, 3);
    expect_invalid([&] { to::channel_slice(x, 10, ys); }, {"[10, 20)", "out of range"});
    BlockedTensor da = ops::make_blocked_tensor(1, 10, 3, 3),
                  dbb = ops::make_blocked_tensor(1, 10, 3, 3);
    expect_invalid([&] { to::concat_backward(x, da, dbb); }, {"'dy'", "expected [1, 20, 3, 3]"});
    BlockedTensor pool_dx = ops::make_blocked_tensor(1, 20, 3, 3);
    expect_invalid(
        [&] { to::global_avg_pool_backward(ops::make_blocked_tensor(1, 19, 1, 1), pool_dx); },
        {"'dy'", "expected [1, 20, 1, 1]"});

    const BlockedTensor z = ops::make_blocked_tensor(2, 5, 1, 1);
    BlockedTensor dz = ops::make_blocked_tensor(2, 5, 1, 1);
    expect_invalid(
        [&] {
            to::softmax_cross_entropy(z, {0, 5}, 0.0, dz);
        },
        {"label 1 = 5", "[0, 5)"});
    expect_invalid([&] { to::softmax_cross_entropy(z, {0}, 0.0, dz); }, {"labels", "expected 2"});
    expect_invalid([&] { to::softmax_cross_entropy(z, {0, 1}, 1.5, dz); }, {"smoothing"});
    expect_invalid([&] { to::softmax_cross_entropy(x, {0}, 0.0, dx); }, {"'logits'"});

    Buf1 p(10), gr(11), m(10), v(10);
    expect_invalid([&] { to::adamw_step(p, gr, m, v, {}, 1); }, {"'grad'", "11", "expected 10"});
    expect_invalid([&] { to::adamw_step(p, p, m, v, {}, 0); }, {"step 0"});
    expect_invalid([&] { to::sgd_step(p, p, gr, {}, 1); }, {"'buf'", "11"});
    expect_invalid([&] { to::ema_update(p, gr, 0.9); }, {"'w'"});
    expect_invalid([&] { to::mask_multiply(p, gr); }, {"'mask'"});
    expect_invalid([&] { to::axpby(1, gr, 1, p); }, {"'x'"});
}

}  // namespace
}  // namespace lkc::test
