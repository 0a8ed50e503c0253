// Training kernels (issue 6, "kernels"): the backward of every op of runtime/ops.h that is not a
// depth-wise conv (those have their own backward kernels, runtime/dwconv2d*.h), BatchNorm in
// training mode, the label-smoothed cross-entropy, and the optimizers. AOT Halide kernels only
// (generators/train_*_generators.cpp, listed in cmake/lkc_variants.cmake); no libHalide.
//
// Conventions are those of runtime/ops.h:
//  - activations and their gradients are ops::BlockedTensor (16 lanes, W, H, ceil(C/16), N) with
//    zero padding lanes on input, written as zero on output;
//  - per-channel parameter gradients are ops::ChannelVector (16, ceil(C/16)), zero-padded
//    (make_channel_grad);
//  - GEMM (1x1 conv / Linear) weight gradients are in the forward's packed layout
//    (PackedLinear::weight: (co lane 16, 16 * ceil(Ci/16), ceil(Co/16)), padding zero), so an
//    optimizer can update PackedLinear::weight in place with them and the next forward uses it
//    without re-packing; dense conv weight gradients are in PyTorch layout [Co, Ci/groups, kh,
//    kw] (Halide dims (kw, kh, Ci/groups, Co)); pack_conv2d / pack_conv2d_backward re-pack the
//    (small) conv weights from it after a step;
//  - optimizer state is flat: any dense f32 buffer (FlatRef: PackedLinear::weight, a
//    ChannelVector's buffer, a flat [numel] buffer), one call per parameter tensor or one call
//    over a group packed into one buffer (every element is independent);
//  - outputs are caller-allocated with exactly the documented shape; a mismatch throws
//    std::invalid_argument naming the tensor, its shape and the expected shape; device failures
//    throw KernelError. Host / device coherence as in runtime/ops.h (GPU outputs are left on the
//    device; to_host / from_blocked_tensor / channel_values read them back);
//  - `accumulate` = true adds to the gradient output (g += ...) instead of overwriting it
//    (micro-batch gradient accumulation); the output must then hold the previous sum.
// Formulas and measured numbers: docs/training.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "runtime/ops.h"

