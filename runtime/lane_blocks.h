// Block-sparse GEMMs by compaction: a Linear / 1x1 conv whose weight mask keeps whole 16-channel
// lane blocks (graph/train/sparsity.h, lane-block masks) runs the dense kernels of ops::gemm and
// train_ops on the kept blocks only. These helpers move whole blocks between the full and the
// compact tensors (host memcpy of contiguous 16 x W x H planes / 16 x 16 weight tiles); every
// FLOP stays in the AOT GEMM kernels.
//
//   output blocks kept (LaneAxis::Out): wc = the kept rows of W (and their bias); y's kept blocks
//     = gemm(x, wc), the others = their bias; dx = wc^T dy_kept; dW's kept rows = dy_kept x^T.
//   input blocks kept (LaneAxis::In): wc = the kept columns of W; y = gemm(x_kept, wc);
//     dx's kept blocks = wc^T dy, the others 0; dW's kept columns = dy x_kept^T.
// Host memory only: inputs are copied to the host when a device holds the newer copy, outputs
// are marked host-dirty.
#pragma once

#include <cstdint>
#include <vector>

#include "runtime/ops.h"

namespace lkc::train_ops {

// Ascending indices of the set flags (one flag per 16-channel block).
std::vector<int> kept_blocks(const std::vector<uint8_t>& flags);

// A zero compact tensor of x's N, H, W with blocks.size() blocks (16 channels each).
ops::BlockedTensor make_compact(const ops::BlockedTensor& x, const std::vector<int>& blocks);
// out's block j = x's block blocks[j] (every image). out: make_compact(x, blocks).
void gather_blocks(const ops::BlockedTensor& x, const std::vector<int>& blocks,
                   ops::BlockedTensor& out);
// dst's block blocks[j] = src's block j; every other block of dst = fill's values per lane
// (a bias), or 0 when fill is null.
void scatter_blocks(const ops::BlockedTensor& src, const std::vector<int>& blocks,
                    const ops::ChannelVector* fill, ops::BlockedTensor& dst);

// The compact weights of w: its kept output blocks (out_axis) with their bias, or its kept
// input blocks with w's whole bias. Allocates; gather_linear refreshes the values.
ops::PackedLinear make_linear_blocks(const ops::PackedLinear& w, const std::vector<int>& blocks,
                                     bool out_axis);
void gather_linear(const ops::PackedLinear& w, const std::vector<int>& blocks, bool out_axis,
                   ops::PackedLinear& wc);
// Copies the kept blocks of a packed weight gradient between the full buffer dw and the compact
// dwc (make_linear_blocks' weight shape): to_compact, dwc = dw's kept blocks; else dw's kept
// blocks = dwc, its other blocks untouched. The trainer brings the running sum in, lets the
// weight-gradient kernel accumulate onto it and copies it back, so a micro-batch sum rounds
// exactly as the dense kernel's (prior + pixel-block partials, in order).
void copy_linear_grad(Halide::Runtime::Buffer<float, 3>& dw, const std::vector<int>& blocks,
                      bool out_axis, Halide::Runtime::Buffer<float, 3>& dwc, bool to_compact);

}  // namespace lkc::train_ops
