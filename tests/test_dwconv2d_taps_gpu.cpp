// GPU builds of the row-table kernels (dwconv2d_multi, shiftwise), executed where a device
// exists: OpenCL (PoCL's CPU device here) must equal the CPU kernels exactly on small-integer
// data (every sum is an exact integer below 2^24); CUDA runs only with a GPU and otherwise skips
// with a message. Links the Halide runtime only, not libHalide (see test_dwconv2d_gpu.cpp).
#include <gtest/gtest.h>

#include "runtime/op_runner.h"
#include "tests/kernel_harness.h"

namespace lkc::test {
namespace {

std::map<std::string, Tensor> run_on(const Workload& w, Device d,
                                     const std::map<std::string, Tensor>& in) {
    auto r = make_runner(w, d);
    r->set_inputs(in);
    r->run();
    return r->outputs();
}

// "" when the device runs a tiny multi-branch forward, else Halide's reason.
std::string device_problem(Device d) {
    const Workload w = parse_workload("dwconv2d_multi:fwd:n1c16h4w4:b3x3d1,1x1d1");
    try {
        run_on(w, d, make_example_inputs(w, 1, true));
        return "";
    } catch (const KernelError& e) {
        return e.what();
    }
}

const char* kCases[] = {
    "dwconv2d_multi:%s:n1c19h17w13:b7x3d1,3x7d1,3x3d1",
    "dwconv2d_multi:%s:n1c16h14w14:b51x5d1,5x51d1,5x5d1",
    "dwconv2d_multi:%s:n2c17h15w15:b13x13d1,5x5d1,7x7d2,3x3d3,3x3d4,3x3d5",
    "shiftwise:%s:n1c7h15w15:K13k3g4",
    "shiftwise:%s:n1c20h14w14:K51k3g4",
};
const char* kPasses[] = {"fwd", "bwd_data", "bwd_weight"};

void check_device_against_cpu(Device d) {
    const std::string problem = device_problem(d);
    if (!problem.empty()) {
        GTEST_SKIP() << "no usable " << device_name(d) << " device here (" << problem
                     << "); GPU kernels were compiled but not executed";
    }
    int ran = 0;
    for (const char* c : kCases)
        for (const char* p : kPasses)
            for (bool fused : {false, true}) {
                char buf[128];
                std::snprintf(buf, sizeof buf, c, p);
                const Workload w = parse_workload(buf);
                if (fused && (w.op != Op::ShiftWise || w.pass != Pass::Fwd)) continue;
                const auto in = make_example_inputs(w, 11, /*small_int=*/true, 0.5, fused);
                std::map<std::string, Tensor> gpu;
                try {
                    gpu = run_on(w, d, in);
                } catch (const KernelError& e) {
                    ADD_FAILURE() << to_string(w) << " on " << device_name(d) << ": " << e.what();
                    continue;
                }
                const auto cpu = run_on(w, Device::Cpu, in);
                ASSERT_EQ(gpu.size(), cpu.size());
                for (const auto& [name, t] : cpu) {
                    const Mismatch m = compare(gpu.at(name), to_double(t), nullptr, 0);
                    EXPECT_EQ(m.count, 0u) << to_string(w) << (fused ? " (fused)" : "") << ": "
                                           << name << " differs at " << m.count << " elements (got "
                                           << m.got << ", want " << m.want << ")";
                }
                ++ran;
            }
    std::printf("[ info ] %d taps-kernel runs on %s matched the CPU kernels exactly\n", ran,
                device_name(d));
    release_device(d);
}

TEST(TapsGpu, OpenCLMatchesCpu) { check_device_against_cpu(Device::OpenCL); }
TEST(TapsGpu, CudaMatchesCpu) { check_device_against_cpu(Device::Cuda); }

}  // namespace
}  // namespace lkc::test
