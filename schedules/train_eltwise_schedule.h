// Schedules of the memory-bound training kernels (generators/train_{gemm,eltwise,norm,optim}_
// generators.cpp): element-wise backward ops, gathers (im2col / col2im, channel select backward),
// reductions over pixels per channel (bias / scale / BatchNorm / GRN gradients), reductions over
// channels per pixel (LayerNorm backward, the loss), and the optimizers over flat buffers.
//
// Element-wise blocked outputs reuse the forward ops' schedule (schedules/ops_eltwise_schedule.h:
// one zmm per (pixel, channel block), rows of ~128 KB per parallel task on the CPU; 16 lanes x
// 16 pixels per GPU thread block).
#pragma once

#include <vector>

#include "Halide.h"
#include "schedules/ops_eltwise_schedule.h"

namespace lkc::sched {

using namespace Halide;

// A blocked output out(ci, x, y, cb, n) = acc(ci, x, y, cb, n), where acc sums an update over
// a small RDom per output vector (col2im's taps, a broadcast operand's reduced extents, the
// channel-select table): acc is computed per output pixel in registers.
void schedule_gather_sum_cpu(Func out, Func acc, const std::vector<RVar>& r,
                             const Specialisations& spec, const Target& t);
void schedule_gather_sum_gpu(Func out, Func acc, const std::vector<RVar>& r,
                             const Specialisations& spec, const Target& t);

// Small outputs of any rank (packed weights (16, K, COB) with lanes = true, PyTorch-layout weight
// gradients (kw, kh, cig, Co)): dim 0 vectorised (lanes) / GPU threads, the outermost dim
// parallel / GPU blocks.
void schedule_rows_cpu(Func out, bool lanes, const Target& t);
void schedule_rows_gpu(Func out, bool lanes, const Target& t);

// Flat [numel] outputs (optimizer updates, Tuple-valued or not): 16-wide vectors, chunks of 8192
// elements in parallel; 256-thread GPU blocks.
void schedule_flat_cpu(Func out, const Specialisations& spec, const Target& t);
void schedule_flat_gpu(Func out, const Specialisations& spec, const Target& t);

// Per-channel sums over the pixels of each image: part(ci, cb, n) (Tuple-valued or not) with one
// update over an (x, y) RDom, computed once (root), vectorised over the lanes, images and
// channel blocks in parallel (GPU: one thread per lane, a block per (channel block, image)).
void schedule_channel_partials_cpu(Func part, const Target& t);
void schedule_channel_partials_gpu(Func part, const Target& t);

// Small per-channel functions f(ci, cb) (totals over images, parameter gradients, saved
// statistics), with or without updates: root, vectorised over the lanes.
void schedule_channel_vector_cpu(Func f, const Target& t);
void schedule_channel_vector_gpu(Func f, const Target& t);

// Per-image scalars f(n) with updates over all channels (GRN's sums of G): root; CPU parallel
// over images, GPU one single-thread block per image (C values each).
void schedule_per_image_cpu(Func f, const Target& t);
void schedule_per_image_gpu(Func f, const Target& t);

// Per-pixel (or per-sample) statistics across channels: `stats` has args (x, y, n) or (n); each
// lane partial lp(ci, <stats args>) reduces the channel blocks (update RDom `rb`), each total
// (<stats args>) the 16 lanes of a partial (update RDom `rl`). CPU: stats computed once (root),
// one parallel task per image row (or sample), the partials vectorised over lanes and computed
// per row; GPU: one thread per pixel, the 16 lane partials in its registers.
struct RowStats {
    Func stats;
    std::vector<Func> lane_partials, totals;
    RDom rb, rl;
};
void schedule_row_stats_cpu(RowStats& s, const Target& t);
void schedule_row_stats_gpu(RowStats& s, const Target& t);

}  // namespace lkc::sched
