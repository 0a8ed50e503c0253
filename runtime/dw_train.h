// Depth-wise layers for training, on blocked activations: forward, backward-data and
// backward-weight of B >= 1 depth-wise kernels that read one input and write one output each (the
// train form of a re-parameterised block: every branch has its own output because its BatchNorm
// normalises it with its own batch statistics).
//
//   B == 1: the dense kernels (dwconv2d fwd / bwd_data / bwd_weight), any stride.
//   B  > 1: the row-table kernels (dwconv2d_taps_fwd / _wgrad) in one pass over x for all
//           branches (forward: one output slot per branch; backward-data: one pass over all
//           branches' dy, summed into dx; backward-weight: every branch's gradient from one pass
//           over x and the stacked dy). Stride 1, 'same' padding.
//
// No layout conversion: x, dx and the caller's stacked outputs / gradients are passed to the
// kernels as they are (runtime/layers.h's OpRunner-free path). CPU only: the training loop runs
// on the host (docs/training.md).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "runtime/dwconv2d.h"
#include "runtime/dwconv2d_taps.h"
#include "runtime/registry.h"
#include "runtime/workload.h"

namespace lkc {

class DwTrainLayer {
  public:
    // Input n x c x h x w; throws std::invalid_argument for an even or oversized kernel, B > 1
    // with stride != 1, or a device other than the CPU.
    DwTrainLayer(int n, int c, int h, int w, int stride, const std::vector<Branch>& branches,
                 Device d = Device::Cpu);
    ~DwTrainLayer();

    int branches() const { return int(br_.size()); }
    int out_h() const;
    int out_w() const;
    // A zero stacked buffer (16, OW, OH, B, ceil(C/16), N) for the outputs or their gradients.
    Stacked make_outputs() const;

    // Branch i's weights [C][kh][kw] row-major and bias [C] (nullptr: none). Call again after
    // every update: packing is a host copy (the row-table slots: one pass over the weights).
    void set_weights(const std::vector<const float*>& w, const std::vector<const float*>& b);
    // ys slot i = branch i's output.
    void forward(const Blocked& x, Stacked& ys);
    // dx = sum_i conv_i^T(dys slot i), overwritten (padding lanes written as 0).
    void backward_data(const Stacked& dys, Blocked& dx);
    // dw[i] += dL/dw_i ([C][kh][kw]), db[i] += dL/db_i where db[i] is not null.
    void backward_weight(const Blocked& x, const Stacked& dys, const std::vector<float*>& dw,
                         const std::vector<float*>& db);

    // B == 1, stride 1: lane-block row sparsity. rows holds ceil(C/16) * kh flags ([block][u],
    // 1 = kernel row u of the block's 16 channels kept; the caller keeps the weights of pruned
    // rows at 0). While set, measure_variants also times the row-mask variants (pruned rows cost
    // nothing; their gradient is 0) and use_variants accepts them. Empty: no mask (the passes go
    // back to variants without one). Throws std::invalid_argument for a wrong length, B > 1 or
    // stride != 1.
    void set_row_mask(const std::vector<uint8_t>& rows);
    bool has_row_mask() const;

    // B == 1: times every compiled CPU variant of each pass on these buffers (x, and the layer's
    // own scratch for the outputs; one warm-up, then the minimum of `reps` calls interleaved over
    // the variants) and keeps the fastest per pass. Returns a one-line summary. B > 1: no-op
    // (one row-table variant).
    std::string measure_variants(const Blocked& x, int reps = 3);
    // Run named variants (measure_variants' choice from a checkpoint); throws
    // std::invalid_argument for a name that is not a compiled variant of that pass.
    void use_variants(const std::string& fwd, const std::string& bwd_data,
                      const std::string& bwd_weight);
    // The variant names of the three passes.
    std::vector<std::string> variant_names() const;

    // The kernels that run, "fwd / bwd_data / bwd_weight".
    std::string kernel_names() const;

  private:
    struct Impl;
    std::vector<Branch> br_;
    std::unique_ptr<Impl> impl_;
};

}  // namespace lkc
