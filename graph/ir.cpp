#include "graph/ir.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <sstream>

namespace lkc {
namespace graph {

namespace {

struct OpNameEntry {
    OpKind op;
    const char* name;
};
constexpr OpNameEntry kOpNames[] = {
    {OpKind::Conv2d, "conv2d"},
    {OpKind::DwConv2d, "dwconv2d"},
    {OpKind::DwConv2dMulti, "dwconv2d_multi"},
    {OpKind::DwConv2dSparse, "dwconv2d_sparse"},
    {OpKind::ShiftWise, "shiftwise"},
    {OpKind::Linear, "linear"},
    {OpKind::BatchNorm, "batch_norm"},
    {OpKind::LayerNorm, "layer_norm"},
    {OpKind::Grn, "grn"},
    {OpKind::Gelu, "gelu"},
    {OpKind::Relu, "relu"},
    {OpKind::Sigmoid, "sigmoid"},
    {OpKind::Softmax, "softmax"},
    {OpKind::Add, "add"},
    {OpKind::Mul, "mul"},
    {OpKind::Scale, "scale"},
    {OpKind::GlobalAvgPool, "global_avg_pool"},
    {OpKind::ChannelSelect, "channel_select"},
    {OpKind::Concat, "concat"},
    {OpKind::Permute, "permute"},
    {OpKind::Flatten, "flatten"},
    {OpKind::Reorder, "reorder"},
};

std::string where(const Node& n) {
    return std::string("node '") + n.name + "' (" + op_name(n.op) + ")";
}

[[noreturn]] void fail(const Node& n, const std::string& what) {
    throw GraphError(where(n) + ": " + what);
}

std::string dims(std::initializer_list<int64_t> d) { return shape_to_string(Shape(d)); }

// Input `i` of the node, checked for existence.
const TensorDesc& input(const Graph& g, const Node& n, size_t i) {
    if (i >= n.inputs.size()) {
        fail(n, "has " + std::to_string(n.inputs.size()) + " inputs, expected at least " +
                    std::to_string(i + 1));
    }
    int id = n.inputs[i];
    if (id < 0 || id >= static_cast<int>(g.tensors.size())) {
        fail(n, "input " + std::to_string(i) + " refers to tensor id " + std::to_string(id) +
                    ", but the graph has " + std::to_string(g.tensors.size()) + " tensors");
    }
    return g.tensors[static_cast<size_t>(id)];
}

void expect_inputs(const Node& n, size_t count) {
    if (n.inputs.size() != count) {
        fail(n, "has " + std::to_string(n.inputs.size()) + " inputs, expected " +
                    std::to_string(count));
    }
}

void expect_layout(const Node& n, const TensorDesc& t, std::initializer_list<Layout> ok) {
    for (Layout l : ok) {
        if (t.layout == l) {
            size_t rank = (l == Layout::NC) ? 2 : 4;
            if (l != Layout::Any && t.shape.size() != rank) {
                fail(n, "input tensor '" + t.name + "' has shape " + shape_to_string(t.shape) +
                            " but layout " + layout_name(l) + " needs rank " +
                            std::to_string(rank));
            }
            return;
        }
    }
    std::string names;
    for (Layout l : ok) names += std::string(names.empty() ? "" : " or ") + layout_name(l);
    fail(n, "input tensor '" + t.name + "' has layout " + layout_name(t.layout) + ", expected " +
                names);
}

void expect_float(const Node& n, const TensorDesc& t) {
    if (t.dtype != DType::F32 && t.dtype != DType::F64) {
        fail(n,
             "input tensor '" + t.name + "' has dtype " + dtype_name(t.dtype) + ", expected F32");
    }
}

const Param& param_of(const Graph& g, const Node& n, const std::string& role) {
    auto r = n.params.find(role);
    if (r == n.params.end()) fail(n, "has no parameter for role '" + role + "'");
    auto p = g.params.find(r->second);
    if (p == g.params.end()) {
        fail(n, "parameter '" + r->second + "' (role '" + role + "') is not in the graph");
    }
    return p->second;
}

// The parameter for `role` must have exactly `shape`.
const Param& expect_param(const Graph& g, const Node& n, const std::string& role,
                          const Shape& shape, const std::string& why = "") {
    const Param& p = param_of(g, n, role);
    if (p.shape != shape) {
        fail(n, "parameter '" + n.params.at(role) + "' has shape " + shape_to_string(p.shape) +
                    ", expected " + shape_to_string(shape) + (why.empty() ? "" : " (" + why + ")"));
    }
    return p;
}

// The parameter must have `count` elements (any shape, e.g. GRN's [1,1,1,C]).
void expect_param_numel(const Graph& g, const Node& n, const std::string& role, int64_t count) {
    const Param& p = param_of(g, n, role);
    if (shape_numel(p.shape) != count) {
        fail(n, "parameter '" + n.params.at(role) + "' has shape " + shape_to_string(p.shape) +
                    " (" + std::to_string(shape_numel(p.shape)) + " elements), expected " +
                    std::to_string(count) + " elements, one per channel");
    }
}

void expect_optional_param(const Graph& g, const Node& n, const std::string& role,
                           const Shape& shape) {
    if (n.has_param(role)) expect_param(g, n, role, shape);
}

const Tensor& const_of(const Graph& g, const Node& n, const std::string& role) {
    auto r = n.consts.find(role);
    if (r == n.consts.end()) fail(n, "has no constant for role '" + role + "'");
    auto c = g.constants.find(r->second);
    if (c == g.constants.end()) {
        fail(n, "constant '" + r->second + "' (role '" + role + "') is not in the graph");
    }
    return c->second;
}

const Tensor& expect_const(const Graph& g, const Node& n, const std::string& role,
                           const Shape& shape, DType dtype) {
    const Tensor& t = const_of(g, n, role);
    if (t.shape() != shape || t.dtype() != dtype) {
        fail(n, "constant '" + n.consts.at(role) + "' is " + dtype_name(t.dtype()) + " " +
                    shape_to_string(t.shape()) + ", expected " + dtype_name(dtype) + " " +
                    shape_to_string(shape));
    }
    return t;
}

// Weights of roles prefix0, prefix1, ... in order; at least one.
std::vector<std::string> numbered_roles(const Node& n, const std::string& prefix) {
    std::vector<std::string> roles;
    for (int i = 0;; ++i) {
        std::string r = prefix + std::to_string(i);
        if (!n.has_param(r)) break;
        roles.push_back(r);
    }
    if (roles.empty()) fail(n, "has no parameter for role '" + prefix + "0'");
    return roles;
}

TensorDesc like(const TensorDesc& t, Shape shape, Layout layout) {
    TensorDesc d;
    d.shape = std::move(shape);
    d.dtype = t.dtype;
    d.layout = layout;
    return d;
}

void check_known_roles(const Node& n, std::initializer_list<const char*> params,
                       std::initializer_list<const char*> consts) {
    for (const auto& kv : n.params) {
        bool ok = false;
        for (const char* r : params) ok = ok || kv.first == r;
        if (!ok) fail(n, "has unexpected parameter role '" + kv.first + "'");
    }
    for (const auto& kv : n.consts) {
        bool ok = false;
        for (const char* r : consts) ok = ok || kv.first == r;
        if (!ok) fail(n, "has unexpected constant role '" + kv.first + "'");
    }
}

void check_no_roles(const Node& n) { check_known_roles(n, {}, {}); }

// Broadcast shape of two equal-rank shapes; each extent equal or 1 on one side.
Shape broadcast(const Node& n, const TensorDesc& a, const TensorDesc& b) {
    if (a.shape.size() != b.shape.size() || a.layout != b.layout) {
        fail(n, "inputs '" + a.name + "' " + shape_to_string(a.shape) + " (" +
                    layout_name(a.layout) + ") and '" + b.name + "' " + shape_to_string(b.shape) +
                    " (" + layout_name(b.layout) + ") must have the same rank and layout");
    }
    Shape out(a.shape.size());
    for (size_t i = 0; i < a.shape.size(); ++i) {
        if (a.shape[i] == b.shape[i] || b.shape[i] == 1) {
            out[i] = a.shape[i];
        } else if (a.shape[i] == 1) {
            out[i] = b.shape[i];
        } else {
            fail(n, "inputs '" + a.name + "' " + shape_to_string(a.shape) + " and '" + b.name +
                        "' " + shape_to_string(b.shape) + " do not broadcast: dim " +
                        std::to_string(i) + " is " + std::to_string(a.shape[i]) + " vs " +
                        std::to_string(b.shape[i]) + " (expected equal or 1)");
        }
    }
    return out;
}

int64_t same_out(int64_t h, int s) { return (h + s - 1) / s; }

void check_stride(const Node& n) {
    if (n.attrs.stride < 1) fail(n, "stride " + std::to_string(n.attrs.stride) + " must be >= 1");
}

// Depth-wise kernel [C,1,kh,kw] with odd kh, kw for role `role`.
void expect_dw_weight(const Graph& g, const Node& n, const std::string& role, int64_t c) {
    const Param& p = param_of(g, n, role);
    const std::string& key = n.params.at(role);
    if (p.shape.size() != 4 || p.shape[0] != c || p.shape[1] != 1) {
        fail(n, "parameter '" + key + "' has shape " + shape_to_string(p.shape) + ", expected [" +
                    std::to_string(c) + ", 1, Kh, Kw] (depth-wise, C from the input)");
    }
    if (p.shape[2] % 2 == 0 || p.shape[3] % 2 == 0) {
        fail(n, "parameter '" + key + "' has kernel " + std::to_string(p.shape[2]) + "x" +
                    std::to_string(p.shape[3]) +
                    ": depth-wise kernels must be odd ('same' padding)");
    }
}

}  // namespace

const char* layout_name(Layout l) {
    switch (l) {
        case Layout::NCHW:
            return "NCHW";
        case Layout::NHWC:
            return "NHWC";
        case Layout::NC:
            return "NC";
        case Layout::Any:
            return "any";
        case Layout::Blocked16:
            return "NCHW16c";
    }
    return "?";
}

int channel_axis(Layout l) {
    switch (l) {
        case Layout::NCHW:
        case Layout::NC:
            return 1;
        case Layout::NHWC:
            return 3;
        case Layout::Any:
            break;
        case Layout::Blocked16:
            throw GraphError("layout 'NCHW16c' is a storage layout, not a logical one");
    }
    throw GraphError("layout 'any' has no channel axis");
}

const char* epilogue_name(EpilogueOp op) {
    switch (op) {
        case EpilogueOp::Relu:
            return "relu";
        case EpilogueOp::Gelu:
            return "gelu";
        case EpilogueOp::Sigmoid:
            return "sigmoid";
        case EpilogueOp::Add:
            return "add";
        case EpilogueOp::Scale:
            return "scale";
        case EpilogueOp::BatchNorm:
            return "batch_norm";
    }
    return "?";
}

const char* op_name(OpKind op) {
    for (const auto& e : kOpNames) {
        if (e.op == op) return e.name;
    }
    return "?";
}

OpKind op_from_name(const std::string& name) {
    std::string known;
    for (const auto& e : kOpNames) {
        if (name == e.name) return e.op;
        known += std::string(known.empty() ? "" : ", ") + e.name;
    }
    throw GraphError("unknown op '" + name + "'; known ops: " + known);
}

const std::string& Node::param(const std::string& role) const {
    auto it = params.find(role);
    if (it == params.end()) {
        throw GraphError(where(*this) + ": has no parameter for role '" + role + "'");
    }
    return it->second;
}

const std::string& Node::constant(const std::string& role) const {
    auto it = consts.find(role);
    if (it == consts.end()) {
        throw GraphError(where(*this) + ": has no constant for role '" + role + "'");
    }
    return it->second;
}

const TensorDesc& Graph::tensor(int id) const {
    if (id < 0 || id >= static_cast<int>(tensors.size())) {
        throw GraphError("tensor id " + std::to_string(id) + " out of range (graph '" + model +
                         "' has " + std::to_string(tensors.size()) + " tensors)");
    }
    return tensors[static_cast<size_t>(id)];
}

int Graph::tensor_id(const std::string& name) const {
    for (size_t i = 0; i < tensors.size(); ++i) {
        if (tensors[i].name == name) return static_cast<int>(i);
    }
    throw GraphError("graph '" + model + "' has no tensor named '" + name + "'");
}

const Param& Graph::param(const std::string& key) const {
    auto it = params.find(key);
    if (it == params.end()) {
        throw GraphError("graph '" + model + "' has no parameter '" + key + "'");
    }
    return it->second;
}

const Tensor& Graph::param_value(const Node& n, const std::string& role) const {
    const Param& p = param_of(*this, n, role);
    if (p.value.empty()) {
        fail(n, "parameter '" + n.params.at(role) +
                    "' has no value (call init_weights or load_weights first)");
    }
    return p.value;
}

const Tensor& Graph::constant_value(const Node& n, const std::string& role) const {
    return const_of(*this, n, role);
}

bool Graph::has_values() const {
    for (const auto& kv : params) {
        if (kv.second.value.empty()) return false;
    }
    return true;
}

namespace {

// Epilogue index of a role "e<i>.<rest>", or -1 for an ordinary role.
int epilogue_of_role(const std::string& role, std::string* rest) {
    if (role.size() < 3 || role[0] != 'e' || !std::isdigit(static_cast<unsigned char>(role[1]))) {
        return -1;
    }
    size_t dot = role.find('.');
    if (dot == std::string::npos) return -1;
    for (size_t i = 1; i < dot; ++i) {
        if (!std::isdigit(static_cast<unsigned char>(role[i]))) return -1;
    }
    *rest = role.substr(dot + 1);
    return std::stoi(role.substr(1, dot - 1));
}

// A node with epilogues: the producer without them, then every epilogue checked on its result.
std::vector<TensorDesc> infer_with_epilogues(const Graph& g, const Node& n) {
    const std::vector<Epilogue>& eps = n.attrs.epilogues;
    switch (n.op) {
        case OpKind::Conv2d:
        case OpKind::DwConv2d:
        case OpKind::DwConv2dMulti:
        case OpKind::DwConv2dSparse:
        case OpKind::Linear:
        case OpKind::ShiftWise:
            break;
        default:
            fail(n,
                 "has epilogues, but only conv2d, the depth-wise families, linear and the fused "
                 "shiftwise take them");
    }
    Node base = n;
    base.attrs.epilogues.clear();
    std::vector<bool> extra(n.inputs.size(), false);
    for (size_t i = 0; i < eps.size(); ++i) {
        const Epilogue& e = eps[i];
        const std::string what =
            "epilogue " + std::to_string(i) + " (" + epilogue_name(e.op) + " '" + e.name + "')";
        if (e.op == EpilogueOp::Add) {
            if (e.input < 1 || e.input >= static_cast<int>(n.inputs.size()) ||
                extra[static_cast<size_t>(e.input)]) {
                fail(n, what + " refers to input " + std::to_string(e.input) +
                            ", expected a distinct index in [1, " +
                            std::to_string(n.inputs.size()) + ")");
            }
            extra[static_cast<size_t>(e.input)] = true;
        } else if (e.input != -1) {
            fail(n, what + " has input " + std::to_string(e.input) + ", expected -1 (none)");
        }
    }
    base.inputs.clear();
    for (size_t i = 0; i < n.inputs.size(); ++i) {
        if (!extra[i]) base.inputs.push_back(n.inputs[i]);
    }
    std::vector<std::set<std::string>> roles(eps.size());
    for (auto it = base.params.begin(); it != base.params.end();) {
        std::string rest;
        const int e = epilogue_of_role(it->first, &rest);
        if (e < 0) {
            ++it;
            continue;
        }
        if (e >= static_cast<int>(eps.size())) {
            fail(n, "has parameter role '" + it->first + "' for epilogue " + std::to_string(e) +
                        ", but only " + std::to_string(eps.size()) + " epilogues");
        }
        roles[static_cast<size_t>(e)].insert(rest);
        it = base.params.erase(it);
    }
    std::vector<TensorDesc> out = infer_node(g, base);
    if (out.size() != 1) {
        fail(n, "has epilogues but " + std::to_string(out.size()) + " outputs, expected 1");
    }
    const TensorDesc& y = out[0];
    const int64_t c = y.shape.at(static_cast<size_t>(channel_axis(y.layout)));
    for (size_t i = 0; i < eps.size(); ++i) {
        const Epilogue& e = eps[i];
        const std::string what =
            "epilogue " + std::to_string(i) + " (" + epilogue_name(e.op) + " '" + e.name + "')";
        const std::string pre = "e" + std::to_string(i) + ".";
        std::set<std::string> want;
        switch (e.op) {
            case EpilogueOp::Relu:
            case EpilogueOp::Gelu:
            case EpilogueOp::Sigmoid:
                break;
            case EpilogueOp::Add: {
                const TensorDesc& r = input(g, n, static_cast<size_t>(e.input));
                expect_float(n, r);
                if (r.shape != y.shape || r.layout != y.layout) {
                    fail(n, what + ": input tensor '" + r.name + "' is " +
                                shape_to_string(r.shape) + " " + layout_name(r.layout) +
                                ", expected the result's " + shape_to_string(y.shape) + " " +
                                layout_name(y.layout));
                }
                break;
            }
            case EpilogueOp::Scale:
                want = {"weight"};
                expect_param_numel(g, n, pre + "weight", c);
                break;
            case EpilogueOp::BatchNorm:
                want = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
                for (const char* r : {"weight", "bias", "running_mean", "running_var"}) {
                    expect_param(g, n, pre + r, {c}, what + ", one per channel");
                }
                if (!(e.eps > 0)) fail(n, what + ": eps must be > 0");
                break;
        }
        for (const std::string& r : roles[i]) {
            if (!want.count(r)) fail(n, what + " has unexpected parameter role '" + pre + r + "'");
        }
    }
    return out;
}

}  // namespace

std::vector<TensorDesc> infer_node(const Graph& g, const Node& n) {
    if (!n.attrs.epilogues.empty()) return infer_with_epilogues(g, n);
    std::vector<TensorDesc> out;
    const Attrs& a = n.attrs;
    switch (n.op) {
        case OpKind::Conv2d: {
            expect_inputs(n, 1);
            check_known_roles(n, {"weight", "bias"}, {});
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW});
            expect_float(n, x);
            check_stride(n);
            if (a.groups < 1 || a.dilation < 1 || a.pad_h < 0 || a.pad_w < 0) {
                fail(n, "groups " + std::to_string(a.groups) + ", dilation " +
                            std::to_string(a.dilation) + ", padding " + std::to_string(a.pad_h) +
                            "x" + std::to_string(a.pad_w) +
                            ": expected groups >= 1, dilation >= 1, padding >= 0");
            }
            const Param& w = param_of(g, n, "weight");
            const int64_t ci = x.shape[1];
            if (ci % a.groups != 0) {
                fail(n, "input tensor '" + x.name + "' has " + std::to_string(ci) +
                            " channels, not a multiple of groups = " + std::to_string(a.groups));
            }
            if (w.shape.size() != 4 || w.shape[1] != ci / a.groups || w.shape[0] % a.groups != 0) {
                fail(n, "parameter '" + n.param("weight") + "' has shape " +
                            shape_to_string(w.shape) + ", expected [Co, " +
                            std::to_string(ci / a.groups) +
                            ", kh, kw] (input channels / groups; Co a multiple of groups = " +
                            std::to_string(a.groups) + ") for input tensor '" + x.name + "' " +
                            shape_to_string(x.shape));
            }
            const int64_t co = w.shape[0], kh = w.shape[2], kw = w.shape[3];
            expect_optional_param(g, n, "bias", {co});
            const int64_t span_h = x.shape[2] + 2 * a.pad_h - a.dilation * (kh - 1) - 1;
            const int64_t span_w = x.shape[3] + 2 * a.pad_w - a.dilation * (kw - 1) - 1;
            if (span_h < 0 || span_w < 0) {
                fail(n, "input tensor '" + x.name + "' " + shape_to_string(x.shape) +
                            " is smaller than the " + std::to_string(kh) + "x" +
                            std::to_string(kw) + " kernel with padding " + std::to_string(a.pad_h) +
                            "x" + std::to_string(a.pad_w));
            }
            const int64_t oh = span_h / a.stride + 1, ow = span_w / a.stride + 1;
            out.push_back(like(x, {x.shape[0], co, oh, ow}, Layout::NCHW));
            break;
        }
        case OpKind::DwConv2d:
        case OpKind::DwConv2dSparse: {
            expect_inputs(n, 1);
            if (n.op == OpKind::DwConv2d) {
                check_known_roles(n, {"weight", "bias"}, {});
            } else {
                check_known_roles(n, {"weight", "bias"}, {"mask"});
            }
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW});
            expect_float(n, x);
            check_stride(n);
            if (a.dilation < 1) fail(n, "dilation " + std::to_string(a.dilation) + " must be >= 1");
            const int64_t c = x.shape[1];
            expect_dw_weight(g, n, "weight", c);
            expect_optional_param(g, n, "bias", {c});
            if (n.op == OpKind::DwConv2dSparse) {
                const Tensor& m = const_of(g, n, "mask");
                const Shape& ws = param_of(g, n, "weight").shape;
                if (m.shape() != ws) {
                    fail(n, "constant '" + n.constant("mask") + "' has shape " +
                                shape_to_string(m.shape()) + ", expected the weight's shape " +
                                shape_to_string(ws));
                }
                DType d = m.dtype();
                if (d != DType::F32 && d != DType::U8 && d != DType::Bool && d != DType::I32) {
                    fail(n, "constant '" + n.constant("mask") + "' has dtype " + dtype_name(d) +
                                ", expected F32, U8, BOOL or I32");
                }
            }
            out.push_back(like(
                x, {x.shape[0], c, same_out(x.shape[2], a.stride), same_out(x.shape[3], a.stride)},
                Layout::NCHW));
            break;
        }
        case OpKind::DwConv2dMulti: {
            expect_inputs(n, 1);
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW});
            expect_float(n, x);
            check_stride(n);
            const int64_t c = x.shape[1];
            std::vector<std::string> roles = numbered_roles(n, "weight");
            if (a.dilations.size() != roles.size()) {
                fail(n, "has " + std::to_string(roles.size()) + " branch weights but " +
                            std::to_string(a.dilations.size()) + " dilations");
            }
            for (const auto& kv : n.params) {
                if (kv.first != "bias" &&
                    std::find(roles.begin(), roles.end(), kv.first) == roles.end()) {
                    fail(n, "has unexpected parameter role '" + kv.first + "'");
                }
            }
            if (!n.consts.empty()) fail(n, "takes no constants");
            for (size_t b = 0; b < roles.size(); ++b) {
                if (a.dilations[b] < 1) {
                    fail(n, "branch " + std::to_string(b) + " dilation " +
                                std::to_string(a.dilations[b]) + " must be >= 1");
                }
                expect_dw_weight(g, n, roles[b], c);
            }
            expect_optional_param(g, n, "bias", {c});
            out.push_back(like(
                x, {x.shape[0], c, same_out(x.shape[2], a.stride), same_out(x.shape[3], a.stride)},
                Layout::NCHW));
            break;
        }
        case OpKind::ShiftWise: {
            expect_inputs(n, 1);
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW});
            expect_float(n, x);
            if (a.stride != 1) fail(n, "stride " + std::to_string(a.stride) + ", expected 1");
            if (a.small_k < 1 || a.small_k % 2 == 0 || a.big_k < a.small_k || a.big_k % 2 == 0) {
                fail(n, "kernels K=" + std::to_string(a.big_k) + ", k=" +
                            std::to_string(a.small_k) + ": expected odd k >= 1 and odd K >= k");
            }
            std::vector<std::string> roles = numbered_roles(n, "weight");
            const char* fused_roles[] = {"ah", "av", "as", "bias"};
            int fused = 0;
            for (const char* r : fused_roles) fused += n.has_param(r) ? 1 : 0;
            if (fused != 0 && fused != 4) {
                fail(n, "has " + std::to_string(fused) +
                            " of the fused inference parameters ah, av, as, bias, expected all "
                            "four or none");
            }
            for (const auto& kv : n.params) {
                bool known = std::find(roles.begin(), roles.end(), kv.first) != roles.end();
                for (const char* r : fused_roles) known = known || (fused == 4 && kv.first == r);
                if (!known) fail(n, "has unexpected parameter role '" + kv.first + "'");
            }
            for (const auto& kv : n.consts) {
                if (kv.first != "slot_h" && kv.first != "slot_v" && kv.first != "ident") {
                    fail(n, "has unexpected constant role '" + kv.first + "'");
                }
            }
            const int64_t c = x.shape[1], k = a.small_k;
            const int64_t nk = (a.big_k + a.small_k - 1) / a.small_k;
            for (const auto& r : roles) {
                const Param& w = param_of(g, n, r);
                bool ok = w.shape == Shape{c * nk, 1, k, k} || w.shape == Shape{c, nk, k, k};
                if (!ok) {
                    fail(n, "parameter '" + n.param(r) + "' has shape " + shape_to_string(w.shape) +
                                ", expected " + dims({c * nk, 1, k, k}) + " or " +
                                dims({c, nk, k, k}) + " (C = " + std::to_string(c) +
                                " input channels, nk = ceil(K/k) = " + std::to_string(nk) + ")");
                }
            }
            const Tensor& sh = const_of(g, n, "slot_h");
            if (sh.ndim() != 3 || sh.dim(1) != c || sh.dim(2) != nk || sh.dtype() != DType::I32) {
                fail(n, "constant '" + n.constant("slot_h") + "' is " + dtype_name(sh.dtype()) +
                            " " + shape_to_string(sh.shape()) + ", expected I32 [G, " +
                            std::to_string(c) + ", " + std::to_string(nk) + "]");
            }
            const int64_t groups = sh.dim(0);
            expect_const(g, n, "slot_v", {groups, c, nk}, DType::I32);
            expect_const(g, n, "ident", {groups, c}, DType::I32);
            if (fused == 4) {
                for (const char* r : fused_roles) {
                    expect_param(g, n, r, {c}, "fused inference form, one per channel");
                }
                out.push_back(like(x, x.shape, Layout::NCHW));  // y = ah*yh + av*yv + as*ys + b + x
            } else {
                for (int i = 0; i < 3; ++i) out.push_back(like(x, x.shape, Layout::NCHW));
            }
            break;
        }
        case OpKind::Linear: {
            expect_inputs(n, 1);
            check_known_roles(n, {"weight", "bias"}, {});
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NC, Layout::NCHW, Layout::NHWC});
            expect_float(n, x);
            const int ax = channel_axis(x.layout);
            const Param& w = param_of(g, n, "weight");
            if (w.shape.size() != 2 || w.shape[1] != x.shape[ax]) {
                fail(n, "parameter '" + n.param("weight") + "' has shape " +
                            shape_to_string(w.shape) + ", expected [out, " +
                            std::to_string(x.shape[ax]) + "] for input tensor '" + x.name + "' " +
                            shape_to_string(x.shape) + " (" + layout_name(x.layout) + ")");
            }
            expect_optional_param(g, n, "bias", {w.shape[0]});
            Shape s = x.shape;
            s[ax] = w.shape[0];
            out.push_back(like(x, s, x.layout));
            break;
        }
        case OpKind::BatchNorm: {
            expect_inputs(n, 1);
            check_known_roles(
                n, {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}, {});
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW, Layout::NC, Layout::NHWC});
            expect_float(n, x);
            const int64_t c = x.shape[channel_axis(x.layout)];
            for (const char* r : {"weight", "bias", "running_mean", "running_var"}) {
                expect_param(g, n, r, {c}, "one per channel of '" + x.name + "'");
            }
            if (n.has_param("num_batches_tracked")) {
                const Param& p = param_of(g, n, "num_batches_tracked");
                if (!p.shape.empty() || p.dtype != DType::I64) {
                    fail(n, "parameter '" + n.param("num_batches_tracked") + "' is " +
                                dtype_name(p.dtype) + " " + shape_to_string(p.shape) +
                                ", expected I64 []");
                }
            }
            if (!(a.eps > 0)) fail(n, "eps must be > 0");
            out.push_back(like(x, x.shape, x.layout));
            break;
        }
        case OpKind::LayerNorm: {
            expect_inputs(n, 1);
            check_known_roles(n, {"weight", "bias"}, {});
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW, Layout::NC, Layout::NHWC});
            expect_float(n, x);
            const int64_t c = x.shape[channel_axis(x.layout)];
            expect_param(g, n, "weight", {c}, "one per channel of '" + x.name + "'");
            expect_param(g, n, "bias", {c}, "one per channel of '" + x.name + "'");
            if (!(a.eps > 0)) fail(n, "eps must be > 0");
            out.push_back(like(x, x.shape, x.layout));
            break;
        }
        case OpKind::Grn: {
            expect_inputs(n, 1);
            check_known_roles(n, {"gamma", "beta"}, {});
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW, Layout::NHWC});
            expect_float(n, x);
            const int64_t c = x.shape[channel_axis(x.layout)];
            expect_param_numel(g, n, "gamma", c);
            if (n.has_param("beta")) expect_param_numel(g, n, "beta", c);
            if (!(a.eps > 0)) fail(n, "eps must be > 0");
            out.push_back(like(x, x.shape, x.layout));
            break;
        }
        case OpKind::Gelu:
        case OpKind::Relu:
        case OpKind::Sigmoid: {
            expect_inputs(n, 1);
            check_no_roles(n);
            const TensorDesc& x = input(g, n, 0);
            expect_float(n, x);
            out.push_back(like(x, x.shape, x.layout));
            break;
        }
        case OpKind::Softmax: {
            expect_inputs(n, 1);
            check_no_roles(n);
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NC, Layout::NCHW, Layout::NHWC});
            expect_float(n, x);
            out.push_back(like(x, x.shape, x.layout));
            break;
        }
        case OpKind::Add:
        case OpKind::Mul: {
            expect_inputs(n, 2);
            check_no_roles(n);
            const TensorDesc& x = input(g, n, 0);
            const TensorDesc& y = input(g, n, 1);
            expect_float(n, x);
            expect_float(n, y);
            out.push_back(like(x, broadcast(n, x, y), x.layout));
            break;
        }
        case OpKind::Scale: {
            expect_inputs(n, 1);
            check_known_roles(n, {"weight"}, {});
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW, Layout::NC, Layout::NHWC});
            expect_float(n, x);
            expect_param_numel(g, n, "weight", x.shape[channel_axis(x.layout)]);
            out.push_back(like(x, x.shape, x.layout));
            break;
        }
        case OpKind::GlobalAvgPool: {
            expect_inputs(n, 1);
            check_no_roles(n);
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW});
            expect_float(n, x);
            if (a.keepdims) {
                out.push_back(like(x, {x.shape[0], x.shape[1], 1, 1}, Layout::NCHW));
            } else {
                out.push_back(like(x, {x.shape[0], x.shape[1]}, Layout::NC));
            }
            break;
        }
        case OpKind::ChannelSelect: {
            expect_inputs(n, 1);
            check_known_roles(n, {}, {"index"});
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW, Layout::NC, Layout::NHWC});
            const int ax = channel_axis(x.layout);
            const Tensor& idx = const_of(g, n, "index");
            if (idx.ndim() != 1 || idx.dtype() != DType::I32 || idx.dim(0) < 1) {
                fail(n, "constant '" + n.constant("index") + "' is " + dtype_name(idx.dtype()) +
                            " " + shape_to_string(idx.shape()) + ", expected I32 [K] with K >= 1");
            }
            const int32_t* v = idx.data<int32_t>();
            for (int64_t i = 0; i < idx.numel(); ++i) {
                if (v[i] < 0 || v[i] >= x.shape[ax]) {
                    fail(n, "constant '" + n.constant("index") + "'[" + std::to_string(i) +
                                "] = " + std::to_string(v[i]) + " is outside [0, " +
                                std::to_string(x.shape[ax]) + ") (channels of '" + x.name + "')");
                }
            }
            Shape s = x.shape;
            s[ax] = idx.dim(0);
            out.push_back(like(x, s, x.layout));
            break;
        }
        case OpKind::Concat: {
            check_no_roles(n);
            if (n.inputs.empty()) fail(n, "has no inputs, expected at least 1");
            const TensorDesc& x = input(g, n, 0);
            expect_layout(n, x, {Layout::NCHW, Layout::NC, Layout::NHWC});
            const int ax = channel_axis(x.layout);
            Shape s = x.shape;
            for (size_t i = 1; i < n.inputs.size(); ++i) {
                const TensorDesc& y = input(g, n, i);
                Shape ys = y.shape;
                bool ok = y.layout == x.layout && ys.size() == s.size() && y.dtype == x.dtype;
                if (ok) {
                    ys[ax] = x.shape[ax];
                    ok = ys == x.shape;
                }
                if (!ok) {
                    fail(n, "input tensor '" + y.name + "' " + shape_to_string(y.shape) + " (" +
                                layout_name(y.layout) + ") does not match '" + x.name + "' " +
                                shape_to_string(x.shape) + " (" + layout_name(x.layout) +
                                ") outside the channel axis");
                }
                s[ax] += y.shape[ax];
            }
            out.push_back(like(x, s, x.layout));
            break;
        }
        case OpKind::Permute: {
            expect_inputs(n, 1);
            check_no_roles(n);
            const TensorDesc& x = input(g, n, 0);
            std::vector<int> sorted = a.perm;
            std::sort(sorted.begin(), sorted.end());
            bool ok = a.perm.size() == x.shape.size();
            for (size_t i = 0; ok && i < sorted.size(); ++i) ok = sorted[i] == static_cast<int>(i);
            if (!ok) {
                fail(n, "perm is not a permutation of 0.." + std::to_string(x.shape.size() - 1) +
                            " for input tensor '" + x.name + "' " + shape_to_string(x.shape));
            }
            Shape s(x.shape.size());
            for (size_t i = 0; i < s.size(); ++i) s[i] = x.shape[static_cast<size_t>(a.perm[i])];
            Layout l = Layout::Any;
            if (x.layout == Layout::NCHW && a.perm == std::vector<int>{0, 2, 3, 1})
                l = Layout::NHWC;
            if (x.layout == Layout::NHWC && a.perm == std::vector<int>{0, 3, 1, 2})
                l = Layout::NCHW;
            out.push_back(like(x, s, l));
            break;
        }
        case OpKind::Flatten: {
            expect_inputs(n, 1);
            check_no_roles(n);
            const TensorDesc& x = input(g, n, 0);
            if (x.shape.empty()) fail(n, "input tensor '" + x.name + "' is 0-d");
            int64_t f = 1;
            for (size_t i = 1; i < x.shape.size(); ++i) f *= x.shape[i];
            out.push_back(like(x, {x.shape[0], f}, Layout::NC));
            break;
        }
        case OpKind::Reorder: {
            expect_inputs(n, 1);
            check_no_roles(n);
            const TensorDesc& x = input(g, n, 0);
            out.push_back(like(x, x.shape, x.layout));
            break;
        }
    }
    for (size_t i = 0; i < out.size() && i < n.outputs.size(); ++i) {
        int id = n.outputs[i];
        if (id >= 0 && id < static_cast<int>(g.tensors.size())) {
            out[i].name = g.tensors[static_cast<size_t>(id)].name;
        }
    }
    return out;
}

