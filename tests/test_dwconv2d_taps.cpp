// dwconv2d_multi and shiftwise kernels (row-table generators) against the naive double-precision
// references of runtime/reference_ops.h (shift-wise computed literally through its sub-kernel
// maps), every pass, on CPU. Tolerances as in kernel_harness.h: exact on small-integer data,
// |err| <= 1e-5 * sum|terms| + 1e-6 on random floats. Also the TapPlan bookkeeping and bad inputs.
#include <gtest/gtest.h>

#include <set>

#include "runtime/dwconv2d_taps.h"
#include "runtime/reference_ops.h"
#include "tests/kernel_harness.h"

namespace lkc::test {
namespace {

// Shapes chosen for: SLaK strips (and kernels larger than the map), RepLKNet large + small,
// UniRepLKNet's dilated branches, odd channel counts, shift-wise with nk*k != K (asymmetric
// reach) and K larger than the map, G = 1 and 4, k = 5.
const char* kCases[] = {
    "dwconv2d_multi:%s:n2c19h17w13:b7x3d1,3x7d1,3x3d1",
    "dwconv2d_multi:%s:n1c20h14w14:b51x5d1,5x51d1,5x5d1",
    "dwconv2d_multi:%s:n1c16h12w12:b31x31d1,5x5d1",
    "dwconv2d_multi:%s:n1c17h15w15:b13x13d1,5x5d1,7x7d2,3x3d3,3x3d4,3x3d5",
    "dwconv2d_multi:%s:n1c9h10w23:b5x5d2",
    "dwconv2d_multi:%s:n1c124h9w9:b13x5d1,5x13d1,5x5d1",  // SLaK-T stage-1 width
    "dwconv2d_multi:%s:n1c249h7w7:b11x11d1,3x3d1",        // SLaK-T stage-2 width
    "shiftwise:%s:n1c122h7w9:K49k3g4",                    // SW-T stage-2 rep channels
    "shiftwise:%s:n1c246h5w5:K47k3g4",                    // SW-T stage-3 rep channels
    "shiftwise:%s:n1c7h15w15:K13k3g4",
    "shiftwise:%s:n2c60h9w9:K13k3g4",
    "shiftwise:%s:n1c20h14w14:K51k3g4",
    "shiftwise:%s:n1c5h8w11:K7k3g1",
    "shiftwise:%s:n1c6h12w12:K11k5g2",
};
const char* kPasses[] = {"fwd", "bwd_data", "bwd_weight"};

std::string name_of(const char* fmt, const char* pass) {
    char buf[128];
    std::snprintf(buf, sizeof buf, fmt, pass);
    return buf;
}

// kernel: "" lets the runner choose (taps or, for multi-branch, the merged dense kernel); else the
// variant to force.
void check_case(const Workload& w, bool small_int, bool with_optional, uint32_t seed,
                const std::string& kernel = "") {
    const auto in = make_example_inputs(w, seed, small_int, 0.5, with_optional);
    auto runner = make_runner(w, Device::Cpu, kernel);
    runner->set_inputs(in);
    runner->run();
    const auto out = runner->outputs();
    const auto want = ref::op_reference(w, in);
    const auto mag = ref::op_reference(w, in, /*absolute=*/true);
    ASSERT_EQ(out.size(), want.size()) << to_string(w);
    // Guard against vacuous comparisons: most reference outputs must be non-zero.
    for (const auto& [name, ref] : want) {
        size_t nz = 0;
        for (double v : ref) nz += v != 0;
        EXPECT_GT(nz, ref.size() / 2) << to_string(w) << ": reference " << name << " mostly zero";
    }
    for (const auto& [name, ref] : want) {
        ASSERT_TRUE(out.count(name)) << to_string(w) << ": no output " << name;
        const Mismatch m = compare(out.at(name), ref, small_int ? nullptr : &mag.at(name), 1e-5);
        EXPECT_EQ(m.count, 0u) << to_string(w) << " (" << runner->kernel_name() << ") " << name
                               << ": " << m.count << " elements off, e.g. got " << m.got << " want "
                               << m.want;
    }
}

TEST(TapsKernels, ExactSmallIntegers) {
    for (const char* c : kCases)
        for (const char* p : kPasses) check_case(parse_workload(name_of(c, p)), true, false, 3);
}

// Both paths of a multi-branch op on every case: the taps kernel forced, and the merged dense
// kernel forced (a dense variant named), whatever the cost model would pick.
TEST(TapsKernels, MultiBothPathsExact) {
    int merged = 0;
    for (const char* c : kCases)
        for (const char* p : kPasses) {
            const Workload w = parse_workload(name_of(c, p));
            if (w.op != Op::DwConv2dMulti) continue;
            const bool wg = w.pass == Pass::BwdWeight;
            check_case(w, true, false, 4, wg ? "dwconv2d_taps_wgrad_cpu" : "dwconv2d_taps_fwd_cpu");
            const char* dense = wg ? "dwconv2d_bwd_weight_t12c8_cpu"
                                   : (w.pass == Pass::Fwd ? "dwconv2d_fwd_t14c8_cpu"
                                                          : "dwconv2d_bwd_data_t14c8_cpu");
            auto r = make_runner(w, Device::Cpu, dense);
            ASSERT_TRUE(dynamic_cast<TapsRunner*>(r.get())->runs_merged()) << to_string(w);
            check_case(w, true, false, 4, dense);
            ++merged;
        }
    EXPECT_GT(merged, 0);
}

TEST(TapsKernels, RandomFloatsWithinBound) {
    for (const char* c : kCases)
        for (const char* p : kPasses) check_case(parse_workload(name_of(c, p)), false, false, 5);
}

TEST(TapsKernels, ShiftwiseFusedInference) {
    for (const char* c : kCases) {
        const Workload w = parse_workload(name_of(c, "fwd"));
        if (w.op != Op::ShiftWise) continue;
        check_case(w, true, true, 7);
        check_case(w, false, true, 8);
    }
}

// Every tap of every kernel has a weight slot; coinciding taps share one; pack then unpack of a
// wgrad-shaped buffer returns each kernel's own taps.
TEST(TapPlan, SlotsCoverEveryTapOnce) {
    const std::vector<TapKernel> ks = {
        {51, 5, 1, -25, -2, 0, 0}, {5, 51, 1, -2, -25, 0, 0}, {5, 5, 1, -2, -2, 0, 0}};
    TapPlan p(ks, false);
    // Distinct offsets of the SLaK cross: 51*5 + 5*51 - 25.
    EXPECT_EQ(p.distinct_taps(), 51 * 5 + 5 * 51 - 25);
    EXPECT_GE(p.slots(), p.distinct_taps());
    EXPECT_EQ(p.seg(TapPlan::kClasses), p.entries());
    EXPECT_EQ(p.left(), 25);
    EXPECT_EQ(p.top(), 25);
    // Pack distinct values per kernel: a slot shared by the 5x5 and both strips sums three.
    const int C = 3;
    std::vector<std::vector<float>> w(3);
    for (int i = 0; i < 3; ++i) w[i].assign(size_t(C) * ks[i].kh * ks[i].kw, float(1 << (2 * i)));
    Halide::Runtime::Buffer<float, 3> dst(16, p.slots(), 1);
    p.pack({w[0].data(), w[1].data(), w[2].data()}, C, {}, dst);
    std::multiset<float> vals;
    for (int s = 0; s < p.slots(); ++s) vals.insert(dst(0, s, 0));
    EXPECT_EQ(vals.count(1.0f + 4.0f + 16.0f), 25u);  // the centre 5x5
    EXPECT_EQ(vals.count(1.0f), size_t(51 * 5 - 25));
    EXPECT_EQ(vals.count(4.0f), size_t(5 * 51 - 25));
    // On a 14x14 map only offsets within +-13 can meet the image: 27x5 + 5x27 - 25 remain.
    TapPlan clipped(ks, false, 14, 14);
    EXPECT_EQ(clipped.distinct_taps(), 27 * 5 + 5 * 27 - 25);
    EXPECT_EQ(clipped.left(), 13);
    // Transposed: offsets negate; right() is the largest run *start*, within a run of 25.
    TapPlan t(ks, true);
    EXPECT_EQ(t.left(), 25);
    EXPECT_EQ(t.bottom(), 25);
    EXPECT_LE(t.right(), 25);
    EXPECT_GT(t.right() + 8, 25);
}

TEST(TapsKernels, BadInputsRejected) {
    const Workload w = parse_workload("shiftwise:fwd:n1c7h15w15:K13k3g4");
    auto in = make_example_inputs(w, 1);
    auto r = make_runner(w, Device::Cpu);
    int32_t* sh = in.at("slot_h").data<int32_t>();
    sh[1] = sh[0];  // not a permutation any more
    EXPECT_THROW(r->set_inputs(in), std::invalid_argument);
    const Workload m = parse_workload("dwconv2d_multi:fwd:n1c4h8w8:b5x5d1,3x3d1");
    auto min = make_example_inputs(m, 1);
    min["w1"] = Tensor(DType::F32, {4, 1, 5, 5});  // branch 1 is 3x3
    EXPECT_THROW(make_runner(m, Device::Cpu)->set_inputs(min), std::invalid_argument);
    EXPECT_THROW(
        make_runner(parse_workload("dwconv2d_multi:fwd:n1c4h8w8:b5x5d1,3x3d1:s2"), Device::Cpu),
        std::invalid_argument);
}

}  // namespace
}  // namespace lkc::test
