#include "graph/serialize.h"

#include <nlohmann/json.hpp>

namespace lkc {
namespace graph {

namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& where, const std::string& what) {
    throw GraphError("graph JSON: " + where + ": " + what);
}

const Layout kLayouts[] = {Layout::NCHW, Layout::NHWC, Layout::NC, Layout::Any, Layout::Blocked16};
const EpilogueOp kEpilogues[] = {EpilogueOp::Relu, EpilogueOp::Gelu,  EpilogueOp::Sigmoid,
                                 EpilogueOp::Add,  EpilogueOp::Scale, EpilogueOp::BatchNorm};
const ParamInit kInits[] = {ParamInit::Weight, ParamInit::Bias,       ParamInit::Ones,
                            ParamInit::Zeros,  ParamInit::LayerScale, ParamInit::RunningVar,
                            ParamInit::Count};

Layout layout_from(const std::string& s, const std::string& where) {
    for (Layout l : kLayouts)
        if (s == layout_name(l)) return l;
    bad(where, "unknown layout '" + s + "'");
}
EpilogueOp epilogue_from(const std::string& s, const std::string& where) {
    for (EpilogueOp e : kEpilogues)
        if (s == epilogue_name(e)) return e;
    bad(where, "unknown epilogue '" + s + "'");
}
DType dtype_from(const std::string& s, const std::string& where) {
    DType d;
    if (!dtype_from_name(s, &d)) bad(where, "unknown dtype '" + s + "'");
    return d;
}

template <typename T>
T get(const json& j, const char* key, const std::string& where) {
    if (!j.is_object() || !j.contains(key)) bad(where, std::string("missing field '") + key + "'");
    try {
        return j.at(key).get<T>();
    } catch (const std::exception& e) {
        bad(where + "." + key, e.what());
    }
}

}  // namespace

std::string graph_to_json(const Graph& g) {
    json j;
    j["format"] = kGraphFormat;
    j["model"] = g.model;
    j["inputs"] = g.inputs;
    j["outputs"] = g.outputs;
    json ts = json::array();
    for (const TensorDesc& t : g.tensors)
        ts.push_back({{"name", t.name},
                      {"shape", t.shape},
                      {"dtype", dtype_name(t.dtype)},
                      {"layout", layout_name(t.layout)},
                      {"storage", layout_name(t.storage)}});
    j["tensors"] = ts;
    json ns = json::array();
    for (const Node& n : g.nodes) {
        const Attrs& a = n.attrs;
        json eps = json::array();
        for (const Epilogue& e : a.epilogues)
            eps.push_back({{"op", epilogue_name(e.op)},
                           {"name", e.name},
                           {"input", e.input},
                           {"eps", e.eps}});
        ns.push_back({{"op", op_name(n.op)},
                      {"name", n.name},
                      {"inputs", n.inputs},
                      {"outputs", n.outputs},
                      {"params", n.params},
                      {"consts", n.consts},
                      {"attrs",
                       {{"stride", a.stride},
                        {"dilation", a.dilation},
                        {"pad_h", a.pad_h},
                        {"pad_w", a.pad_w},
                        {"groups", a.groups},
                        {"dilations", a.dilations},
                        {"eps", a.eps},
                        {"keepdims", a.keepdims},
                        {"big_k", a.big_k},
                        {"small_k", a.small_k},
                        {"perm", a.perm}}},
                      {"epilogues", eps}});
    }
    j["nodes"] = ns;
    json ps = json::object();
    for (const auto& [key, p] : g.params)
        ps[key] = {{"shape", p.shape},
                   {"dtype", dtype_name(p.dtype)},
                   {"buffer", p.buffer},
                   {"init", int(p.init)},
                   {"fan_in", p.fan_in}};
    j["params"] = ps;
    json cs = json::object();
    for (const auto& [key, t] : g.constants)
        cs[key] = {{"shape", t.shape()}, {"dtype", dtype_name(t.dtype())}};
    j["constants"] = cs;
    return j.dump();
}