namespace lkc::train_ops {

using ops::BlockedTensor;
using ops::ChannelVector;
using ops::PackedLinear;

// A zero per-channel gradient for C channels.
ChannelVector make_channel_grad(int channels);
// The C values of a per-channel vector (copied to the host first if a device holds them).
std::vector<float> channel_values(const ChannelVector& v);

// A dense f32 buffer of any rank seen as flat [numel] by the optimizers. Host and device copies
// are shared with the referenced buffer (its flags are updated after each call).
struct FlatRef {
    halide_buffer_t* raw = nullptr;
    template <int D>
    FlatRef(Halide::Runtime::Buffer<float, D>& b) : raw(b.raw_buffer()) {}
    FlatRef(const ChannelVector& v) : raw(v.buf.raw_buffer()) {}
    int64_t numel() const;
};

// ---- GEMM (1x1 conv / Linear) backward ------------------------------------------------------
// Forward y = W x + b (ops::gemm). dX = W^T dY runs ops::gemm with the transposed weights.

// W^T packed for ops::gemm (in_channels Co, out_channels Ci, zero bias), from weight [Co, Ci] or
// [Co, Ci, 1, 1] (host).
PackedLinear pack_linear_transposed(const Tensor& weight);
// A zero W^T of w's transposed shape, for transpose_linear.
PackedLinear make_linear_transposed(const PackedLinear& w);
// wt = W^T from the packed forward weights, on the device (after an optimizer step).
void transpose_linear(const PackedLinear& w, PackedLinear& wt, Device d = Device::Cpu);
// dx (+)= W^T dy: dy [N, Co, H, W], wt = W^T (pack_linear_transposed / transpose_linear),
// dx [N, Ci, H, W]. `kernel` names an ops::gemm variant; empty: ops::gemm's choice.
void linear_backward_data(const BlockedTensor& dy, const PackedLinear& wt, BlockedTensor& dx,
                          Device d = Device::Cpu, bool accumulate = false,
                          const std::string& kernel = "");

// The weight-gradient buffer of a layer: PackedLinear::weight's shape, zero.
Halide::Runtime::Buffer<float, 3> make_linear_weight_grad(int in_channels, int out_channels);
// dweight[co, ci] (+)= sum over n, h, w of dy[n, co, h, w] x[n, ci, h, w] (packed layout);
// dbias (optional) (+)= sum dy. x [N, Ci, H, W], dy [N, Co, H, W]. `kernel` names a compiled
// variant ("train_gemm_wgrad_t4c4_cpu"); empty: the runner's choice.
void linear_backward_weight(const BlockedTensor& x, const BlockedTensor& dy,
                            Halide::Runtime::Buffer<float, 3>& dweight, ChannelVector* dbias,
                            Device d = Device::Cpu, bool accumulate = false,
                            const std::string& kernel = "");
// The weight-gradient variant linear_backward_weight runs for this shape on d (diagnostics).
std::string linear_wgrad_kernel_name(const BlockedTensor& x, const BlockedTensor& dy, Device d);
// Every compiled weight-gradient variant on d; like the GEMMs' (ops::gemm_kernel_names) their
// results are bitwise equal.
std::vector<std::string> linear_wgrad_kernel_names(Device d);
// Packed [Co, Ci] weights or gradients (PackedLinear::weight layout) -> Tensor [Co, Ci] (host).
Tensor unpack_linear(const Halide::Runtime::Buffer<float, 3>& packed, int in_channels,
                     int out_channels);

// ---- Dense / grouped k x k conv backward -----------------------------------------------------
// Forward ops::conv2d. dW runs im2col + the GEMM weight gradient, dx ops::gemm on W^T + col2im;
// every stride / pad / dilation / groups of the forward is supported.

struct PackedConv2dBackward {
    int in_channels = 0, out_channels = 0, kh = 0, kw = 0;
    ops::ConvGeometry geom;
    // dx: W^T over the aligned columns (tap, ci) -> channel tap * 16 ceil(Ci/16) + ci.
    PackedLinear data_weight;
    // dW: the column layout (aligned as above, or compact tap * Ci + ci for few input channels,
    // e.g. the 3-channel stems: 27 columns instead of 144 for 3x3).
    int wgrad_cstride = 0, wgrad_columns = 0;
    int out_h(int h) const;
    int out_w(int w) const;
    // Workspaces (columns, column gradients), kept between calls of the same shape.
    mutable BlockedTensor cols, dcols;
    mutable Halide::Runtime::Buffer<float, 3> dcols_weight;
};
// weight [Co, Ci/groups, kh, kw] (PyTorch Conv2d), the forward's geometry.
PackedConv2dBackward pack_conv2d_backward(const Tensor& weight, const ops::ConvGeometry& g);
// A zero conv weight gradient: Halide dims (kw, kh, Ci/groups, Co) = PyTorch [Co, Ci/g, kh, kw].
Halide::Runtime::Buffer<float, 4> make_conv2d_weight_grad(const PackedConv2dBackward& w);
// The gradient as a Tensor [Co, Ci/groups, kh, kw] (host).
Tensor conv2d_weight_grad_tensor(const Halide::Runtime::Buffer<float, 4>& dweight);
// x [N, Ci, H, W], dy [N, Co, OH, OW]: dx [N, Ci, H, W] (written, not accumulated), dweight
// (+)=, dbias (+)= sum dy; each output optional (null: not computed; the stems skip dx).
void conv2d_backward(const BlockedTensor& x, const BlockedTensor& dy, const PackedConv2dBackward& w,
                     BlockedTensor* dx, Halide::Runtime::Buffer<float, 4>* dweight,
                     ChannelVector* dbias, Device d = Device::Cpu, bool accumulate = false);

// ---- Element-wise backward ------------------------------------------------------------------

// Which activation and which tensor v holds: Relu (x or y), Gelu (x, the erf form of ops::unary),
// Sigmoid (y = sigmoid(x)), SigmoidFromX (x).
enum class UnaryGrad { Relu = 0, Gelu = 1, Sigmoid = 2, SigmoidFromX = 3 };
// dx = f'(x) dy; v, dy, dx of one shape.
void unary_backward(UnaryGrad op, const BlockedTensor& v, const BlockedTensor& dy,
                    BlockedTensor& dx, Device d = Device::Cpu);

// y = a + b or a * b with numpy broadcasting (ops::binary), dy of y's shape: da (a's shape) =
// dy (Add) or dy * b (Mul) summed over the extents a was broadcast along; db likewise. Either
// output may be null (not computed). (A same-shape Add's gradients are dy itself: callers may
// use dy instead.)
void binary_backward(ops::Binary op, const BlockedTensor& a, const BlockedTensor& b,
                     const BlockedTensor& dy, BlockedTensor* da, BlockedTensor* db,
                     Device d = Device::Cpu);

// y = x * scale + shift per channel (ops::affine without activation: BatchNorm as affine,
// layer scale with shift 0): dx = scale dy, dscale (+)= sum x dy, dshift (+)= sum dy over
// N, H, W. Each output optional.
void affine_backward(const BlockedTensor& x, const ChannelVector& scale, const BlockedTensor& dy,
                     BlockedTensor* dx, ChannelVector* dscale, ChannelVector* dshift,
                     Device d = Device::Cpu, bool accumulate = false);
// dbias (+)= sum over N, H, W of dy (any bias added per channel).
void bias_backward(const BlockedTensor& dy, ChannelVector& dbias, Device d = Device::Cpu,
                   bool accumulate = false);

// ---- BatchNorm in training mode -------------------------------------------------------------

struct BatchNormTrain {
    ChannelVector gamma, beta, running_mean, running_var;
    float eps = 1e-5f;
    float momentum = 0.1f;
};
// weight, bias, running_mean, running_var [C] (PyTorch BatchNorm2d).
BatchNormTrain pack_batchnorm_train(const Tensor& weight, const Tensor& bias,
                                    const Tensor& running_mean, const Tensor& running_var,
                                    double eps = 1e-5, double momentum = 0.1);
// Saved batch statistics for the backward: mean and 1 / sqrt(biased var + eps) per channel.
struct BatchNormSaved {
    ChannelVector mean, rstd;
};
BatchNormSaved make_batchnorm_saved(int channels);
// y = (x - mean) rstd gamma + beta with the batch statistics of x (over N, H, W; N H W >= 2);
// writes `saved` and updates bn.running_mean / running_var in place:
// running = (1 - momentum) running + momentum * stat, unbiased variance (PyTorch).
void batchnorm_forward_train(const BlockedTensor& x, BatchNormTrain& bn, BlockedTensor& y,
                             BatchNormSaved& saved, Device d = Device::Cpu);
// dx, dgamma (+)=, dbeta (+)= for the forward above.
void batchnorm_backward(const BlockedTensor& x, const BlockedTensor& dy, const ChannelVector& gamma,
                        const BatchNormSaved& saved, BlockedTensor& dx, ChannelVector& dgamma,
                        ChannelVector& dbeta, Device d = Device::Cpu, bool accumulate = false);

// ---- Normalisations, pooling, channel movement ------------------------------------------------

// ops::layer_norm's backward: dx, dweight (+)=, dbias (+)= (statistics recomputed from x).
void layer_norm_backward(const BlockedTensor& x, const ops::LayerNormParams& p,
                         const BlockedTensor& dy, BlockedTensor& dx, ChannelVector& dweight,
                         ChannelVector& dbias, Device d = Device::Cpu, bool accumulate = false);
// ops::grn's backward: dx, dgamma (+)=, dbeta (+)= (dbeta also when the layer has no beta).
void grn_backward(const BlockedTensor& x, const ops::GrnParams& p, const BlockedTensor& dy,
                  BlockedTensor& dx, ChannelVector& dgamma, ChannelVector& dbeta,
                  Device d = Device::Cpu, bool accumulate = false);
// dy [N, C, 1, 1] -> dx [N, C, H, W] = dy / (H W) (dx's shape gives H, W).
void global_avg_pool_backward(const BlockedTensor& dy, BlockedTensor& dx, Device d = Device::Cpu);

// ops::channel_select's backward: dx[:, c] = sum over k with index[k] = c of dy[:, k].
struct ChannelSelectBackward {
    mutable Halide::Runtime::Buffer<int32_t, 2> table;  // (16 ceil(C/16), M): k's per c, -1 pad
    int in_channels = 0, out_channels = 0;              // C and K
};
ChannelSelectBackward pack_channel_select_backward(const ops::ChannelIndex& index);
// dy [N, K, H, W] -> dx [N, C, H, W].
void channel_select_backward(const BlockedTensor& dy, const ChannelSelectBackward& s,
                             BlockedTensor& dx, Device d = Device::Cpu);
// ops::concat's backward: dy [N, Ca + Cb, H, W] -> da [N, Ca, H, W], db [N, Cb, H, W].
void concat_backward(const BlockedTensor& dy, BlockedTensor& da, BlockedTensor& db,
                     Device d = Device::Cpu);
// y = x[:, offset : offset + C_y] (y's channel count C_y).
void channel_slice(const BlockedTensor& x, int offset, BlockedTensor& y, Device d = Device::Cpu);

// ---- Loss -----------------------------------------------------------------------------------

struct LossResult {
    double loss = 0;  // mean over the batch
    int correct = 0;  // samples whose first top-1 class is the label
};
// Softmax cross-entropy with label smoothing eps: target (1 - eps) onehot + eps / K. logits
// [N, K] blocked (W = H = 1), labels [N] in [0, K); dlogits [N, K] = d(mean loss) / d(logits).
LossResult softmax_cross_entropy(const BlockedTensor& logits, const std::vector<int32_t>& labels,
                                 double smoothing, BlockedTensor& dlogits, Device d = Device::Cpu);
// The same on plain f32 [N, K] tensors (host); dlogits may be null.
LossResult softmax_cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels,
                                 double smoothing, Tensor* dlogits, Device d = Device::Cpu);

