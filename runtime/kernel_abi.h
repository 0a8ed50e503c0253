// The C signatures of the AOT depth-wise kernels as the registry stores them (KernelInfo::fn,
// cast by KernelInfo::kind), and the 16-channel lane blocking they use. One place for every
// runtime file that calls a kernel.
#pragma once

#include <cstdint>

#include "HalideRuntime.h"

namespace lkc::abi {

constexpr int kLanes = 16;  // channels per block of the NCHW16c layout
inline int lane_blocks(int64_t c) { return static_cast<int>((c + kLanes - 1) / kLanes); }

using hb = halide_buffer_t*;
// dwconv2d: (x, w, b, stride, dilation, y); (dy, w, dilation, dx); (dy, w, stride, dilation, dx);
// (x, dy, kh, kw, stride, dilation, dw, db).
using DenseFwdFn = int (*)(hb, hb, hb, int, int, hb);
using DenseBwdDataFn = int (*)(hb, hb, int, hb);
using DenseBwdDataStridedFn = int (*)(hb, hb, int, int, hb);
using DenseBwdWeightFn = int (*)(hb, hb, int, int, int, int, hb, hb);
// Their row-mask variants: the rows buffer (Kh, ceil(C/16)) uint8 right before the outputs.
using RowsFwdFn = int (*)(hb, hb, hb, int, int, hb, hb);
using RowsBwdDataFn = int (*)(hb, hb, int, hb, hb);
using RowsBwdWeightFn = int (*)(hb, hb, int, int, int, int, hb, hb, hb);
// Row tables: (in, rows, slots, bias, seg1, seg2, seg3, left, right, top, bottom, out);
// (x, dy, rows, seg1, seg2, seg3, left, right, top, bottom, g0, g1, g2, g3, db).
using TapsFwdFn = int (*)(hb, hb, hb, hb, int, int, int, int, int, int, int, hb);
using TapsWgradFn = int (*)(hb, hb, hb, int, int, int, int, int, int, int, hb, hb, hb, hb, hb);
// dwconv2d_sparse: (input, starts, taps, weights, bias, in_stride, pad_x, pad_y, pitch,
// row_pitch, output).
using SparseFwdFn = int (*)(hb, hb, hb, hb, hb, int, int, int, int, int, hb);

}  // namespace lkc::abi
