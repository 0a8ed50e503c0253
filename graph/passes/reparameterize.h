// Structural re-parameterisation: the deploy form of every large-kernel layer, with the choice
// between alternative deploy forms made by a pluggable cost callback.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "graph/ir.h"
#include "runtime/workload.h"

namespace lkc {
namespace graph {
namespace passes {

// The alternative forms of one merged large-kernel layer.
enum class DeployForm {
    Dense,      // one DwConv2d with the merged kernel (RepLKNet lkb_reparam, UniRepLKNet, cross)
    Sparse,     // DwConv2dSparse: the merged kernel and a mask of its nonzero taps
    Multi,      // DwConv2dMulti: the branches kept, summed in one kernel pass, one bias
    ShiftWise,  // the fused shift-wise inference op y = ah*yh + av*yv + as*ys + b + x
};
const char* deploy_form_name(DeployForm f);  // "dense", "sparse", "multi", "shiftwise"

// One candidate form of a layer and the cost the callback gave it (+inf: no kernel for it).
struct FormCandidate {
    DeployForm form;
    std::string workload;  // empty when outside the workload limits
    double cost;
};
struct FormChoice {
    std::string node;  // the node that was created
    std::vector<FormCandidate> candidates;
    DeployForm chosen;
};

// Estimated time of one workload, lower is better.
using CostFn = std::function<double(const Workload&)>;
// Estimated time of a sparse kernel: its workload and the kept fraction of the dense kernel's
// useful taps (exact, from the mask and the map size).
using SparseCostFn = std::function<double(const Workload&, double kept_fraction)>;

struct ReparamOptions {
    // Default: Workload::useful_flops (deterministic). The executor passes measured / tuned times.
    CostFn cost;
    // Default: cost(workload) * kept_fraction (the sparse kernel's work follows the kept taps).
    SparseCostFn sparse_cost;
    // A merged kernel is a sparse candidate when a branch has a mask (DwConv2dSparse) or, with
    // values, when at most this fraction of its taps is nonzero.
    double sparse_max_density = 0.5;

    // Parallel depth-wise branches on one input summed by Adds (RepLKNet K x K + 5x5, SLaK
    // K x 5 + 5 x K + 5x5, UniRepLKNet's DRB) -> one node: Dense, Multi or Sparse.
    bool merge_branches = true;
    // ShiftWise: the paths summed into one weight; with shiftwise_fuse also the three BNs, the
    // sum and the identity -> ShiftWise (fused form), Dense / Sparse cross kernel or Multi.
    bool shiftwise = true;
    bool shiftwise_fuse = true;
    // A single DwConv2d whose weights are mostly zeros (values needed) -> Dense or Sparse.
    bool sparsify = true;
    // Layer scale (Scale) after a conv / Linear that alone feeds it -> into its weights and bias.
    bool fold_layer_scale = true;
    // GRN beta -> the bias of the Linear that alone reads the GRN (W * beta added).
    bool fold_grn_beta = true;
    // A BN after a node this pass created (UniRepLKNet's block BN after the merged DRB) -> folded.
    bool fold_new_bn = true;

    // If set, receives one entry per layer whose form was chosen.
    std::vector<FormChoice>* report = nullptr;
};

// Purpose: produces the deploy form from the train form: merges parallel depth-wise branches
// (RepLKNet, SLaK, UniRepLKNet DRB) and ShiftWise's paths, BNs and identity into one node whose
// form (dense / sparse / multi-branch / fused shift-wise) the cost callback chooses; folds layer
// scales and GRN beta into the following Linear (UniRepLKNet "full inference folding").
// Ordering: after fold_batch_norm (branches must be BN-free convs; BNs on ShiftWise's outputs
// are folded here); before fuse_epilogues and assign_layouts. Idempotent.
// Naming: a merged layer is one node "<common module prefix>.reparam"
// ("stages.0.blocks.0.large_kernel.reparam", "stages.1.0.dwconv.reparam") with parameters
// "<node>.weight", ".bias", ".weight<b>" (Multi), ".ah/.av/.as" (ShiftWise), constant
// "<node>.mask" (Sparse); it writes the tensor of the add it replaces. Summed ShiftWise paths
// alone: "<shiftwise node>.weight". Layer scale / GRN beta folds rename the Linear like
// fold_batch_norm ("stages.0.0.pwconv2.0+2+act.1.beta+gamma"); unchanged parameters keep keys.
[[nodiscard]] Graph reparameterize(const Graph& g, const ReparamOptions& options = {});

}  // namespace passes
}  // namespace graph
}  // namespace lkc