namespace {

// Structure checks shared by validate and infer_shapes; returns nothing, throws on problems.
void check_structure(const Graph& g) {
    const int nt = static_cast<int>(g.tensors.size());
    std::vector<int> producer(g.tensors.size(), -2);  // -2 none, -1 graph input, else node
    std::set<std::string> tnames, nnames;
    for (const TensorDesc& t : g.tensors) {
        if (t.name.empty()) throw GraphError("graph '" + g.model + "' has a tensor without a name");
        if (!tnames.insert(t.name).second) {
            throw GraphError("graph '" + g.model + "' has two tensors named '" + t.name + "'");
        }
    }
    for (int id : g.inputs) {
        if (id < 0 || id >= nt) {
            throw GraphError("graph input id " + std::to_string(id) + " out of range");
        }
        producer[static_cast<size_t>(id)] = -1;
    }
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& n = g.nodes[i];
        if (!nnames.insert(n.name).second) {
            throw GraphError("graph '" + g.model + "' has two nodes named '" + n.name + "'");
        }
        for (int id : n.inputs) {
            if (id < 0 || id >= nt) {
                fail(n, "input tensor id " + std::to_string(id) + " out of range");
            }
            if (producer[static_cast<size_t>(id)] == -2) {
                fail(n, "input tensor '" + g.tensors[static_cast<size_t>(id)].name +
                            "' is not produced by an earlier node nor a graph input "
                            "(nodes must be in topological order)");
            }
        }
        if (n.outputs.empty()) fail(n, "has no outputs");
        for (int id : n.outputs) {
            if (id < 0 || id >= nt)
                fail(n, "output tensor id " + std::to_string(id) + " out of range");
            if (producer[static_cast<size_t>(id)] != -2) {
                fail(n, "output tensor '" + g.tensors[static_cast<size_t>(id)].name +
                            "' is already produced elsewhere");
            }
            producer[static_cast<size_t>(id)] = static_cast<int>(i);
        }
    }
    for (int id : g.outputs) {
        if (id < 0 || id >= nt || producer[static_cast<size_t>(id)] == -2) {
            throw GraphError("graph output id " + std::to_string(id) + " is not produced");
        }
    }
}

