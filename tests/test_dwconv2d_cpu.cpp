// Dense depth-wise conv kernels on the CPU against the double-precision reference, every pass,
// on the edge cases of the foundation issue, plus finite-difference checks of both backward
// passes evaluated with lkc's own forward kernel.
#include <gtest/gtest.h>

#include "tests/kernel_harness.h"

namespace lkc::test {
namespace {

// Shapes: C not a multiple of 16 (124, 249, 20, 17), N of 1 and 3, odd H and W, kernels larger
// than the map (13x13 on 7x7, 51x5 and 5x51 on 14x14, 63x63 on 21x19), stride 2, dilation 2, 3
// and 7, K = 1 and 63, rectangular kernels.
const char* kShapes[] = {
    "n1c124h14w14:k13x13",    "n3c249h9w11:k7x7",       "n1c16h7w7:k13x13",
    "n1c20h14w14:k51x5",      "n1c20h14w14:k5x51",      "n2c17h15w13:k3x3:s2",
    "n1c33h16w17:k7x7:s2:d2", "n1c20h23w19:k7x7:d2",    "n1c20h23w19:k5x5:d3",
    "n2c8h9w10:k1x1",         "n1c20h21w19:k63x63",     "n1c16h20w20:k31x31:s2",
    "n1c18h12w20:k3x3:d7",    "n1c16h20w21:k9x3:s2:d3", "n3c31h5w30:k7x7:d3",
    "n1c128h56w56:k31x31",    "n1c40h28w28:k27x27",     "n2c24h13w9:k13x13:d2",
};
const char* kPasses[] = {"fwd", "bwd_data", "bwd_weight"};

std::vector<std::string> all_cases() {
    std::vector<std::string> v;
    for (const char* p : kPasses)
        for (const char* s : kShapes) v.push_back(std::string("dwconv2d:") + p + ":" + s + ":f32");
    return v;
}

std::string case_name(const testing::TestParamInfo<std::string>& info) {
    std::string n = info.param;
    for (char& c : n)
        if (!isalnum(static_cast<unsigned char>(c))) c = '_';
    return n;
}

class DwConv2dCpu : public testing::TestWithParam<std::string> {};

TEST_P(DwConv2dCpu, ExactOnSmallIntegers) {
    const Workload w = parse_workload(GetParam());
    const auto in = make_inputs(w, Data::SmallInt, 7);
    std::string used;
    const auto out = run_dwconv2d(w, Device::Cpu, in, "", &used);
    const auto ref = reference(w, in);
    for (const auto& [name, want] : ref) {
        const Mismatch m = compare(out.at(name), want, nullptr, 0);
        EXPECT_EQ(m.count, 0u) << GetParam() << " kernel " << used << ": output " << name
                               << " differs at " << m.count << " of " << want.size()
                               << " elements; first worst at " << m.worst_at << ": got " << m.got
                               << ", want " << m.want;
    }
}

TEST_P(DwConv2dCpu, RandomFloatsWithinRoundingBound) {
    const Workload w = parse_workload(GetParam());
    const auto in = make_inputs(w, Data::Float, 11);
    const auto out = run_dwconv2d(w, Device::Cpu, in);
    const auto ref = reference(w, in);
    const auto mag = reference(w, in, /*absolute=*/true);
    for (const auto& [name, want] : ref) {
        const Mismatch m = compare(out.at(name), want, &mag.at(name), 1e-5);
        EXPECT_EQ(m.count, 0u) << GetParam() << ": output " << name
                               << " outside 1e-5 * sum|terms| at " << m.count
                               << " elements; worst at " << m.worst_at << ": got " << m.got
                               << ", want " << m.want;
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, DwConv2dCpu, testing::ValuesIn(all_cases()), case_name);

// Every kernel variant compiled for the CPU (not only the one the registry picks) on a few shapes.
TEST(DwConv2dCpuVariants, EveryVariantExact) {
    const char* shapes[] = {"n1c20h14w14:k51x5", "n2c17h9w23:k7x7:d2", "n1c16h12w12:k13x13:s2"};
    int checked = 0;
    for (const KernelInfo& k : all_kernels()) {
        if (k.device != Device::Cpu) continue;
        for (const char* p : kPasses) {
            for (const char* s : shapes) {
                const Workload w = parse_workload(std::string("dwconv2d:") + p + ":" + s);
                if (!kernel_supports(k, w)) continue;
                const auto in = make_inputs(w, Data::SmallInt, 3);
                const auto out = run_dwconv2d(w, Device::Cpu, in, k.name);
                for (const auto& [name, want] : reference(w, in)) {
                    const Mismatch m = compare(out.at(name), want, nullptr, 0);
                    EXPECT_EQ(m.count, 0u) << k.name << " on " << to_string(w) << ": " << name;
                }
                ++checked;
            }
        }
    }
    EXPECT_GT(checked, 0);
}

// Finite differences: L(x, w) = <fwd(x, w), dy> is linear in x and in w, so a central difference
// with a large step (0.5) has no truncation error and the directional derivative along a random
// direction must match <dx, dir> (resp. <dw, dir> + <db, dir_b>) up to fp32 rounding of L.
double loss(const Workload& fwd, const Tensor& x, const Tensor& wt, const Tensor& b,
            const Tensor& dy) {
    const auto y = run_dwconv2d(fwd, Device::Cpu, {{"x", x}, {"w", wt}, {"b", b}}).at("y");
    double s = 0;
    for (int64_t i = 0; i < y.numel(); ++i) s += double(y.data<float>()[i]) * dy.data<float>()[i];
    return s;
}

Tensor axpy(const Tensor& a, double alpha, const Tensor& d) {
    Tensor r(DType::F32, a.shape());
    for (int64_t i = 0; i < a.numel(); ++i)
        r.data<float>()[i] = float(a.data<float>()[i] + alpha * d.data<float>()[i]);
    return r;
}

double dot(const Tensor& a, const Tensor& b) {
    double s = 0;
    for (int64_t i = 0; i < a.numel(); ++i) s += double(a.data<float>()[i]) * b.data<float>()[i];
    return s;
}

class DwConv2dFiniteDiff : public testing::TestWithParam<std::string> {};

TEST_P(DwConv2dFiniteDiff, BackwardMatchesDirectionalDerivative) {
    const std::string shape = GetParam();
    const Workload fwd = parse_workload("dwconv2d:fwd:" + shape);
    Workload bd = fwd, bw = fwd;
    bd.pass = Pass::BwdData;
    bw.pass = Pass::BwdWeight;
    std::mt19937 g(5);
    const Tensor x = make_input({fwd.n, fwd.c, fwd.h, fwd.w}, Data::Float, 0, g);
    const Tensor wt = make_input({fwd.c, 1, fwd.kh, fwd.kw}, Data::Float, 0, g);
    const Tensor b = make_input({fwd.c}, Data::Float, 0, g);
    const Tensor dy = make_input({fwd.n, fwd.c, fwd.out_h(), fwd.out_w()}, Data::Float, 0, g);
    const Tensor dir_x = make_input(x.shape(), Data::Float, 0, g);
    const Tensor dir_w = make_input(wt.shape(), Data::Float, 0, g);
    const Tensor dir_b = make_input(b.shape(), Data::Float, 0, g);
    const double h = 0.5;

    const Tensor dx = run_dwconv2d(bd, Device::Cpu, {{"dy", dy}, {"w", wt}}).at("dx");
    const double fd_x =
        (loss(fwd, axpy(x, h, dir_x), wt, b, dy) - loss(fwd, axpy(x, -h, dir_x), wt, b, dy)) /
        (2 * h);
    EXPECT_NEAR(dot(dx, dir_x), fd_x, 1e-4 * (1 + std::fabs(fd_x))) << shape << " (data gradient)";

    const auto gw = run_dwconv2d(bw, Device::Cpu, {{"x", x}, {"dy", dy}});
    const double fd_w = (loss(fwd, x, axpy(wt, h, dir_w), axpy(b, h, dir_b), dy) -
                         loss(fwd, x, axpy(wt, -h, dir_w), axpy(b, -h, dir_b), dy)) /
                        (2 * h);
    const double an_w = dot(gw.at("dw"), dir_w) + dot(gw.at("db"), dir_b);
    EXPECT_NEAR(an_w, fd_w, 1e-4 * (1 + std::fabs(fd_w))) << shape << " (weight gradient)";
}

INSTANTIATE_TEST_SUITE_P(Tiny, DwConv2dFiniteDiff,
                         testing::Values("n1c3h5w6:k3x3:f32", "n2c5h7w5:k5x3:s2:f32",
                                         "n1c17h6w7:k7x7:d2:f32", "n1c4h4w4:k9x9:f32",
                                         "n1c2h9w8:k3x5:s2:d3:f32"),
                         case_name);

}  // namespace
}  // namespace lkc::test
