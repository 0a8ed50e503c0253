// Schedules for the memory-bound whole-network ops (generators/ops_eltwise_generators.cpp,
// generators/ops_norm_generators.cpp): element-wise ops, per-channel affine, channel
// gather / concat, and the reductions (LayerNorm and softmax across channels, GRN and global
// average pool across pixels).
//
// All of them read and write blocked activations (16 lanes, W, H, ceil(C/16), N); one pixel's 16
// channels are one vector, so the CPU schedules vectorise the lane dimension (one zmm per pixel
// and block) and parallelise over rows; the GPU schedules put the 16 lanes and a run of pixels
// in one thread block.
#pragma once

#include <vector>

#include "Halide.h"

namespace lkc::sched {

using namespace Halide;

// Run-time conditions an output is specialised on, level by level (see GemmStages).
using Specialisations = std::vector<std::vector<Expr>>;

// Element-wise output (ci, x, y, cb, n), every value independent.
void schedule_pointwise_cpu(Func out, const Specialisations& spec, const Target& t);
void schedule_pointwise_gpu(Func out, const Specialisations& spec, const Target& t);

// Per-pixel reductions across channels (LayerNorm, softmax): for each pixel, stats are computed
// in two passes over its channel blocks, then the output is written.
struct ChannelStatsStages {
    Func output;  // (ci, x, y, cb, n)
    // Per-pixel statistics in pass order; each is (ci, x, y, n) -> lane partials reduced over
    // blocks (update RDom `rb`), followed by (x, y, n) -> the 16 lanes summed (update RDom `rl`).
    std::vector<Func> lane_partials;
    std::vector<Func> totals;
    std::vector<Func> per_pixel;  // (x, y, n) values derived from the totals (mean, 1 / std)
    RDom rb, rl;
};
void schedule_channel_stats_cpu(ChannelStatsStages& s, const Target& t);
void schedule_channel_stats_gpu(ChannelStatsStages& s, const Target& t);

// Per-channel reductions across pixels (GRN, global average pool): `sum` (ci, cb, n) reduced
// over the pixels of an image (update RDom `rp` = (x, y)); GRN then reduces `sum` across
// channels (`total` (n), RDom `rc` = (lane, block)) and scales the input.
struct PixelStatsStages {
    Func output;  // (ci, x, y, cb, n)
    Func sum;     // (ci, cb, n)
    RDom rp;      // (x, y)
    Func total;   // (n), undefined for the pool
    RDom rc;      // (lane, block)
    Func factor;  // (ci, cb, n), undefined for the pool
};
void schedule_pixel_stats_cpu(PixelStatsStages& s, const Target& t);
void schedule_pixel_stats_gpu(PixelStatsStages& s, const Target& t);

}  // namespace lkc::sched
