#include "graph/passes/lower_for_reference.h"

#include <map>
#include <vector>

#include "graph/passes/pass_util.h"

namespace lkc {
namespace graph {
namespace passes {

using namespace detail;

namespace {

int new_tensor(Graph& g, const TensorDesc& like, const std::string& name) {
    TensorDesc d = like;
    d.name = unique_tensor_name(g, name);
    d.storage = Layout::Any;
    g.tensors.push_back(d);
    return static_cast<int>(g.tensors.size()) - 1;
}

Node simple(OpKind op, const std::string& name, std::vector<int> in, int out) {
    Node n;
    n.op = op;
    n.name = name;
    n.inputs = std::move(in);
    n.outputs = {out};
    return n;
}

// Epilogues of node n -> n without them plus one node each; appended to `out`.
void expand_epilogues(Graph& g, const Node& n, std::vector<Node>& out) {
    Node base = n;
    base.attrs.epilogues.clear();
    base.params.clear();
    std::vector<bool> extra(n.inputs.size(), false);
    for (const Epilogue& e : n.attrs.epilogues) {
        if (e.op == EpilogueOp::Add) extra[size_t(e.input)] = true;
    }
    base.inputs.clear();
    for (size_t i = 0; i < n.inputs.size(); ++i) {
        if (!extra[i]) base.inputs.push_back(n.inputs[i]);
    }
    std::vector<std::map<std::string, std::string>> roles(n.attrs.epilogues.size());
    for (const auto& kv : n.params) {
        const std::string& r = kv.first;
        size_t dot = r.find('.');
        bool ep = r.size() > 2 && r[0] == 'e' && dot != std::string::npos && dot > 1 &&
                  r.find_first_not_of("0123456789", 1) == dot;
        if (ep) {
            roles[size_t(std::stoi(r.substr(1, dot - 1)))][r.substr(dot + 1)] = kv.second;
        } else {
            base.params[r] = kv.second;
        }
    }
    const int final_out = n.outputs[0];
    int cur = new_tensor(g, g.tensor(final_out), n.name);
    base.outputs = {cur};
    out.push_back(base);
    for (size_t i = 0; i < n.attrs.epilogues.size(); ++i) {
        const Epilogue& e = n.attrs.epilogues[i];
        const bool last = i + 1 == n.attrs.epilogues.size();
        const int y = last ? final_out : new_tensor(g, g.tensor(final_out), e.name);
        Node m;
        switch (e.op) {
            case EpilogueOp::Relu:
                m = simple(OpKind::Relu, e.name, {cur}, y);
                break;
            case EpilogueOp::Gelu:
                m = simple(OpKind::Gelu, e.name, {cur}, y);
                break;
            case EpilogueOp::Sigmoid:
                m = simple(OpKind::Sigmoid, e.name, {cur}, y);
                break;
            case EpilogueOp::Add:
                m = simple(OpKind::Add, e.name, {cur, n.inputs[size_t(e.input)]}, y);
                break;
            case EpilogueOp::Scale:
                m = simple(OpKind::Scale, e.name, {cur}, y);
                break;
            case EpilogueOp::BatchNorm:
                m = simple(OpKind::BatchNorm, e.name, {cur}, y);
                m.attrs.eps = e.eps;
                break;
        }
        m.params = roles[i];
        out.push_back(m);
        cur = y;
    }
}

// Fused ShiftWise -> ShiftWise (three outputs), per-output affines, adds with the identity.
void expand_fused_shiftwise(Graph& g, const Node& n, std::vector<Node>& out) {
    const int y = n.outputs[0], x = n.inputs[0];
    const int64_t R = g.tensor(x).shape[1];
    Node s = n;
    s.name = n.name + ".shift";
    for (const char* r : {"ah", "av", "as", "bias"}) s.params.erase(r);
    s.outputs.clear();
    for (const char* o : {".yh", ".yv", ".ys"})
        s.outputs.push_back(new_tensor(g, g.tensor(y), n.name + o));
    out.push_back(s);
    // yh * ah + bias as a Linear with a diagonal weight (exact: the zeros add 0).
    const bool values = !g.param(n.param("ah")).value.empty();
    Tensor dw, bias;
    if (values) {
        dw = Tensor(DType::F32, {R, R});
        const float* ah = g.param_value(n, "ah").data<float>();
        for (int64_t c = 0; c < R; ++c) dw.data<float>()[c * R + c] = ah[c];
        bias = g.param_value(n, "bias");
    }
    const std::string lin = n.name + ".lower_ah";
    Node h = simple(OpKind::Linear, lin, {s.outputs[0]}, new_tensor(g, g.tensor(y), lin));
    h.params["weight"] = add_param(g, lin + ".weight", {R, R}, dw, ParamInit::Weight);
    h.params["bias"] = n.param("bias");
    out.push_back(h);
    Node v = simple(OpKind::Scale, n.name + ".lower_av", {s.outputs[1]},
                    new_tensor(g, g.tensor(y), n.name + ".lower_av"));
    v.params["weight"] = n.param("av");
    out.push_back(v);
    Node sm = simple(OpKind::Scale, n.name + ".lower_as", {s.outputs[2]},
                     new_tensor(g, g.tensor(y), n.name + ".lower_as"));
    sm.params["weight"] = n.param("as");
    out.push_back(sm);
    Node a1 = simple(OpKind::Add, n.name + ".lower_add_hv", {h.outputs[0], v.outputs[0]},
                     new_tensor(g, g.tensor(y), n.name + ".lower_add_hv"));
    out.push_back(a1);
    Node a2 = simple(OpKind::Add, n.name + ".lower_add_s", {a1.outputs[0], sm.outputs[0]},
                     new_tensor(g, g.tensor(y), n.name + ".lower_add_s"));
    out.push_back(a2);
    out.push_back(simple(OpKind::Add, n.name + ".lower_add_x", {a2.outputs[0], x}, y));
}

}  // namespace

Graph lower_for_reference(const Graph& in) {
    Graph g = in;
    // Reorders: readers of a Reorder's output read its input; a graph output made by a Reorder
    // becomes the Reorder's input under the output's name.
    std::vector<int> alias(g.tensors.size());
    for (size_t t = 0; t < alias.size(); ++t) alias[t] = static_cast<int>(t);
    auto root = [&](int t) {
        while (alias[size_t(t)] != t) t = alias[size_t(t)];
        return t;
    };
    for (const Node& n : g.nodes) {
        if (n.op == OpKind::Reorder) alias[size_t(n.outputs[0])] = n.inputs[0];
    }
    for (int& t : g.outputs) {
        const int r = root(t);
        if (r != t) {
            const std::string name = g.tensors[size_t(t)].name;
            g.tensors[size_t(t)].name += ".reordered";
            g.tensors[size_t(r)].name = name;
            t = r;
        }
    }
    std::vector<Node> nodes;
    for (const Node& n0 : in.nodes) {
        if (n0.op == OpKind::Reorder) continue;
        Node n = n0;
        for (int& t : n.inputs) t = root(t);
        const bool fused_sw = n.op == OpKind::ShiftWise && n.has_param("ah");
        if (!n.attrs.epilogues.empty()) {
            std::vector<Node> part;
            expand_epilogues(g, n, part);
            for (Node& m : part) {
                if (m.op == OpKind::ShiftWise && m.has_param("ah")) {
                    expand_fused_shiftwise(g, m, nodes);
                } else {
                    nodes.push_back(std::move(m));
                }
            }
        } else if (fused_sw) {
            expand_fused_shiftwise(g, n, nodes);
        } else {
            nodes.push_back(std::move(n));
        }
    }
    g.nodes = std::move(nodes);
    for (TensorDesc& t : g.tensors) t.storage = Layout::Any;
    rebuild(g, {});
    return g;
}

}  // namespace passes
}  // namespace graph
}  // namespace lkc
