#include "graph/builder.h"

#include <set>
#include <utility>

namespace lkc {
namespace graph {

GraphBuilder::GraphBuilder(std::string model) { graph_.model = std::move(model); }

int GraphBuilder::input(const std::string& name, Shape shape, Layout layout) {
    if (!tensor_names_.insert(name).second) {
        throw GraphError("tensor '" + name + "' already exists");
    }
    TensorDesc t;
    t.name = name;
    t.shape = std::move(shape);
    t.layout = layout;
    graph_.tensors.push_back(t);
    int id = static_cast<int>(graph_.tensors.size()) - 1;
    graph_.inputs.push_back(id);
    return id;
}

void GraphBuilder::output(int id) {
    graph_.tensor(id);
    graph_.outputs.push_back(id);
}

const std::string& GraphBuilder::param(const std::string& key, Shape shape, ParamInit init,
                                       bool buffer, DType dtype) {
    auto r = graph_.params.emplace(key, Param{});
    if (!r.second) throw GraphError("parameter '" + key + "' is registered twice");
    Param& p = r.first->second;
    p.shape = std::move(shape);
    p.dtype = dtype;
    p.buffer = buffer;
    p.init = init;
    return r.first->first;
}

void GraphBuilder::set_fan_in(const std::string& key, double fan_in) {
    auto it = graph_.params.find(key);
    if (it == graph_.params.end()) throw GraphError("parameter '" + key + "' is not registered");
    it->second.fan_in = fan_in;
}

const std::string& GraphBuilder::constant(const std::string& key, Tensor value) {
    auto r = graph_.constants.emplace(key, std::move(value));
    if (!r.second) throw GraphError("constant '" + key + "' is registered twice");
    return r.first->first;
}

std::vector<int> GraphBuilder::add(Node node, const std::vector<std::string>& suffixes) {
    if (node_names_.count(node.name)) throw GraphError("node '" + node.name + "' already exists");
    node.outputs.clear();
    std::vector<TensorDesc> outs = infer_node(graph_, node);
    if (outs.size() > 1 && suffixes.size() != outs.size()) {
        throw GraphError("node '" + node.name + "' has " + std::to_string(outs.size()) +
                         " outputs but " + std::to_string(suffixes.size()) + " names were given");
    }
    std::vector<int> ids;
    for (size_t i = 0; i < outs.size(); ++i) {
        outs[i].name = outs.size() == 1 ? node.name : node.name + "." + suffixes[i];
        if (!tensor_names_.insert(outs[i].name).second) {
            throw GraphError("tensor '" + outs[i].name + "' already exists");
        }
        graph_.tensors.push_back(outs[i]);
        ids.push_back(static_cast<int>(graph_.tensors.size()) - 1);
    }
    node.outputs = ids;
    node_names_.insert(node.name);
    graph_.nodes.push_back(std::move(node));
    return ids;
}

int64_t GraphBuilder::channels(int id) const {
    const TensorDesc& t = desc(id);
    return t.shape.at(static_cast<size_t>(channel_axis(t.layout)));
}

int GraphBuilder::conv2d(const std::string& module, int x, int64_t out_channels, int kh, int kw,
                         int stride, int pad_h, int pad_w, int groups, bool bias) {
    Node n;
    n.op = OpKind::Conv2d;
    n.name = module;
    n.inputs = {x};
    n.attrs.stride = stride;
    n.attrs.pad_h = pad_h;
    n.attrs.pad_w = pad_w;
    n.attrs.groups = groups;
    n.params["weight"] =
        param(module + ".weight", {out_channels, channels(x) / groups, kh, kw}, ParamInit::Weight);
    if (bias) n.params["bias"] = param(module + ".bias", {out_channels}, ParamInit::Bias);
    return add1(std::move(n));
}

int GraphBuilder::dwconv(const std::string& module, int x, int kh, int kw, int stride, int dilation,
                         bool bias) {
    Node n;
    n.op = OpKind::DwConv2d;
    n.name = module;
    n.inputs = {x};
    n.attrs.stride = stride;
    n.attrs.dilation = dilation;
    const int64_t c = channels(x);
    n.params["weight"] = param(module + ".weight", {c, 1, kh, kw}, ParamInit::Weight);
    if (bias) n.params["bias"] = param(module + ".bias", {c}, ParamInit::Bias);
    return add1(std::move(n));
}

int GraphBuilder::batch_norm(const std::string& module, int x, double eps) {
    Node n;
    n.op = OpKind::BatchNorm;
    n.name = module;
    n.inputs = {x};
    n.attrs.eps = eps;
    const int64_t c = channels(x);
    n.params["weight"] = param(module + ".weight", {c}, ParamInit::Ones);
    n.params["bias"] = param(module + ".bias", {c}, ParamInit::Zeros);
    n.params["running_mean"] = param(module + ".running_mean", {c}, ParamInit::Zeros, true);
    n.params["running_var"] = param(module + ".running_var", {c}, ParamInit::RunningVar, true);
    n.params["num_batches_tracked"] =
        param(module + ".num_batches_tracked", {}, ParamInit::Count, true, DType::I64);
    return add1(std::move(n));
}

int GraphBuilder::layer_norm(const std::string& module, int x, double eps) {
    Node n;
    n.op = OpKind::LayerNorm;
    n.name = module;
    n.inputs = {x};
    n.attrs.eps = eps;
    const int64_t c = channels(x);
    n.params["weight"] = param(module + ".weight", {c}, ParamInit::Ones);
    n.params["bias"] = param(module + ".bias", {c}, ParamInit::Zeros);
    return add1(std::move(n));
}

int GraphBuilder::linear(const std::string& module, int x, int64_t out_features, bool bias) {
    Node n;
    n.op = OpKind::Linear;
    n.name = module;
    n.inputs = {x};
    n.params["weight"] = param(module + ".weight", {out_features, channels(x)}, ParamInit::Weight);
    if (bias) n.params["bias"] = param(module + ".bias", {out_features}, ParamInit::Bias);
    return add1(std::move(n));
}

int GraphBuilder::grn(const std::string& module, int x, double eps, bool use_bias) {
    Node n;
    n.op = OpKind::Grn;
    n.name = module;
    n.inputs = {x};
    n.attrs.eps = eps;
    const int64_t c = channels(x);
    n.params["gamma"] = param(module + ".gamma", {1, 1, 1, c}, ParamInit::Zeros);
    if (use_bias) n.params["beta"] = param(module + ".beta", {1, 1, 1, c}, ParamInit::Zeros);
    return add1(std::move(n));
}

int GraphBuilder::scale(const std::string& name, const std::string& key, int x) {
    Node n;
    n.op = OpKind::Scale;
    n.name = name;
    n.inputs = {x};
    n.params["weight"] = param(key, {channels(x)}, ParamInit::LayerScale);
    return add1(std::move(n));
}

int GraphBuilder::unary(OpKind op, const std::string& name, int x) {
    Node n;
    n.op = op;
    n.name = name;
    n.inputs = {x};
    return add1(std::move(n));
}

int GraphBuilder::binary(OpKind op, const std::string& name, int a, int b) {
    Node n;
    n.op = op;
    n.name = name;
    n.inputs = {a, b};
    return add1(std::move(n));
}

int GraphBuilder::avg_pool(const std::string& name, int x, bool keepdims) {
    Node n;
    n.op = OpKind::GlobalAvgPool;
    n.name = name;
    n.inputs = {x};
    n.attrs.keepdims = keepdims;
    return add1(std::move(n));
}

int GraphBuilder::flatten(const std::string& name, int x) {
    return unary(OpKind::Flatten, name, x);
}

int GraphBuilder::channel_select(const std::string& name, int x, const std::string& index_key) {
    Node n;
    n.op = OpKind::ChannelSelect;
    n.name = name;
    n.inputs = {x};
    n.consts["index"] = index_key;
    return add1(std::move(n));
}

int GraphBuilder::concat(const std::string& name, const std::vector<int>& xs) {
    Node n;
    n.op = OpKind::Concat;
    n.name = name;
    n.inputs = xs;
    return add1(std::move(n));
}

Graph GraphBuilder::finish() {
    validate(graph_);
    Graph g = std::move(graph_);
    graph_ = Graph{};
    node_names_.clear();
    tensor_names_.clear();
    return g;
}

}  // namespace graph
}  // namespace lkc
