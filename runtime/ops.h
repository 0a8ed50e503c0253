// Whole-network ops on blocked activations (issue 5, "Ops"): the calls the graph executor makes
// per node for everything that is not a depth-wise conv. No libHalide: AOT kernels only
// (generators/ops_*_generators.cpp, listed in cmake/lkc_variants.cmake).
//
// Layout. Every activation is a BlockedTensor: the depth-wise kernels' NCHW16c buffer
// (16 lanes, W, H, ceil(C/16), N) plus its channel count C; 2-D [N, F] tensors use W = H = 1.
// Lanes >= C of the last block are zero on input, and every op writes them as zero.
//
// Weights and per-channel parameters are packed once per model load (pack_* below) into the
// layouts the kernels read; the packed objects own host buffers that are copied to a GPU the
// first time a kernel on that GPU uses them, and stay there.
//
// Calls. Each op writes into a caller-allocated output of exactly the documented shape (the
// executor's memory planner owns the memory) and throws std::invalid_argument naming the tensor,
// its shape and the expected shape when a shape does not match; device failures throw
// KernelError. On a GPU, inputs whose host copy is newer are copied to the device, outputs are
// left on the device (device-dirty): chained ops on one device never round-trip through the host;
// call to_host() (or from_blocked_tensor) before reading a result on the host. The ops trust the
// buffer's flags: code that writes a BlockedTensor through another halide_buffer_t (a view made
// with embedded() / cropped() / sliced()) must make the view share the tensor's device allocation
// (device_malloc the tensor first) and then set the tensor's own device_dirty / host_dirty, or a
// GPU op reads a device copy that was never written (uninitialised memory, NaN on PoCL).
//
// In place: the element-wise ops (affine, unary, binary with same-shape operands), layer_norm,
// grn and softmax may write their output into their (first) input's buffer; gemm may write into
// its residual's buffer. gemm, conv2d, channel_select and concat may not alias input and output.
#pragma once

#include <cstdint>
#include <string>

#include "HalideBuffer.h"
#include "runtime/device.h"
#include "runtime/dwconv2d.h"
#include "runtime/tensor.h"

namespace lkc::ops {

// An activation in the blocked layout.
struct BlockedTensor {
    Blocked buf;       // (16, W, H, ceil(C/16), N)
    int channels = 0;  // C

