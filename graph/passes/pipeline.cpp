#include "graph/passes/pipeline.h"

namespace lkc {
namespace graph {
namespace passes {

Graph deploy(const Graph& g, const DeployOptions& o) {
    Graph r = g;
    if (o.fold_bn) r = fold_batch_norm(r, o.fold);
    if (o.reparam) r = reparameterize(r, o.reparameterize);
    if (o.fuse) r = fuse_epilogues(r, o.epilogues);
    if (o.layouts) r = assign_layouts(r, o.layout);
    return r;
}

DeployOptions official_deploy_options(const std::string& family) {
    DeployOptions o;
    o.fuse = false;
    o.layouts = false;
    o.reparameterize.sparsify = false;
    if (family == "replknet") {
        // structural_reparam(): lkb_origin (+ BN) and small_conv (+ BN) -> lkb_reparam, dense.
        o.fold.into_consumer = false;
        o.fold.accept = [](const Graph& g, const Node& bn, const Node& into) {
            if (into.op != OpKind::DwConv2d) return false;
            for (const Node& n : g.nodes) {
                for (int t : n.inputs) {
                    if (t == bn.outputs[0]) return n.op == OpKind::Add;
                }
            }
            return false;
        };
        o.reparameterize.cost = [](const Workload& w) { return w.op == Op::DwConv2d ? 0.0 : 1.0; };
        o.reparameterize.fold_layer_scale = false;
        o.reparameterize.fold_grn_beta = false;
        o.reparameterize.fold_new_bn = false;
    } else if (family == "unireplknet") {
        // deploy=True: DRB -> one dense K x K dw conv; every BN, GRN beta and gamma folded.
        o.fold.into_consumer = false;
        o.reparameterize.cost = [](const Workload& w) { return w.op == Op::DwConv2d ? 0.0 : 1.0; };
    } else if (family == "shiftwise") {
        // Block.reparameterize(): LoRA.weight = LoRAs.0 + LoRAs.1; BNs, gamma, GRN beta stay.
        o.fold_bn = false;
        o.reparameterize.shiftwise_fuse = false;
        o.reparameterize.merge_branches = false;
        o.reparameterize.fold_layer_scale = false;
        o.reparameterize.fold_grn_beta = false;
        o.reparameterize.fold_new_bn = false;
    } else if (family == "slak") {
        throw GraphError(
            "official_deploy_options: SLaK has no official deploy form (Decom=True models are not "
            "re-parameterised, official_param_names.md section 2)");
    } else {
        throw GraphError("official_deploy_options: unknown family '" + family +
                         "', expected replknet, unireplknet or shiftwise");
    }
    return o;
}

}  // namespace passes
}  // namespace graph
}  // namespace lkc
