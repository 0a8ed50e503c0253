// GPU builds of the whole-network ops (runtime/ops.h), executed where a device exists: OpenCL
// (PoCL's CPU device here) against the CPU kernels' result on the same inputs; CUDA only with a
// GPU (skipped with a message otherwise). Exact on small-integer data for the ops whose sums are
// exact (GEMM without GELU, conv, affine, add, mul, select, concat, pool); within 1e-5 of
// max(|value|, 1) for GELU, sigmoid, LayerNorm, softmax and GRN, whose fp32 exp / erf / sqrt /
// division may be contracted differently by the device compiler (LayerNorm's x - mean cancels, so
// small outputs carry the absolute error of O(1) ones). Also checks that chained ops stay on the
// device (no host round trip between them) and padding lanes stay zero. This binary links the
// Halide runtime only, not libHalide (PoCL's LLVM and a JIT's LLVM clash in one process).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "HalideRuntimeOpenCL.h"
#include "runtime/layers.h"
#include "runtime/ops.h"
#include "runtime/registry.h"

namespace lkc::test {
namespace {

using ops::BlockedTensor;

Tensor random_tensor(const Shape& s, bool ints, int range, std::mt19937& g) {
    Tensor t(DType::F32, s);
    std::uniform_int_distribution<int> ui(-range, range);
    std::uniform_real_distribution<float> uf(-1.0f, 1.0f);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = ints ? float(ui(g)) : uf(g);
    return t;
}

BlockedTensor random_act(int n, int c, int h, int w, bool ints, std::mt19937& g) {
    return ops::to_blocked_tensor(random_tensor({n, c, h, w}, ints, 3, g));
}

// Probes the device with a tiny op; returns "" when usable, else the reason.
std::string device_problem(Device d) {
    try {
        std::mt19937 g(1);
        const BlockedTensor x = random_act(1, 16, 2, 2, true, g);
        BlockedTensor y = ops::make_blocked_tensor(1, 16, 2, 2);
        ops::unary(ops::Unary::Relu, x, y, d);
        ops::to_host(y);
        return "";
    } catch (const std::exception& e) {
        return e.what();
    }
}

// Every element of the whole blocked buffers (padding lanes included): exact or within rel.
size_t mismatches(BlockedTensor& gpu, BlockedTensor& cpu, double rel, std::string* first) {
    ops::to_host(gpu);
    ops::to_host(cpu);
    size_t bad = 0;
    if (gpu.shape() != cpu.shape()) return 1;
    gpu.buf.for_each_element([&](int l, int x, int y, int cb, int n) {
        const double a = gpu.buf(l, x, y, cb, n), b = cpu.buf(l, x, y, cb, n);
        // Normalised outputs are O(1): rel is relative to max(|b|, 1).
        if (!(std::fabs(a - b) <= rel * std::max(std::fabs(b), 1.0))) {
            if (bad++ == 0) {
                *first = "lane " + std::to_string(l) + " x" + std::to_string(x) + " y" +
                         std::to_string(y) + " cb" + std::to_string(cb) + " n" + std::to_string(n) +
                         ": " + std::to_string(a) + " vs cpu " + std::to_string(b);
            }
        }
    });
    return bad;
}

// One op run on the device and on the CPU with the same inputs: `run(d, y)` writes y.
struct Case {
    std::string name;
    double rel;  // 0: exact
    std::function<BlockedTensor()> make_output;
    std::function<void(Device, BlockedTensor&)> run;
};

std::vector<Case> all_cases() {
    std::vector<Case> v;
    auto g = std::make_shared<std::mt19937>(7);
    // GEMM: every epilogue; 7-pixel tiles with clamped tails, odd channel counts, [N, F].
    struct G {
        int n, ci, co, h, w;
    };
    for (const G s : {G{1, 124, 249, 7, 9}, G{3, 20, 3, 5, 13}, G{3, 249, 124, 1, 1}})
        for (ops::Act act : {ops::Act::None, ops::Act::Relu, ops::Act::Gelu})
            for (bool extras : {false, true}) {
                auto x = std::make_shared<BlockedTensor>(random_act(s.n, s.ci, s.h, s.w, true, *g));
                auto r = std::make_shared<BlockedTensor>(random_act(s.n, s.co, s.h, s.w, true, *g));
                const Tensor b = random_tensor({s.co}, true, 4, *g);
                auto w = std::make_shared<ops::PackedLinear>(
                    ops::pack_linear(random_tensor({s.co, s.ci}, true, 2, *g), &b));
                auto sc = std::make_shared<ops::ChannelVector>(
                    ops::pack_channels(random_tensor({s.co}, true, 2, *g), "gamma"));
                v.push_back({"gemm n" + std::to_string(s.n) + " " + std::to_string(s.ci) + "->" +
                                 std::to_string(s.co) + " " + std::to_string(s.h) + "x" +
                                 std::to_string(s.w) + " act " + std::to_string(int(act)) +
                                 (extras ? " +residual *scale" : ""),
                             act == ops::Act::Gelu ? 1e-5 : 0.0,
                             [=] { return ops::make_blocked_tensor(s.n, s.co, s.h, s.w); },
                             [=](Device d, BlockedTensor& y) {
                                 ops::Epilogue e;
                                 e.act = act;
                                 if (extras) e.residual = r.get(), e.scale = sc.get();
                                 ops::gemm(*x, *w, e, y, d);
                             }});
            }
    // Dense conv: stems, down-sampling, groups, dilation.
    struct C {
        int n, ci, co, h, w, k;
        ops::ConvGeometry geom;
        ops::Act act;
    };
    for (const C s : {C{1, 3, 32, 15, 17, 3, {2, 1, 1, 1, 1}, ops::Act::Relu},
                      C{3, 3, 20, 16, 16, 4, {4, 0, 0, 1, 1}, ops::Act::None},
                      C{1, 124, 249, 14, 14, 2, {2, 0, 0, 1, 1}, ops::Act::None},
                      C{3, 20, 40, 13, 11, 3, {2, 1, 1, 1, 1}, ops::Act::Relu},
                      C{1, 32, 64, 9, 9, 3, {1, 2, 2, 2, 4}, ops::Act::None}}) {
        auto x = std::make_shared<BlockedTensor>(random_act(s.n, s.ci, s.h, s.w, true, *g));
        const Tensor b = random_tensor({s.co}, true, 4, *g);
        auto w = std::make_shared<ops::PackedConv2d>(ops::pack_conv2d(
            random_tensor({s.co, s.ci / s.geom.groups, s.k, s.k}, true, 2, *g), &b, s.geom));
        v.push_back(
            {"conv2d " + std::to_string(s.ci) + "->" + std::to_string(s.co) + " k" +
                 std::to_string(s.k) + " s" + std::to_string(s.geom.stride) + " g" +
                 std::to_string(s.geom.groups),
             0.0, [=] { return ops::make_blocked_tensor(s.n, s.co, w->out_h(s.h), w->out_w(s.w)); },
             [=](Device d, BlockedTensor& y) { ops::conv2d(*x, *w, s.act, y, d); }});
    }
    // Memory-bound ops on odd shapes.
    struct S {
        int n, c, h, w;
    };
    for (const S s : {S{1, 124, 7, 9}, S{3, 249, 5, 3}, S{1, 499, 1, 1}, S{3, 20, 13, 11},
                      S{1, 96, 16, 16}, S{2, 80, 17, 33}}) {
        const std::string sn = " n" + std::to_string(s.n) + "c" + std::to_string(s.c) + "h" +
                               std::to_string(s.h) + "w" + std::to_string(s.w);
        auto xi = std::make_shared<BlockedTensor>(random_act(s.n, s.c, s.h, s.w, true, *g));
        auto xf = std::make_shared<BlockedTensor>(random_act(s.n, s.c, s.h, s.w, false, *g));
        auto same = [=] { return ops::make_blocked_tensor(s.n, s.c, s.h, s.w); };
        auto af = std::make_shared<ops::ChannelAffine>(
            ops::ChannelAffine{ops::pack_channels(random_tensor({s.c}, true, 2, *g), "scale"),
                               ops::pack_channels(random_tensor({s.c}, true, 4, *g), "shift")});
        v.push_back({"affine relu" + sn, 0.0, same, [=](Device d, BlockedTensor& y) {
                         ops::affine(*xi, *af, ops::Act::Relu, y, d);
                     }});
        for (ops::Unary op : {ops::Unary::Relu, ops::Unary::Gelu, ops::Unary::Sigmoid}) {
            v.push_back({"unary " + std::to_string(int(op)) + sn,
                         op == ops::Unary::Relu ? 0.0 : 1e-5, same,
                         [=](Device d, BlockedTensor& y) { ops::unary(op, *xf, y, d); }});
        }
        auto se = std::make_shared<BlockedTensor>(random_act(s.n, s.c, 1, 1, true, *g));
        auto ch1 = std::make_shared<BlockedTensor>(random_act(s.n, 1, s.h, s.w, true, *g));
        for (ops::Binary op : {ops::Binary::Add, ops::Binary::Mul}) {
            v.push_back({"binary same" + sn, 0.0, same,
                         [=](Device d, BlockedTensor& y) { ops::binary(op, *xi, *xi, y, d); }});
            v.push_back({"binary SE" + sn, 0.0, same,
                         [=](Device d, BlockedTensor& y) { ops::binary(op, *xi, *se, y, d); }});
            v.push_back({"binary channel-broadcast" + sn, 0.0, same,
                         [=](Device d, BlockedTensor& y) { ops::binary(op, *ch1, *xi, y, d); }});
        }
        auto ln = std::make_shared<ops::LayerNormParams>(ops::pack_layer_norm(
            random_tensor({s.c}, false, 1, *g), random_tensor({s.c}, false, 1, *g), 1e-6));
        v.push_back({"layer_norm" + sn, 1e-5, same,
                     [=](Device d, BlockedTensor& y) { ops::layer_norm(*xf, *ln, y, d); }});
        v.push_back({"softmax" + sn, 1e-5, same,
                     [=](Device d, BlockedTensor& y) { ops::softmax(*xf, y, d); }});
        const Tensor beta = random_tensor({1, 1, 1, s.c}, false, 1, *g);
        auto gp = std::make_shared<ops::GrnParams>(
            ops::pack_grn(random_tensor({1, 1, 1, s.c}, false, 1, *g), &beta, 1e-6));
        v.push_back({"grn" + sn, 1e-5, same,
                     [=](Device d, BlockedTensor& y) { ops::grn(*xf, *gp, y, d); }});
        v.push_back({"global_avg_pool" + sn, 0.0,
                     [=] { return ops::make_blocked_tensor(s.n, s.c, 1, 1); },
                     [=](Device d, BlockedTensor& y) { ops::global_avg_pool(*xi, y, d); }});
        Tensor idx(DType::I32, {37});
        for (int k = 0; k < 37; ++k) idx.data<int32_t>()[k] = (k * 7 + 3) % s.c;
        auto ci = std::make_shared<ops::ChannelIndex>(ops::pack_channel_index(idx, s.c));
        v.push_back({"channel_select" + sn, 0.0,
                     [=] { return ops::make_blocked_tensor(s.n, 37, s.h, s.w); },
                     [=](Device d, BlockedTensor& y) { ops::channel_select(*xi, *ci, y, d); }});
        for (int ca : {16, 5}) {
            auto a = std::make_shared<BlockedTensor>(random_act(s.n, ca, s.h, s.w, true, *g));
            v.push_back({"concat " + std::to_string(ca) + "+" + std::to_string(s.c) + sn, 0.0,
                         [=] { return ops::make_blocked_tensor(s.n, ca + s.c, s.h, s.w); },
                         [=](Device d, BlockedTensor& y) { ops::concat(*a, *xi, y, d); }});
        }
    }
    return v;
}

void check_device_against_cpu(Device d) {
    const std::string problem = device_problem(d);
    if (!problem.empty()) {
        GTEST_SKIP() << "no usable " << device_name(d) << " device here (" << problem
                     << "); the op kernels were compiled for it but not executed";
    }
    int ran = 0;
    for (const Case& c : all_cases()) {
        BlockedTensor gpu = c.make_output(), cpu = c.make_output();
        try {
            c.run(d, gpu);
        } catch (const std::exception& e) {
            ADD_FAILURE() << c.name << " on " << device_name(d) << ": " << e.what();
            continue;
        }
        c.run(Device::Cpu, cpu);
        std::string first;
        const size_t bad = mismatches(gpu, cpu, c.rel, &first);
        EXPECT_EQ(bad, 0u) << c.name << " on " << device_name(d) << " differs from the CPU at "
                           << bad << " elements, first " << first;
        ++ran;
    }
    EXPECT_GT(ran, 50);
    std::printf("[ info ] %d op runs on %s matched the CPU kernels\n", ran, device_name(d));
}

TEST(OpsGpu, OpenCLMatchesCpu) { check_device_against_cpu(Device::OpenCL); }
TEST(OpsGpu, CudaMatchesCpu) { check_device_against_cpu(Device::Cuda); }

// A ConvNeXt-style block chained on the device (LN -> Linear+GELU -> Linear*gamma+x) without
// reading anything back in between, then compared with the same chain on the CPU.
TEST(OpsGpu, ChainedBlockStaysOnTheDevice) {
    const Device d = Device::OpenCL;
    const std::string problem = device_problem(d);
    if (!problem.empty()) GTEST_SKIP() << "no usable OpenCL device (" << problem << ")";
    std::mt19937 g(11);
    const int n = 1, c = 20, h = 7, w = 9;
    const Tensor xin = random_tensor({n, c, h, w}, false, 1, g);
    const ops::LayerNormParams ln = ops::pack_layer_norm(random_tensor({c}, false, 1, g),
                                                         random_tensor({c}, false, 1, g), 1e-6);
    const ops::PackedLinear l1 = ops::pack_linear(random_tensor({4 * c, c}, false, 1, g), nullptr);
    const ops::PackedLinear l2 = ops::pack_linear(random_tensor({c, 4 * c}, false, 1, g), nullptr);
    const ops::ChannelVector gamma = ops::pack_channels(random_tensor({c}, false, 1, g), "gamma");
    auto block = [&](Device dev) {
        BlockedTensor x = ops::to_blocked_tensor(xin);
        BlockedTensor t = ops::make_blocked_tensor(n, c, h, w);
        BlockedTensor hdn = ops::make_blocked_tensor(n, 4 * c, h, w);
        ops::layer_norm(x, ln, t, dev);
        ops::gemm(t, l1, {ops::Act::Gelu, nullptr, nullptr}, hdn, dev);
        ops::gemm(hdn, l2, {ops::Act::None, &x, &gamma}, t, dev);
        if (dev != Device::Cpu) {
            EXPECT_TRUE(t.buf.device_dirty());
            EXPECT_FALSE(hdn.buf.host_dirty());
        }
        return t;
    };
    BlockedTensor gpu = block(d), cpu = block(Device::Cpu);
    std::string first;
    EXPECT_EQ(mismatches(gpu, cpu, 1e-5, &first), 0u) << first;
}

// The buffer-flag contract of runtime/ops.h: a kernel may write a tensor through a view
// (cropped / embedded) if the view shares the tensor's device allocation and the tensor's flags
// are set afterwards; the next op then reads what the view wrote.
TEST(OpsGpu, WritingThroughAViewWithTheSharedAllocation) {
    const Device d = Device::OpenCL;
    const std::string problem = device_problem(d);
    if (!problem.empty()) GTEST_SKIP() << "no usable OpenCL device (" << problem << ")";
    std::mt19937 g(13);
    const BlockedTensor x = random_act(1, 96, 16, 16, false, g);
    const ops::LayerNormParams ln = ops::pack_layer_norm(random_tensor({96}, false, 1, g),
                                                         random_tensor({96}, false, 1, g), 1e-6);
    auto run = [&](Device dev) {
        BlockedTensor y = ops::make_blocked_tensor(1, 96, 16, 16);
        BlockedTensor z = ops::make_blocked_tensor(1, 96, 16, 16);
        if (dev != Device::Cpu) {
            y.buf.set_host_dirty(false);
            check_halide(y.buf.device_malloc(halide_opencl_device_interface()), "device malloc",
                         dev);
        }
        BlockedTensor view;
        view.buf = y.buf.cropped(0, 0, 16);
        view.channels = 96;
        ops::unary(ops::Unary::Gelu, x, view, dev);
        if (dev != Device::Cpu) y.buf.set_device_dirty(true);
        ops::layer_norm(y, ln, z, dev);
        return z;
    };
    BlockedTensor gpu = run(d), cpu = run(Device::Cpu);
    std::string first;
    EXPECT_EQ(mismatches(gpu, cpu, 1e-5, &first), 0u) << first;
}

// The network's depth-wise layers (runtime/layers.h) on the device, fed by a device-resident
// activation (GELU output, no host round trip), against the same layers on the CPU: dense
// 13x13 and SLaK's 13x5 + 5x13 + 5x5 row-table layer with bias, 15 channels (one padding lane) at
// 8x8 (kernel larger than the map), as SLaK's first stage runs them in a whole network.
TEST(OpsGpu, DepthwiseLayersFedFromTheDevice) {
    const Device d = Device::OpenCL;
    const std::string problem = device_problem(d);
    if (!problem.empty()) GTEST_SKIP() << "no usable OpenCL device (" << problem << ")";
    std::mt19937 g(7);
    const int C = 15, H = 8, W = 8;
    const BlockedTensor x0 = random_act(1, C, H, W, false, g);
    for (const std::string wl : {"dwconv2d:fwd:n1c15h8w8:k13x13:f32",
                                 "dwconv2d_multi:fwd:n1c15h8w8:b13x5d1,5x13d1,5x5d1:f32"}) {
        SCOPED_TRACE(wl);
        const Workload w = parse_workload(wl);
        std::map<std::string, Tensor> p;
        if (w.op == Op::DwConv2d) {
            p["w"] = random_tensor({C, 1, 13, 13}, false, 0, g);
        } else {
            p["w0"] = random_tensor({C, 1, 13, 5}, false, 0, g);
            p["w1"] = random_tensor({C, 1, 5, 13}, false, 0, g);
            p["w2"] = random_tensor({C, 1, 5, 5}, false, 0, g);
        }
        p["b"] = random_tensor({C}, false, 0, g);
        auto run = [&](Device dev) {
            BlockedTensor x = ops::make_blocked_tensor(1, C, H, W);
            BlockedTensor y = ops::make_blocked_tensor(1, C, H, W);
            ops::unary(ops::Unary::Gelu, x0, x, dev);
            make_dw_layer(w, dev, p)->run(x.buf, y.buf);
            return y;
        };
        BlockedTensor gpu = run(d), cpu = run(Device::Cpu);
        std::string first;
        EXPECT_EQ(mismatches(gpu, cpu, 1e-5, &first), 0u) << first;
    }
}

// Without a CUDA driver a kernel call must fail with a message, never abort.
TEST(OpsGpu, MissingCudaIsAnErrorNotAnAbort) {
    const std::string problem = device_problem(Device::Cuda);
    if (problem.empty()) GTEST_SKIP() << "a CUDA device exists here";
    EXPECT_NE(problem.find("cuda"), std::string::npos) << problem;
}

}  // namespace
}  // namespace lkc::test
