// GPU builds of the sparse (tap-list) kernels, executed where a device exists: OpenCL (PoCL's CPU
// device here) must equal the CPU kernels exactly on small-integer data (every sum is an exact
// integer below 2^24); CUDA runs only with a GPU and otherwise skips with a message. Links the
// Halide runtime only, not libHalide (see test_dwconv2d_gpu.cpp).
#include <gtest/gtest.h>

#include "runtime/dwconv2d_sparse.h"
#include "tests/kernel_harness.h"

namespace lkc::test {
namespace {

std::map<std::string, Tensor> run_on(const Workload& w, Device d,
                                     const std::map<std::string, Tensor>& in,
                                     bool all_taps = false) {
    SparseDwConv2dRunner r(w, d);
    if (all_taps) r.set_all_taps(true);
    r.set_inputs(in);
    r.run();
    return r.outputs();
}

// "" when the device runs a tiny sparse forward, else Halide's reason.
std::string device_problem(Device d) {
    const Workload w = parse_workload("dwconv2d_sparse:fwd:n1c4h4w4:k3x3");
    try {
        run_on(w, d, make_example_inputs(w, 1, true));
        return "";
    } catch (const KernelError& e) {
        return e.what();
    }
}

const char* kShapes[] = {"n1c19h15w13:k7x7", "n1c9h14w14:k31x31",     "n2c7h9w23:k5x51:s2",
                         "n1c6h20w21:k51x5", "n1c5h16w17:k7x7:s2:d2", "n1c8h7w7:k13x13"};
const char* kPasses[] = {"fwd", "bwd_data", "bwd_weight"};

void check_device_against_cpu(Device d) {
    const std::string problem = device_problem(d);
    if (!problem.empty()) {
        GTEST_SKIP() << "no usable " << device_name(d) << " device here (" << problem
                     << "); GPU kernels were compiled but not executed";
    }
    int ran = 0;
    for (const char* s : kShapes)
        for (const char* p : kPasses)
            for (bool all : {false, true}) {
                const Workload w = parse_workload(std::string("dwconv2d_sparse:") + p + ":" + s);
                if (all && w.pass != Pass::BwdWeight) continue;
                const auto in = make_example_inputs(w, 13, /*small_int=*/true, 0.4, true);
                std::map<std::string, Tensor> gpu;
                try {
                    gpu = run_on(w, d, in, all);
                } catch (const KernelError& e) {
                    ADD_FAILURE() << to_string(w) << " on " << device_name(d) << ": " << e.what();
                    continue;
                }
                const auto cpu = run_on(w, Device::Cpu, in, all);
                ASSERT_EQ(gpu.size(), cpu.size());
                for (const auto& [name, t] : cpu) {
                    const Mismatch m = compare(gpu.at(name), to_double(t), nullptr, 0);
                    EXPECT_EQ(m.count, 0u)
                        << to_string(w) << (all ? " (all taps)" : "") << ": " << name
                        << " differs from the CPU kernel at " << m.count << " elements (got "
                        << m.got << ", want " << m.want << ")";
                }
                ++ran;
            }
    EXPECT_GT(ran, 0);
    std::printf("[ info ] %d sparse-kernel runs on %s matched the CPU kernels exactly\n", ran,
                device_name(d));
    release_device(d);
}

TEST(SparseGpu, OpenCLMatchesCpu) { check_device_against_cpu(Device::OpenCL); }
TEST(SparseGpu, CudaMatchesCpu) { check_device_against_cpu(Device::Cuda); }

// Without a CUDA driver the kernel call must fail with a message, never abort.
TEST(SparseGpu, MissingCudaIsAnErrorNotAnAbort) {
    const std::string problem = device_problem(Device::Cuda);
    if (problem.empty()) GTEST_SKIP() << "a CUDA device exists here";
    EXPECT_NE(problem.find("cuda"), std::string::npos) << problem;
}

}  // namespace
}  // namespace lkc::test
