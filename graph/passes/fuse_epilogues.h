// Epilogue fusion: elementwise ops attached to the node that produces their input.
#pragma once

#include <functional>

#include "graph/ir.h"

namespace lkc {
namespace graph {
namespace passes {

struct EpilogueOptions {
    // Which epilogues a producer's kernel takes (default: all of them on every producer).
    std::function<bool(const Node& producer, EpilogueOp op)> accept;
};

// Purpose: attaches the elementwise ops that follow a Conv2d / DwConv2d / DwConv2dMulti /
// DwConv2dSparse / Linear / fused ShiftWise node (ReLU, GELU, sigmoid, residual add, layer
// scale, BatchNorm as a per-channel affine) to it as Attrs::epilogues and removes their nodes.
// A chain stops at a tensor that another node also reads or that is a graph output; an add's
// other operand must be the same shape and produced before the producer (no broadcasting). The
// producer keeps its name and parameters; epilogue parameters keep their keys under the roles
// "e<i>.<role>"; the producer writes the last fused node's output tensor.
// Ordering: after fold_batch_norm and reparameterize (BNs and layer scales that can be folded
// into weights are folded there, not fused); before assign_layouts and plan_memory.
[[nodiscard]] Graph fuse_epilogues(const Graph& g, const EpilogueOptions& options = {});

}  // namespace passes
}  // namespace graph
}  // namespace lkc
