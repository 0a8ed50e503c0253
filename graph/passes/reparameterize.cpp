#include "graph/passes/reparameterize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "graph/cost.h"
#include "graph/node_workload.h"
#include "graph/passes/fold_batch_norm.h"
#include "graph/passes/pass_util.h"
#include "runtime/reparam.h"

namespace lkc {
namespace graph {
namespace passes {

using namespace detail;

const char* deploy_form_name(DeployForm f) {
    switch (f) {
        case DeployForm::Dense:
            return "dense";
        case DeployForm::Sparse:
            return "sparse";
        case DeployForm::Multi:
            return "multi";
        case DeployForm::ShiftWise:
            return "shiftwise";
    }
    return "?";
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// A candidate node before its parameters exist: roles -> shapes (and values once chosen).
struct Candidate {
    DeployForm form;
    Node node;                                // params / consts hold roles -> final keys
    std::map<std::string, Shape> shapes;      // role -> shape (new parameters)
    std::map<std::string, std::string> keep;  // role -> existing key (parameters reused as is)
    std::vector<uint8_t> mask;                // Sparse: [C, Kh, Kw] 0/1
    double kept = 1;                          // Sparse: kept fraction of the useful taps
};

// The workload of a candidate, from a scratch graph holding only its input and parameter shapes.
std::optional<Workload> candidate_workload(const Graph& g, const Candidate& c) {
    Graph s;
    s.model = g.model;
    s.tensors.push_back(g.tensor(c.node.inputs.at(0)));
    Node n = c.node;
    n.inputs = {0};
    n.params.clear();
    for (const auto& kv : c.shapes) {
        Param p;
        p.shape = kv.second;
        s.params["new." + kv.first] = p;
        n.params[kv.first] = "new." + kv.first;
    }
    for (const auto& kv : c.keep) {
        s.params[kv.second] = g.param(kv.second);
        n.params[kv.first] = kv.second;
    }
    for (const auto& kv : c.node.consts) {
        auto it = g.constants.find(kv.second);
        if (it != g.constants.end()) s.constants[kv.second] = it->second;
    }
    try {
        return node_workload(s, n);
    } catch (const GraphError&) {
        return std::nullopt;
    }
}

double candidate_cost(const ReparamOptions& o, const std::optional<Workload>& wl,
                      const Candidate& c) {
    if (!wl) return kInf;
    if (c.form == DeployForm::Sparse) {
        if (o.sparse_cost) return o.sparse_cost(*wl, c.kept);
        return (o.cost ? o.cost(*wl) : wl->useful_flops()) * c.kept;
    }
    return o.cost ? o.cost(*wl) : wl->useful_flops();
}

// Chooses the cheapest candidate (ties: the first); records the choice.
size_t choose(const Graph& g, const ReparamOptions& o, const std::vector<Candidate>& cands,
              const std::string& node) {
    FormChoice fc;
    fc.node = node;
    size_t best = 0;
    double best_cost = kInf;
    for (size_t i = 0; i < cands.size(); ++i) {
        std::optional<Workload> wl = candidate_workload(g, cands[i]);
        const double cost = candidate_cost(o, wl, cands[i]);
        fc.candidates.push_back({cands[i].form, wl ? to_string(*wl) : "", cost});
        if (cost < best_cost) {
            best = i;
            best_cost = cost;
        }
    }
    fc.chosen = cands[best].form;
    if (o.report) o.report->push_back(fc);
    return best;
}

// Kept fraction of the useful taps of a [C, Kh, Kw] mask on an H x W map with stride s.
double kept_fraction(const std::vector<uint8_t>& mask, int64_t C, int64_t kh, int64_t kw, int64_t H,
                     int64_t W, int stride) {
    const int64_t oh = (H + stride - 1) / stride, ow = (W + stride - 1) / stride;
    std::vector<double> rows(static_cast<size_t>(kh)), cols(static_cast<size_t>(kw));
    double dense_r = 0, dense_c = 0;
    for (int64_t u = 0; u < kh; ++u) {
        rows[size_t(u)] = double(valid_taps_1d(H, oh, 1, stride, 1, (kh - 1) / 2 - u));
        dense_r += rows[size_t(u)];
    }
    for (int64_t v = 0; v < kw; ++v) {
        cols[size_t(v)] = double(valid_taps_1d(W, ow, 1, stride, 1, (kw - 1) / 2 - v));
        dense_c += cols[size_t(v)];
    }
    double kept = 0;
    for (int64_t c = 0; c < C; ++c)
        for (int64_t u = 0; u < kh; ++u)
            for (int64_t v = 0; v < kw; ++v) {
                if (mask[size_t((c * kh + u) * kw + v)]) kept += rows[size_t(u)] * cols[size_t(v)];
            }
    const double dense = double(C) * dense_r * dense_c;
    return dense > 0 ? kept / dense : 1.0;
}

Tensor mask_tensor(const std::vector<uint8_t>& m, const Shape& shape) {
    Tensor t(DType::U8, shape);
    std::memcpy(t.data<uint8_t>(), m.data(), m.size());
    return t;
}

std::vector<uint8_t> mask_values(const Tensor& m) {
    std::vector<uint8_t> r(static_cast<size_t>(m.numel()));
    for (size_t i = 0; i < r.size(); ++i) {
        switch (m.dtype()) {
            case DType::F32:
                r[i] = m.data<float>()[i] != 0.0f;
                break;
            case DType::I32:
                r[i] = m.data<int32_t>()[i] != 0;
                break;
            default:  // U8, Bool
                r[i] = m.data<uint8_t>()[i] != 0;
        }
    }
    return r;
}

size_t count_ones(const std::vector<uint8_t>& m) {
    return static_cast<size_t>(std::count(m.begin(), m.end(), uint8_t(1)));
}

Tensor copy_as(const Tensor& t, const Shape& shape) {
    Tensor r(t.dtype(), shape);
    std::memcpy(r.raw(), t.raw(), t.nbytes());
    return r;
}

// Materialises the chosen candidate: its new parameters (values from `values`, by role; empty
// tensors in shape-only graphs), its mask constant; returns the node.
Node materialise(Graph& g, const Candidate& c, const std::map<std::string, Tensor>& values) {
    Node n = c.node;
    n.params.clear();
    for (const auto& kv : c.keep) n.params[kv.first] = kv.second;
    for (const auto& kv : c.shapes) {
        auto v = values.find(kv.first);
        const bool is_bias =
            kv.first == "bias" || kv.first == "ah" || kv.first == "av" || kv.first == "as";
        n.params[kv.first] = add_param(
            g, n.name + "." + kv.first, kv.second, v == values.end() ? Tensor() : v->second,
            is_bias ? (kv.first == "bias" ? ParamInit::Bias : ParamInit::Ones) : ParamInit::Weight);
    }
    if (c.form == DeployForm::Sparse) {
        const std::string key = n.name + ".mask";
        if (g.constants.count(key)) {
            throw GraphError("reparameterize: constant '" + key + "' already exists");
        }
        auto ws = c.shapes.find("weight");
        g.constants[key] = mask_tensor(
            c.mask, ws != c.shapes.end() ? ws->second : g.param(c.keep.at("weight")).shape);
        n.consts["mask"] = key;
    }
    return n;
}

// ---- parallel depth-wise branches -----------------------------------------------------------

struct BranchPart {
    int node;         // leaf node index
    Tensor w;         // effective weight (w * mask for sparse), empty in shape-only graphs
    std::string key;  // the existing key when w is the parameter itself, else ""
    Shape shape;      // [C, 1, a, b]
    int dilation = 1;
    std::vector<uint8_t> fp;  // footprint [C, a, b] (mask, or all ones)
};

// Tries to merge the Add tree rooted at node `root`; returns true on success.
bool merge_tree(Graph& g, std::vector<bool>& removed, int root, const ReparamOptions& o,
                std::set<std::string>& created) {
    const Uses u(g, removed);
    std::vector<int> adds, leaves;
    std::function<void(int)> walk = [&](int a) {
        adds.push_back(a);
        for (int t : g.nodes[size_t(a)].inputs) {
            const int p = u.producer[size_t(t)];
            if (p >= 0 && g.nodes[size_t(p)].op == OpKind::Add &&
                g.nodes[size_t(p)].attrs.epilogues.empty() && u.sole_consumer(t) == a) {
                walk(p);
            } else {
                leaves.push_back(t);
            }
        }
    };
    walk(root);
    if (leaves.size() < 2) return false;
    int x = -1, stride = 0;
    std::vector<int> leaf_nodes;
    for (int t : leaves) {
        const int p = u.producer[size_t(t)];
        if (p < 0) return false;
        const Node& n = g.nodes[size_t(p)];
        const int c = u.sole_consumer(t);
        if (!is_dw_family(n.op) || !n.attrs.epilogues.empty() || n.outputs.size() != 1 || c < 0 ||
            std::find(adds.begin(), adds.end(), c) == adds.end()) {
            return false;
        }
        if (x < 0) {
            x = n.inputs[0];
            stride = n.attrs.stride;
        }
        if (n.inputs[0] != x || n.attrs.stride != stride) return false;
        leaf_nodes.push_back(p);
    }

    // Branches (each leaf occurrence counts: Add(t, t) is twice the branch).
    std::vector<std::string> keys, names;
    for (int p : leaf_nodes) {
        const Node& n = g.nodes[size_t(p)];
        for (const auto& kv : n.params) keys.push_back(kv.second);
        names.push_back(n.name);
    }
    const std::string where = "reparameterize: branches of '" + g.nodes[size_t(root)].name + "'";
    const bool values = all_or_no_values(g, keys, where);
    std::vector<BranchPart> parts;
    std::vector<Tensor> biases;
    bool has_mask = false, has_bias = false;
    for (int p : leaf_nodes) {
        const Node& n = g.nodes[size_t(p)];
        std::vector<std::pair<std::string, int>> roles;
        if (n.op == OpKind::DwConv2dMulti) {
            for (size_t b = 0; b < n.attrs.dilations.size(); ++b) {
                roles.push_back({"weight" + std::to_string(b), n.attrs.dilations[b]});
            }
        } else {
            roles.push_back({"weight", n.attrs.dilation});
        }
        for (const auto& r : roles) {
            BranchPart bp;
            bp.node = p;
            bp.shape = g.param(n.param(r.first)).shape;
            bp.dilation = r.second;
            const size_t taps = size_t(shape_numel(bp.shape));
            bp.fp.assign(taps, 1);
            if (n.op == OpKind::DwConv2dSparse) {
                has_mask = true;
                bp.fp = mask_values(g.constant_value(n, "mask"));
            }
            if (values) {
                if (n.op == OpKind::DwConv2dSparse) {
                    std::vector<double> w = to_doubles(value_of(g, n.param(r.first)));
                    for (size_t i = 0; i < w.size(); ++i) w[i] *= bp.fp[i];
                    bp.w = from_doubles(bp.shape, w);
                } else {
                    bp.w = value_of(g, n.param(r.first));
                    bp.key = n.param(r.first);
                }
            } else if (n.op != OpKind::DwConv2dSparse) {
                bp.key = n.param(r.first);
            }
            parts.push_back(bp);
        }
        if (n.has_param("bias")) {
            has_bias = true;
            biases.push_back(value_of(g, n.param("bias")));
        }
    }
    const TensorDesc& xd = g.tensor(x);
    const int64_t C = xd.shape[1];
    int64_t kh = 1, kw = 1;
    for (const BranchPart& bp : parts) {
        kh = std::max<int64_t>(kh, (bp.shape[2] - 1) * bp.dilation + 1);
        kw = std::max<int64_t>(kw, (bp.shape[3] - 1) * bp.dilation + 1);
    }
    // Merged kernel (values) and the mask: nonzero taps, or the union of the branch footprints.
    Tensor merged_w, merged_b;
    std::vector<uint8_t> mask(size_t(C * kh * kw), 0);
    if (values) {
        std::vector<reparam::Branch> rb;
        for (const BranchPart& bp : parts) rb.push_back({bp.w, Tensor(), bp.dilation});
        reparam::ConvParams m = reparam::merge_branches(rb);
        merged_w = m.w;
        const float* w = merged_w.data<float>();
        for (size_t i = 0; i < mask.size(); ++i) mask[i] = w[i] != 0.0f;
    } else {
        for (const BranchPart& bp : parts) {
            const int64_t a = bp.shape[2], b = bp.shape[3], d = bp.dilation;
            const int64_t oh = (kh - ((a - 1) * d + 1)) / 2, ow = (kw - ((b - 1) * d + 1)) / 2;
            for (int64_t c = 0; c < C; ++c)
                for (int64_t i = 0; i < a; ++i)
                    for (int64_t j = 0; j < b; ++j) {
                        if (bp.fp[size_t((c * a + i) * b + j)]) {
                            mask[size_t((c * kh + oh + i * d) * kw + ow + j * d)] = 1;
                        }
                    }
        }
    }
    if (values && has_bias) {
        std::vector<double> b(size_t(C), 0.0);
        for (const Tensor& t : biases) {
            const float* p = t.data<float>();
            for (int64_t c = 0; c < C; ++c) b[size_t(c)] += p[c];
        }
        merged_b = from_doubles({C}, b);
    }
    const double density = double(count_ones(mask)) / double(mask.size());

    std::string prefix = common_prefix(names);
    if (prefix.empty()) prefix = g.nodes[size_t(root)].name;
    Node base;
    base.name = unique_node_name(g, prefix + ".reparam");
    base.inputs = {x};
    base.outputs = g.nodes[size_t(root)].outputs;
    base.attrs.stride = stride;

    std::vector<Candidate> cands;
    {
        Candidate c;
        c.form = DeployForm::Dense;
        c.node = base;
        c.node.op = OpKind::DwConv2d;
        c.shapes["weight"] = {C, 1, kh, kw};
        if (has_bias) c.shapes["bias"] = {C};
        cands.push_back(c);
    }
    if (has_mask || density <= o.sparse_max_density) {
        Candidate c;
        c.form = DeployForm::Sparse;
        c.node = base;
        c.node.op = OpKind::DwConv2dSparse;
        c.shapes["weight"] = {C, 1, kh, kw};
        if (has_bias) c.shapes["bias"] = {C};
        c.mask = mask;
        c.kept = kept_fraction(mask, C, kh, kw, xd.shape[2], xd.shape[3], stride);
        cands.push_back(c);
    }
    if (parts.size() >= 2) {
        Candidate c;
        c.form = DeployForm::Multi;
        c.node = base;
        c.node.op = OpKind::DwConv2dMulti;
        for (size_t b = 0; b < parts.size(); ++b) {
            const std::string r = "weight" + std::to_string(b);
            if (!parts[b].key.empty()) {
                c.keep[r] = parts[b].key;
            } else {
                c.shapes[r] = parts[b].shape;
            }
            c.node.attrs.dilations.push_back(parts[b].dilation);
        }
        if (has_bias) c.shapes["bias"] = {C};
        cands.push_back(c);
    }
    const Candidate& chosen = cands[choose(g, o, cands, base.name)];
    std::map<std::string, Tensor> vals;
    if (values) {
        if (has_bias) vals["bias"] = merged_b;
        if (chosen.form == DeployForm::Multi) {
            for (size_t b = 0; b < parts.size(); ++b) {
                if (parts[b].key.empty()) vals["weight" + std::to_string(b)] = parts[b].w;
            }
        } else {
            vals["weight"] = merged_w;
        }
    }
    Node merged = materialise(g, chosen, vals);
    created.insert(merged.name);
    for (int p : leaf_nodes) removed[size_t(p)] = true;
    for (int a : adds) removed[size_t(a)] = true;
    removed[size_t(root)] = false;
    g.nodes[size_t(root)] = std::move(merged);
    return true;
}

void merge_all_branches(Graph& g, const ReparamOptions& o, std::set<std::string>& created) {
    std::vector<bool> removed(g.nodes.size(), false);
    for (size_t i = g.nodes.size(); i-- > 0;) {
        if (removed[i] || g.nodes[i].op != OpKind::Add || !g.nodes[i].attrs.epilogues.empty()) {
            continue;
        }
        merge_tree(g, removed, static_cast<int>(i), o, created);
    }
    rebuild(g, removed);
}

// ---- ShiftWise ------------------------------------------------------------------------------

// The summed path weight ([R*nk,1,k,k] like the paths), empty in shape-only graphs.
Tensor summed_paths(const Graph& g, const Node& s, const std::vector<std::string>& roles) {
    std::vector<double> acc;
    for (const std::string& r : roles) {
        std::vector<double> w = to_doubles(g.param_value(s, r));
        if (acc.empty()) acc.assign(w.size(), 0.0);
        for (size_t i = 0; i < w.size(); ++i) acc[i] += w[i];
    }
    return from_doubles(g.param(s.param(roles[0])).shape, acc);
}

void fuse_shiftwise(Graph& g, const ReparamOptions& o, std::set<std::string>& created) {
    std::vector<bool> removed(g.nodes.size(), false);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node s = g.nodes[i];
        if (removed[i] || s.op != OpKind::ShiftWise || s.outputs.size() != 3) continue;
        std::vector<std::string> roles, keys;
        for (int p = 0; s.has_param("weight" + std::to_string(p)); ++p) {
            roles.push_back("weight" + std::to_string(p));
            keys.push_back(s.param(roles.back()));
        }
        const Uses u(g, removed);
        const int x = s.inputs[0];

        // Match y = BN_h(yh) + BN_v(yv) + BN_s(ys) + x (each BN optional) as one Add tree.
        bool match = o.shiftwise_fuse;
        int bn[3] = {-1, -1, -1}, leaf[3] = {-1, -1, -1}, root = -1;
        std::vector<int> adds, leaves;
        for (int j = 0; match && j < 3; ++j) {
            leaf[j] = s.outputs[size_t(j)];
            const int c = u.sole_consumer(leaf[j]);
            if (c >= 0 && g.nodes[size_t(c)].op == OpKind::BatchNorm &&
                g.nodes[size_t(c)].attrs.epilogues.empty()) {
                bn[j] = c;
                leaf[j] = g.nodes[size_t(c)].outputs[0];
            }
        }
        if (match) {
            int a = u.sole_consumer(leaf[0]);
            match = a >= 0 && g.nodes[size_t(a)].op == OpKind::Add;
            while (match) {
                const int b = u.sole_consumer(g.nodes[size_t(a)].outputs[0]);
                if (b < 0 || g.nodes[size_t(b)].op != OpKind::Add) break;
                a = b;
            }
            root = a;
        }
        if (match) {
            std::function<void(int)> walk = [&](int a) {
                adds.push_back(a);
                for (int t : g.nodes[size_t(a)].inputs) {
                    const int p = u.producer[size_t(t)];
                    if (p >= 0 && g.nodes[size_t(p)].op == OpKind::Add &&
                        g.nodes[size_t(p)].attrs.epilogues.empty() && u.sole_consumer(t) == a) {
                        walk(p);
                    } else {
                        leaves.push_back(t);
                    }
                }
            };
            walk(root);
            std::vector<int> want = {leaf[0], leaf[1], leaf[2], x};
            std::sort(want.begin(), want.end());
            std::sort(leaves.begin(), leaves.end());
            match = leaves == want && g.nodes[size_t(root)].attrs.epilogues.empty();
            for (int j = 0; match && j < 3; ++j) {
                const int c = u.sole_consumer(leaf[j]);
                match = std::find(adds.begin(), adds.end(), c) != adds.end();
            }
        }

        std::vector<std::string> all_keys = keys;
        for (int j = 0; j < 3; ++j) {
            if (match && bn[j] >= 0) {
                for (const char* r : {"weight", "bias", "running_mean", "running_var"}) {
                    all_keys.push_back(g.nodes[size_t(bn[j])].param(r));
                }
            }
        }
        const bool values =
            all_or_no_values(g, all_keys, "reparameterize: shiftwise node '" + s.name + "'");
        const Shape wshape = g.param(keys[0]).shape;
        const Tensor wsum = values ? summed_paths(g, s, roles) : Tensor();

        if (!match) {
            if (roles.size() < 2) continue;
            // ShiftWise_v2 Block.reparameterize(): one weight, the sum of the paths.
            Node n = s;
            for (const std::string& r : roles) n.params.erase(r);
            n.params["weight0"] = add_param(g, s.name + ".weight", wshape, wsum, ParamInit::Weight);
            g.nodes[i] = n;
            continue;
        }

        const int64_t R = g.tensor(x).shape[1], k = s.attrs.small_k, K = s.attrs.big_k;
        const int64_t nk = (K + k - 1) / k, L = nk * k, mid = K / 2, h = (k - 1) / 2;
        const int64_t half = std::max(mid, L - 1 - mid), S = 2 * half + 1;
        // ah, av, as, b from the BNs (1 and 0 where there is none).
        std::vector<double> a[3], b(size_t(R), 0.0);
        for (int j = 0; j < 3; ++j) {
            a[j].assign(size_t(R), 1.0);
            if (values && bn[j] >= 0) {
                std::vector<double> shift;
                bn_affine(g, g.nodes[size_t(bn[j])], &a[j], &shift);
                for (int64_t c = 0; c < R; ++c) b[size_t(c)] += shift[size_t(c)];
            }
        }
        std::vector<std::string> names = {s.name};
        for (int j = 0; j < 3; ++j) {
            if (bn[j] >= 0) names.push_back(g.nodes[size_t(bn[j])].name);
        }
        for (int ad : adds) names.push_back(g.nodes[size_t(ad)].name);
        std::string prefix = common_prefix(names);
        if (prefix.empty()) prefix = s.name;
        Node base;
        base.name = unique_node_name(g, prefix + ".reparam");
        base.inputs = {x};
        base.outputs = g.nodes[size_t(root)].outputs;

        // The cross kernel (values) and its mask: nonzero taps, or the cross footprint.
        Tensor cross_w;
        std::vector<uint8_t> mask(size_t(R * S * S), 0);
        const Tensor w4 = values ? copy_as(wsum, {R, nk, k, k}) : Tensor();
        const Tensor& slot_h = g.constant_value(s, "slot_h");
        const Tensor& slot_v = g.constant_value(s, "slot_v");
        const Tensor& ident = g.constant_value(s, "ident");
        if (values) {
            reparam::ConvParams cp = reparam::shiftwise_to_cross(
                w4, slot_h, slot_v, ident, int(K), from_doubles({R}, a[0]), from_doubles({R}, a[1]),
                from_doubles({R}, a[2]), from_doubles({R}, b));
            cross_w = cp.w;
            const float* p = cross_w.data<float>();
            for (size_t q = 0; q < mask.size(); ++q) mask[q] = p[q] != 0.0f;
        } else {
            for (int64_t c = 0; c < R; ++c)
                for (int64_t dr = -half; dr <= half; ++dr)
                    for (int64_t dc = -half; dc <= half; ++dc) {
                        const bool hor = std::abs(dr) <= h && dc >= -mid && dc <= L - 1 - mid;
                        const bool ver = std::abs(dc) <= h && dr >= -mid && dr <= L - 1 - mid;
                        if (hor || ver) mask[size_t((c * S + dr + half) * S + dc + half)] = 1;
                    }
        }
        const double density = double(count_ones(mask)) / double(mask.size());

        std::vector<Candidate> cands;
        {
            Candidate c;
            c.form = DeployForm::ShiftWise;
            c.node = base;
            c.node.op = OpKind::ShiftWise;
            c.node.attrs.big_k = s.attrs.big_k;
            c.node.attrs.small_k = s.attrs.small_k;
            c.node.consts = s.consts;
            c.shapes["weight0"] = wshape;
            for (const char* r : {"ah", "av", "as", "bias"}) c.shapes[r] = {R};
            cands.push_back(c);
        }
        {
            Candidate c;
            c.form = DeployForm::Dense;
            c.node = base;
            c.node.op = OpKind::DwConv2d;
            c.shapes["weight"] = {R, 1, S, S};
            c.shapes["bias"] = {R};
            cands.push_back(c);
        }
        if (density <= o.sparse_max_density) {
            Candidate c;
            c.form = DeployForm::Sparse;
            c.node = base;
            c.node.op = OpKind::DwConv2dSparse;
            c.shapes["weight"] = {R, 1, S, S};
            c.shapes["bias"] = {R};
            c.mask = mask;
            const Shape& xs = g.tensor(x).shape;
            c.kept = kept_fraction(mask, R, S, S, xs[2], xs[3], 1);
            cands.push_back(c);
        }
        {
            Candidate c;
            c.form = DeployForm::Multi;
            c.node = base;
            c.node.op = OpKind::DwConv2dMulti;
            c.node.attrs.dilations = {1, 1, 1};
            c.shapes["weight0"] = {R, 1, k, S};
            c.shapes["weight1"] = {R, 1, S, k};
            c.shapes["weight2"] = {R, 1, k, k};
            c.shapes["bias"] = {R};
            cands.push_back(c);
        }
        const Candidate& chosen = cands[choose(g, o, cands, base.name)];
        std::map<std::string, Tensor> vals;
        if (values) {
            vals["bias"] = from_doubles({R}, b);
            switch (chosen.form) {
                case DeployForm::ShiftWise:
                    vals["weight0"] = wsum;
                    vals["ah"] = from_doubles({R}, a[0]);
                    vals["av"] = from_doubles({R}, a[1]);
                    vals["as"] = from_doubles({R}, a[2]);
                    break;
                case DeployForm::Dense:
                case DeployForm::Sparse:
                    vals["weight"] = cross_w;
                    break;
                case DeployForm::Multi: {
                    // Centred strips: wh [R,1,k,S], wv [R,1,S,k]; ws plus the identity tap.
                    reparam::ShiftwiseKernels e =
                        reparam::shiftwise_equivalent(w4, slot_h, slot_v, ident, int(K));
                    const float *ph = e.wh.data<float>(), *pv = e.wv.data<float>(),
                                *ps = e.ws.data<float>();
                    std::vector<double> wh(size_t(R * k * S), 0.0), wv(size_t(R * S * k), 0.0),
                        ws(size_t(R * k * k), 0.0);
                    for (int64_t c = 0; c < R; ++c) {
                        for (int64_t uu = 0; uu < k; ++uu)
                            for (int64_t v = 0; v < L; ++v) {
                                const int64_t col = v - mid + half;
                                wh[size_t((c * k + uu) * S + col)] =
                                    a[0][size_t(c)] * ph[(c * k + uu) * L + v];
                                wv[size_t((c * S + col) * k + uu)] =
                                    a[1][size_t(c)] * pv[(c * L + v) * k + uu];
                            }
                        for (int64_t q = 0; q < k * k; ++q) {
                            ws[size_t(c * k * k + q)] = a[2][size_t(c)] * ps[c * k * k + q];
                        }
                        ws[size_t(c * k * k + h * k + h)] += 1.0;  // + x
                    }
                    vals["weight0"] = from_doubles({R, 1, k, S}, wh);
                    vals["weight1"] = from_doubles({R, 1, S, k}, wv);
                    vals["weight2"] = from_doubles({R, 1, k, k}, ws);
                    break;
                }
            }
        }
        Node fused = materialise(g, chosen, vals);
        created.insert(fused.name);
        removed[i] = true;
        for (int j = 0; j < 3; ++j) {
            if (bn[j] >= 0) removed[size_t(bn[j])] = true;
        }
        for (int ad : adds) removed[size_t(ad)] = true;
        removed[size_t(root)] = false;
        g.nodes[size_t(root)] = std::move(fused);
    }
    rebuild(g, removed);
}

// ---- single sparse-looking depth-wise convs -------------------------------------------------

void sparsify(Graph& g, const ReparamOptions& o, const std::set<std::string>& created) {
    for (Node& n : g.nodes) {
        if (n.op != OpKind::DwConv2d || created.count(n.name) || !n.attrs.epilogues.empty() ||
            g.param(n.param("weight")).value.empty()) {
            continue;
        }
        const Tensor w = g.param_value(n, "weight");
        std::vector<uint8_t> mask(size_t(w.numel()));
        const float* p = w.data<float>();
        for (size_t i = 0; i < mask.size(); ++i) mask[i] = p[i] != 0.0f;
        const double density = double(count_ones(mask)) / double(mask.size());
        if (density > o.sparse_max_density) continue;
        const Shape ws = w.shape();
        const Shape& xs = g.tensor(n.inputs[0]).shape;
        std::vector<Candidate> cands(2);
        cands[0].form = DeployForm::Dense;
        cands[0].node = n;
        for (const auto& kv : n.params) cands[0].keep[kv.first] = kv.second;
        cands[1] = cands[0];
        cands[1].form = DeployForm::Sparse;
        cands[1].node.op = OpKind::DwConv2dSparse;
        cands[1].mask = mask;
        // Dilated kernels: the tap fraction of the undilated mask (an estimate).
        cands[1].kept = kept_fraction(mask, ws[0], ws[2], ws[3], xs[2], xs[3], n.attrs.stride);
        if (choose(g, o, cands, n.name) == 1) n = materialise(g, cands[1], {});
    }
    validate(g);
}

// ---- layer scale and GRN beta ---------------------------------------------------------------

void fold_scales_and_grn(Graph& g, const ReparamOptions& o) {
    std::vector<bool> removed(g.nodes.size(), false);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node n = g.nodes[i];
        if (removed[i] || !n.attrs.epilogues.empty() ||
            (n.op != OpKind::Scale && n.op != OpKind::Grn)) {
            continue;
        }
        const Uses u(g, removed);
        if (o.fold_layer_scale && n.op == OpKind::Scale) {
            const int t = n.inputs[0], p = u.producer[size_t(t)];
            if (p < 0 || u.sole_consumer(t) != static_cast<int>(i)) continue;
            const Node& pr = g.nodes[size_t(p)];
            if (!(pr.op == OpKind::Conv2d || pr.op == OpKind::Linear || is_dw_family(pr.op)) ||
                !pr.attrs.epilogues.empty() || pr.outputs.size() != 1) {
                continue;
            }
            Node f = pr;
            f.name = unique_node_name(g, derived_name(pr.name, n.name));
            f.outputs = n.outputs;
            std::vector<std::string> keys = {n.param("weight")};
            for (const auto& kv : pr.params) keys.push_back(kv.second);
            const bool values = all_or_no_values(g, keys, "reparameterize: node '" + f.name + "'");
            const std::vector<double> gam =
                values ? to_doubles(value_of(g, n.param("weight"))) : std::vector<double>();
            for (const auto& kv : pr.params) {
                const Shape shape = g.param(kv.second).shape;
                Tensor v;
                if (values) {
                    std::vector<double> w = to_doubles(value_of(g, kv.second));
                    const size_t per = w.size() / gam.size();
                    for (size_t q = 0; q < w.size(); ++q) w[q] *= gam[q / per];
                    v = from_doubles(shape, w);
                }
                f.params[kv.first] =
                    add_param(g, f.name + "." + kv.first, shape, v, g.param(kv.second).init);
            }
            g.nodes[size_t(p)] = f;
            removed[i] = true;
        } else if (o.fold_grn_beta && n.op == OpKind::Grn && n.has_param("beta")) {
            const int c = u.sole_consumer(n.outputs[0]);
            if (c < 0) continue;
            const Node& l = g.nodes[size_t(c)];
            if (l.op != OpKind::Linear || !l.attrs.epilogues.empty() || l.inputs.size() != 1) {
                continue;
            }
            Node f = l;
            f.name = unique_node_name(g, derived_name(l.name, n.name + ".beta"));
            std::vector<std::string> keys = {n.param("beta"), l.param("weight")};
            if (l.has_param("bias")) keys.push_back(l.param("bias"));
            const bool values = all_or_no_values(g, keys, "reparameterize: node '" + f.name + "'");
            const Shape ws = g.param(l.param("weight")).shape;
            Tensor bv;
            if (values) {
                const std::vector<double> w = to_doubles(value_of(g, l.param("weight")));
                const std::vector<double> beta = to_doubles(value_of(g, n.param("beta")));
                std::vector<double> b(size_t(ws[0]), 0.0);
                if (l.has_param("bias")) b = to_doubles(value_of(g, l.param("bias")));
                for (int64_t r = 0; r < ws[0]; ++r)
                    for (int64_t q = 0; q < ws[1]; ++q) {
                        b[size_t(r)] += w[size_t(r * ws[1] + q)] * beta[size_t(q)];
                    }
                bv = from_doubles({ws[0]}, b);
            }
            f.params["bias"] = add_param(g, f.name + ".bias", {ws[0]}, bv, ParamInit::Bias);
            Node gr = n;
            gr.params.erase("beta");
            g.nodes[i] = gr;
            g.nodes[size_t(c)] = f;
        }
    }
    rebuild(g, removed);
}

}  // namespace

Graph reparameterize(const Graph& in, const ReparamOptions& o) {
    Graph g = in;
    std::set<std::string> created;
    if (o.shiftwise) fuse_shiftwise(g, o, created);
    if (o.merge_branches) merge_all_branches(g, o, created);
    if (o.sparsify) sparsify(g, o, created);
    if (o.fold_layer_scale || o.fold_grn_beta) fold_scales_and_grn(g, o);
    if (o.fold_new_bn && !created.empty()) {
        FoldOptions f;
        f.into_consumer = false;
        f.accept = [&created](const Graph&, const Node&, const Node& into) {
            return created.count(into.name) != 0;
        };
        g = fold_batch_norm(g, f);
    }
    return g;
}

}  // namespace passes
}  // namespace graph
}  // namespace lkc
