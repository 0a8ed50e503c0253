// The double-precision depth-wise conv reference: hand-computed cases, adjointness of the data
// and weight gradients, the rotated-kernel identity at stride 1, and central finite differences.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/reference_dwconv.h"

namespace lkc {
namespace ref {
namespace {

using Vec = std::vector<double>;

struct Shape {
    int n, c, h, w, kh, kw, s, d;
    int oh() const { return (h + s - 1) / s; }
    int ow() const { return (w + s - 1) / s; }
    size_t x_size() const { return size_t(n) * c * h * w; }
    size_t y_size() const { return size_t(n) * c * oh() * ow(); }
    size_t w_size() const { return size_t(c) * kh * kw; }
    std::string str() const {
        return "n" + std::to_string(n) + "c" + std::to_string(c) + "h" + std::to_string(h) + "w" +
               std::to_string(w) + " k" + std::to_string(kh) + "x" + std::to_string(kw) + " s" +
               std::to_string(s) + " d" + std::to_string(d);
    }
};

Vec random_vec(std::mt19937& rng, size_t len) {
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    Vec v(len);
    for (double& e : v) e = dist(rng);
    return v;
}

double dot(const Vec& a, const Vec& b) {
    EXPECT_EQ(a.size(), b.size());
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
}

double max_abs(const Vec& v) {
    double m = 0;
    for (double e : v) m = std::max(m, std::abs(e));
    return m;
}

Vec fwd(const Vec& x, const Vec& w, const Vec& b, const Shape& p) {
    return dwconv_fwd(x, w, b, p.n, p.c, p.h, p.w, p.kh, p.kw, p.s, p.d);
}

// Fixed shapes covering stride 2, dilation 2/3, rectangular kernels, kernels larger than the map,
// odd and even map sizes.
const Shape kShapes[] = {
    {1, 1, 5, 5, 3, 3, 1, 1},   {2, 3, 7, 6, 5, 3, 2, 1},   {1, 2, 9, 8, 3, 3, 2, 2},
    {2, 2, 8, 9, 3, 5, 2, 3},   {1, 2, 6, 7, 7, 7, 1, 2},   {1, 3, 11, 10, 5, 5, 1, 3},
    {2, 1, 4, 5, 13, 11, 2, 1}, {1, 2, 5, 16, 3, 31, 1, 1}, {1, 1, 12, 3, 9, 1, 2, 3},
    {1, 1, 1, 1, 3, 3, 2, 2},
};

// ---------------------------------------------------------------------------------------------
// Hand-computed cases

// One channel, 3x3 map, 3x3 kernel, bias 10.
//   x = 1 2 3     w =  1 0  2
//       4 5 6          0 1  0
//       7 8 9          3 0 -1
// Stride 1, d 1 (ph = pw = 1): y[i,j] = 10 + x(i-1,j-1) + 2 x(i-1,j+1) + x(i,j) + 3 x(i+1,j-1)
//                                        - x(i+1,j+1), zero outside:
//   y[0,0] = 10 + 1 - 5            = 6     y[0,1] = 10 + 2 + 3*4 - 6       = 18
//   y[0,2] = 10 + 3 + 3*5          = 28    y[1,0] = 10 + 2*2 + 4 - 8       = 10
//   y[1,1] = 10 + 1 + 2*3 + 5 + 3*7 - 9 = 34   y[1,2] = 10 + 2 + 6 + 3*8   = 42
//   y[2,0] = 10 + 2*5 + 7          = 27    y[2,1] = 10 + 4 + 2*6 + 8       = 34
//   y[2,2] = 10 + 5 + 9            = 24
// Stride 2 keeps outputs (0,0) (0,2) (2,0) (2,2): 6 28 27 24.
// Dilation 2 (ph = pw = 2): taps at offsets (-2,-2) (-2,+2) (0,0) (+2,-2) (+2,+2):
//   y[0,0] = 10 + 1 - 9 = 2     y[0,2] = 10 + 3 + 3*7 = 34   y[2,0] = 10 + 7 + 2*3 = 23
//   y[2,2] = 10 + 9 + 1 = 20    the others see only the centre tap: 10 + x(i,j).
const Vec kHandX = {1, 2, 3, 4, 5, 6, 7, 8, 9};
const Vec kHandW = {1, 0, 2, 0, 1, 0, 3, 0, -1};
const Vec kHandB = {10};

TEST(Reference, ForwardHandComputed) {
    EXPECT_EQ(dwconv_fwd(kHandX, kHandW, kHandB, 1, 1, 3, 3, 3, 3, 1, 1),
              (Vec{6, 18, 28, 10, 34, 42, 27, 34, 24}));
    EXPECT_EQ(dwconv_fwd(kHandX, kHandW, kHandB, 1, 1, 3, 3, 3, 3, 2, 1), (Vec{6, 28, 27, 24}));
    EXPECT_EQ(dwconv_fwd(kHandX, kHandW, kHandB, 1, 1, 3, 3, 3, 3, 1, 2),
              (Vec{2, 12, 34, 14, 15, 16, 23, 18, 20}));
    // No bias: everything 10 lower.
    EXPECT_EQ(dwconv_fwd(kHandX, kHandW, {}, 1, 1, 3, 3, 3, 3, 1, 1),
              (Vec{-4, 8, 18, 0, 24, 32, 17, 24, 14}));
}

TEST(Reference, BackwardHandComputed) {
    const Vec ones(9, 1.0);
    // dy = 1 everywhere, stride 1: dw[u,v] sums x over the window shifted by (u-1, v-1):
    //   dw[0,0] = 1+2+4+5 = 12, dw[0,1] = 1+..+6 = 21, dw[0,2] = 2+3+5+6 = 16,
    //   dw[1,0] = 1+2+4+5+7+8 = 27, dw[1,1] = 45, dw[1,2] = 2+3+5+6+8+9 = 33,
    //   dw[2,0] = 4+5+7+8 = 24, dw[2,1] = 4+..+9 = 39, dw[2,2] = 5+6+8+9 = 28; db = 9.
    Vec dw, db;
    dwconv_bwd_weight(kHandX, ones, 1, 1, 3, 3, 3, 3, 1, 1, &dw, &db);
    EXPECT_EQ(dw, (Vec{12, 21, 16, 27, 45, 33, 24, 39, 28}));
    EXPECT_EQ(db, (Vec{9}));
    // dx[r,q] sums the taps (u,v) whose output (r+1-u, q+1-v) exists:
    //   corners: dx[0,0] = w00+w11 = 2, dx[0,2] = w02+w11 = 3, dx[2,0] = w11+w20 = 4,
    //            dx[2,2] = w11+w22 = 0; edges: dx[0,1] = w00+w02+w11 = 4,
    //            dx[1,0] = w00+w11+w20 = 5, dx[1,2] = w02+w11+w22 = 2, dx[2,1] = w11+w20+w22 = 3;
    //   centre: dx[1,1] = sum w = 6.
    EXPECT_EQ(dwconv_bwd_data(ones, kHandW, 1, 1, 3, 3, 3, 3, 1, 1),
              (Vec{2, 4, 3, 5, 6, 2, 4, 3, 0}));
    // Stride 2 (2x2 outputs), dy = 1 2 / 3 4. Tap (u,v) of output (i,j) reads x(2i+u-1, 2j+v-1),
    // so input row 0 gets (i,u) = (0,1); row 1 gets (0,2) and (1,0); row 2 gets (1,1); same for
    // columns. dx[r,q] = sum of w[u,v] * dy[i,j] over those pairs:
    //   dx[0,0] = w11*1 = 1, dx[0,2] = w11*2 = 2, dx[2,0] = w11*3 = 3, dx[2,2] = w11*4 = 4,
    //   dx[1,1] = w22*1 + w20*2 + w02*3 + w00*4 = -1 + 6 + 6 + 4 = 15,
    //   dx[0,1] = w12*1 + w10*2 = 0, dx[1,0] = w21*1 + w01*3 = 0, and likewise 0 at (1,2), (2,1).
    EXPECT_EQ(dwconv_bwd_data({1, 2, 3, 4}, kHandW, 1, 1, 3, 3, 3, 3, 2, 1),
              (Vec{1, 0, 2, 0, 15, 0, 3, 0, 4}));
}

// ---------------------------------------------------------------------------------------------
// Adjointness: <fwd(x), dy> = <x, bwd_data(dy)> and <fwd_w(w), dy> = <w, dw> + <b, db>

void check_adjoint(const Shape& p, std::mt19937& rng) {
    SCOPED_TRACE(p.str());
    const Vec x = random_vec(rng, p.x_size());
    const Vec w = random_vec(rng, p.w_size());
    const Vec b = random_vec(rng, size_t(p.c));
    const Vec dy = random_vec(rng, p.y_size());

    const Vec y = fwd(x, w, {}, p);
    ASSERT_EQ(y.size(), p.y_size());
    ASSERT_GT(max_abs(y), 0.0);  // not a test of zeros
    const Vec dx = dwconv_bwd_data(dy, w, p.n, p.c, p.h, p.w, p.kh, p.kw, p.s, p.d);
    ASSERT_EQ(dx.size(), p.x_size());
    const double lhs = dot(y, dy), rhs = dot(x, dx);
    EXPECT_NEAR(lhs, rhs, 1e-9 * std::max(std::abs(lhs), std::abs(rhs)));

    // y is linear in (w, b) for fixed x.
    const Vec yb = fwd(x, w, b, p);
    Vec dw, db;
    dwconv_bwd_weight(x, dy, p.n, p.c, p.h, p.w, p.kh, p.kw, p.s, p.d, &dw, &db);
    ASSERT_EQ(dw.size(), p.w_size());
    ASSERT_EQ(db.size(), size_t(p.c));
    const double lhs_w = dot(yb, dy), rhs_w = dot(w, dw) + dot(b, db);
    EXPECT_NEAR(lhs_w, rhs_w, 1e-9 * std::max(std::abs(lhs_w), std::abs(rhs_w)));
}

TEST(Reference, AdjointFixedShapes) {
    std::mt19937 rng(1);
    for (const Shape& p : kShapes) check_adjoint(p, rng);
}

TEST(Reference, AdjointRandomShapes) {
    std::mt19937 rng(42);
    auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    for (int t = 0; t < 200; ++t) {
        Shape p{pick(1, 2),         pick(1, 3),         pick(1, 13), pick(1, 13),
                2 * pick(0, 7) + 1, 2 * pick(0, 7) + 1, pick(1, 2),  pick(1, 3)};
        check_adjoint(p, rng);
    }
}

// §0: at stride 1, dx is the forward conv of dy with the kernel rotated by 180 degrees.
TEST(Reference, BwdDataIsRotatedKernelConvAtStride1) {
    std::mt19937 rng(3);
    for (int d = 1; d <= 3; ++d) {
        const Shape p{2, 2, 9, 7, 5, 3, 1, d};
        SCOPED_TRACE(p.str());
        const Vec w = random_vec(rng, p.w_size());
        const Vec dy = random_vec(rng, p.y_size());
        Vec rot(w.size());
        for (int c = 0; c < p.c; ++c) {
            for (int u = 0; u < p.kh; ++u) {
                for (int v = 0; v < p.kw; ++v) {
                    rot[(size_t(c) * p.kh + u) * p.kw + v] =
                        w[(size_t(c) * p.kh + (p.kh - 1 - u)) * p.kw + (p.kw - 1 - v)];
                }
            }
        }
        const Vec dx = dwconv_bwd_data(dy, w, p.n, p.c, p.h, p.w, p.kh, p.kw, 1, d);
        const Vec via_rot = fwd(dy, rot, {}, p);
        ASSERT_EQ(dx.size(), via_rot.size());
        for (size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx[i], via_rot[i], 1e-12) << i;
    }
}

// ---------------------------------------------------------------------------------------------
// Central finite differences of L = sum(fwd(x, w, b) * dy)

// |fd - an| <= 1e-6 * max(|an|, |fd|, 1): relative, with an absolute floor for zero gradients
// (inputs no tap reads at stride 2).
void expect_close(double fd, double an, const std::string& what) {
    const double scale = std::max({std::abs(an), std::abs(fd), 1.0});
    EXPECT_NEAR(fd, an, 1e-6 * scale) << what;
}

TEST(Reference, FiniteDifferences) {
    const Shape shapes[] = {
        {1, 2, 5, 4, 3, 5, 1, 1},
        {2, 1, 5, 6, 3, 3, 2, 2},
        {1, 2, 6, 5, 5, 3, 2, 3},
        {1, 1, 3, 4, 7, 7, 1, 1},  // kernel larger than the map
    };
    std::mt19937 rng(11);
    const double h = 1e-3;
    for (const Shape& p : shapes) {
        SCOPED_TRACE(p.str());
        Vec x = random_vec(rng, p.x_size());
        Vec w = random_vec(rng, p.w_size());
        Vec b = random_vec(rng, size_t(p.c));
        const Vec dy = random_vec(rng, p.y_size());
        auto loss = [&]() { return dot(fwd(x, w, b, p), dy); };

        const Vec dx = dwconv_bwd_data(dy, w, p.n, p.c, p.h, p.w, p.kh, p.kw, p.s, p.d);
        Vec dw, db;
        dwconv_bwd_weight(x, dy, p.n, p.c, p.h, p.w, p.kh, p.kw, p.s, p.d, &dw, &db);
        ASSERT_GT(max_abs(dx), 0.0);
        ASSERT_GT(max_abs(dw), 0.0);

        auto fd_check = [&](Vec& param, const Vec& grad, const char* name) {
            for (size_t i = 0; i < param.size(); ++i) {
                const double saved = param[i];
                param[i] = saved + h;
                const double up = loss();
                param[i] = saved - h;
                const double down = loss();
                param[i] = saved;
                expect_close((up - down) / (2 * h), grad[i], name + std::to_string(i));
            }
        };
        fd_check(x, dx, "dx ");
        fd_check(w, dw, "dw ");
        fd_check(b, db, "db ");
    }
}

// ---------------------------------------------------------------------------------------------
// Argument checks

TEST(Reference, RejectsBadArguments) {
    const Vec x(9, 1.0), w(9, 1.0);
    EXPECT_THROW(dwconv_fwd(x, w, {}, 1, 1, 3, 3, 3, 3, 0, 1), std::invalid_argument);
    EXPECT_THROW(dwconv_fwd(x, w, {}, 1, 1, 3, 3, 3, 3, 1, 0), std::invalid_argument);
    EXPECT_THROW(dwconv_fwd(x, w, {}, 1, 1, 3, 4, 3, 3, 1, 1), std::invalid_argument);  // x size
    EXPECT_THROW(dwconv_fwd(x, w, {}, 1, 1, 3, 3, 3, 5, 1, 1), std::invalid_argument);  // w size
    EXPECT_THROW(dwconv_fwd(x, w, {1, 2}, 1, 1, 3, 3, 3, 3, 1, 1), std::invalid_argument);
    EXPECT_THROW(dwconv_bwd_data(Vec(4), w, 1, 1, 3, 3, 3, 3, 1, 1), std::invalid_argument);
    Vec dw;
    EXPECT_THROW(dwconv_bwd_weight(x, Vec(9), 1, 1, 3, 3, 3, 3, 2, 1, &dw, nullptr),
                 std::invalid_argument);
    // Null outputs are allowed.
    EXPECT_NO_THROW(dwconv_bwd_weight(x, Vec(4), 1, 1, 3, 3, 3, 3, 2, 1, nullptr, nullptr));
}

}  // namespace
}  // namespace ref
}  // namespace lkc
