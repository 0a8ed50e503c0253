#include "graph/passes/pass_util.h"

#include <cmath>
#include <set>

namespace lkc {
namespace graph {
namespace passes {
namespace detail {

Uses::Uses(const Graph& g, const std::vector<bool>& removed)
    : producer(g.tensors.size(), -1), consumers(g.tensors.size()), output(g.tensors.size()) {
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        if (!removed.empty() && removed[i]) continue;
        for (int t : g.nodes[i].outputs) producer[static_cast<size_t>(t)] = static_cast<int>(i);
        for (int t : g.nodes[i].inputs) {
            consumers[static_cast<size_t>(t)].push_back(static_cast<int>(i));
        }
    }
    for (int t : g.outputs) output[static_cast<size_t>(t)] = true;
}

int Uses::sole_consumer(int t) const {
    const std::vector<int>& c = consumers[static_cast<size_t>(t)];
    if (c.empty() || output[static_cast<size_t>(t)]) return -1;
    for (int n : c) {
        if (n != c[0]) return -1;
    }
    return c[0];
}

void rebuild(Graph& g, const std::vector<bool>& removed) {
    std::vector<Node> nodes;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        if (removed.empty() || !removed[i]) nodes.push_back(std::move(g.nodes[i]));
    }
    std::vector<bool> used(g.tensors.size(), false);
    for (int t : g.inputs) used[static_cast<size_t>(t)] = true;
    for (int t : g.outputs) used[static_cast<size_t>(t)] = true;
    std::set<std::string> keys;
    for (const Node& n : nodes) {
        for (int t : n.inputs) used[static_cast<size_t>(t)] = true;
        for (int t : n.outputs) used[static_cast<size_t>(t)] = true;
        for (const auto& kv : n.params) keys.insert(kv.second);
    }
    std::vector<int> remap(g.tensors.size(), -1);
    std::vector<TensorDesc> tensors;
    for (size_t t = 0; t < g.tensors.size(); ++t) {
        if (!used[t]) continue;
        remap[t] = static_cast<int>(tensors.size());
        tensors.push_back(std::move(g.tensors[t]));
    }
    auto map = [&](std::vector<int>& ids) {
        for (int& t : ids) t = remap[static_cast<size_t>(t)];
    };
    for (Node& n : nodes) {
        map(n.inputs);
        map(n.outputs);
    }
    map(g.inputs);
    map(g.outputs);
    g.tensors = std::move(tensors);
    g.nodes = std::move(nodes);
    for (auto it = g.params.begin(); it != g.params.end();) {
        it = keys.count(it->first) ? std::next(it) : g.params.erase(it);
    }
    validate(g);
}

std::string common_prefix(const std::vector<std::string>& names) {
    if (names.empty()) return "";
    std::string p = names[0];
    for (const std::string& n : names) {
        size_t i = 0;
        while (i < p.size() && i < n.size() && p[i] == n[i]) ++i;
        // Whole components only: the prefix ends where both names end or have a '.'.
        bool p_end = i == p.size() || p[i] == '.';
        bool n_end = i == n.size() || n[i] == '.';
        if (!(p_end && n_end)) {
            size_t dot = p.rfind('.', i == 0 ? 0 : i - 1);
            i = (dot == std::string::npos || i == 0) ? 0 : dot;
        }
        p = p.substr(0, i);
    }
    return p;
}

std::string derived_name(const std::string& base, const std::string& other) {
    const std::string p = common_prefix({base, other});
    std::string rest = other;
    if (!p.empty() && other.size() > p.size()) rest = other.substr(p.size() + 1);
    return base + "+" + rest;
}

std::string unique_node_name(const Graph& g, const std::string& name) {
    std::set<std::string> names;
    for (const Node& n : g.nodes) names.insert(n.name);
    std::string r = name;
    for (int i = 2; names.count(r); ++i) r = name + "#" + std::to_string(i);
    return r;
}

std::string unique_tensor_name(const Graph& g, const std::string& name) {
    std::set<std::string> names;
    for (const TensorDesc& t : g.tensors) names.insert(t.name);
    std::string r = name;
    for (int i = 2; names.count(r); ++i) r = name + "#" + std::to_string(i);
    return r;
}

const std::string& add_param(Graph& g, const std::string& key, const Shape& shape, Tensor value,
                             ParamInit init) {
    if (!value.empty() && (value.shape() != shape || value.dtype() != DType::F32)) {
        throw GraphError("derived parameter '" + key + "': value is " + dtype_name(value.dtype()) +
                         " " + shape_to_string(value.shape()) + ", expected F32 " +
                         shape_to_string(shape));
    }
    Param p;
    p.shape = shape;
    p.init = init;
    p.value = std::move(value);
    auto r = g.params.emplace(key, std::move(p));
    if (!r.second) {
        throw GraphError("derived parameter '" + key + "' already exists in graph '" + g.model +
                         "' (passes name new tensors '<node>.<role>'; rename the clashing key)");
    }
    return r.first->first;
}

Tensor value_of(const Graph& g, const std::string& key) { return g.param(key).value; }

bool all_or_no_values(const Graph& g, const std::vector<std::string>& keys,
                      const std::string& where) {
    size_t with = 0;
    std::string missing;
    for (const std::string& k : keys) {
        if (!g.param(k).value.empty()) {
            ++with;
        } else if (missing.empty()) {
            missing = k;
        }
    }
    if (with != 0 && with != keys.size()) {
        throw GraphError(where + ": parameter '" + missing +
                         "' has no value but others do (expected all parameters materialised, "
                         "or none for a shape-only graph)");
    }
    return with != 0 || keys.empty();
}

std::vector<double> to_doubles(const Tensor& t) {
    if (t.dtype() != DType::F32) {
        throw GraphError(std::string("passes: parameter value of dtype ") + dtype_name(t.dtype()) +
                         ", expected F32");
    }
    const float* p = t.data<float>();
    return std::vector<double>(p, p + t.numel());
}

Tensor from_doubles(const Shape& shape, const std::vector<double>& v) {
    Tensor t(DType::F32, shape);
    if (static_cast<size_t>(t.numel()) != v.size()) {
        throw GraphError("passes: internal: " + std::to_string(v.size()) + " values for shape " +
                         shape_to_string(shape));
    }
    float* p = t.data<float>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
    return t;
}

void bn_affine(const Graph& g, const Node& bn, std::vector<double>* scale,
               std::vector<double>* shift) {
    const std::vector<double> gamma = to_doubles(g.param_value(bn, "weight"));
    const std::vector<double> beta = to_doubles(g.param_value(bn, "bias"));
    const std::vector<double> mean = to_doubles(g.param_value(bn, "running_mean"));
    const std::vector<double> var = to_doubles(g.param_value(bn, "running_var"));
    scale->resize(gamma.size());
    shift->resize(gamma.size());
    for (size_t c = 0; c < gamma.size(); ++c) {
        const double den = var[c] + bn.attrs.eps;
        if (!(den > 0) || !std::isfinite(den)) {
            throw GraphError("node '" + bn.name + "' (batch_norm): running_var[" +
                             std::to_string(c) + "] + eps = " + std::to_string(den) +
                             ", expected positive and finite");
        }
        (*scale)[c] = gamma[c] / std::sqrt(den);
        (*shift)[c] = beta[c] - mean[c] * (*scale)[c];
    }
}

bool is_dw_family(OpKind op) {
    return op == OpKind::DwConv2d || op == OpKind::DwConv2dMulti || op == OpKind::DwConv2dSparse;
}

}  // namespace detail
}  // namespace passes
}  // namespace graph
}  // namespace lkc
