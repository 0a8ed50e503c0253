// What every op takes and gives, in file layout: tensor names and shapes per workload, validation
// of the non-float inputs (sparse masks, shift-wise slot tables), and valid random inputs for
// tests, benchmarks and `lkc example`. Pure functions of the workload (lkc_core; no kernels).
//
// Names (architecture.md "Files users bring"):
//   dwconv2d        fwd: x, w, [b] -> y          bwd_data: dy, w -> dx      bwd_weight: x, dy ->
//   dw, db dwconv2d_multi  fwd: x, w0..w{B-1}, [b] -> y bwd_data: dy, w0.. -> dx   bwd_weight: x,
//   dy -> dw0.., db dwconv2d_sparse fwd: x, w, mask, [b] -> y    bwd_data: dy, w, mask -> dx
//                   bwd_weight: x, dy, mask -> dw (zero where mask is 0), db
//   shiftwise       fwd: x, w, slot_h, slot_v, ident -> yh, yv, ys
//                        with the optional ah, av, as, b (all four): -> y = ah*yh + av*yv + as*ys +
//                        b + x
//                   bwd_data: dyh, dyv, dys, w, slot_h, slot_v, ident -> dx
//                   bwd_weight: x, dyh, dyv, dys, slot_h, slot_v, ident -> dw
// Shapes: x, dx [N,C,H,W]; y, dy [N,C,OH,OW]; w [C,1,Kh,Kw]; w_b [C,1,Kh_b,Kw_b]; mask like w;
// b, ah, av, as [C]; shiftwise w [C,nk,k,k], slot_h, slot_v [G,C,nk] int32, ident [G,C] int32,
// yh, yv, ys, dyh, dyv, dys [N,C,H,W].
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/tensor.h"
#include "runtime/workload.h"

namespace lkc {

// Required inputs and their shapes.
std::map<std::string, Shape> op_input_shapes(const Workload& w);
// Inputs that may be given or left out (b; shiftwise fwd: ah, av, as, b, which go together).
std::map<std::string, Shape> op_optional_inputs(const Workload& w);
// Outputs for the required inputs only (shiftwise fwd: yh, yv, ys).
std::map<std::string, Shape> op_output_shapes(const Workload& w);

// Checks that `inputs` holds every required tensor with its shape and dtype (F32; int32 tables),
// no unknown names, and the optional ones either complete or absent. Throws std::invalid_argument
// naming the tensor, its shape and the expected shape. Does not check values (see below).
void check_op_inputs(const Workload& w, const std::map<std::string, Tensor>& inputs);

// A dwconv2d_sparse mask [C,1,Kh,Kw] as 0/1 bytes (C*Kh*Kw, row-major). Accepts F32, U8, Bool,
// I32 with values exactly 0 or 1; throws std::invalid_argument naming the first bad element
// ("mask[3,0,2,4] = 0.5: must be 0 or 1") or the wrong shape/dtype.
std::vector<uint8_t> read_mask(const Workload& w, const Tensor& mask);

// Shift-wise index tables as plain vectors, validated: slot_h and slot_v [G,C,nk] must each be a
// permutation of 0..nk-1 for every (g, c); ident [G,C] in 0..nk-1. Throws std::invalid_argument
// naming the table, (g, c) and the repeated or out-of-range value.
struct ShiftTables {
    int groups = 0, channels = 0, nk = 0;
    std::vector<int32_t> slot_h, slot_v;  // G*C*nk, index (g*C + c)*nk + j
    std::vector<int32_t> ident;           // G*C, index g*C + c
};
ShiftTables read_shift_tables(const Workload& w, const Tensor& slot_h, const Tensor& slot_v,
                              const Tensor& ident);

// Random valid inputs for w: floats uniform in [-1, 1], or with small_int small integers
// (x, dy in -3..3, weights in -2..2, biases/scales in -4..4) so that fp32 sums are exact;
// masks with the given density per channel (each channel its own pattern, at least one tap);
// shift tables random permutations. Optional inputs are included when with_optional.
std::map<std::string, Tensor> make_example_inputs(const Workload& w, uint32_t seed,
                                                  bool small_int = false, double density = 0.5,
                                                  bool with_optional = false);

}  // namespace lkc