Graph graph_from_json(const std::string& text) {
    json j;
    try {
        j = json::parse(text);
    } catch (const std::exception& e) {
        bad("document", std::string("not valid JSON: ") + e.what());
    }
    const int format = get<int>(j, "format", "document");
    if (format != kGraphFormat) {
        bad("format", "graph format " + std::to_string(format) + ", this lkc reads " +
                          std::to_string(kGraphFormat));
    }
    Graph g;
    g.model = get<std::string>(j, "model", "document");
    g.inputs = get<std::vector<int>>(j, "inputs", "document");
    g.outputs = get<std::vector<int>>(j, "outputs", "document");
    const json& ts = j.at("tensors");
    for (size_t i = 0; i < ts.size(); ++i) {
        const std::string w = "tensors[" + std::to_string(i) + "]";
        TensorDesc t;
        t.name = get<std::string>(ts[i], "name", w);
        t.shape = get<Shape>(ts[i], "shape", w);
        t.dtype = dtype_from(get<std::string>(ts[i], "dtype", w), w + ".dtype");
        t.layout = layout_from(get<std::string>(ts[i], "layout", w), w + ".layout");
        t.storage = layout_from(get<std::string>(ts[i], "storage", w), w + ".storage");
        g.tensors.push_back(t);
    }
    const json& ns = j.at("nodes");
    for (size_t i = 0; i < ns.size(); ++i) {
        const std::string w = "nodes[" + std::to_string(i) + "]";
        Node n;
        try {
            n.op = op_from_name(get<std::string>(ns[i], "op", w));
        } catch (const GraphError& e) {
            bad(w + ".op", e.what());
        }
        n.name = get<std::string>(ns[i], "name", w);
        n.inputs = get<std::vector<int>>(ns[i], "inputs", w);
        n.outputs = get<std::vector<int>>(ns[i], "outputs", w);
        n.params = get<std::map<std::string, std::string>>(ns[i], "params", w);
        n.consts = get<std::map<std::string, std::string>>(ns[i], "consts", w);
        const json& a = ns[i].at("attrs");
        const std::string wa = w + ".attrs";
        n.attrs.stride = get<int>(a, "stride", wa);
        n.attrs.dilation = get<int>(a, "dilation", wa);
        n.attrs.pad_h = get<int>(a, "pad_h", wa);
        n.attrs.pad_w = get<int>(a, "pad_w", wa);
        n.attrs.groups = get<int>(a, "groups", wa);
        n.attrs.dilations = get<std::vector<int>>(a, "dilations", wa);
        n.attrs.eps = get<double>(a, "eps", wa);
        n.attrs.keepdims = get<bool>(a, "keepdims", wa);
        n.attrs.big_k = get<int>(a, "big_k", wa);
        n.attrs.small_k = get<int>(a, "small_k", wa);
        n.attrs.perm = get<std::vector<int>>(a, "perm", wa);
        const json& eps = ns[i].at("epilogues");
        for (size_t k = 0; k < eps.size(); ++k) {
            const std::string we = w + ".epilogues[" + std::to_string(k) + "]";
            Epilogue e;
            e.op = epilogue_from(get<std::string>(eps[k], "op", we), we + ".op");
            e.name = get<std::string>(eps[k], "name", we);
            e.input = get<int>(eps[k], "input", we);
            e.eps = get<double>(eps[k], "eps", we);
            n.attrs.epilogues.push_back(e);
        }
        g.nodes.push_back(n);
    }
    for (const auto& [key, p] : j.at("params").items()) {
        const std::string w = "params['" + key + "']";
        Param q;
        q.shape = get<Shape>(p, "shape", w);
        q.dtype = dtype_from(get<std::string>(p, "dtype", w), w + ".dtype");
        q.buffer = get<bool>(p, "buffer", w);
        const int init = get<int>(p, "init", w);
        if (init < 0 || init >= int(std::size(kInits))) bad(w + ".init", "out of range");
        q.init = kInits[init];
        q.fan_in = get<double>(p, "fan_in", w);
        g.params[key] = q;
    }
    for (const auto& [key, c] : j.at("constants").items()) {
        const std::string w = "constants['" + key + "']";
        g.constants[key] = Tensor(dtype_from(get<std::string>(c, "dtype", w), w + ".dtype"),
                                  get<Shape>(c, "shape", w));
    }
    return g;
}

std::map<std::string, Tensor> graph_values(const Graph& g) {
    std::map<std::string, Tensor> v;
    for (const auto& [key, p] : g.params) {
        if (p.value.empty()) throw GraphError("graph_values: parameter '" + key + "' has no value");
        v[key] = p.value;
    }
    for (const auto& [key, t] : g.constants) v["const:" + key] = t;
    return v;
}

void set_graph_values(Graph& g, const std::map<std::string, Tensor>& values) {
    size_t used = 0;
    auto take = [&](const std::string& key, const Shape& shape, DType dtype) -> const Tensor& {
        auto it = values.find(key);
        if (it == values.end()) throw GraphError("graph values: '" + key + "' is missing");
        if (it->second.shape() != shape || it->second.dtype() != dtype) {
            throw GraphError("graph values: '" + key + "' is " + dtype_name(it->second.dtype()) +
                             " " + shape_to_string(it->second.shape()) + ", expected " +
                             dtype_name(dtype) + " " + shape_to_string(shape));
        }
        ++used;
        return it->second;
    };
    for (auto& [key, p] : g.params) p.value = take(key, p.shape, p.dtype);
    for (auto& [key, t] : g.constants) t = take("const:" + key, t.shape(), t.dtype());
    if (used != values.size()) {
        for (const auto& [key, t] : values) {
            const bool known = key.rfind("const:", 0) == 0 ? g.constants.count(key.substr(6)) != 0
                                                           : g.params.count(key) != 0;
            if (!known) throw GraphError("graph values: unexpected tensor '" + key + "'");
        }
    }
}

}  // namespace graph
}  // namespace lkc
