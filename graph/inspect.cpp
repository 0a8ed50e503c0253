#include "graph/inspect.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <sstream>
#include <vector>

#include "graph/cost.h"
#include "graph/node_workload.h"

namespace lkc {
namespace graph {

namespace {

std::string compact(const Shape& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? "," : "") + std::to_string(s[i]);
    return r + "]";
}

std::string fmt(const char* f, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, f, v);
    return buf;
}

std::string attrs_text(const Graph& g, const Node& n) {
    const Attrs& a = n.attrs;
    auto kernel = [&](const std::string& role) {
        const Shape& w = g.param(n.param(role)).shape;
        return std::to_string(w[2]) + "x" + std::to_string(w[3]);
    };
    std::string s;
    switch (n.op) {
        case OpKind::Conv2d:
            s = "k" + kernel("weight") + " s" + std::to_string(a.stride) + " p" +
                std::to_string(a.pad_h) + "x" + std::to_string(a.pad_w);
            if (a.groups != 1) s += " g" + std::to_string(a.groups);
            if (a.dilation != 1) s += " d" + std::to_string(a.dilation);
            break;
        case OpKind::DwConv2d:
        case OpKind::DwConv2dSparse:
            s = "k" + kernel("weight") + " s" + std::to_string(a.stride);
            if (a.dilation != 1) s += " d" + std::to_string(a.dilation);
            break;
        case OpKind::DwConv2dMulti:
            for (size_t b = 0; b < a.dilations.size(); ++b) {
                s += (b ? "," : "b") + kernel("weight" + std::to_string(b)) + "d" +
                     std::to_string(a.dilations[b]);
            }
            break;
        case OpKind::ShiftWise: {
            int paths = 0;
            while (n.has_param("weight" + std::to_string(paths))) ++paths;
            s = "K" + std::to_string(a.big_k) + " k" + std::to_string(a.small_k) + " G" +
                std::to_string(g.constant_value(n, "ident").dim(0)) + " paths " +
                std::to_string(paths);
            break;
        }
        case OpKind::Linear: {
            const Shape& w = g.param(n.param("weight")).shape;
            s = std::to_string(w[1]) + "->" + std::to_string(w[0]);
            break;
        }
        case OpKind::BatchNorm:
        case OpKind::LayerNorm:
        case OpKind::Grn:
            s = fmt("eps %g", a.eps);
            break;
        case OpKind::GlobalAvgPool:
            s = a.keepdims ? "keepdims" : "";
            break;
        case OpKind::ChannelSelect:
            s = std::to_string(g.constant_value(n, "index").dim(0)) + " of " +
                std::to_string(g.tensor(n.inputs[0]).shape[1]) + " channels";
            break;
        case OpKind::Permute:
            s = "perm";
            for (int p : a.perm) s += " " + std::to_string(p);
            break;
        default:
            break;
    }
    if (n.has_param("bias") &&
        (n.op == OpKind::Conv2d || n.op == OpKind::DwConv2d || n.op == OpKind::DwConv2dMulti ||
         n.op == OpKind::DwConv2dSparse || n.op == OpKind::Linear)) {
        s += " +bias";
    }
    return s;
}

std::string pad(std::string s, size_t w) {
    if (s.size() < w) s.append(w - s.size(), ' ');
    return s;
}

}  // namespace

std::string group_thousands(int64_t v) {
    std::string d = std::to_string(v < 0 ? -v : v), r;
    for (size_t i = 0; i < d.size(); ++i) {
        if (i && (d.size() - i) % 3 == 0) r += ',';
        r += d[i];
    }
    return (v < 0 ? "-" : "") + r;
}

std::string si_number(double v) {
    const double a = v < 0 ? -v : v;
    if (a >= 1e12) return fmt("%.2f T", v / 1e12);
    if (a >= 1e9) return fmt("%.2f G", v / 1e9);
    if (a >= 1e6) return fmt("%.2f M", v / 1e6);
    if (a >= 1e3) return fmt("%.1f k", v / 1e3);
    return fmt("%.0f", v);
}

