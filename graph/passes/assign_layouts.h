// Layout assignment: the storage layout of every activation tensor.
#pragma once

#include <functional>

#include "graph/ir.h"

namespace lkc {
namespace graph {
namespace passes {

// Which ops read and write Blocked16 (the default rule, documented in docs/graph.md):
//   every op on logically NCHW [N,C,H,W] / NC [N,C] float tensors takes it: the conv and
//   depth-wise families, shift-wise, Linear (channel axis = the blocked axis), BatchNorm,
//   LayerNorm, GRN, the activations, Softmax, Add / Mul (broadcast [N,C,1,1] operands are blocked
//   too), Scale, GlobalAvgPool, ChannelSelect, Concat (channel gathers), and Flatten of [N,C,1,1]
//   or [N,C] (the same bytes as [N,C] blocked);
//   not: Permute (it changes which axis is the channel axis), Flatten of [N,C,H,W] with H*W > 1
//   (PyTorch's C,H,W feature order), Reorder, and ops on tensors of other layouts or dtypes.
[[nodiscard]] bool takes_blocked16(const Graph& g, const Node& n);

struct LayoutOptions {
    // Default takes_blocked16; the executor may narrow it to the ops it has blocked kernels for.
    std::function<bool(const Graph&, const Node&)> takes_blocked;
    // Graph inputs (the image) and outputs (the logits) stay plain NCHW / NC: users see PyTorch's
    // layout; Reorder nodes convert at the edges.
    bool plain_io = true;
};

// Purpose: sets TensorDesc::storage of every tensor (Blocked16 for what blocked ops read and
// write, else the plain logical layout) and inserts a Reorder node wherever a tensor is needed in
// the other storage: after a plain graph input that blocked ops read ("x" -> "x.nchw16c"), before
// a plain graph output ("head.nchw16c" -> "head"; the output keeps its id and name) and around
// ops that cannot take the blocked layout. One Reorder per tensor and direction, placed right
// after the tensor's producer.
// Ordering: after the value-changing passes and fuse_epilogues (it tags the final tensors);
// before plan_memory. Running it again changes nothing.
[[nodiscard]] Graph assign_layouts(const Graph& g, const LayoutOptions& options = {});

}  // namespace passes
}  // namespace graph
}  // namespace lkc
