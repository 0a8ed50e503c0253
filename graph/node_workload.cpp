#include "graph/node_workload.h"

namespace lkc {
namespace graph {

std::optional<Workload> node_workload(const Graph& g, const Node& n, Pass pass) {
    Workload w;
    w.pass = pass;
    const Shape& x = g.tensor(n.inputs.at(0)).shape;
    if (x.size() != 4) return std::nullopt;
    w.n = static_cast<int>(x[0]);
    w.c = static_cast<int>(x[1]);
    w.h = static_cast<int>(x[2]);
    w.w = static_cast<int>(x[3]);
    w.stride = n.attrs.stride;
    switch (n.op) {
        case OpKind::DwConv2d:
        case OpKind::DwConv2dSparse: {
            const Shape& k = g.param(n.param("weight")).shape;
            w.op = n.op == OpKind::DwConv2d ? Op::DwConv2d : Op::DwConv2dSparse;
            w.kh = static_cast<int>(k[2]);
            w.kw = static_cast<int>(k[3]);
            w.dilation = n.attrs.dilation;
            break;
        }
        case OpKind::DwConv2dMulti:
            w.op = Op::DwConv2dMulti;
            for (size_t b = 0; b < n.attrs.dilations.size(); ++b) {
                const Shape& k = g.param(n.param("weight" + std::to_string(b))).shape;
                w.branches.push_back(
                    {static_cast<int>(k[2]), static_cast<int>(k[3]), n.attrs.dilations[b]});
            }
            break;
        case OpKind::ShiftWise:
            w.op = Op::ShiftWise;
            w.big_k = n.attrs.big_k;
            w.small_k = n.attrs.small_k;
            w.groups = static_cast<int>(g.constant_value(n, "slot_h").dim(0));
            break;
        default:
            return std::nullopt;
    }
    try {
        return parse_workload(to_string(w));  // to_string rejects what is outside the limits
    } catch (const WorkloadError&) {
        return std::nullopt;
    }
}

}  // namespace graph
}  // namespace lkc