// ---- Optimizers and gradient helpers (flat buffers, updated in place) --------------------------

struct AdamWConfig {
    double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double weight_decay = 0;  // decoupled; the caller passes 0 for 1-D parameters
};
// One PyTorch AdamW step at step number `step` (1 for the first step; bias corrections
// 1 - beta^step): p *= 1 - lr wd; m, v updated with g = grad * grad_scale;
// p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps). m, v start at zero.
void adamw_step(FlatRef param, FlatRef grad, FlatRef m, FlatRef v, const AdamWConfig& c,
                int64_t step, Device d = Device::Cpu, double grad_scale = 1.0);

struct SgdConfig {
    double lr = 0.1, momentum = 0, dampening = 0, weight_decay = 0;
    bool nesterov = false;
};
// One PyTorch SGD step: g = grad * grad_scale + wd p; with momentum: buf = g at step 1, else
// momentum buf + (1 - dampening) g; g = g + momentum buf (Nesterov) or buf; p -= lr g.
// Without momentum `buf` is not touched (any buffer of param's size).
void sgd_step(FlatRef param, FlatRef grad, FlatRef buf, const SgdConfig& c, int64_t step,
              Device d = Device::Cpu, double grad_scale = 1.0);
// ema = decay ema + (1 - decay) w.
void ema_update(FlatRef ema, FlatRef w, double decay, Device d = Device::Cpu);
// y = a x + b y (a term with a zero factor is skipped: b = 0 overwrites y even if it holds NaN).
void axpby(double a, FlatRef x, double b, FlatRef y, Device d = Device::Cpu);
inline void scale_buffer(FlatRef y, double s, Device d = Device::Cpu) { axpby(0.0, y, s, y, d); }
inline void zero_buffer(FlatRef y, Device d = Device::Cpu) { axpby(0.0, y, 0.0, y, d); }
// acc += g.
inline void accumulate(FlatRef acc, FlatRef g, Device d = Device::Cpu) {
    axpby(1.0, g, 1.0, acc, d);
}
// w = w * mask (0 where mask is 0); mask of w's size, values 0 / 1 (dynamic sparsity).
void mask_multiply(FlatRef w, FlatRef mask, Device d = Device::Cpu);

}  // namespace lkc::train_ops
