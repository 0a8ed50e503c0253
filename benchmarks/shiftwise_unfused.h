// An unfused shift-wise op (large_kernel_ops.md section 4) built from lkc's dense depth-wise
// kernels, the benchmark's peer for the fused `shiftwise` kernels. Like the published op it
// materialises the nk sub-kernel maps z[c,j] ((H+2e) x (W+2e) each, nk times the input) in memory
// and reads them back in a separate shift-add pass:
//
//   fwd        x -> zero-pad by e (blocked copy) -> for each j < nk: lkc dense k x k fwd with the
//              weights w[:, j] ("same" padding on the padded map = padding k-1) -> z_j (blocked)
//              -> shift-add: per (n, channel block, j) the 16 planes of z_j are transposed to
//              planar rows once, then yh, yv, ys (planar NCHW) accumulate the G shifted copies
//              of each plane with contiguous, vectorised row loops.
//   bwd_data   gather: dz[c,j] = sum_g of dyh, dyv (shifted) and dys (identity slot), computed
//              planar and transposed into blocked dz_j -> for each j: lkc dense k x k bwd_data
//              -> dx_j ((H+2e) x (W+2e)) -> dx = sum_j dx_j cropped by e (blocked).
//   bwd_weight x -> zero-pad by e; gather dz_j as above -> for each j: lkc dense k x k
//              bwd_weight(x_pad, dz_j) written straight into dw[:, j] (a strided view).
//
// Each sub-kernel j is one dense call over all C channels (the nk calls replace the published
// op's single grouped conv C -> C*nk; no input replication is needed). Host passes are
// vectorised (AVX-512 / AVX2 clones) and parallel over (N, channel block) on the Halide thread
// pool. Layouts: x, dx blocked NCHW16c (as lkc's kernels); yh, yv, ys, dyh, dyv, dys planar
// NCHW. All buffers are allocated in the constructor; run() allocates nothing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "benchmarks/dense_pass.h"
#include "runtime/tensor.h"
#include "runtime/workload.h"

namespace lkc::bench {

class ShiftwiseUnfused {
  public:
    // w: a shiftwise workload (any pass, f32). Throws std::invalid_argument otherwise.
    explicit ShiftwiseUnfused(const Workload& w);
    ~ShiftwiseUnfused();
    ShiftwiseUnfused(const ShiftwiseUnfused&) = delete;
    ShiftwiseUnfused& operator=(const ShiftwiseUnfused&) = delete;

    const Workload& workload() const { return w_; }
    // "unfused: nk x <dense kernel name> + shift-add" (what the benchmark shows as detail).
    std::string detail() const;

    // Inputs by the op's file names (runtime/op_inputs.h) without the optional inference scales:
    //   fwd x, w, slot_h, slot_v, ident; bwd_data dyh, dyv, dys, w, slot_h, slot_v, ident;
    //   bwd_weight x, dyh, dyv, dys, slot_h, slot_v, ident. Validated with check_op_inputs and
    //   read_shift_tables.
    void set_inputs(const std::map<std::string, Tensor>& inputs);
    // make_example_inputs(w, seed) (floats in [-1, 1], random permutation tables).
    void fill_random(uint32_t seed);
    // One op call: every pass above, nothing else (no allocation, no layout conversion at the
    // edges). Throws KernelError if a dense kernel fails.
    void run();
    // Outputs by the op's file names: yh, yv, ys | dx | dw.
    std::map<std::string, Tensor> outputs() const;

  private:
    struct State;
    Workload w_;
    std::unique_ptr<State> s_;
};

}  // namespace lkc::bench
