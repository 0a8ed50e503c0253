// The pass pipeline: train-form graph -> the graph the fast executor runs.
#pragma once

#include <string>

#include "graph/ir.h"
#include "graph/passes/assign_layouts.h"
#include "graph/passes/fold_batch_norm.h"
#include "graph/passes/fuse_epilogues.h"
#include "graph/passes/reparameterize.h"

namespace lkc {
namespace graph {
namespace passes {

struct DeployOptions {
    bool fold_bn = true;
    FoldOptions fold;
    bool reparam = true;
    ReparamOptions reparameterize;
    bool fuse = true;
    EpilogueOptions epilogues;
    bool layouts = true;
    LayoutOptions layout;
};

// Purpose: fold_batch_norm -> reparameterize -> fuse_epilogues -> assign_layouts (the enabled
// ones, in this order); plan_memory is run on the result separately.
// Ordering: takes a train-form (or already deployed) graph.
[[nodiscard]] Graph deploy(const Graph& g, const DeployOptions& options = {});

// Options that reproduce the parameter set of a family's official deploy form (no fusion, no
// layouts): "replknet" structural_reparam() (only the large-kernel branches and their BNs),
// "unireplknet" deploy=True (DRB merge, every BN, GRN beta, layer scale), "shiftwise"
// Block.reparameterize() (the two paths summed, nothing else). "slak" has none: GraphError.
[[nodiscard]] DeployOptions official_deploy_options(const std::string& family);

}  // namespace passes
}  // namespace graph
}  // namespace lkc
