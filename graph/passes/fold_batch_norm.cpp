#include "graph/passes/fold_batch_norm.h"

#include <string>
#include <vector>

#include "graph/passes/pass_util.h"

namespace lkc {
namespace graph {
namespace passes {

using namespace detail;

namespace {

bool foldable_producer(const Node& p) {
    return p.attrs.epilogues.empty() && p.outputs.size() == 1 &&
           (p.op == OpKind::Conv2d || p.op == OpKind::Linear || is_dw_family(p.op));
}

std::vector<std::string> weight_roles(const Node& n) {
    std::vector<std::string> r;
    if (n.op == OpKind::DwConv2dMulti) {
        for (size_t b = 0; b < n.attrs.dilations.size(); ++b)
            r.push_back("weight" + std::to_string(b));
    } else {
        r.push_back("weight");
    }
    return r;
}

std::vector<std::string> bn_keys(const Node& bn) {
    return {bn.param("weight"), bn.param("bias"), bn.param("running_mean"),
            bn.param("running_var")};
}

// BN after producer p: scale every weight per output channel, bias = shift + b * scale.
Node fold_into_producer(Graph& g, const Node& p, const Node& bn) {
    Node f = p;
    f.name = unique_node_name(g, derived_name(p.name, bn.name));
    f.outputs = bn.outputs;
    std::vector<std::string> keys = bn_keys(bn);
    for (const std::string& r : weight_roles(p)) keys.push_back(p.param(r));
    if (p.has_param("bias")) keys.push_back(p.param("bias"));
    const bool values = all_or_no_values(g, keys, "fold_batch_norm: node '" + f.name + "'");
    std::vector<double> scale, shift;
    if (values) bn_affine(g, bn, &scale, &shift);
    for (const std::string& r : weight_roles(p)) {
        const Shape shape = g.param(p.param(r)).shape;
        Tensor v;
        if (values) {
            std::vector<double> w = to_doubles(value_of(g, p.param(r)));
            const size_t per = w.size() / scale.size();
            for (size_t i = 0; i < w.size(); ++i) w[i] *= scale[i / per];
            v = from_doubles(shape, w);
        }
        f.params[r] = add_param(g, f.name + "." + r, shape, v, ParamInit::Weight);
    }
    const Shape bshape = g.param(bn.param("bias")).shape;
    Tensor bv;
    if (values) {
        std::vector<double> b = shift;
        if (p.has_param("bias")) {
            const std::vector<double> pb = to_doubles(value_of(g, p.param("bias")));
            for (size_t c = 0; c < b.size(); ++c) b[c] += pb[c] * scale[c];
        }
        bv = from_doubles(bshape, b);
    }
    f.params["bias"] = add_param(g, f.name + ".bias", bshape, bv, ParamInit::Bias);
    return f;
}

// BN before consumer c (Linear or unpadded Conv2d): scale the weights per input channel and add
// the BN shift, pushed through the weights, to the bias.
Node fold_into_consumer(Graph& g, const Node& c, const Node& bn) {
    Node f = c;
    f.name = unique_node_name(g, derived_name(c.name, bn.name));
    f.inputs[0] = bn.inputs[0];
    std::vector<std::string> keys = bn_keys(bn);
    keys.push_back(c.param("weight"));
    if (c.has_param("bias")) keys.push_back(c.param("bias"));
    const bool values = all_or_no_values(g, keys, "fold_batch_norm: node '" + f.name + "'");
    const Shape ws = g.param(c.param("weight")).shape;
    const int64_t co = ws[0];
    Tensor wv, bv;
    if (values) {
        std::vector<double> scale, shift;
        bn_affine(g, bn, &scale, &shift);
        std::vector<double> w = to_doubles(value_of(g, c.param("weight")));
        std::vector<double> b(static_cast<size_t>(co), 0.0);
        if (c.has_param("bias")) b = to_doubles(value_of(g, c.param("bias")));
        // Conv2d [Co, Ci/groups, kh, kw]; Linear [O, I] (one group, one tap).
        const int64_t cig = ws[1], taps = ws.size() == 4 ? ws[2] * ws[3] : 1;
        const int64_t cog = co / (c.op == OpKind::Conv2d ? c.attrs.groups : 1);
        for (int64_t o = 0; o < co; ++o) {
            const int64_t first = (o / cog) * cig;  // first input channel of o's group
            for (int64_t i = 0; i < cig; ++i) {
                const size_t ch = static_cast<size_t>(first + i);
                for (int64_t t = 0; t < taps; ++t) {
                    double& wt = w[static_cast<size_t>((o * cig + i) * taps + t)];
                    b[static_cast<size_t>(o)] += wt * shift[ch];
                    wt *= scale[ch];
                }
            }
        }
        wv = from_doubles(ws, w);
        bv = from_doubles({co}, b);
    }
    f.params["weight"] = add_param(g, f.name + ".weight", ws, wv, ParamInit::Weight);
    f.params["bias"] = add_param(g, f.name + ".bias", {co}, bv, ParamInit::Bias);
    return f;
}

bool foldable_consumer(const Graph& g, const Node& c, int bn_out) {
    if (!c.attrs.epilogues.empty() || c.inputs.size() != 1 || c.inputs[0] != bn_out) return false;
    if (c.op == OpKind::Linear) return true;
    // Zero padding would be normalised by the BN in the original but not after folding.
    return c.op == OpKind::Conv2d && c.attrs.pad_h == 0 && c.attrs.pad_w == 0 &&
           g.tensor(bn_out).layout == Layout::NCHW;
}

}  // namespace

Graph fold_batch_norm(const Graph& in, const FoldOptions& o) {
    Graph g = in;
    std::vector<bool> removed(g.nodes.size(), false);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node bn = g.nodes[i];
        if (removed[i] || bn.op != OpKind::BatchNorm || !bn.attrs.epilogues.empty()) continue;
        const Uses u(g, removed);
        const int t = bn.inputs[0];
        const int p = u.producer[static_cast<size_t>(t)];
        if (o.into_producer && p >= 0 && foldable_producer(g.nodes[static_cast<size_t>(p)]) &&
            u.sole_consumer(t) == static_cast<int>(i) &&
            (!o.accept || o.accept(g, bn, g.nodes[static_cast<size_t>(p)]))) {
            Node f = fold_into_producer(g, g.nodes[static_cast<size_t>(p)], bn);
            g.nodes[static_cast<size_t>(p)] = std::move(f);
            removed[i] = true;
            continue;
        }
        const int c = u.sole_consumer(bn.outputs[0]);
        if (o.into_consumer && c >= 0 &&
            foldable_consumer(g, g.nodes[static_cast<size_t>(c)], bn.outputs[0]) &&
            (!o.accept || o.accept(g, bn, g.nodes[static_cast<size_t>(c)]))) {
            Node f = fold_into_consumer(g, g.nodes[static_cast<size_t>(c)], bn);
            g.nodes[static_cast<size_t>(c)] = std::move(f);
            removed[i] = true;
        }
    }
    rebuild(g, removed);
    return g;
}

}  // namespace passes
}  // namespace graph
}  // namespace lkc
