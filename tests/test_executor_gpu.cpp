// Whole networks on OpenCL (PoCL's CPU device here): every family's tiny model, deploy form, with
// random non-degenerate weights, against the same executor on the CPU (max |diff| <= 1e-4 of
// max |logit|; the device compiler may contract fp32 exp / erf / sqrt differently). Skipped with
// a message without an OpenCL device. This binary links the Halide runtime only, not libHalide.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "graph/executor.h"
#include "graph/models/models.h"
#include "graph/weights.h"
#include "runtime/ops.h"

namespace lkc::test {
namespace {

using namespace graph;

std::string opencl_problem() {
    try {
        std::mt19937 g(1);
        Tensor t(DType::F32, {1, 16, 2, 2});
        for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = float(i % 5) - 2;
        const ops::BlockedTensor x = ops::to_blocked_tensor(t);
        ops::BlockedTensor y = ops::make_blocked_tensor(1, 16, 2, 2);
        ops::unary(ops::Unary::Relu, x, y, Device::OpenCL);
        ops::to_host(y);
        return "";
    } catch (const std::exception& e) {
        return e.what();
    }
}

class TinyOnOpenCL : public testing::TestWithParam<std::string> {};

TEST_P(TinyOnOpenCL, MatchesTheCpu) {
    const std::string problem = opencl_problem();
    if (!problem.empty()) GTEST_SKIP() << "no usable OpenCL device (" << problem << ")";
    ModelOptions mo;
    mo.image_size = 32;
    mo.num_classes = 10;
    Graph g = build_model(GetParam(), mo);
    init_weights(g, 11, InitMode::Test);
    Tensor x(DType::F32, g.tensor(g.inputs[0]).shape);
    std::mt19937 r(5);
    std::normal_distribution<float> nd(0.f, 1.f);
    for (int64_t i = 0; i < x.numel(); ++i) x.data<float>()[i] = nd(r);
    ExecOptions cpu, gpu;
    cpu.no_records = gpu.no_records = true;
    gpu.device = Device::OpenCL;
    const Tensor want = Executor(g, cpu).run({{"x", x}}).at("head");
    const Tensor got = Executor(g, gpu).run({{"x", x}}).at("head");
    ASSERT_EQ(got.shape(), want.shape());
    double max_abs = 0, max_ref = 0;
    for (int64_t i = 0; i < want.numel(); ++i) {
        max_abs =
            std::max(max_abs, double(std::fabs(got.data<float>()[i] - want.data<float>()[i])));
        max_ref = std::max(max_ref, double(std::fabs(want.data<float>()[i])));
    }
    EXPECT_GT(max_ref, 0.0);
    EXPECT_LE(max_abs, 1e-4 * max_ref)
        << GetParam() << ": max |diff| " << max_abs << ", max |logit| " << max_ref;
}

INSTANTIATE_TEST_SUITE_P(Families, TinyOnOpenCL,
                         testing::Values("replknet-test", "slak-test", "unireplknet-test",
                                         "shiftwise-test"),
                         [](const auto& info) {
                             std::string s = info.param;
                             std::replace(s.begin(), s.end(), '-', '_');
                             return s;
                         });

}  // namespace
}  // namespace lkc::test
