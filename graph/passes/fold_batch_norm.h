// BN folding pass (large_kernel_ops.md section 0).
#pragma once

#include <functional>

#include "graph/ir.h"

namespace lkc {
namespace graph {
namespace passes {

struct FoldOptions {
    // BN after a Conv2d / DwConv2d / DwConv2dMulti / DwConv2dSparse / Linear whose result only
    // the BN reads: W' = W * t per output channel, b' = beta + (b - mean) * t,
    // t = gamma / sqrt(var + eps).
    bool into_producer = true;
    // BN before a Linear or an unpadded Conv2d that alone reads the BN's result (RepLKNet's
    // prelkb_bn / preffn_bn before the 1x1 convs): W'[o,i,..] = W[o,i,..] * t[i],
    // b' = b + sum W[o,i,..] * (beta[i] - mean[i] * t[i]). Tried when into_producer does not apply.
    bool into_consumer = true;
    // Which folds to do (default: all): called with the BN node and the producer / consumer it
    // would be folded into, e.g. to fold only the BNs of re-parameterisable branches.
    std::function<bool(const Graph&, const Node& bn, const Node& into)> accept;
};

// Purpose: removes every inference BatchNorm that can be moved into the weights of the adjacent
// conv / depth-wise conv (any family) / Linear; the BN node disappears.
// Ordering: first; reparameterize expects the BNs of parallel branches folded (it re-runs this on
// the nodes it creates). Any number of times (idempotent).
// Naming: the fused node is "<producer>+<bn>" (the BN name without the dotted prefix both share:
// "stages.0.blocks.0.pw1.conv+bn"; into a consumer "stages.0.blocks.0.pw1.conv+prelkb_bn"), its
// changed parameters are "<fused node>.weight" / ".bias" / ".weight<b>"; unchanged parameters
// (sparse masks, untouched roles) keep their keys, so an official key always means what it means
// in the official checkpoint. The fused node writes the BN's output tensor (same id and name).
// Parameters without values (shape-only graphs) give derived parameters without values.
[[nodiscard]] Graph fold_batch_norm(const Graph& g, const FoldOptions& options = {});

}  // namespace passes
}  // namespace graph
}  // namespace lkc