std::string inspect_text(const Graph& g, const InspectOptions& options) {
    std::ostringstream o;
    const ParamCount pc = count_params(g);
    const std::vector<NodeCost> costs = node_costs(g);
    NodeCost total;
    for (const NodeCost& c : costs) {
        total.macs += c.macs;
        total.useful_macs += c.useful_macs;
        total.official_macs += c.official_macs;
        total.elementwise += c.elementwise;
    }
    o << "model " << g.model << "\n";
    for (int id : g.inputs) {
        const TensorDesc& t = g.tensor(id);
        o << "input  " << t.name << " " << compact(t.shape) << " " << layout_name(t.layout) << " "
          << dtype_name(t.dtype) << "\n";
    }
    for (int id : g.outputs) {
        const TensorDesc& t = g.tensor(id);
        o << "output " << t.name << " " << compact(t.shape) << " " << layout_name(t.layout) << " "
          << dtype_name(t.dtype) << "\n";
    }
    o << "parameters " << group_thousands(pc.parameters) << " in " << pc.parameter_tensors
      << " tensors; buffers " << group_thousands(pc.buffers) << " in " << pc.buffer_tensors
      << " tensors; " << g.params.size() << " state_dict keys; " << g.constants.size()
      << " constants\n";
    o << "MACs " << si_number(total.macs) << " (FLOPs = 2 x MACs = " << si_number(2 * total.macs)
      << "); useful MACs " << si_number(total.useful_macs) << "; elementwise ops "
      << si_number(total.elementwise);
    if (total.official_macs != total.macs) {
        o << "; MACs as the official shift-wise op computes them "
          << si_number(total.official_macs);
    }
    o << "\nnodes " << g.nodes.size() << ", tensors " << g.tensors.size() << "\n";
    if (options.by_op) {
        std::map<std::string, std::pair<int, double>> by;
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            auto& e = by[op_name(g.nodes[i].op)];
            ++e.first;
            e.second += costs[i].macs;
        }
        std::vector<std::pair<std::string, std::pair<int, double>>> rows(by.begin(), by.end());
        std::stable_sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
            return a.second.second > b.second.second;
        });
        o << "\nMACs by op (largest first)\n";
        for (const auto& kv : rows) {
            o << "  " << pad(kv.first, 16) << pad(std::to_string(kv.second.first) + " nodes", 12)
              << pad(si_number(kv.second.second), 12)
              << fmt("%5.1f %%", total.macs > 0 ? 100.0 * kv.second.second / total.macs : 0.0)
              << "\n";
        }
    }
    if (options.nodes) {
        o << "\n"
          << pad("#", 6) << pad("op", 16) << pad("name", 52) << pad("shapes", 40)
          << pad("attrs", 22) << pad("params", 12) << pad("MACs", 12) << "useful / workload\n";
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            const Node& n = g.nodes[i];
            std::string shapes;
            for (size_t k = 0; k < n.inputs.size(); ++k) {
                shapes += (k ? " " : "") + compact(g.tensor(n.inputs[k]).shape);
            }
            shapes += " ->";
            for (int id : n.outputs) shapes += " " + compact(g.tensor(id).shape);
            int64_t params = 0;
            for (const auto& kv : n.params) {
                const Param& p = g.param(kv.second);
                if (!p.buffer) params += shape_numel(p.shape);
            }
            o << pad(std::to_string(i), 6) << pad(op_name(n.op), 16) << pad(n.name, 52) << " "
              << pad(shapes, 40) << " " << pad(attrs_text(g, n), 22) << " "
              << pad(params ? group_thousands(params) : "-", 12)
              << pad(costs[i].macs > 0 ? si_number(costs[i].macs) : "-", 12);
            if (costs[i].macs > 0 && costs[i].useful_macs != costs[i].macs) {
                o << si_number(costs[i].useful_macs);
            }
            if (auto w = node_workload(g, n)) o << "  " << to_string(*w);
            o << "\n";
        }
    }
    return o.str();
}

}  // namespace graph
}  // namespace lkc
