// Running dwconv2d_multi and shiftwise on the row-table generators (dwconv2d_taps_fwd/_wgrad):
// the op's kernels become a TapPlan (distinct offsets, grouped into runs of 8/5/3/1 taps), weights
// are summed into the plan's slots per call, gradients are read back from them.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "HalideBuffer.h"
#include "runtime/dwconv2d.h"
#include "runtime/op_runner.h"
#include "runtime/registry.h"

namespace lkc {

// One depth-wise kernel of an op: tap (u, v) reads in[in](p + (row0 + u*dil, col0 + v*dil)) and
// adds to out[out](p) (transposed plans negate the offset).
struct TapKernel {
    int kh = 1, kw = 1, dil = 1;
    int row0 = 0, col0 = 0;
    int in = 0, out = 0;
};

// Distinct (in, out, dy, dx) taps of a set of kernels, covered by runs ("entries") of the
// generator's width classes; taps of different kernels at one offset share a weight slot.
class TapPlan {
  public:
    static constexpr int kClasses = 4;
    static constexpr std::array<int, kClasses> kChunk = {8, 5, 3, 1};  // = generator chunk0..3

    // map_h, map_w > 0: taps with |dy| >= map_h or |dx| >= map_w never meet the image (stride
    // 1, same-size maps) and are dropped (weight ignored, gradient 0): 51x51 on 14x14 keeps 27x27.
    TapPlan(const std::vector<TapKernel>& kernels, bool transpose, int map_h = 0, int map_w = 0);

    int entries() const { return int(entry_.size()); }
    int slots() const { return slots_; }
    int seg(int k) const { return seg_[k]; }  // first entry of class k; seg(kClasses) = entries
    int left() const { return left_; }
    int right() const { return right_; }
    int top() const { return top_; }
    int bottom() const { return bottom_; }
    // Distinct taps and weight slots computed per output pixel (padding lanes included).
    int distinct_taps() const { return distinct_; }
    // Estimated cost on an h x w map in the units of registry.h's estimated_cost (multiply-adds
    // per output row weighted by loads per FMA, plus staging): forward tile of `tile` columns, or
    // backward-weight steps of 8 output columns.
    double estimated_cost(int h, int w, bool wgrad, int tile = 14) const;
    const Halide::Runtime::Buffer<int32_t, 2>& rows() const { return rows_; }

    // Sums per-kernel weights (kernel i: C*kh*kw floats, row-major [C][kh][kw], scaled by
    // scale[i][c] when given) into the blocked slot buffer (16, slots, ceil(C/16)).
    void pack(const std::vector<const float*>& w, int channels,
              const std::vector<const float*>& scale, Halide::Runtime::Buffer<float, 3>& dst) const;
    // Reads the gradient of kernel i's weights (C*kh*kw) from the wgrad outputs g[class].
    void unpack(const std::array<Halide::Runtime::Buffer<float, 4>, kClasses>& g, int i,
                int channels, float* dst) const;
    // Adds 1 to the weight of kernel i's tap (u, v) for every channel (shift-wise identity).
    void add_identity(int i, int u, int v, int channels,
                      Halide::Runtime::Buffer<float, 3>& dst) const;

  private:
    struct Entry {
        int dy, dx, in, out, cls;
    };
    std::vector<TapKernel> kernels_;
    std::vector<std::vector<int>> slot_of_;  // per kernel, per tap u*kw+v: weight slot or -1
    std::vector<std::vector<std::pair<int, int>>> lane_of_;  // per kernel tap: (entry, lane)/-1
    std::vector<Entry> entry_;
    std::array<int, kClasses + 1> seg_{};
    int slots_ = 0, distinct_ = 0;
    int left_ = 0, right_ = 0, top_ = 0, bottom_ = 0;
    Halide::Runtime::Buffer<int32_t, 2> rows_;
};

using Stacked = Halide::Runtime::Buffer<float, 6>;  // (16, W, H, S, ceil(C/16), N)

// The row-table kernels' 6-D view (16, W, H, 1, CB, N) of a blocked buffer, sharing its host and
// device storage and its dirty flags. Not Buffer::embedded(): embed() translates the new
// dimension, and translate() drops the view's device allocation (HalideBuffer.h), so on a GPU the
// kernel read and wrote fresh device copies — zeros in y (whole networks on OpenCL were wrong).
Stacked stacked_view(const Blocked& b);

// The depth-wise kernels of a dwconv2d_multi or shiftwise workload as TapPlan sees them
// (shift-wise: yh, yv, ys; backward-data swaps inputs and outputs; the fused inference form
// writes every kernel to output 0).
std::vector<TapKernel> tap_kernels_of(const Workload& w, bool fused_inference);
// The TapPlan a TapsRunner builds for w (without inputs).
TapPlan tap_plan_of(const Workload& w);
// The dense workload of w's merged kernel (dwconv2d_multi), or nothing if it exceeds 63 x 63.
bool merged_dense_of(const Workload& w, Workload* merged);

// OpRunner for dwconv2d_multi and shiftwise (all passes, stride 1).
//
// dwconv2d_multi can also run as the merged dense kernel (reparam::merge_branches; backward-weight
// gathers each branch's gradient from the merged one): chosen when the dense registry's cost
// estimate for the merged kernel is lower than the plan's (small maps, where the dense pixel-form
// kernels skip the padding taps that whole tap runs cannot), or when `kernel_name` names a dense
// variant.
class TapsRunner : public OpRunner {
  public:
    TapsRunner(const Workload& w, Device d, const std::string& kernel_name = "");
    const Workload& workload() const override { return w_; }
    std::string kernel_name() const override {
        return merged_ ? merged_->kernel_name() : std::string(k_->name);
    }
    // The plan of the taps path (also built when the merged kernel runs).
    const TapPlan& plan() const { return *plan_; }
    bool runs_merged() const { return merged_ != nullptr; }
    void set_inputs(const std::map<std::string, Tensor>& inputs) override;
    void fill_random(uint32_t seed) override;
    void run() override;
    void sync() override;
    Selection selection() const override { return sel_; }
    std::map<std::string, Tensor> outputs() override;

  private:
    void build_plan(bool fused_inference);
    void prepare_weights();

    Workload w_;
    Device d_;
    const KernelInfo* k_;
    Selection sel_;
    std::map<std::string, Tensor> in_;  // file-layout inputs (weights, tables, scales)
    bool inference_ = false;            // shiftwise fwd with ah, av, as, b: one output y
    std::unique_ptr<TapPlan> plan_;
    std::vector<TapKernel> kernels_;
    Stacked x_, dy_, out_;
    Halide::Runtime::Buffer<float, 3> wt_, bias_, db_;
    std::array<Halide::Runtime::Buffer<float, 4>, TapPlan::kClasses> g_;
    Workload merged_w_;                       // dense workload of the merged kernel
    std::unique_ptr<DwConv2dRunner> merged_;  // set when the merged kernel runs
};

}  // namespace lkc
