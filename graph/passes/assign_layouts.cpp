#include "graph/passes/assign_layouts.h"

#include <map>
#include <vector>

#include "graph/passes/pass_util.h"

namespace lkc {
namespace graph {
namespace passes {

using namespace detail;

namespace {

// A tensor the blocked layout can hold: float, logically [N,C,H,W] NCHW or [N,C] NC.
bool blockable(const TensorDesc& t) {
    if (t.dtype != DType::F32 && t.dtype != DType::F64) return false;
    return (t.layout == Layout::NCHW && t.shape.size() == 4) ||
           (t.layout == Layout::NC && t.shape.size() == 2);
}

Layout plain(const TensorDesc& t) { return t.layout; }

}  // namespace

bool takes_blocked16(const Graph& g, const Node& n) {
    if (n.op == OpKind::Permute || n.op == OpKind::Reorder) return false;
    for (int t : n.inputs) {
        if (!blockable(g.tensor(t))) return false;
    }
    for (int t : n.outputs) {
        if (!blockable(g.tensor(t))) return false;
    }
    if (n.op == OpKind::Flatten) {
        const TensorDesc& x = g.tensor(n.inputs[0]);
        return x.layout == Layout::NC || (x.shape[2] == 1 && x.shape[3] == 1);
    }
    return true;
}

Graph assign_layouts(const Graph& in, const LayoutOptions& o) {
    Graph g = in;
    auto takes = [&](const Node& n) {
        return o.takes_blocked ? o.takes_blocked(g, n) : takes_blocked16(g, n);
    };
    const size_t nt = g.tensors.size();
    std::vector<Layout> storage(nt);
    std::vector<bool> is_input(nt, false), is_output(nt, false);
    for (int t : g.inputs) is_input[size_t(t)] = true;
    for (int t : g.outputs) is_output[size_t(t)] = true;
    for (size_t t = 0; t < nt; ++t) storage[t] = plain(g.tensors[t]);
    for (int t : g.inputs) {
        const TensorDesc& d = g.tensor(t);
        storage[size_t(t)] = !o.plain_io && blockable(d) ? Layout::Blocked16 : plain(d);
    }
    std::vector<bool> node_takes(g.nodes.size());
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& n = g.nodes[i];
        node_takes[i] = takes(n);
        for (int t : n.outputs) {
            const TensorDesc& d = g.tensor(t);
            if (n.op == OpKind::Reorder) {
                // Keep what an earlier run chose (Any: plain).
                storage[size_t(t)] = d.storage == Layout::Any ? plain(d) : d.storage;
            } else {
                storage[size_t(t)] = node_takes[i] && blockable(d) ? Layout::Blocked16 : plain(d);
            }
        }
    }
    auto need = [&](size_t node, int t) {
        const Node& n = g.nodes[node];
        if (n.op == OpKind::Reorder) return storage[size_t(t)];
        return node_takes[node] && blockable(g.tensor(t)) ? Layout::Blocked16 : plain(g.tensor(t));
    };

    // version[t][storage] = the tensor holding t's values in that storage.
    std::vector<std::map<Layout, int>> version(nt);
    for (size_t t = 0; t < nt; ++t) version[t][storage[t]] = static_cast<int>(t);
    std::vector<std::vector<std::pair<int, int>>> after(g.nodes.size() + 1);  // (from, to)
    std::vector<int> producer(nt, -1);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        for (int t : g.nodes[i].outputs) producer[size_t(t)] = static_cast<int>(i);
    }
    auto add_version = [&](int t, Layout s) {
        auto it = version[size_t(t)].find(s);
        if (it != version[size_t(t)].end()) return it->second;
        TensorDesc d = g.tensor(t);
        d.name = unique_tensor_name(g, d.name + (s == Layout::Blocked16 ? ".nchw16c" : ".plain"));
        d.storage = s;
        g.tensors.push_back(d);
        const int id = static_cast<int>(g.tensors.size()) - 1;
        version[size_t(t)][s] = id;
        // Reorders of graph inputs go first (slot 0), others right after the producer.
        after[size_t(producer[size_t(t)] + 1)].push_back(
            {version[size_t(t)].at(storage[size_t(t)]), id});
        return id;
    };
    for (size_t t = 0; t < nt; ++t) {
        if (!is_output[t] || !o.plain_io || storage[t] == plain(g.tensors[t]) || is_input[t]) {
            continue;
        }
        // A blocked graph output: the producer writes "<name>.nchw16c", a Reorder writes the
        // output under its own id and name.
        TensorDesc d = g.tensors[t];
        d.name = unique_tensor_name(g, d.name + ".nchw16c");
        d.storage = storage[t];
        g.tensors.push_back(d);
        const int id = static_cast<int>(g.tensors.size()) - 1;
        const int p = producer[t];
        for (int& out : g.nodes[size_t(p)].outputs) {
            if (out == static_cast<int>(t)) out = id;
        }
        version[t].clear();
        version[t][storage[t]] = id;
        version[t][plain(g.tensors[t])] = static_cast<int>(t);
        after[size_t(p + 1)].push_back({id, static_cast<int>(t)});
        storage[t] = plain(g.tensors[t]);
        storage.push_back(d.storage);
    }
    storage.resize(g.tensors.size());
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        for (int& t : g.nodes[i].inputs) {
            if (size_t(t) >= nt) continue;
            const Layout s = need(i, t);
            auto it = version[size_t(t)].find(s);
            t = it != version[size_t(t)].end() ? it->second : add_version(t, s);
        }
    }
    for (size_t t = 0; t < g.tensors.size(); ++t) {
        g.tensors[t].storage = t < nt ? storage[t] : g.tensors[t].storage;
    }

    std::vector<Node> nodes;
    auto emit_reorders = [&](size_t slot) {
        for (const auto& ft : after[slot]) {
            Node r;
            r.op = OpKind::Reorder;
            const TensorDesc& to = g.tensor(ft.second);
            // Named after the original tensor: "x.to_nchw16c", "head.to_plain".
            const std::string base = g.tensor(size_t(ft.first) < nt ? ft.first : ft.second).name;
            r.name = unique_node_name(
                g, base + (to.storage == Layout::Blocked16 ? ".to_nchw16c" : ".to_plain"));
            r.inputs = {ft.first};
            r.outputs = {ft.second};
            nodes.push_back(r);
            g.nodes.push_back(r);  // reserves the name for unique_node_name
        }
    };
    const size_t original = g.nodes.size();
    emit_reorders(0);
    for (size_t i = 0; i < original; ++i) {
        nodes.push_back(g.nodes[i]);
        emit_reorders(i + 1);
    }
    g.nodes = std::move(nodes);
    validate(g);
    return g;
}

}  // namespace passes
}  // namespace graph
}  // namespace lkc