    int n() const { return buf.dim(4).extent(); }
    int h() const { return buf.dim(2).extent(); }
    int w() const { return buf.dim(1).extent(); }
    int blocks() const { return buf.dim(3).extent(); }
    Shape shape() const { return {n(), channels, h(), w()}; }  // logical NCHW
};

// A zero-filled activation [N, C, H, W] (host memory).
BlockedTensor make_blocked_tensor(int n, int c, int h, int w);
// NCHW [N, C, H, W] or NC [N, C] f32 tensor -> blocked.
BlockedTensor to_blocked_tensor(const Tensor& t);
// Copies the data to the host if a device holds the newer copy.
void to_host(BlockedTensor& t);
// Blocked -> NCHW [N, C, H, W] f32 tensor, or [N, C] when nc is true (then H = W = 1).
Tensor from_blocked_tensor(BlockedTensor& t, bool nc = false);

// Fused activations (values shared with the kernels' `act` input).
enum class Act { None = 0, Relu = 1, Gelu = 2 };

// A per-channel parameter vector, zero-padded to whole blocks: (16, ceil(C/16)).
struct ChannelVector {
    mutable Halide::Runtime::Buffer<float, 2> buf;
    int channels = 0;
};
// From any f32 / f64 tensor with C elements (e.g. [C] or GRN's [1, 1, 1, C]). `what` names the
// tensor in errors.
ChannelVector pack_channels(const Tensor& v, const std::string& what);

// Argument checks shared by ops and train_ops: `prefix` starts each message ("ops::gemm: "); the
// message names the tensor / parameter and the expected layout, shape or channel count.
// std::invalid_argument.
void check_blocked_layout(const std::string& prefix, const char* role, const BlockedTensor& t);
void check_blocked_shape(const std::string& prefix, const char* role, const BlockedTensor& t,
                         const Shape& want);
void check_channel_vector(const std::string& prefix, const char* role, const ChannelVector& v,
                          int c);
ChannelVector constant_channels(int c, float value);

// ---- 1x1 conv / Linear as a GEMM -----------------------------------------------------------

struct PackedLinear {
    int in_channels = 0, out_channels = 0;
    mutable Halide::Runtime::Buffer<float, 3> weight;  // (16, 16 * ceil(Ci/16), ceil(Co/16))
    ChannelVector bias;                                // zeros when the layer has none
    ChannelVector ones;                                // the scale of an epilogue without one
};
// weight [Co, Ci] (Linear) or [Co, Ci, 1, 1] (1x1 conv); bias [Co] or null.
PackedLinear pack_linear(const Tensor& weight, const Tensor* bias);

// y = residual + scale * act(W x + bias), each part optional.
struct Epilogue {
    Act act = Act::None;
    const BlockedTensor* residual = nullptr;  // shape of y; may be y itself
    const ChannelVector* scale = nullptr;     // layer scale gamma [Co]
};

// x [N, Ci, H, W] -> y [N, Co, H, W]. `kernel` names a compiled variant ("ops_gemm_t7c3_cpu";
// tests, benchmarks); empty: the variant with the least estimated work for the shape.
void gemm(const BlockedTensor& x, const PackedLinear& w, const Epilogue& e, BlockedTensor& y,
          Device d = Device::Cpu, const std::string& kernel = "");
// The variant gemm runs for x and w on d (diagnostics).
std::string gemm_kernel_name(const BlockedTensor& x, const PackedLinear& w, Device d);
// Every compiled GEMM variant on d. They differ in register tiles and loop order only, not in the
// order of the reduction: their outputs are bitwise equal (tests/test_lane_blocks.cpp), so a
// caller may time them and keep the fastest.
std::vector<std::string> gemm_kernel_names(Device d);

// ---- Dense / grouped k x k conv ------------------------------------------------------------

struct ConvGeometry {
    int stride = 1, pad_h = 0, pad_w = 0, dilation = 1, groups = 1;
};

// Shared by pack_conv2d and train_ops::pack_conv2d_backward: weight [Co, Ci/groups, kh, kw]
// (positive extents) and a geometry with groups dividing Co, stride, dilation >= 1, pads >= 0.
void check_conv2d_weight(const std::string& prefix, const Tensor& weight, const ConvGeometry& g);

struct PackedConv2d {
    int in_channels = 0, out_channels = 0, kh = 0, kw = 0;
    ConvGeometry geom;
    mutable Halide::Runtime::Buffer<float, 6> weight;   // (16, 16, kw, kh, K/16, ceil(Co/16))
    mutable Halide::Runtime::Buffer<int32_t, 1> kbase;  // first input block per output block
    ChannelVector bias;
    int out_h(int h) const;  // (h + 2 pad_h - dilation (kh - 1) - 1) / stride + 1
    int out_w(int w) const;
};
// weight [Co, Ci/groups, kh, kw] (PyTorch Conv2d), bias [Co] or null.
PackedConv2d pack_conv2d(const Tensor& weight, const Tensor* bias, const ConvGeometry& g);

// x [N, Ci, H, W] -> y [N, Co, out_h(H), out_w(W)], y = act(conv(x) + bias).
void conv2d(const BlockedTensor& x, const PackedConv2d& w, Act act, BlockedTensor& y,
            Device d = Device::Cpu);

// ---- Per-channel affine: BatchNorm (inference), layer scale, bias --------------------------

struct ChannelAffine {
    ChannelVector scale, shift;
};
// BatchNorm2d inference: scale = weight / sqrt(running_var + eps), shift = bias - mean * scale
// (computed in double). All four [C].
ChannelAffine batchnorm_affine(const Tensor& weight, const Tensor& bias, const Tensor& mean,
                               const Tensor& var, double eps);
// Layer scale: scale = gamma, shift = 0.
ChannelAffine layer_scale_affine(const Tensor& gamma);

// y = act(x * scale + shift); y like x. act: None or Relu (BN + ReLU), Gelu also works.
void affine(const BlockedTensor& x, const ChannelAffine& a, Act act, BlockedTensor& y,
            Device d = Device::Cpu);

// ---- Element-wise ---------------------------------------------------------------------------

enum class Unary { Relu = 0, Gelu = 1, Sigmoid = 2 };
// y = f(x); y like x.
void unary(Unary op, const BlockedTensor& x, BlockedTensor& y, Device d = Device::Cpu);

enum class Binary { Add = 0, Mul = 1 };
// y = a (op) b with numpy broadcasting: each of N, C, H, W of a and b equals y's or is 1, e.g.
// [N, C, H, W] * [N, C, 1, 1] (SE). y [max extents].
void binary(Binary op, const BlockedTensor& a, const BlockedTensor& b, BlockedTensor& y,
            Device d = Device::Cpu);

// ---- Reductions -----------------------------------------------------------------------------

struct LayerNormParams {
    ChannelVector weight, bias;
    float eps = 1e-6f;
};
LayerNormParams pack_layer_norm(const Tensor& weight, const Tensor& bias, double eps);
// Per pixel over its C channels, biased variance; y like x.
void layer_norm(const BlockedTensor& x, const LayerNormParams& p, BlockedTensor& y,
                Device d = Device::Cpu);

struct GrnParams {
    ChannelVector gamma, beta;  // beta zeros when the layer has none
    float eps = 1e-6f;
};
// gamma, beta with C elements (official shape [1, 1, 1, C]); beta may be null.
GrnParams pack_grn(const Tensor& gamma, const Tensor* beta, double eps);
// GRN (graph/ir.h); y like x.
void grn(const BlockedTensor& x, const GrnParams& p, BlockedTensor& y, Device d = Device::Cpu);

// Softmax over channels per pixel; y like x.
void softmax(const BlockedTensor& x, BlockedTensor& y, Device d = Device::Cpu);

// x [N, C, H, W] -> y [N, C, 1, 1] (also the blocked form of [N, C]).
void global_avg_pool(const BlockedTensor& x, BlockedTensor& y, Device d = Device::Cpu);

// ---- Channel gather / concat ----------------------------------------------------------------

struct ChannelIndex {
    mutable Halide::Runtime::Buffer<int32_t, 1> index;  // [K]
    int in_channels = 0;                                // C of the tensors it applies to
};
// index: int32 / int64 / integral f32 [K], values in [0, in_channels).
ChannelIndex pack_channel_index(const Tensor& index, int in_channels);
// y[:, k] = x[:, index[k]]: x [N, C, H, W] -> y [N, K, H, W].
void channel_select(const BlockedTensor& x, const ChannelIndex& idx, BlockedTensor& y,
                    Device d = Device::Cpu);
// y = [a, b] along channels: [N, Ca, H, W], [N, Cb, H, W] -> [N, Ca + Cb, H, W].
void concat(const BlockedTensor& a, const BlockedTensor& b, BlockedTensor& y,
            Device d = Device::Cpu);

}  // namespace lkc::ops