void check_outputs(const Node& n, const std::vector<TensorDesc>& inferred) {
    if (inferred.size() != n.outputs.size()) {
        fail(n, "has " + std::to_string(n.outputs.size()) + " outputs, expected " +
                    std::to_string(inferred.size()));
    }
}

}  // namespace

void validate(const Graph& g) {
    check_structure(g);
    std::set<std::string> used_params, used_consts;
    for (const Node& n : g.nodes) {
        std::vector<TensorDesc> inferred = infer_node(g, n);
        check_outputs(n, inferred);
        for (size_t i = 0; i < inferred.size(); ++i) {
            const TensorDesc& t = g.tensors[static_cast<size_t>(n.outputs[i])];
            if (t.shape != inferred[i].shape || t.layout != inferred[i].layout ||
                t.dtype != inferred[i].dtype) {
                fail(n, "output tensor '" + t.name + "' is stored as " + shape_to_string(t.shape) +
                            " " + layout_name(t.layout) + " " + dtype_name(t.dtype) +
                            ", but shape inference gives " + shape_to_string(inferred[i].shape) +
                            " " + layout_name(inferred[i].layout) + " " +
                            dtype_name(inferred[i].dtype));
            }
        }
        for (const auto& kv : n.params) used_params.insert(kv.second);
        for (const auto& kv : n.consts) used_consts.insert(kv.second);
    }
    for (const auto& kv : g.params) {
        if (!used_params.count(kv.first)) {
            throw GraphError("graph '" + g.model + "': parameter '" + kv.first +
                             "' is not used by any node");
        }
        const Param& p = kv.second;
        if (!p.value.empty() && (p.value.shape() != p.shape || p.value.dtype() != p.dtype)) {
            throw GraphError("graph '" + g.model + "': parameter '" + kv.first + "' holds a " +
                             dtype_name(p.value.dtype()) + " " + shape_to_string(p.value.shape()) +
                             " value, expected " + dtype_name(p.dtype) + " " +
                             shape_to_string(p.shape));
        }
    }
    (void)used_consts;  // constants may be kept for export (the official SW tables)
}

void infer_shapes(Graph& g) {
    check_structure(g);
    for (const Node& n : g.nodes) {
        std::vector<TensorDesc> inferred = infer_node(g, n);
        check_outputs(n, inferred);
        for (size_t i = 0; i < inferred.size(); ++i) {
            TensorDesc& t = g.tensors[static_cast<size_t>(n.outputs[i])];
            t.shape = inferred[i].shape;
            t.layout = inferred[i].layout;
            t.dtype = inferred[i].dtype;
        }
    }
}

void set_batch(Graph& g, int64_t batch) {
    if (batch < 1) throw GraphError("batch " + std::to_string(batch) + " must be >= 1");
    for (int id : g.inputs) {
        TensorDesc& t = g.tensors.at(static_cast<size_t>(id));
        if (t.shape.empty()) {
            throw GraphError("graph input '" + t.name + "' is 0-d and has no batch extent");
        }
        t.shape[0] = batch;
    }
    infer_shapes(g);
}

}  // namespace graph
}  // namespace lkc
