// Building blocks for the benchmark's unfused lkc peers (separate branch passes of dwconv2d_multi,
// the unfused shift-wise op): lkc's dense depth-wise kernels called on caller-owned buffers, and
// small host passes (sums, copies) parallelised on the Halide thread pool the kernels use.
//
// DenseDw picks its variant exactly as DwConv2dRunner does (select_kernel, no preferred name) and
// makes the same AOT call as DwConv2dRunner::run(); the only difference is that the buffers are
// the caller's, so passes can be chained without layout conversions. CPU only.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "HalideBuffer.h"
#include "HalideRuntime.h"
#include "runtime/dwconv2d.h"
#include "runtime/registry.h"
#include "runtime/workload.h"

namespace lkc::bench {

using Weights = Halide::Runtime::Buffer<float, 4>;  // [C,1,Kh,Kw] as (Kw, Kh, 1, C)
using Vec = Halide::Runtime::Buffer<float, 1>;

class DenseDw {
  public:
    // w: a dwconv2d workload (any pass); throws std::invalid_argument if no kernel covers it.
    explicit DenseDw(const Workload& w);
    const Workload& workload() const { return w_; }
    const KernelInfo& kernel() const { return *k_; }

    // The kernel's call for the workload's pass (must match w.pass). Blocked activations
    // (16, W, H, ceil(C/16), N) with the workload's sizes; slices of bigger buffers are fine
    // (only the lane and x strides are fixed). Throws KernelError on failure.
    void fwd(Blocked& x, Weights& w, Vec& b, Blocked& y) const;
    void bwd_data(Blocked& dy, Weights& w, Blocked& dx) const;
    void bwd_weight(Blocked& x, Blocked& dy, Weights& dw, Vec& db) const;

  private:
    Workload w_;
    const KernelInfo* k_;
};

// Runs f(i) for i in [0, n) as tasks of the Halide runtime's thread pool (HL_NUM_THREADS
// workers, the calling thread included), the pool lkc's kernels run on.
template <class F>
void par_for(int n, F&& f) {
    using Fn = std::remove_reference_t<F>;
    halide_task_t task = [](void*, int i, uint8_t* closure) -> int {
        (*reinterpret_cast<Fn*>(closure))(i);
        return 0;
    };
    halide_do_par_for(nullptr, task, 0, n, reinterpret_cast<uint8_t*>(&f));
}

// dst = sum of srcs (all blocked, same shape, dense), parallel over (N, channel block, row).
void sum_blocked(const std::vector<Blocked*>& srcs, Blocked& dst);

// Zero-padded copy: dst (16, W+2p, H+2p, Cb, N) interior = src (16, W, H, Cb, N). The border of
// dst is never written (keep it zero). Parallel over (N, channel block).
void copy_into_padded(const Blocked& src, Blocked& dst, int pad);

}  // namespace lkc::bench
