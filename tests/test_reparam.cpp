// Re-parameterisation (runtime/reparam.h) proven by running both forms with the double references
// on random data stored in F32 tensors: the training form (branches, BNs, shift-wise maps) and the
// merged inference conv must agree within 1e-5 of the per-element sum of |terms|.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/op_inputs.h"
#include "runtime/reference_dwconv.h"
#include "runtime/reference_ops.h"
#include "runtime/reparam.h"

namespace lkc {
namespace reparam {
namespace {

using Vec = std::vector<double>;
constexpr double kRel = 1e-5;

Tensor random_tensor(std::mt19937& rng, const Shape& shape, float lo = -1.0f, float hi = 1.0f) {
    Tensor t(DType::F32, shape);
    std::uniform_real_distribution<float> d(lo, hi);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = d(rng);
    return t;
}

Tensor f32(const Shape& shape, const Vec& v) {
    Tensor t(DType::F32, shape);
    std::copy(v.begin(), v.end(), t.data<float>());
    return t;
}

Vec vec(const Tensor& t, bool absolute = false) {
    Vec v(t.data<float>(), t.data<float>() + t.numel());
    if (absolute)
        for (double& e : v) e = std::fabs(e);
    return v;
}

BatchNorm random_bn(std::mt19937& rng, int64_t c) {
    BatchNorm bn;
    bn.gamma = random_tensor(rng, {c}, -2.0f, 2.0f);
    bn.beta = random_tensor(rng, {c});
    bn.mean = random_tensor(rng, {c});
    bn.var = random_tensor(rng, {c}, 0.1f, 2.0f);
    return bn;
}

struct Dims {
    int n, c, h, w;
};

// A value and its sum of |terms|, per element.
struct Result {
    Vec y, abs;
    void add(const Result& o) {
        if (y.empty()) {
            *this = o;
            return;
        }
        for (size_t i = 0; i < y.size(); ++i) y[i] += o.y[i], abs[i] += o.abs[i];
    }
};

// "Same" DW conv, stride 1.
Result conv(const Tensor& x, const Tensor& w, const Tensor& b, const Dims& d, int dilation = 1) {
    const int kh = int(w.dim(2)), kw = int(w.dim(3));
    Result r;
    r.y = ref::dwconv_fwd(vec(x), vec(w), b.empty() ? Vec{} : vec(b), d.n, d.c, d.h, d.w, kh, kw, 1,
                          dilation);
    r.abs = ref::dwconv_fwd(vec(x, true), vec(w, true), b.empty() ? Vec{} : vec(b, true), d.n, d.c,
                            d.h, d.w, kh, kw, 1, dilation);
    return r;
}

// BN(conv(x, w) + b) computed in the training form: (y - mean) * t + beta.
Result conv_bn(const Tensor& x, const Tensor& w, const Tensor& b, const BatchNorm& bn,
               const Dims& d, int dilation = 1) {
    Result r = conv(x, w, b, d, dilation);
    const Vec g = vec(bn.gamma), be = vec(bn.beta), m = vec(bn.mean), v = vec(bn.var);
    const size_t plane = size_t(d.h) * d.w;
    for (size_t i = 0; i < r.y.size(); ++i) {
        const size_t c = i / plane % size_t(d.c);
        const double t = g[c] / std::sqrt(v[c] + bn.eps);
        r.y[i] = (r.y[i] - m[c]) * t + be[c];
        r.abs[i] = (r.abs[i] + std::fabs(m[c])) * std::fabs(t) + std::fabs(be[c]);
    }
    return r;
}

void expect_same(const Result& train, const Result& infer, const std::string& what) {
    ASSERT_EQ(train.y.size(), infer.y.size()) << what;
    double worst = 0, scale = 0;
    for (size_t i = 0; i < train.y.size(); ++i) {
        const double tol = kRel * (train.abs[i] + infer.abs[i]) + 1e-30;
        ASSERT_LE(std::fabs(train.y[i] - infer.y[i]), tol)
            << what << " at " << i << ": " << train.y[i] << " vs " << infer.y[i];
        worst = std::max(worst, std::fabs(train.y[i] - infer.y[i]));
        scale = std::max(scale, train.abs[i]);
    }
    EXPECT_GT(scale, 0.5) << what << ": the test sees mostly zeros";
}

template <typename F>
void expect_error(F f, const std::vector<std::string>& parts) {
    try {
        f();
    } catch (const std::invalid_argument& e) {
        const std::string msg = e.what();
        for (const std::string& p : parts) {
            EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nmissing: " << p;
        }
        return;
    }
    ADD_FAILURE() << "no std::invalid_argument thrown";
}

// ---------------------------------------------------------------------------------------------
// BN folding, padding, dilation

TEST(Reparam, FoldBnHandComputed) {
    // t = gamma / sqrt(var + eps) = {2/sqrt(4), 3/sqrt(1)} = {1, 3} with eps = 1.
    BatchNorm bn{f32({2}, {2, 3}), f32({2}, {0.5, 0}), f32({2}, {1, -1}), f32({2}, {3, 0}), 1.0};
    ConvParams p = fold_bn(f32({2, 2}, {1, 2, 3, 4}), f32({2}, {2, 1}), bn);
    EXPECT_EQ(vec(p.w), (Vec{1, 2, 9, 12}));
    EXPECT_EQ(p.w.shape(), (Shape{2, 2}));
    EXPECT_EQ(vec(p.b), (Vec{1.5, 6}));           // beta + (b - mean) * t
    p = fold_bn(f32({2}, {1, 1}), Tensor(), bn);  // rank 1, no bias
    EXPECT_EQ(vec(p.w), (Vec{1, 3}));
    EXPECT_EQ(vec(p.b), (Vec{-0.5, 3}));
}

TEST(Reparam, FoldBnMatchesConvThenBn) {
    std::mt19937 rng(1);
    const Dims d{2, 5, 9, 8};
    const Tensor x = random_tensor(rng, {2, 5, 9, 8});
    for (bool bias : {false, true}) {
        const Tensor w = random_tensor(rng, {5, 1, 5, 3});
        const Tensor b = bias ? random_tensor(rng, {5}) : Tensor();
        const BatchNorm bn = random_bn(rng, 5);
        const ConvParams p = fold_bn(w, b, bn);
        expect_same(conv_bn(x, w, b, bn, d), conv(x, p.w, p.b, d), bias ? "bias" : "no bias");
    }
}

TEST(Reparam, PadCenteredAndDilate) {
    const Tensor w = f32({1, 1, 1, 3}, {1, 2, 3});
    EXPECT_EQ(vec(pad_centered(w, 3, 5)), (Vec{0, 0, 0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0}));
    const Tensor k = f32({1, 1, 3, 1}, {1, 2, 3});
    const Tensor kd = dilate(k, 3);
    EXPECT_EQ(kd.shape(), (Shape{1, 1, 7, 1}));
    EXPECT_EQ(vec(kd), (Vec{1, 0, 0, 2, 0, 0, 3}));
    EXPECT_EQ(vec(dilate(k, 1)), vec(k));
}

// RepLKNet: BN_L(DW_31(x)) + BN_S(DW_5(x)) -> one 31x31 conv + bias.
TEST(Reparam, RepLKNetSmallKernelInto31) {
    std::mt19937 rng(2);
    const Dims d{1, 3, 12, 11};
    const Tensor x = random_tensor(rng, {1, 3, 12, 11});
    const Tensor wl = random_tensor(rng, {3, 1, 31, 31}), ws = random_tensor(rng, {3, 1, 5, 5});
    const BatchNorm bl = random_bn(rng, 3), bs = random_bn(rng, 3);
    Result train = conv_bn(x, wl, Tensor(), bl, d);
    train.add(conv_bn(x, ws, Tensor(), bs, d));

    const ConvParams l = fold_bn(wl, Tensor(), bl), s = fold_bn(ws, Tensor(), bs);
    // By hand: W = W_L' + pad(W_S'), b = b_L' + b_S'.
    Vec w = vec(l.w);
    const Vec ps = vec(pad_centered(s.w, 31, 31));
    for (size_t i = 0; i < w.size(); ++i) w[i] += ps[i];
    Vec b = vec(l.b);
    for (size_t c = 0; c < 3; ++c) b[c] += vec(s.b)[c];
    expect_same(train, conv(x, f32({3, 1, 31, 31}, w), f32({3}, b), d), "pad_centered");
    // And with merge_branches.
    const ConvParams m = merge_branches({{l.w, l.b, 1}, {s.w, s.b, 1}});
    EXPECT_EQ(m.w.shape(), (Shape{3, 1, 31, 31}));
    expect_same(train, conv(x, m.w, m.b, d), "merge_branches");
}

TEST(Reparam, Dilated3x3Rate3IsDense7x7) {
    std::mt19937 rng(3);
    const Dims d{2, 3, 10, 9};
    const Tensor x = random_tensor(rng, {2, 3, 10, 9}), w = random_tensor(rng, {3, 1, 3, 3}),
                 b = random_tensor(rng, {3});
    const Tensor dense = dilate(w, 3);
    EXPECT_EQ(dense.shape(), (Shape{3, 1, 7, 7}));
    expect_same(conv(x, w, b, d, 3), conv(x, dense, b, d), "dilate");
}

// UniRepLKNet DRB, K = 13: BN0(DW_13(x)) + sum_b BN_b(DW_{k_b, r_b}(x)), k 5,7,3,3,3, r 1..5.
TEST(Reparam, UniRepLKNetDilatedReparamBlock) {
    std::mt19937 rng(4);
    const Dims d{2, 7, 16, 15};
    const Tensor x = random_tensor(rng, {2, 7, 16, 15});
    const int ks[] = {5, 7, 3, 3, 3}, rs[] = {1, 2, 3, 4, 5};
    const Tensor w0 = random_tensor(rng, {7, 1, 13, 13});
    const BatchNorm bn0 = random_bn(rng, 7);
    Result train = conv_bn(x, w0, Tensor(), bn0, d);
    const ConvParams f0 = fold_bn(w0, Tensor(), bn0);
    std::vector<Branch> branches = {{f0.w, f0.b, 1}};
    for (int i = 0; i < 5; ++i) {
        const Tensor wb = random_tensor(rng, {7, 1, ks[i], ks[i]});
        const BatchNorm bn = random_bn(rng, 7);
        train.add(conv_bn(x, wb, Tensor(), bn, d, rs[i]));
        const ConvParams f = fold_bn(wb, Tensor(), bn);
        branches.push_back({f.w, f.b, rs[i]});
    }
    const ConvParams m = merge_branches(branches);
    EXPECT_EQ(m.w.shape(), (Shape{7, 1, 13, 13}));
    expect_same(train, conv(x, m.w, m.b, d), "DRB K=13");
}

// SLaK: BN(DW_KxN) + BN(DW_NxK) + BN(DW_NxN) -> one KxK cross-shaped kernel.
void check_slak(int K, int N, const Dims& d, uint32_t seed) {
    std::mt19937 rng(seed);
    const Tensor x = random_tensor(rng, {d.n, d.c, d.h, d.w});
    const int shapes[3][2] = {{K, N}, {N, K}, {N, N}};
    Result train;
    std::vector<Branch> branches;
    for (const auto& s : shapes) {
        const Tensor w = random_tensor(rng, {d.c, 1, s[0], s[1]});
        const BatchNorm bn = random_bn(rng, d.c);
        train.add(conv_bn(x, w, Tensor(), bn, d));
        const ConvParams f = fold_bn(w, Tensor(), bn);
        branches.push_back({f.w, f.b, 1});
    }
    const ConvParams m = merge_branches(branches);
    EXPECT_EQ(m.w.shape(), (Shape{d.c, 1, K, K}));
    // Cross-shaped: zero outside the two strips.
    const Vec mw = vec(m.w);
    const int lo = (K - N) / 2, hi = lo + N;
    for (int c = 0; c < d.c; ++c)
        for (int u = 0; u < K; ++u)
            for (int v = 0; v < K; ++v) {
                const bool in_cross = (u >= lo && u < hi) || (v >= lo && v < hi);
                if (!in_cross) {
                    EXPECT_EQ(mw[(size_t(c) * K + u) * K + v], 0.0);
                }
            }
    expect_same(train, conv(x, m.w, m.b, d), "SLaK " + std::to_string(K));
}

TEST(Reparam, SLaKDecomposed15x3) { check_slak(15, 3, {2, 5, 11, 13}, 5); }
TEST(Reparam, SLaKDecomposed51x5) { check_slak(51, 5, {1, 3, 20, 18}, 6); }

// ---------------------------------------------------------------------------------------------
// Shift-wise

// y[n,c,i,t] = sum_{u,v} k[c,0,u,v] * x[n,c, i+u+row0, t+v+col0], zero outside the image.
Result offset_conv(const Tensor& x, const Tensor& k, int row0, int col0) {
    const int64_t N = x.dim(0), C = x.dim(1), H = x.dim(2), W = x.dim(3), kh = k.dim(2),
                  kw = k.dim(3);
    const Vec xv = vec(x), kv = vec(k);
    Result r{Vec(xv.size(), 0.0), Vec(xv.size(), 0.0)};
    for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < H; ++i)
                for (int64_t t = 0; t < W; ++t) {
                    const size_t yi = size_t(((n * C + c) * H + i) * W + t);
                    for (int64_t u = 0; u < kh; ++u)
                        for (int64_t v = 0; v < kw; ++v) {
                            const int64_t p = i + u + row0, q = t + v + col0;
                            if (p < 0 || p >= H || q < 0 || q >= W) continue;
                            const double a = kv[size_t((c * kh + u) * kw + v)],
                                         b = xv[size_t(((n * C + c) * H + p) * W + q)];
                            r.y[yi] += a * b;
                            r.abs[yi] += std::fabs(a * b);
                        }
                }
    return r;
}

struct SwCase {
    int K, k, G;
};

std::vector<SwCase> sw_cases() {
    std::vector<SwCase> cases;
    for (int K : {13, 51, 7, 3})
        for (int k : {3, 5})
            for (int G : {1, 4})
                if (k <= K) cases.push_back({K, k, G});
    return cases;
}

std::string sw_workload(const SwCase& s, const Dims& d) {
    return "shiftwise:fwd:n" + std::to_string(d.n) + "c" + std::to_string(d.c) + "h" +
           std::to_string(d.h) + "w" + std::to_string(d.w) + ":K" + std::to_string(s.K) + "k" +
           std::to_string(s.k) + "g" + std::to_string(s.G);
}

TEST(Reparam, ShiftwiseEquivalentMatchesLiteralReference) {
    const Dims d{2, 3, 9, 11};
    for (const SwCase& s : sw_cases()) {
        const std::string name = sw_workload(s, d);
        const Workload w = parse_workload(name);
        const std::map<std::string, Tensor> in = make_example_inputs(w, 100 + s.K + s.k + s.G);
        const auto lit = ref::op_reference(w, in), lit_abs = ref::op_reference(w, in, true);
        const ShiftwiseKernels e =
            shiftwise_equivalent(in.at("w"), in.at("slot_h"), in.at("slot_v"), in.at("ident"), s.K);
        const int64_t L = int64_t(w.num_sub_kernels()) * s.k, h = (s.k - 1) / 2, mid = s.K / 2;
        EXPECT_EQ(e.wh.shape(), (Shape{3, 1, s.k, L})) << name;
        EXPECT_EQ(e.wv.shape(), (Shape{3, 1, L, s.k})) << name;
        EXPECT_EQ(e.ws.shape(), (Shape{3, 1, s.k, s.k})) << name;
        EXPECT_EQ(e.wh_row0, -h);
        EXPECT_EQ(e.wh_col0, -mid);
        EXPECT_EQ(e.wv_row0, -mid);
        EXPECT_EQ(e.wv_col0, -h);
        EXPECT_EQ(e.ws_row0, -h);
        EXPECT_EQ(e.ws_col0, -h);
        const Result eh = offset_conv(in.at("x"), e.wh, e.wh_row0, e.wh_col0);
        const Result ev = offset_conv(in.at("x"), e.wv, e.wv_row0, e.wv_col0);
        const Result es = offset_conv(in.at("x"), e.ws, e.ws_row0, e.ws_col0);
        expect_same({lit.at("yh"), lit_abs.at("yh")}, eh, name + " yh");
        expect_same({lit.at("yv"), lit_abs.at("yv")}, ev, name + " yv");
        expect_same({lit.at("ys"), lit_abs.at("ys")}, es, name + " ys");
    }
}

TEST(Reparam, ShiftwiseToCrossMatchesFusedOp) {
    const Dims d{1, 3, 9, 11};
    for (const SwCase& s : sw_cases()) {
        const std::string name = sw_workload(s, d);
        const Workload w = parse_workload(name);
        const std::map<std::string, Tensor> in =
            make_example_inputs(w, 200 + s.K + s.k + s.G, false, 0.5, true);
        const auto lit = ref::op_reference(w, in), lit_abs = ref::op_reference(w, in, true);
        const ConvParams p =
            shiftwise_to_cross(in.at("w"), in.at("slot_h"), in.at("slot_v"), in.at("ident"), s.K,
                               in.at("ah"), in.at("av"), in.at("as"), in.at("b"));
        const int L = w.num_sub_kernels() * s.k, mid = s.K / 2;
        const int S = 2 * std::max(mid, L - 1 - mid) + 1;
        EXPECT_EQ(p.w.shape(), (Shape{3, 1, S, S})) << name;
        expect_same({lit.at("y"), lit_abs.at("y")}, conv(in.at("x"), p.w, p.b, d), name);
    }
    // K = 13, k = 3: nk*k = 15 covers offsets -6..+8, so S = 17; K = 51, k = 5: 55 -> S = 59.
    const Workload w = parse_workload("shiftwise:fwd:n1c1h3w3:K13k3g1");
    const auto in = make_example_inputs(w, 1, false, 0.5, true);
    EXPECT_EQ(shiftwise_to_cross(in.at("w"), in.at("slot_h"), in.at("slot_v"), in.at("ident"), 13,
                                 in.at("ah"), in.at("av"), in.at("as"), in.at("b"))
                  .w.dim(2),
              17);
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST(Reparam, Errors) {
    std::mt19937 rng(9);
    const Tensor w33 = random_tensor(rng, {2, 1, 3, 3});
    expect_error([&] { pad_centered(w33, 1, 5); }, {"pad_centered", "1x5", "smaller", "3x3"});
    expect_error([&] { pad_centered(w33, 4, 5); }, {"pad_centered", "4x5", "odd"});
    expect_error(
        [&] {
            pad_centered(random_tensor(rng, {2, 1, 2, 3}), 4, 5);
        },
        {"'w'", "[2, 1, 2, 3]", "odd"});
    expect_error(
        [&] {
            pad_centered(random_tensor(rng, {2, 2, 3, 3}), 5, 5);
        },
        {"'w'", "[2, 2, 3, 3]", "[C, 1, Kh, Kw]"});
    expect_error([&] { dilate(w33, 0); }, {"dilate", "dilation 0"});
    expect_error([&] { pad_centered(Tensor(DType::F16, {2, 1, 3, 3}), 5, 5); }, {"'w'", "F16"});

    BatchNorm bn = random_bn(rng, 2);
    expect_error([&] { fold_bn(w33, random_tensor(rng, {3}), bn); }, {"'b'", "[3]", "[2]"});
    bn.var = f32({2}, {1, -1});
    bn.eps = 0.5;
    expect_error([&] { fold_bn(w33, Tensor(), bn); }, {"bn.var[1]", "positive"});
    bn = random_bn(rng, 3);
    expect_error([&] { fold_bn(w33, Tensor(), bn); }, {"'bn.gamma'", "[3]", "[2]"});

    expect_error([] { merge_branches({}); }, {"merge_branches", "no branches"});
    expect_error(
        [&] {
            merge_branches({{w33, Tensor(), 1}, {random_tensor(rng, {3, 1, 5, 5}), Tensor(), 1}});
        },
        {"branches[1].w", "[3, 1, 5, 5]", "2 channels"});
    expect_error(
        [&] {
            merge_branches({{w33, Tensor(), 1}, {w33, Tensor(), 0}});
        },
        {"branches[1].dilation = 0"});
    expect_error(
        [&] {
            merge_branches({{w33, random_tensor(rng, {5}), 1}});
        },
        {"branches[0].b", "[5]", "[2]"});

    const Workload w = parse_workload("shiftwise:fwd:n1c2h3w3:K13k3g2");  // nk = 5
    const auto in = make_example_inputs(w, 3, false, 0.5, true);
    const Tensor& sh = in.at("slot_h");
    const Tensor& sv = in.at("slot_v");
    const Tensor& id = in.at("ident");
    expect_error(
        [&] {
            shiftwise_equivalent(random_tensor(rng, {2, 4, 3, 3}), sh, sv, id, 13);
        },
        {"'w'", "[2, 4, 3, 3]", "[2, 5, 3, 3]", "ceil(13/3)"});
    expect_error([&] { shiftwise_equivalent(in.at("w"), sh, sv, id, 14); }, {"big_k=14", "even"});
    expect_error(
        [&] {
            shiftwise_equivalent(random_tensor(rng, {2, 1, 5, 5}), sh, sv, id, 3);
        },
        {"big_k=3", "k=5"});
    Tensor bad(DType::I32, {2, 2, 5});  // all zeros: not a permutation
    expect_error([&] { shiftwise_equivalent(in.at("w"), bad, sv, id, 13); },
                 {"slot_h[g=0,c=0]", "repeated"});
    expect_error(
        [&] {
            shiftwise_equivalent(in.at("w"), Tensor(DType::I32, {2, 5}), sv, id, 13);
        },
        {"'slot_h'", "[G, C, nk]"});
    expect_error(
        [&] {
            shiftwise_to_cross(in.at("w"), sh, sv, id, 13, in.at("ah"), in.at("av"),
                               random_tensor(rng, {3}), in.at("b"));
        },
        {"shiftwise_to_cross", "'as'", "[3]", "[2]"});
}

}  // namespace
}  // namespace reparam
}  // namespace lkc
