// Running dwconv2d_sparse (SLaK-style per-channel unstructured masks) on the tap-list generators
// dwconv2d_sparse_fwd (forward and backward-data) and dwconv2d_sparse_wgrad (backward-weight).
//
// The preparation step (build_sparse_tables) turns the mask (and for forward / backward-data the
// weights, folded as w*mask) into per-channel tap lists in the kernels' table layout
// (generators/dwconv2d_sparse_algorithm.h): taps become offsets into the staged input plane
// (phase planes for stride 2, output phases for backward-data at stride 2), sorted by
// (column-skip class, row offset, column offset), and taps that can only read padding for this
// map size are dropped. The kernels then do work proportional to the listed taps. It runs in
// set_inputs() / fill_random(), never in run().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "HalideBuffer.h"
#include "runtime/op_runner.h"
#include "runtime/registry.h"

namespace lkc {

// How a sparse kernel variant wants its tables laid out (from its registry row).
struct SparseLayout {
    int tile = 56;     // output columns of the register tile (fwd) / of a row step (wgrad)
    int chunk = 4;     // output rows of the register tile (fwd) / taps per block (wgrad)
    int copies = 2;    // copies per staged input row (fwd: 2 or 1; wgrad: 3 or 1)
    int segments = 0;  // column-skip segments per side (fwd)
};

// The layout of variant k (SparseFwd or SparseWgrad): tile and chunk from the registry row, copies
// from its `stage` flag, segments from its schedule (-1: min(3, tile/8 - 1)).
SparseLayout sparse_layout(const KernelInfo& k);

// Tap tables of one sparse workload. Index conventions: list entry t of channel c and output
// phase q is at (c*Q + q)*T + t.
struct SparseTables {
    int phases = 1;     // Q: output phases (S*S for backward-data at stride S, else 1)
    int in_stride = 1;  // S of the input phase planes (forward / backward-weight stride, else 1)
    int pad_x = 0, pad_y = 0;        // max |offset| over all listed taps, in plane pixels
    int pitch = 16, row_pitch = 16;  // staged copy pitch and row pitch (columns)
    int out_w = 0, out_h = 0;        // output buffer extents the kernel writes (tile-rounded)
    int max_taps = 1;                // T: list length (>= 1, a multiple of the alignment)
    int segments = 0;                // M of the starts table (2M + 1 segments)
    std::vector<int32_t> taps;       // (4, T, Q, C): off0, off1, oy, plane
    std::vector<float> weights;      // (T, Q, C): w*mask (zeros without weights)
    std::vector<int32_t> starts;     // (2*pad_y + 2, 2M + 1, Q, C): segment starts per row offset
    std::vector<int32_t> count;      // (Q, C): entries in use
    std::vector<int32_t> position;   // (T, Q, C): kernel position u*Kw + v of the entry, -1 if none
    int64_t listed = 0;              // entries in use over all channels and phases
};

// Builds the tables for w (dwconv2d_sparse; any pass) laid out for `layout`, from a [C,1,Kh,Kw]
// 0/1 mask (C*Kh*Kw bytes, row-major) and, for fwd / bwd_data, the weights (C*Kh*Kw floats, or
// null for zeros). all_taps lists every kernel position instead of the mask's non-zeros
// (bwd_weight growth criteria). Throws std::invalid_argument for a mask of the wrong length.
SparseTables build_sparse_tables(const Workload& w, const SparseLayout& layout,
                                 const std::vector<uint8_t>& mask, const float* weights,
                                 bool all_taps = false);

// Estimated cost of running w with the sparse variant k (registry ranking among sparse variants of
// one kind and device; arbitrary units, lower is faster).
double sparse_estimated_cost(const KernelInfo& k, const Workload& w);

// OpRunner for dwconv2d_sparse. Inputs (file layout, runtime/op_inputs.h):
//   fwd x, w, mask, [b] -> y;  bwd_data dy, w, mask -> dx;  bwd_weight x, dy, mask -> dw, db
// Backward-weight gives dw at the mask's non-zeros and 0 elsewhere, or with set_all_taps(true) the
// gradient at every kernel position (growth criteria for dynamic sparsity).
class SparseDwConv2dRunner : public OpRunner {
  public:
    // `kernel_name` empty: the registry picks. Throws std::invalid_argument for a workload the
    // sparse kernels do not cover (op, dtype, device) or a kernel that cannot run it.
    SparseDwConv2dRunner(const Workload& w, Device d, const std::string& kernel_name = "");

    const Workload& workload() const override { return w_; }
    std::string kernel_name() const override { return k_->name; }
    const KernelInfo& kernel() const { return *k_; }

    void set_inputs(const std::map<std::string, Tensor>& inputs) override;
    // Random inputs with a random mask of density `density()` per channel (each channel its own
    // pattern), floats in [-1, 1].
    void fill_random(uint32_t seed) override;
    void run() override;
    void sync() override;
    Selection selection() const override { return sel_; }
    std::map<std::string, Tensor> outputs() override;

    // Backward-weight only: gradient at all kernel positions (true) or only where the mask is 1
    // (false, default). Rebuilds the tables when inputs are already set.
    void set_all_taps(bool all);
    bool all_taps() const { return all_taps_; }
    // Mask density fill_random() uses (default 0.5).
    void set_density(double density);
    double density() const { return density_; }
    // The tables of the current inputs (empty before set_inputs / fill_random).
    const SparseTables& tables() const { return tables_; }

  private:
    void prepare();  // mask (+ weights) -> tables -> kernel buffers

    Workload w_;
    Device d_;
    const KernelInfo* k_;
    Selection sel_;
    SparseLayout layout_;
    bool all_taps_ = false;
    double density_ = 0.5;
    bool have_inputs_ = false;
    std::vector<uint8_t> mask_;
    std::vector<float> wts_;  // [C,Kh,Kw] (fwd, bwd_data)
    SparseTables tables_;

    Halide::Runtime::Buffer<float, 4> in_;  // x (fwd, bwd_weight) or dy (bwd_data): (W, H, C, N)
    Halide::Runtime::Buffer<float, 4> dy_;  // bwd_weight dy: (OW, OH, C, N)
    Halide::Runtime::Buffer<int32_t, 4> taps_, starts_;
    Halide::Runtime::Buffer<float, 3> weights_;
    Halide::Runtime::Buffer<int32_t, 2> count_;
    Halide::Runtime::Buffer<float, 1> bias_, db_;
    Halide::Runtime::Buffer<float, 5> out_;  // (OWr, OHr, Q, C, N)
    Halide::Runtime::Buffer<float, 2> dwt_;  // (T, C)
};

// The sparse runner for w on d (`kernel` names a variant; empty: the registry picks).
std::unique_ptr<OpRunner> make_sparse_runner(const Workload& w, Device d,
                                             const std::string& kernel = "");

}  // namespace lkc
