// Training a train-form graph (issue 6): forward in training mode (BatchNorm batch statistics,
// running averages), the backward of every node in reverse order, label-smoothed cross-entropy,
// AdamW or SGD with linear warm-up and per-step cosine decay, optional EMA of the weights,
// gradient accumulation over micro-batches, and SLaK-style dynamic sparsity (masks applied after
// every step, prune-and-regrow every u steps). Kernels: runtime/ops.h (forward),
// runtime/train_ops.h (backward, BN training, loss, optimizers), the depth-wise families' own
// backward kernels on blocked buffers (runtime/dw_train.h; the OpRunner path of runtime/op_runner.h
// for the sparse, multi-branch-summed and shift-wise nodes). Activations and gradients live in one
// arena planned by lifetime over the step (graph/train/memory_plan.h), optionally recomputing
// GELU / ReLU outputs in the backward; peak_bytes() / memory_summary() report it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "graph/ir.h"
#include "graph/train/checkpoint.h"
#include "graph/train/sparsity.h"
#include "runtime/device.h"
#include "runtime/tensor.h"

namespace lkc {
namespace train {

struct TrainOptions {
    Device device = Device::Cpu;
    std::string optimizer = "adamw";  // adamw | sgd
    double lr = 2e-3, min_lr = 1e-6;
    double weight_decay = 0.05;  // decoupled (AdamW) / L2 (SGD); none on 1-D parameters
    double momentum = 0.9;       // SGD
    double beta1 = 0.9, beta2 = 0.999;
    int64_t warmup_steps = 100, total_steps = 1000;  // schedule: linear warm-up, cosine
    double label_smoothing = 0.1;
    // Drop path (stochastic depth) on the residual branches ("<block>.residual" adds: x + y):
    // block k of K drops y per sample with rate drop_path * k / (K - 1) (linearly rising from 0,
    // as timm's linspace), keeping it scaled by 1 / (1 - rate).
    double drop_path = 0;
    double ema_decay = 0;  // 0: no EMA
    int grad_accum = 1;    // micro-batches per optimizer step
    // Dynamic sparsity: density = 1 - sparsity (0: off).
    double sparsity = 0;
    int64_t prune_every = 0;  // u; 0: masks fixed
    double prune_rate = 0.5;  // cosine-decayed over total_steps
    MaskInit mask_init = MaskInit::Erk;
    // Depth-wise masks per weight (SLaK) or per (16-channel lane block, kernel row), which the
    // kernels skip (graph/train/sparsity.h).
    MaskStructure mask_structure = MaskStructure::Weight;
    uint64_t seed = 1;
    // Activations and gradients in one arena placed by lifetime over the step
    // (graph/train/memory_plan.h); false: a buffer each (tests compare the two).
    bool plan_memory = true;
    // Recompute GELU / ReLU outputs in the backward instead of keeping them (needs plan_memory).
    bool recompute = false;
    // Fill the arena with NaN at start: any read of a buffer before it is written (padding lanes
    // included) shows in the loss (tests).
    bool poison_arena = false;
    // A block's depth-wise branches: one fused layer or one layer each, measured at the first
    // step (the choice is checkpointed), or fixed (runs that must match bitwise across trainers).
    enum class Fuse { Measure, Always, Never };
    Fuse fuse_branches = Fuse::Measure;
    // A depth-wise node run as its own layer: time every compiled variant of each pass on the
    // first batch and keep the fastest (else the registry's estimate / tuned records choose).
    // Off by default: measured alone, the forward variants win 20-36 % but the backward ones
    // ran ~15 % slower inside the step, which stayed the same (slak-fmnist 32²: 41.4 vs 41.7 ms),
    // and the choice would vary between fresh runs. Lane-row masked layers always measure.
    bool measure_variants = false;
    // Lane-block masked Linears / 1x1 convs (mask_structure LaneRows): GEMMs on the kept blocks
    // only (runtime/lane_blocks.h) or dense GEMMs on the masked weights. Both compute the same
    // numbers; Measure times 2 micro-batches of each per layer and keeps the faster.
    enum class Compact { Measure, Always, Never };
    Compact compact_gemm = Compact::Measure;
    // Time every compiled GEMM variant of each pass of a 1x1 conv / Linear on its first batch
    // and keep the fastest. The variants' results are bitwise equal, so the choice cannot change
    // training (slak-fmnist 32²: the cost model's 7-pixel tiles on 8x8 maps ran ~2x slower than
    // the 1-pixel x 8-block tile).
    bool measure_gemm = true;
};

struct StepResult {
    double loss = 0;
    int correct = 0, samples = 0;
    double lr = 0;
    bool applied = false;  // an optimizer step was taken (after grad_accum micro-batches)
    int64_t pruned = 0;    // weights moved by prune-and-regrow at this step
};

class Trainer {
  public:
    // `g`: a train-form graph with values (init_weights / load_weights) and batch = the
    // micro-batch. Throws GraphError for an op it cannot train.
    Trainer(const graph::Graph& g, const TrainOptions& o);
    ~Trainer();
    Trainer(const Trainer&) = delete;
    Trainer& operator=(const Trainer&) = delete;

    // One micro-batch: forward, loss, backward, gradient accumulation; every grad_accum-th call
    // also the optimizer step (+ masks, EMA, prune-and-regrow when due). x: the graph input's
    // shape; labels: one per sample.
    StepResult step(const Tensor& x, const std::vector<int32_t>& labels);

    // The model with its current weights (BN running statistics included) for evaluation or
    // export; `ema` takes the EMA weights where there are any.
    graph::Graph model(bool ema = false) const;

    int64_t optimizer_steps() const;
    double learning_rate(int64_t step) const;  // the schedule
    const MaskSet& masks() const;
    // Drop-path rate per residual block, in graph order (empty without residual adds).
    std::vector<std::pair<std::string, double>> drop_path_rates() const;
    // Bytes of the activation / gradient arena (or the separate buffers) plus the fused layers'
    // own output buffers, parameters and optimizer state.
    int64_t peak_bytes() const;
    // One line: the arena, the live peak, what separate buffers would take, recomputed tensors.
    std::string memory_summary() const;
    // Per-node forward / backward time of the last step (ms), for the benchmark.
    struct NodeTime {
        std::string name, op;
        double fwd_ms = 0, bwd_ms = 0;
        // Depth-wise nodes: the kernels and how they were chosen, e.g. "fused x3 (fused 0.9 ms
        // vs separate 1.2 ms (fwd+bwd)): <fwd> / <bwd_data> / <bwd_weight>".
        std::string kernels;
    };
    std::vector<NodeTime> last_times() const;
    void set_timing(bool on);

    // Checkpoint state (parameters under their graph keys, optimizer / EMA / mask state, step,
    // the trainer's RNG) and its restoration.
    CheckpointData state() const;
    void load_state(const CheckpointData& c);

    // SNIP mask initialisation: one forward / backward on (x, labels) for |w dL/dw|, global
    // threshold at the target density (the caller's first batch). No-op without sparsity.
    void init_masks_snip(const Tensor& x, const std::vector<int32_t>& labels);

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace train
}  // namespace lkc
