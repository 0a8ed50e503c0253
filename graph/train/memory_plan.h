// Memory plan of a training step: which forward activations the backward reads, what may be
// recomputed instead of kept, and one arena for every activation and gradient by lifetime over
// the step's timeline:
//   step i          forward of node i            (i = 0 .. N-1)
//   step N          the loss (writes the logits' gradient)
//   step 2N - i     backward of node i           (reverse order)
// An activation lives from its producer's step to its last forward read, or, when some node's
// backward reads it ("saved"), to the last such backward step. A gradient (with its scratch, the
// buffer a second contribution is written to before the add) lives from the backward step of the
// tensor's last reader to the backward step of its producer.
//
// Recompute: the output of a GELU / ReLU that a later backward reads is not kept through the
// middle of the timeline; it gets a second, short interval at the backward steps that read it and
// is recomputed there from the op's input (which the op's own backward keeps anyway). Costs one
// elementwise op per such tensor per step.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph/ir.h"

namespace lkc {
namespace train {

// Tensors node n's backward reads, by tensor id (what the trainer's backward_node touches).
std::vector<int> backward_reads(const graph::Graph& g, const graph::Node& n);

struct TrainMemoryPlan {
    // Per tensor id. Offsets in bytes from the arena start, -1 where not in the arena (graph
    // inputs: the caller's batch; gradients of tensors that need none).
    std::vector<bool> saved;                 // some backward reads the activation
    std::vector<bool> recomputed;            // ... and it is recomputed there instead of kept
    std::vector<int> act_first, act_last;    // forward interval (steps)
    std::vector<int> back_first, back_last;  // recomputed: the backward interval, else -1
    std::vector<int> grad_first, grad_last;  // -1: no gradient
    std::vector<int64_t> act_offset, back_offset, grad_offset, scratch_offset;
    std::vector<int64_t> bytes;  // blocked storage, rounded to the alignment
    int64_t arena_bytes = 0;
    // Every activation, gradient and scratch in a buffer of its own (no plan).
    int64_t separate_bytes = 0;
    // The maximum over steps of the bytes live at that step (what any placement needs).
    int64_t live_peak_bytes = 0;
};

// needs_grad[t]: tensor t gets a gradient (false for graph inputs).
TrainMemoryPlan plan_training_memory(const graph::Graph& g, const std::vector<bool>& needs_grad,
                                     bool recompute, int64_t alignment = 64);

// Empty when sound: every buffer inside the arena, and no two buffers (activation intervals,
// recomputed intervals, gradients, scratch) overlapping in memory while both are live.
std::vector<std::string> plan_errors(const graph::Graph& g, const TrainMemoryPlan& p);

}  // namespace train
}  // namespace lkc
