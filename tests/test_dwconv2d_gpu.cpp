// GPU builds of every dense depth-wise kernel variant, executed where a device exists:
// OpenCL (PoCL's CPU device here) against the CPU kernels' result; CUDA only with a GPU.
// Without the device the tests skip with a message. This binary links the Halide runtime
// only, not libHalide (PoCL's LLVM and a JIT's LLVM clash in one process).
#include <gtest/gtest.h>

#include "tests/kernel_harness.h"

namespace lkc::test {
namespace {

// Probes the device with a tiny forward run; returns "" when usable, else Halide's reason.
std::string device_problem(Device d) {
    const Workload w = parse_workload("dwconv2d:fwd:n1c16h4w4:k3x3:f32");
    try {
        run_dwconv2d(w, d, make_inputs(w, Data::SmallInt, 1));
        return "";
    } catch (const KernelError& e) {
        return e.what();
    }
}

const char* kShapes[] = {"n1c20h15w13:k7x7",    "n2c17h9w11:k13x13",      "n1c16h14w14:k51x5",
                         "n1c16h14w14:k5x51",   "n1c33h16w17:k7x7:s2:d2", "n1c20h23w19:k5x5:d3",
                         "n1c16h12w12:k3x3:s2", "n1c8h7w7:k13x13",        "n1c16h20w20:k31x31"};
const char* kPasses[] = {"fwd", "bwd_data", "bwd_weight"};

void check_device_against_cpu(Device d) {
    const std::string problem = device_problem(d);
    if (!problem.empty()) {
        GTEST_SKIP() << "no usable " << device_name(d) << " device here (" << problem
                     << "); GPU kernels were compiled but not executed";
    }
    int ran = 0;
    for (const KernelInfo& k : all_kernels()) {
        if (k.device != d) continue;
        for (const char* p : kPasses) {
            for (const char* s : kShapes) {
                const Workload w = parse_workload(std::string("dwconv2d:") + p + ":" + s);
                if (!kernel_supports(k, w)) continue;
                const auto in = make_inputs(w, Data::SmallInt, 9);
                std::map<std::string, Tensor> gpu;
                try {
                    gpu = run_dwconv2d(w, d, in, k.name);
                } catch (const KernelError& e) {
                    ADD_FAILURE() << k.name << " on " << to_string(w) << ": " << e.what();
                    continue;
                }
                const auto cpu = run_dwconv2d(w, Device::Cpu, in);
                for (const auto& [name, t] : cpu) {
                    const Mismatch m = compare(gpu.at(name), to_double(t), nullptr, 0);
                    EXPECT_EQ(m.count, 0u)
                        << k.name << " on " << to_string(w) << ": " << name
                        << " differs from the CPU kernel at " << m.count << " elements (got "
                        << m.got << ", want " << m.want << ")";
                }
                ++ran;
            }
        }
    }
    EXPECT_GT(ran, 0);
    std::printf("[ info ] %d kernel runs on %s matched the CPU kernels exactly\n", ran,
                device_name(d));
    release_device(d);
}

TEST(DwConv2dGpu, OpenCLMatchesCpu) { check_device_against_cpu(Device::OpenCL); }
TEST(DwConv2dGpu, CudaMatchesCpu) { check_device_against_cpu(Device::Cuda); }

// Without a CUDA driver the kernel call must fail with a message, never abort.
TEST(DwConv2dGpu, MissingCudaIsAnErrorNotAnAbort) {
    const std::string problem = device_problem(Device::Cuda);
    if (problem.empty()) GTEST_SKIP() << "a CUDA device exists here";
    EXPECT_NE(problem.find("cuda"), std::string::npos) << problem;
}

}  // namespace
}  // namespace lkc::test
