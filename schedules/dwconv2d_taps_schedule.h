// Schedules for the row-table ("taps") depth-wise generators that run dwconv2d_multi and
// shiftwise (generators/dwconv2d_taps_generators.cpp).
#pragma once

#include <vector>

#include "Halide.h"

namespace lkc::sched {

using namespace Halide;

// Width classes of table entries: an entry is a run of `chunk[k]` consecutive kernel columns.
constexpr int kTapClasses = 4;

struct TapsParams {
    int tile = 14;                             // output columns per register tile (fwd)
    int chunk[kTapClasses] = {8, 5, 3, 1};     // taps per entry, per class
    int partials[kTapClasses] = {1, 2, 3, 8};  // wgrad: independent partial sums per class
    int wcols = 8;                             // wgrad: output columns unrolled per step
    int gpu_rows = 4;                          // GPU: output rows per block
    int rows_per_task = 8;                     // CPU fwd: output rows per parallel task
};

// Forward / backward-data: out(ci, x, y, o, cb, n) = bias + sum over the entries of every class.
struct TapsFwdStages {
    Func output;          // (ci, x, y, o, cb, n)
    Func acc;             // (ci, t, jt, y, o, cb, n) register tile; update k = class k
    std::vector<RDom> r;  // per class: (lane, entry)
    Func xp;              // zero-extended stacked input (ci, x, y, s, cb, n)
};

// Backward-weight: per class k, g[k](ci, l, e, cb) = sum over n, pixels of x * dy.
struct TapsWgradStages {
    std::vector<Func> out;   // per class: (ci, l, e, cb), sum of part over images
    std::vector<Func> part;  // per class: (ci, l, e, cb, n)
    std::vector<Func> acc;   // per class: (ci, l, p, e, cb, n), p = partial sum
    std::vector<RDom> r;     // per class: (i, jc, jq)
    std::vector<RDom> rn;    // per class: over n
    Func db;                 // (ci, o, cb), sum of dy
    RDom rdb;
    Func xp, dyp;
};

void schedule_taps_fwd_cpu(TapsFwdStages& s, const TapsParams& p, const Target& t);
void schedule_taps_fwd_gpu(TapsFwdStages& s, const TapsParams& p, const Target& t);
void schedule_taps_wgrad_cpu(TapsWgradStages& s, const TapsParams& p, const Target& t);
void schedule_taps_wgrad_gpu(TapsWgradStages& s, const TapsParams& p, const Target& t);

}  // namespace lkc::sched
