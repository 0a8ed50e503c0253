// The benchmark's unfused shift-wise peer (benchmarks/shiftwise_unfused.h: lkc dense k x k passes
// through materialised sub-kernel maps plus host shift-add / gather passes) against the naive
// double-precision reference, every pass, on CPU. Tolerances as in kernel_harness.h: exact on
// small-integer data, |err| <= 1e-5 * sum|terms| + 1e-6 on random floats.
#include <gtest/gtest.h>

#include <cstdio>

#include "benchmarks/shiftwise_unfused.h"
#include "runtime/op_inputs.h"
#include "runtime/reference_ops.h"
#include "tests/kernel_harness.h"

namespace lkc::test {
namespace {

// nk*k != K (asymmetric reach), K larger than the map, odd channel counts (one partial channel
// block, several blocks), N = 2, G = 1 and 4, k = 5 (e = 2), a non-square map.
const char* kCases[] = {
    "shiftwise:%s:n1c7h15w15:K13k3g4",  "shiftwise:%s:n2c20h9w9:K13k3g4",
    "shiftwise:%s:n1c20h14w14:K51k3g4", "shiftwise:%s:n1c5h8w11:K7k3g1",
    "shiftwise:%s:n1c6h12w12:K11k5g2",  "shiftwise:%s:n1c33h7w10:K47k3g4",
};
const char* kPasses[] = {"fwd", "bwd_data", "bwd_weight"};

Workload case_of(const char* fmt, const char* pass) {
    char buf[128];
    std::snprintf(buf, sizeof buf, fmt, pass);
    return parse_workload(buf);
}

void check_case(const Workload& w, bool small_int, uint32_t seed) {
    const auto in = make_example_inputs(w, seed, small_int);
    bench::ShiftwiseUnfused op(w);
    op.set_inputs(in);
    op.run();
    op.run();  // a second call must not accumulate into the first one's results
    const auto out = op.outputs();
    const auto want = ref::op_reference(w, in);
    const auto mag = ref::op_reference(w, in, /*absolute=*/true);
    ASSERT_EQ(out.size(), want.size()) << to_string(w);
    for (const auto& [name, ref] : want) {
        size_t nz = 0;
        for (double v : ref) nz += v != 0;
        EXPECT_GT(nz, ref.size() / 2) << to_string(w) << ": reference " << name << " mostly zero";
        ASSERT_TRUE(out.count(name)) << to_string(w) << ": no output " << name;
        const Mismatch m = compare(out.at(name), ref, small_int ? nullptr : &mag.at(name), 1e-5);
        EXPECT_EQ(m.count, 0u) << to_string(w) << " (" << op.detail() << ") " << name << ": "
                               << m.count << " elements off, e.g. got " << m.got << " want "
                               << m.want;
    }
}

TEST(ShiftwiseUnfused, ExactSmallIntegers) {
    for (const char* c : kCases)
        for (const char* p : kPasses) check_case(case_of(c, p), true, 3);
}

TEST(ShiftwiseUnfused, RandomFloatsWithinBound) {
    for (const char* c : kCases)
        for (const char* p : kPasses) check_case(case_of(c, p), false, 5);
}

TEST(ShiftwiseUnfused, RejectsOtherOpsAndInferenceInputs) {
    EXPECT_THROW(bench::ShiftwiseUnfused(parse_workload("dwconv2d:fwd:n1c8h8w8:k3x3")),
                 std::invalid_argument);
    const Workload w = case_of(kCases[0], "fwd");
    bench::ShiftwiseUnfused op(w);
    EXPECT_THROW(op.set_inputs(make_example_inputs(w, 1, false, 0.5, /*with_optional=*/true)),
                 std::invalid_argument);
}

}  // namespace
}  // namespace lkc::test
