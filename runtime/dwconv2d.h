// Running dense depth-wise conv kernels: layout conversion at the edges (NCHW <-> blocked
// NCHW16c), buffer set-up, the AOT call, device copies.
#pragma once

#include <map>
#include <string>

#include "HalideBuffer.h"
#include "runtime/device.h"
#include "runtime/op_runner.h"
#include "runtime/registry.h"
#include "runtime/tensor.h"
#include "runtime/workload.h"

namespace lkc {

using Blocked = Halide::Runtime::Buffer<float, 5>;  // (16, W, H, ceil(C/16), N)

// NCHW f32 tensor -> blocked buffer (channels padded with zeros to a multiple of 16).
Blocked to_blocked(const Tensor& nchw);
// Writes an NCHW f32 tensor into an existing blocked buffer (or a 5-D slice of a stacked one) of
// the same N, ceil(C/16), H, W; padding channels are left as they are.
void to_blocked_into(const Tensor& nchw, Blocked& b);
// Blocked buffer -> NCHW f32 tensor with C channels (padding channels dropped).
Tensor from_blocked(const Blocked& b, int64_t channels);
// Fresh zero blocked buffer for N x C x H x W.
Blocked make_blocked(int n, int c, int h, int w);

// Dense kernels' weights (kw, kh, 1, C) = the centred kh x kw taps of w [C, 1, KH, KW] row-major
// (all of them when the extents agree; fewer for a kernel cropped to the map, workload.h); and
// the adjoint: dw [C, 1, KH, KW] += src at those taps.
void centred_weights(const float* w, int KH, int KW, Halide::Runtime::Buffer<float, 4>& dst);
void add_centred(const Halide::Runtime::Buffer<float, 4>& src, int KH, int KW, float* dw);

// A workload bound to a kernel variant and a device, with its buffers in the kernel's layout.
// run() is one kernel call and nothing else (what the benchmark times).
class DwConv2dRunner : public OpRunner {
  public:
    // `kernel_name` empty: select_kernel() picks. Throws std::invalid_argument for a workload the
    // kernels do not cover (op, dtype, device).
    DwConv2dRunner(const Workload& w, Device d, const std::string& kernel_name = "");

    const Workload& workload() const override { return w_; }
    const KernelInfo& kernel() const { return *k_; }
    std::string kernel_name() const override { return k_->name; }

    // Inputs in file layout (names of architecture.md: x, w, b, dy); checks shapes against the
    // workload and names the tensor and expected shape when they differ.
    void set_inputs(const std::map<std::string, Tensor>& inputs) override;
    // Fills the inputs with deterministic pseudo-random values in [-1, 1] (benchmarks).
    void fill_random(uint32_t seed) override;
    // One kernel call; throws KernelError on failure (e.g. device missing).
    void run() override;
    void sync() override;
    Selection selection() const override { return sel_; }
    // Outputs in file layout: y | dx | dw, db.
    std::map<std::string, Tensor> outputs() override;

  private:
    Workload w_;
    Workload kw_;  // what the kernel runs: w_ cropped to the taps that meet the map
    Device d_;
    const KernelInfo* k_;
    Selection sel_;
    Blocked x_, y_;                               // x (fwd/bwd_weight input), y/dy, dx
    Halide::Runtime::Buffer<float, 4> wt_, dwt_;  // [C,1,Kh,Kw] as (Kw, Kh, 1, C)
    Halide::Runtime::Buffer<float, 1> b_, db_;
    Blocked out_;
};

// Shapes, in file layout, of the inputs and outputs of a workload: {"x": [N,C,H,W], ...}.
std::map<std::string, Shape> dwconv2d_input_shapes(const Workload& w);
std::map<std::string, Shape> dwconv2d_output_shapes(const Workload& w);

// Convenience: runs w once on d with file-layout inputs, returns file-layout outputs.
std::map<std::string, Tensor> run_dwconv2d(const Workload& w, Device d,
                                           const std::map<std::string, Tensor>& inputs,
                                           const std::string& kernel_name = "",
                                           std::string* used_kernel = nullptr);

}  // namespace lkc
