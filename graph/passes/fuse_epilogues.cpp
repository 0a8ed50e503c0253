#include "graph/passes/fuse_epilogues.h"

#include <vector>

#include "graph/passes/pass_util.h"

namespace lkc {
namespace graph {
namespace passes {

using namespace detail;

namespace {

bool takes_epilogues(const Node& n) {
    if (n.outputs.size() != 1) return false;  // the unfused ShiftWise has three
    return n.op == OpKind::Conv2d || n.op == OpKind::Linear || n.op == OpKind::ShiftWise ||
           is_dw_family(n.op);
}

}  // namespace

Graph fuse_epilogues(const Graph& in, const EpilogueOptions& o) {
    Graph g = in;
    std::vector<bool> removed(g.nodes.size(), false);
    for (size_t p = 0; p < g.nodes.size(); ++p) {
        if (removed[p] || !takes_epilogues(g.nodes[p])) continue;
        for (;;) {
            Node& n = g.nodes[p];
            const Uses u(g, removed);
            const int t = n.outputs[0];
            const int c = u.sole_consumer(t);
            if (c < 0) break;
            const Node& e = g.nodes[size_t(c)];
            if (!e.attrs.epilogues.empty()) break;
            Epilogue ep;
            ep.name = e.name;
            int other = -1;
            switch (e.op) {
                case OpKind::Relu:
                    ep.op = EpilogueOp::Relu;
                    break;
                case OpKind::Gelu:
                    ep.op = EpilogueOp::Gelu;
                    break;
                case OpKind::Sigmoid:
                    ep.op = EpilogueOp::Sigmoid;
                    break;
                case OpKind::Scale:
                    ep.op = EpilogueOp::Scale;
                    break;
                case OpKind::BatchNorm:
                    ep.op = EpilogueOp::BatchNorm;
                    ep.eps = e.attrs.eps;
                    break;
                case OpKind::Add: {
                    ep.op = EpilogueOp::Add;
                    if (e.inputs[0] == e.inputs[1]) break;
                    other = e.inputs[0] == t ? e.inputs[1] : e.inputs[0];
                    const TensorDesc& a = g.tensor(t);
                    const TensorDesc& b = g.tensor(other);
                    const int op = u.producer[size_t(other)];
                    // Same shape, and available when the producer runs (topological order).
                    if (a.shape != b.shape || a.layout != b.layout || op >= static_cast<int>(p)) {
                        other = -2;
                    }
                    break;
                }
                default:
                    other = -2;
            }
            if (other == -2 || (e.op == OpKind::Add && other < 0)) break;
            if (o.accept && !o.accept(n, ep.op)) break;
            const std::string pre = "e" + std::to_string(n.attrs.epilogues.size()) + ".";
            for (const auto& kv : e.params) n.params[pre + kv.first] = kv.second;
            if (ep.op == EpilogueOp::Add) {
                ep.input = static_cast<int>(n.inputs.size());
                n.inputs.push_back(other);
            }
            n.attrs.epilogues.push_back(ep);
            n.outputs = e.outputs;
            removed[size_t(c)] = true;
        }
    }
    rebuild(g, removed);
    return g;
}

}  // namespace passes
}  // namespace graph
}  // namespace lkc
