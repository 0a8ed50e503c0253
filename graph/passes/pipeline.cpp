#include "graph/passes/pipeline.h"

#include <map>
#include <utility>
#include <vector>

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

namespace {

bool ends_with(const std::string& s, const std::string& suffix, std::string* head) {
    if (s.size() < suffix.size() || s.compare(s.size() - suffix.size(), suffix.size(), suffix)) {
        return false;
    }
    *head = s.substr(0, s.size() - suffix.size());
    return true;
}

// The official deploy key for a derived key, or "" when it has none.
std::string official_key(const std::string& family, const std::string& key) {
    static const std::vector<std::pair<std::string, std::string>> replknet = {
        {".large_kernel.reparam.weight", ".large_kernel.lkb_reparam.weight"},
        {".large_kernel.reparam.bias", ".large_kernel.lkb_reparam.bias"}};
    static const std::vector<std::pair<std::string, std::string>> unireplknet = {
        {".dwconv.reparam+norm.weight", ".dwconv.lk_origin.weight"},
        {".dwconv.reparam+norm.bias", ".dwconv.lk_origin.bias"},
        {".dwconv+norm.weight", ".dwconv.weight"},
        {".dwconv+norm.bias", ".dwconv.bias"},
        {".pwconv2.0+2+act.1.beta+gamma.weight", ".pwconv2.0.weight"},
        {".pwconv2.0+2+act.1.beta+gamma.bias", ".pwconv2.0.bias"}};
    static const std::vector<std::pair<std::string, std::string>> shiftwise = {
        {".large_kernel.loras.weight", ".large_kernel.LoRA.weight"}};
    const auto& rules = family == "replknet"      ? replknet
                        : family == "unireplknet" ? unireplknet
                                                  : shiftwise;
    std::string head;
    for (const auto& r : rules) {
        if (ends_with(key, r.first, &head)) return head + r.second;
    }
    return "";
}

}  // namespace

Graph official_deploy_keys(const Graph& in, const std::string& family) {
    if (family != "replknet" && family != "unireplknet" && family != "shiftwise") {
        throw GraphError("official_deploy_keys: family '" + family +
                         "' has no official deploy form (expected replknet, unireplknet or "
                         "shiftwise)");
    }
    Graph g = in;
    std::map<std::string, std::string> rename;
    for (const auto& kv : g.params) {
        const std::string k = official_key(family, kv.first);
        if (k.empty()) continue;
        if (g.params.count(k)) {
            throw GraphError("official_deploy_keys: '" + kv.first + "' would become '" + k +
                             "', which the graph already has");
        }
        rename[kv.first] = k;
    }
    std::map<std::string, Param> params;
    for (auto& kv : g.params) {
        auto r = rename.find(kv.first);
        params[r == rename.end() ? kv.first : r->second] = kv.second;
    }
    g.params = std::move(params);
    for (Node& n : g.nodes) {
        for (auto& kv : n.params) {
            auto r = rename.find(kv.second);
            if (r != rename.end()) kv.second = r->second;
        }
    }
    validate(g);
    return g;
}

}  // namespace passes
}  // namespace graph
}  // namespace lkc
