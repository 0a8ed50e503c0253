// Schedules for the dense depth-wise conv generators, per target family.
//
// The parameters below are the tunable surface the autotuner searches (issue 4). Values that
// change the algorithm's shape (tile, chunk) are GeneratorParams and so give separate AOT variants;
// the rest only change loop structure.
#pragma once

#include "Halide.h"

namespace lkc::sched {

using namespace Halide;

struct DwParams {
    int tile =
        14;  // output columns (fwd/bwd_data) or kernel columns (bwd_weight) per register tile
    int chunk = 8;          // kernel columns (fwd) or output columns (bwd_weight) unrolled per step
    int gpu_rows = 4;       // GPU: output rows per block (threads in y)
    bool par_rows = true;   // CPU: also parallelise over output rows inside a (n, channel-block)
    int rows_per_task = 8;  // CPU: output rows per parallel task when par_rows
    bool pixels = false;    // the accumulator reduces over input pixels (dilation is 1)
    bool stage = true;      // CPU fwd/bwd_data: copy the zero-extended input per task
};

// Stages of the forward / stride-1 backward-data pipeline.
struct CorrStages {
    Func output;  // (ci, x, y, cb, n), blocked
    Func acc;     // (ci, t, jt, y, cb, n), register tile
    RDom r;       // (u, vc, vi) of acc's update
    Func xp;      // zero-extended input
    Func wp;      // packed weights
    Func bp;      // packed bias (may be undefined)
    Expr stride, dil;
};

// Stages of the backward-weight pipeline.
struct WgradStages {
    Func dw;     // (v, u, 0, c) file layout
    Func db;     // (c)
    Func part;   // (ci, v, u, cb, g) partial gradient of image group g
    Func gsum;   // (ci, v, u, cb) sum of part over the groups
    Func dbsum;  // (ci, cb)
    Func acc;    // (ci, vi, vt, u, cb, n) register tile
    RDom r;      // (i, jc, jj, image in the group)
    RDom rn;     // over n, reduces part into dw
    RDom rdb;    // (j, i, n) for db
    Func xp, dyp;
    Expr stride, dil;
};

// Stages of the generic (any stride) backward-data pipeline.
struct TransposedStages {
    Func output;  // (ci, x, y, cb, n)
    Func acc;     // (ci, x, y, cb, n)
    RDom r;       // (u, v)
    Func dyp, wp;
};

void schedule_corr_cpu(CorrStages& s, const DwParams& p, const Target& t);
void schedule_corr_gpu(CorrStages& s, const DwParams& p, const Target& t);
void schedule_wgrad_cpu(WgradStages& s, const DwParams& p, const Target& t);
void schedule_wgrad_gpu(WgradStages& s, const DwParams& p, const Target& t);
void schedule_transposed_cpu(TransposedStages& s, const DwParams& p, const Target& t);
void schedule_transposed_gpu(TransposedStages& s, const DwParams& p, const Target& t);

}  // namespace lkc::sched
