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

// Purpose: renames the derived parameters of deploy(train, official_deploy_options(family)) to
// the keys of the family's official deploy checkpoint, so state_dict() of the result loads into
// the official deploy-form model (build_model(..., deploy = true)):
//   replknet     <lk>.reparam.{weight,bias}                -> <lk>.lkb_reparam.*
//   unireplknet  <m>.dwconv.reparam+norm.*                  -> <m>.dwconv.lk_origin.*
//                <m>.dwconv+norm.*                          -> <m>.dwconv.*
//                <m>.pwconv2.0+2+act.1.beta+gamma.*         -> <m>.pwconv2.0.*
//   shiftwise    <lk>.loras.weight                          -> <lk>.LoRA.weight
// The renamed keys are official deploy names whose meaning is the folded one (as in the official
// deploy checkpoints). Ordering: last, on the result of official_deploy_options; other derived
// keys are left as they are.
[[nodiscard]] Graph official_deploy_keys(const Graph& g, const std::string& family);

}  // namespace passes
}  // namespace graph
}  // namespace lkc
