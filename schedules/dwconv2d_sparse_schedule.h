// Schedules for the sparse depth-wise conv generators (generators/dwconv2d_sparse_generators.cpp),
// per target family. The algorithm and the table layout are described in
// generators/dwconv2d_sparse_algorithm.h.
#pragma once

#include "Halide.h"

namespace lkc::sched {

using namespace Halide;

struct SparseParams {
    // Forward / backward-data: output columns (a multiple of 8) x output rows of the register
    // tile. Backward-weight: output columns per row step x taps per block.
    int tile = 56;
    int rows = 4;
    int vec = 8;     // fp32 lanes along output columns
    int copies = 2;  // copies of the staged input (2: no load crosses a cache line)
};

// Stages of the forward / backward-data pipeline.
struct SparseCorrStages {
    Func output;  // (j, i, q, c, n)
    Func acc;     // (lane, v, il, jt, it, q, c, n) register tile
    RDom r;       // (vector, list entry, segment)
    Expr single;  // the output row is one tile (column-skip segments apply)
    Func xs;      // staged zero-extended input planes (x, y, p, c, n)
    RDom xs_r;    // xs's copy-in update
    Expr in_stride;
};

// Stages of the backward-weight pipeline.
struct SparseWgradStages {
    Func dwt;           // (t, c) gradient per list entry
    Func db;            // (c)
    Func part;          // (t, c, n) per-image gradient
    Func acc;           // (lane, e, b, pv, tb, c, n): two partial sums per tap and pass
    Func acc_out;       // acc (inlined on CPU; the per-thread register boundary on GPUs)
    RDom r;             // (vector of the pass within the step, column step, output row)
    Func xs;            // staged zero-extended input planes (z, p, c, n)
    RDom xs_r;          // xs's copy-in update
    Func dys;           // staged zero-extended dy (z, 0, c, n)
    RDom dys_r;         // dys's copy-in update
    Func oy_lo, oy_hi;  // (tb, c) row offset range of a tap block
    RDom rn;            // over images, reduces part into dwt
    Func dbacc;         // (lane, c)
    RDom rdb;           // (jv, i, n) for db
    Expr in_stride;
    Expr single;  // an output row is one column step (copy parity of each vector static)
};

void schedule_sparse_corr_cpu(SparseCorrStages& s, const SparseParams& p, const Target& t);
void schedule_sparse_corr_gpu(SparseCorrStages& s, const SparseParams& p, const Target& t);
void schedule_sparse_wgrad_cpu(SparseWgradStages& s, const SparseParams& p, const Target& t);
void schedule_sparse_wgrad_gpu(SparseWgradStages& s, const SparseParams& p, const Target& t);

}  // namespace lkc::sched
