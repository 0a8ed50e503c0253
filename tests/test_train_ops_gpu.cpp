// GPU builds of the training kernels (runtime/train_ops.h), executed where a device exists:
// OpenCL (PoCL's CPU device here) against the CPU kernels on the same inputs (the CPU kernels are
// checked against double references in test_train_ops.cpp); CUDA only with a GPU (skipped with
// a message otherwise). Every element of every output buffer, padding lanes included, within
// 1e-5 of max(|cpu|, 1) (fp32 sums in another order, exp / erf / sqrt contracted differently by
// the device compiler). Links the Halide runtime only, not libHalide.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "runtime/ops.h"
#include "runtime/train_ops.h"

namespace lkc::test {
namespace {

using ops::BlockedTensor;
using ops::ChannelVector;
using Floats = std::vector<float>;
namespace to = train_ops;

Tensor random_tensor(const Shape& s, float lo, float hi, std::mt19937& g) {
    Tensor t(DType::F32, s);
    std::uniform_real_distribution<float> u(lo, hi);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(g);
    return t;
}

BlockedTensor random_act(int n, int c, int h, int w, std::mt19937& g) {
    return ops::to_blocked_tensor(random_tensor({n, c, h, w}, -1, 1, g));
}

// Whole buffers (padding included), read back to the host.
void append(Floats& out, BlockedTensor& t) {
    ops::to_host(t);
    out.insert(out.end(), t.buf.data(), t.buf.data() + t.buf.number_of_elements());
}
void append(Floats& out, const ChannelVector& v) {
    (void)to::channel_values(v);  // copies to the host
    out.insert(out.end(), v.buf.data(), v.buf.data() + v.buf.number_of_elements());
}
template <int D>
void append(Floats& out, Halide::Runtime::Buffer<float, D>& b) {
    if (b.device_dirty()) b.copy_to_host();
    out.insert(out.end(), b.data(), b.data() + b.number_of_elements());
}

// Probes the device with a tiny kernel; returns "" when usable, else the reason.
std::string device_problem(Device d) {
    try {
        std::mt19937 g(1);
        const BlockedTensor dy = random_act(1, 16, 2, 2, g);
        ChannelVector db = to::make_channel_grad(16);
        to::bias_backward(dy, db, d);
        (void)to::channel_values(db);
        return "";
    } catch (const std::exception& e) {
        return e.what();
    }
}

// One computation run on a device from fixed inputs: the concatenated outputs.
struct Case {
    std::string name;
    double rel;  // 0: exact
    std::function<Floats(Device)> run;
};

std::vector<Case> all_cases() {
    std::vector<Case> v;
    v.push_back({"linear backward data + weight + bias, accumulate", 1e-5, [](Device d) {
                     std::mt19937 g(3);
                     const BlockedTensor x = random_act(3, 37, 9, 11, g),
                                         dy = random_act(3, 21, 9, 11, g);
                     const Tensor w = random_tensor({21, 37}, -1, 1, g);
                     const ops::PackedLinear p = ops::pack_linear(w, nullptr);
                     ops::PackedLinear wt = to::make_linear_transposed(p);
                     to::transpose_linear(p, wt, d);
                     BlockedTensor dx = random_act(3, 37, 9, 11, g);
                     to::linear_backward_data(dy, wt, dx, d, true);
                     Halide::Runtime::Buffer<float, 3> dw = to::make_linear_weight_grad(37, 21);
                     ChannelVector db = to::make_channel_grad(21);
                     to::linear_backward_weight(x, dy, dw, &db, d);
                     to::linear_backward_weight(x, dy, dw, &db, d, true);
                     Floats out;
                     append(out, dx);
                     append(out, dw);
                     append(out, db);
                     return out;
                 }});
    struct C {
        int n, ci, co, h, w, k;
        ops::ConvGeometry geom;
    };
    for (const C s : {C{2, 3, 19, 9, 7, 3, {2, 1, 1, 1, 1}}, C{1, 19, 21, 8, 9, 3, {1, 2, 2, 2, 1}},
                      C{2, 10, 18, 6, 5, 3, {2, 1, 1, 1, 2}}}) {
        v.push_back(
            {"conv2d backward " + std::to_string(s.ci) + "->" + std::to_string(s.co) + " s" +
                 std::to_string(s.geom.stride) + " d" + std::to_string(s.geom.dilation) + " g" +
                 std::to_string(s.geom.groups),
             1e-5, [s](Device d) {
                 std::mt19937 g(4);
                 const to::PackedConv2dBackward w = to::pack_conv2d_backward(
                     random_tensor({s.co, s.ci / s.geom.groups, s.k, s.k}, -1, 1, g), s.geom);
                 const BlockedTensor x = random_act(s.n, s.ci, s.h, s.w, g);
                 const BlockedTensor dy = random_act(s.n, s.co, w.out_h(s.h), w.out_w(s.w), g);
                 BlockedTensor dx = ops::make_blocked_tensor(s.n, s.ci, s.h, s.w);
                 Halide::Runtime::Buffer<float, 4> dw = to::make_conv2d_weight_grad(w);
                 ChannelVector db = to::make_channel_grad(s.co);
                 to::conv2d_backward(x, dy, w, &dx, &dw, &db, d);
                 Floats out;
                 append(out, dx);
                 append(out, dw);
                 append(out, db);
                 return out;
             }});
    }
    v.push_back(
        {"unary, binary, affine, pool, select, concat backward", 1e-5, [](Device d) {
             std::mt19937 g(5);
             const BlockedTensor x = random_act(2, 37, 5, 3, g), dy = random_act(2, 37, 5, 3, g);
             Floats out;
             for (to::UnaryGrad op : {to::UnaryGrad::Relu, to::UnaryGrad::Gelu,
                                      to::UnaryGrad::Sigmoid, to::UnaryGrad::SigmoidFromX}) {
                 BlockedTensor dx = ops::make_blocked_tensor(2, 37, 5, 3);
                 to::unary_backward(op, x, dy, dx, d);
                 append(out, dx);
             }
             const BlockedTensor se = random_act(2, 37, 1, 1, g), one = random_act(2, 1, 5, 3, g);
             for (const BlockedTensor* b : {&x, &se, &one}) {
                 BlockedTensor da = ops::make_blocked_tensor(2, 37, 5, 3);
                 BlockedTensor db = ops::make_blocked_tensor(b->n(), b->channels, b->h(), b->w());
                 to::binary_backward(ops::Binary::Mul, x, *b, dy, &da, &db, d);
                 append(out, da);
                 append(out, db);
             }
             const ChannelVector sc = ops::pack_channels(random_tensor({37}, -1, 1, g), "s");
             BlockedTensor dx = ops::make_blocked_tensor(2, 37, 5, 3);
             ChannelVector ds = to::make_channel_grad(37), dt = to::make_channel_grad(37);
             to::affine_backward(x, sc, dy, &dx, &ds, &dt, d);
             append(out, dx);
             append(out, ds);
             append(out, dt);
             BlockedTensor px = ops::make_blocked_tensor(2, 37, 5, 3);
             to::global_avg_pool_backward(se, px, d);
             append(out, px);
             Tensor idx(DType::I32, {23});
             for (int k = 0; k < 23; ++k) idx.data<int32_t>()[k] = (k * 7 + 3) % 19;
             const to::ChannelSelectBackward sb =
                 to::pack_channel_select_backward(ops::pack_channel_index(idx, 19));
             const BlockedTensor dys = random_act(2, 23, 5, 3, g);
             BlockedTensor dxs = ops::make_blocked_tensor(2, 19, 5, 3);
             to::channel_select_backward(dys, sb, dxs, d);
             append(out, dxs);
             BlockedTensor a = ops::make_blocked_tensor(2, 19, 5, 3),
                           b = ops::make_blocked_tensor(2, 18, 5, 3);
             to::concat_backward(x, a, b, d);
             append(out, a);
             append(out, b);
             return out;
         }});
    v.push_back(
        {"batchnorm train forward + backward, layer_norm, grn backward", 1e-5, [](Device d) {
             std::mt19937 g(6);
             const BlockedTensor x = random_act(3, 19, 4, 5, g), dy = random_act(3, 19, 4, 5, g);
             to::BatchNormTrain bn = to::pack_batchnorm_train(
                 random_tensor({19}, 0.5, 1.5, g), random_tensor({19}, -1, 1, g),
                 random_tensor({19}, -1, 1, g), random_tensor({19}, 0.5, 2, g));
             to::BatchNormSaved saved = to::make_batchnorm_saved(19);
             BlockedTensor y = ops::make_blocked_tensor(3, 19, 4, 5);
             to::batchnorm_forward_train(x, bn, y, saved, d);
             BlockedTensor dx = ops::make_blocked_tensor(3, 19, 4, 5);
             ChannelVector dg = to::make_channel_grad(19), db = to::make_channel_grad(19);
             to::batchnorm_backward(x, dy, bn.gamma, saved, dx, dg, db, d);
             Floats out;
             for (BlockedTensor* t : {&y, &dx}) append(out, *t);
             for (const ChannelVector* c :
                  {&saved.mean, &saved.rstd, &bn.running_mean, &bn.running_var, &dg, &db})
                 append(out, *c);
             const ops::LayerNormParams ln = ops::pack_layer_norm(
                 random_tensor({19}, 0.5, 1.5, g), random_tensor({19}, -1, 1, g), 1e-6);
             ChannelVector lw = to::make_channel_grad(19), lb = to::make_channel_grad(19);
             to::layer_norm_backward(x, ln, dy, dx, lw, lb, d);
             append(out, dx);
             append(out, lw);
             append(out, lb);
             const Tensor beta = random_tensor({1, 1, 1, 19}, -1, 1, g);
             const ops::GrnParams gp =
                 ops::pack_grn(random_tensor({1, 1, 1, 19}, -1, 1, g), &beta, 1e-6);
             ChannelVector gg = to::make_channel_grad(19), gb = to::make_channel_grad(19);
             to::grn_backward(x, gp, dy, dx, gg, gb, d);
             append(out, dx);
             append(out, gg);
             append(out, gb);
             return out;
         }});
    v.push_back(
        {"softmax cross-entropy, smoothing 0.1", 1e-5, [](Device d) {
             std::mt19937 g(7);
             const BlockedTensor z = ops::to_blocked_tensor(random_tensor({5, 37}, -3, 3, g));
             BlockedTensor dz = ops::make_blocked_tensor(5, 37, 1, 1);
             const to::LossResult r = to::softmax_cross_entropy(z, {3, 36, 0, 17, 20}, 0.1, dz, d);
             Floats out;
             append(out, dz);
             out.push_back(float(r.loss));
             out.push_back(float(r.correct));
             return out;
         }});
    v.push_back({"adamw, sgd nesterov, ema, axpby, mask", 1e-5, [](Device d) {
                     std::mt19937 g(8);
                     const int n = 1003;
                     auto buf = [&](float lo, float hi) {
                         const Tensor t = random_tensor({n}, lo, hi, g);
                         Halide::Runtime::Buffer<float, 1> b(n);
                         for (int i = 0; i < n; ++i) b(i) = t.data<float>()[i];
                         return b;
                     };
                     auto p = buf(-1, 1), gr = buf(-1, 1), m = buf(0, 0), v = buf(0, 0),
                          sb = buf(0, 0);
                     to::AdamWConfig ac;
                     ac.weight_decay = 0.05;
                     for (int t = 1; t <= 2; ++t) to::adamw_step(p, gr, m, v, ac, t, d, 0.5);
                     auto q = buf(-1, 1);
                     to::SgdConfig sc;
                     sc.momentum = 0.9;
                     sc.nesterov = true;
                     sc.weight_decay = 0.01;
                     for (int t = 1; t <= 2; ++t) to::sgd_step(q, gr, sb, sc, t, d);
                     auto e = buf(-1, 1), y = buf(-1, 1), w = buf(-1, 1), mask = buf(0, 1);
                     for (int i = 0; i < n; ++i) mask(i) = mask(i) > 0.5f ? 1.0f : 0.0f;
                     to::ema_update(e, w, 0.999, d);
                     to::axpby(2.0, w, -0.5, y, d);
                     to::accumulate(y, w, d);
                     to::mask_multiply(w, mask, d);
                     Floats out;
                     for (auto* b : {&p, &m, &v, &q, &sb, &e, &y, &w}) append(out, *b);
                     return out;
                 }});
    return v;
}

void check_device_against_cpu(Device d) {
    const std::string problem = device_problem(d);
    if (!problem.empty()) {
        GTEST_SKIP() << "no usable " << device_name(d) << " device here (" << problem
                     << "); the training kernels were compiled for it but not executed";
    }
    int ran = 0;
    for (const Case& c : all_cases()) {
        Floats gpu;
        try {
            gpu = c.run(d);
        } catch (const std::exception& e) {
            ADD_FAILURE() << c.name << " on " << device_name(d) << ": " << e.what();
            continue;
        }
        const Floats cpu = c.run(Device::Cpu);
        ASSERT_EQ(gpu.size(), cpu.size()) << c.name;
        size_t bad = 0;
        std::string first;
        for (size_t i = 0; i < cpu.size(); ++i) {
            const double a = gpu[i], b = cpu[i];
            if (!(std::fabs(a - b) <= c.rel * std::max(std::fabs(b), 1.0)) && bad++ == 0)
                first = "element " + std::to_string(i) + ": " + std::to_string(a) + " vs cpu " +
                        std::to_string(b);
        }
        EXPECT_EQ(bad, 0u) << c.name << " on " << device_name(d) << " differs from the CPU at "
                           << bad << " elements, first " << first;
        ++ran;
    }
    std::printf("[ info ] %d training-kernel runs on %s matched the CPU kernels\n", ran,
                device_name(d));
}

TEST(TrainOpsGpu, OpenCLMatchesCpu) { check_device_against_cpu(Device::OpenCL); }
TEST(TrainOpsGpu, CudaMatchesCpu) { check_device_against_cpu(Device::Cuda); }

}  // namespace
}  // namespace lkc::test
