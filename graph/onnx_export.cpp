#include "graph/onnx_export.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstring>
#include <set>
#include <stdexcept>

#include "runtime/reparam.h"
#include "runtime/tuning_records.h"
#include "runtime/workload.h"

namespace lkc {
namespace graph {

namespace proto {

void append_varint(std::string* out, uint64_t v) {
    while (v >= 0x80) {
        out->push_back(static_cast<char>((v & 0x7f) | 0x80));
        v >>= 7;
    }
    out->push_back(static_cast<char>(v));
}

void append_tag(std::string* out, uint32_t field, WireType type) {
    append_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint32_t>(type));
}

Writer& Writer::int_field(uint32_t field, int64_t v) {
    append_tag(&buf_, field, WireType::Varint);
    append_varint(&buf_, static_cast<uint64_t>(v));
    return *this;
}

Writer& Writer::float_field(uint32_t field, float v) {
    append_tag(&buf_, field, WireType::Fixed32);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    for (int i = 0; i < 4; ++i) buf_.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
    return *this;
}

Writer& Writer::bytes_field(uint32_t field, const void* data, size_t size) {
    append_tag(&buf_, field, WireType::Len);
    append_varint(&buf_, size);
    buf_.append(static_cast<const char*>(data), size);
    return *this;
}

Writer& Writer::int_fields(uint32_t field, const std::vector<int64_t>& v) {
    for (int64_t x : v) int_field(field, x);
    return *this;
}

}  // namespace proto

std::string onnx_sanitize_name(const std::string& name) {
    std::string s = name;
    for (char& c : s) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '_' || c == '.' || c == ':' || c == '/' ||
                        c == '-';
        if (!ok) c = '_';
    }
    return s.empty() ? "_" : s;
}

namespace {

using proto::Writer;

// onnx.proto field numbers and enums used here.
namespace f {
constexpr uint32_t kModelIrVersion = 1, kModelProducerName = 2, kModelProducerVersion = 3,
                   kModelDocString = 6, kModelGraph = 7, kModelOpsetImport = 8;
constexpr uint32_t kOpsetDomain = 1, kOpsetVersion = 2;
constexpr uint32_t kGraphNode = 1, kGraphName = 2, kGraphInitializer = 5, kGraphDocString = 10,
                   kGraphInput = 11, kGraphOutput = 12;
constexpr uint32_t kNodeInput = 1, kNodeOutput = 2, kNodeName = 3, kNodeOpType = 4,
                   kNodeAttribute = 5;
constexpr uint32_t kAttrName = 1, kAttrF = 2, kAttrI = 3, kAttrInts = 8, kAttrType = 20;
constexpr int64_t kAttrTypeFloat = 1, kAttrTypeInt = 2, kAttrTypeInts = 7;
constexpr uint32_t kTensorDims = 1, kTensorDataType = 2, kTensorName = 8, kTensorRawData = 9;
constexpr int64_t kFloat = 1, kInt64 = 7;
constexpr uint32_t kValueInfoName = 1, kValueInfoType = 2;
constexpr uint32_t kTypeTensorType = 1, kTypeTensorElemType = 1, kTypeTensorShape = 2;
constexpr uint32_t kShapeDim = 1, kDimValue = 1, kDimParam = 2;
}  // namespace f

constexpr int64_t kIrVersion = 8;
constexpr int64_t kOpset = 17;

struct Attr {
    enum Kind { Int, Ints, Float } kind = Int;
    std::string name;
    int64_t i = 0;
    std::vector<int64_t> ints;
    float f = 0;
};
Attr attr_i(const std::string& name, int64_t v) {
    Attr a;
    a.kind = Attr::Int;
    a.name = name;
    a.i = v;
    return a;
}
Attr attr_ints(const std::string& name, std::vector<int64_t> v) {
    Attr a;
    a.kind = Attr::Ints;
    a.name = name;
    a.ints = std::move(v);
    return a;
}
Attr attr_f(const std::string& name, double v) {
    Attr a;
    a.kind = Attr::Float;
    a.name = name;
    a.f = static_cast<float>(v);
    return a;
}

Writer encode(const Attr& a) {
    Writer w;
    w.string_field(f::kAttrName, a.name);
    switch (a.kind) {
        case Attr::Int:
            w.int_field(f::kAttrType, f::kAttrTypeInt).int_field(f::kAttrI, a.i);
            break;
        case Attr::Ints:
            w.int_field(f::kAttrType, f::kAttrTypeInts).int_fields(f::kAttrInts, a.ints);
            break;
        case Attr::Float:
            w.int_field(f::kAttrType, f::kAttrTypeFloat).float_field(f::kAttrF, a.f);
            break;
    }
    return w;
}

// One field of GraphProto each, so a large model is written without one more copy.
struct ModelParts {
    std::string head;                // ModelProto fields before the graph, then the graph's tag
    std::vector<std::string> graph;  // the GraphProto's fields
    size_t size() const {
        size_t s = head.size();
        for (const std::string& p : graph) s += p.size();
        return s;
    }
};

class Exporter {
  public:
    Exporter(const Graph& g, const OnnxExportOptions& o) : g_(g), options_(o) {}

    ModelParts run(OnnxExportInfo* info);

  private:
    [[noreturn]] void fail(const std::string& what) const {
        throw GraphError("onnx export: node '" + node_->name + "' (" + op_name(node_->op) +
                         "): " + what);
    }

    std::string unique(const std::string& base, std::set<std::string>* used) {
        std::string s = onnx_sanitize_name(base);
        for (int i = 1; used->count(s) != 0; ++i)
            s = onnx_sanitize_name(base) + "." + std::to_string(i);
        used->insert(s);
        return s;
    }
    // A fresh intermediate value "<context>/<step>".
    std::string tmp(const std::string& step) { return unique(context_ + "/" + step, &values_); }
    // The ONNX name of tensor `id` (assigned when first asked for).
    const std::string& value(int id) {
        std::string& v = value_.at(static_cast<size_t>(id));
        if (v.empty()) v = unique(g_.tensor(id).name, &values_);
        return v;
    }

    void add_node(const std::string& op, const std::vector<std::string>& in,
                  const std::vector<std::string>& out, const std::vector<Attr>& attrs = {},
                  const std::string& step = "");

    std::string initializer(const std::string& base, int64_t type, const Shape& dims,
                            const void* data, size_t bytes);
    std::string floats_init(const std::string& base, const Shape& dims,
                            const std::vector<float>& v) {
        return initializer(base, f::kFloat, dims, v.data(), v.size() * sizeof(float));
    }
    std::string scalar(float v);
    // The parameter of `role` as a float32 initializer of `dims` (same elements), shared by
    // every use of the key with these dims.
    std::string param_init(const std::string& role, const Shape& dims);
    std::vector<float> param_floats(const std::string& role);
    std::vector<double> param_doubles(const std::string& role);

    // Layout checks: the channel axis and rank of tensor `id`.
    int channel_axis_of(int id) const;
    Shape channel_shape(int id, int64_t c) const;

    void emit(const Node& n);
    void conv(const std::string& x, const std::string& w, const std::string& b, int64_t kh,
              int64_t kw, int stride, int dilation, const std::vector<int64_t>& pads, int64_t group,
              const std::string& out, const std::string& step = "");
    void dw_conv(const Node& n, const std::string& x, const std::string& out);
    void dw_multi(const Node& n, const std::string& x, const std::string& out);
    void shiftwise(const Node& n, const std::string& x, const std::string& out);
    void linear(const Node& n, const std::string& x, const std::string& out);
    void batch_norm(int tensor, const std::string& prefix, double eps, const std::string& x,
                    const std::string& out);
    void layer_norm(const Node& n, const std::string& x, const std::string& out);
    void grn(const Node& n, const std::string& x, const std::string& out);
    void gelu(const std::string& x, const std::string& out);
    void epilogues(const Node& n, const std::string& x, const std::string& out);

    const Graph& g_;
    OnnxExportOptions options_;
    const Node* node_ = nullptr;  // the node being exported
    std::string context_;         // its (or its epilogue's) name, for the ONNX node names
    std::vector<std::string> nodes_, inits_;
    std::set<std::string> values_, node_names_;
    std::map<std::string, std::string> init_cache_;
    std::vector<std::string> value_;
    OnnxExportInfo info_;
};

void Exporter::add_node(const std::string& op, const std::vector<std::string>& in,
                        const std::vector<std::string>& out, const std::vector<Attr>& attrs,
                        const std::string& step) {
    Writer w;
    for (const std::string& s : in) w.string_field(f::kNodeInput, s);
    for (const std::string& s : out) w.string_field(f::kNodeOutput, s);
    w.string_field(f::kNodeName,
                   unique(step.empty() ? context_ : context_ + "/" + step, &node_names_));
    w.string_field(f::kNodeOpType, op);
    for (const Attr& a : attrs) w.message_field(f::kNodeAttribute, encode(a));
    std::string field;
    proto::append_tag(&field, f::kGraphNode, proto::WireType::Len);
    proto::append_varint(&field, w.bytes().size());
    field += w.bytes();
    nodes_.push_back(std::move(field));
    ++info_.op_counts[op];
}

std::string Exporter::initializer(const std::string& base, int64_t type, const Shape& dims,
                                  const void* data, size_t bytes) {
    const std::string name = unique(base, &values_);
    Writer w;
    w.int_fields(f::kTensorDims, dims);
    w.int_field(f::kTensorDataType, type);
    w.string_field(f::kTensorName, name);
    w.bytes_field(f::kTensorRawData, data, bytes);  // the host is little-endian (x86-64)
    std::string field;
    proto::append_tag(&field, f::kGraphInitializer, proto::WireType::Len);
    proto::append_varint(&field, w.bytes().size());
    field += w.bytes();
    inits_.push_back(std::move(field));
    info_.initializer_elements += shape_numel(dims);
    return name;
}

std::string Exporter::scalar(float v) {
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    const std::string key = "scalar:" + std::to_string(bits);
    auto it = init_cache_.find(key);
    if (it != init_cache_.end()) return it->second;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", static_cast<double>(v));
    const std::string name = initializer(std::string("const_") + buf, f::kFloat, {}, &v, 4);
    init_cache_[key] = name;
    return name;
}

std::vector<double> Exporter::param_doubles(const std::string& role) {
    if (!node_->has_param(role)) fail("has no parameter role '" + role + "'");
    const Tensor& t = g_.param_value(*node_, role);
    std::vector<double> v(static_cast<size_t>(t.numel()));
    if (t.dtype() == DType::F32) {
        for (size_t i = 0; i < v.size(); ++i) v[i] = t.data<float>()[i];
    } else if (t.dtype() == DType::F64) {
        for (size_t i = 0; i < v.size(); ++i) v[i] = t.data<double>()[i];
    } else {
        fail("parameter '" + node_->param(role) + "' has dtype " + dtype_name(t.dtype()) +
             ", expected F32");
    }
    return v;
}

std::vector<float> Exporter::param_floats(const std::string& role) {
    std::vector<double> d = param_doubles(role);
    return std::vector<float>(d.begin(), d.end());
}

std::string Exporter::param_init(const std::string& role, const Shape& dims) {
    if (!node_->has_param(role)) fail("has no parameter role '" + role + "'");
    const std::string& key = node_->param(role);
    const std::string cache = "param:" + key + shape_to_string(dims);
    auto it = init_cache_.find(cache);
    if (it != init_cache_.end()) return it->second;
    std::vector<float> v = param_floats(role);
    if (static_cast<int64_t>(v.size()) != shape_numel(dims)) {
        fail("parameter '" + key + "' has " + std::to_string(v.size()) + " elements, expected " +
             shape_to_string(dims));
    }
    const std::string name = floats_init(key, dims, v);
    init_cache_[cache] = name;
    return name;
}

int Exporter::channel_axis_of(int id) const {
    const TensorDesc& t = g_.tensor(id);
    if (t.layout != Layout::NCHW && t.layout != Layout::NHWC && t.layout != Layout::NC) {
        fail("tensor '" + t.name + "' has layout '" + layout_name(t.layout) +
             "', expected NCHW, NHWC or NC (a channel axis)");
    }
    const int ca = channel_axis(t.layout);
    if (static_cast<int>(t.shape.size()) <= ca) {
        fail("tensor '" + t.name + "' " + shape_to_string(t.shape) + " has no axis " +
             std::to_string(ca) + " for layout " + layout_name(t.layout));
    }
    return ca;
}

Shape Exporter::channel_shape(int id, int64_t c) const {
    Shape s(g_.tensor(id).shape.size(), 1);
    s[static_cast<size_t>(channel_axis_of(id))] = c;
    return s;
}

void Exporter::conv(const std::string& x, const std::string& w, const std::string& b, int64_t kh,
                    int64_t kw, int stride, int dilation, const std::vector<int64_t>& pads,
                    int64_t group, const std::string& out, const std::string& step) {
    std::vector<std::string> in = {x, w};
    if (!b.empty()) in.push_back(b);
    add_node("Conv", in, {out},
             {attr_ints("dilations", {dilation, dilation}), attr_i("group", group),
              attr_ints("kernel_shape", {kh, kw}), attr_ints("pads", pads),
              attr_ints("strides", {stride, stride})},
             step);
}

void Exporter::dw_conv(const Node& n, const std::string& x, const std::string& out) {
    const Shape ws = g_.param(n.param("weight")).shape;  // [C,1,kh,kw]
    const int64_t kh = ws.at(2), kw = ws.at(3), d = n.attrs.dilation;
    std::string w;
    if (n.op == OpKind::DwConv2dSparse) {
        // The masked kernel: exact (the mask is 0 / 1).
        std::vector<float> v = param_floats("weight");
        const Tensor& m = g_.constant_value(n, "mask");
        if (m.numel() != static_cast<int64_t>(v.size())) {
            fail("constant '" + n.constant("mask") + "' has shape " + shape_to_string(m.shape()) +
                 ", expected the weight's " + shape_to_string(ws));
        }
        for (size_t i = 0; i < v.size(); ++i) {
            double mv = 0;
            switch (m.dtype()) {
                case DType::U8:
                case DType::Bool:
                    mv = m.data<uint8_t>()[i];
                    break;
                case DType::I32:
                    mv = m.data<int32_t>()[i];
                    break;
                case DType::I64:
                    mv = static_cast<double>(m.data<int64_t>()[i]);
                    break;
                case DType::F32:
                    mv = m.data<float>()[i];
                    break;
                default:
                    fail("constant '" + n.constant("mask") + "' has dtype " +
                         dtype_name(m.dtype()) + ", expected U8, Bool, I32, I64 or F32");
            }
            if (mv != 0 && mv != 1) {
                fail("constant '" + n.constant("mask") + "' element " + std::to_string(i) + " is " +
                     std::to_string(mv) + ", expected 0 or 1");
            }
            v[i] = mv == 0 ? 0.0f : v[i];
        }
        w = floats_init(n.param("weight") + ".masked", ws, v);
    } else {
        w = param_init("weight", ws);
    }
    const std::string b = n.has_param("bias") ? param_init("bias", {ws[0]}) : "";
    const int64_t ph = d * (kh - 1) / 2, pw = d * (kw - 1) / 2;
    conv(x, w, b, kh, kw, n.attrs.stride, static_cast<int>(d), {ph, pw, ph, pw}, ws[0], out);
}

void Exporter::dw_multi(const Node& n, const std::string& x, const std::string& out) {
    const size_t nb = n.attrs.dilations.size();
    if (nb == 0) fail("has no branches (attrs.dilations is empty)");
    std::string acc;
    for (size_t b = 0; b < nb; ++b) {
        const std::string role = "weight" + std::to_string(b);
        if (!n.has_param(role)) fail("has no parameter role '" + role + "'");
        const Shape ws = g_.param(n.param(role)).shape;
        const int64_t kh = ws.at(2), kw = ws.at(3), d = n.attrs.dilations[b];
        const std::string bias = b == 0 && n.has_param("bias") ? param_init("bias", {ws[0]}) : "";
        const std::string step = "branch" + std::to_string(b);
        const std::string y = nb == 1 ? out : tmp(step);
        conv(x, param_init(role, ws), bias, kh, kw, n.attrs.stride, static_cast<int>(d),
             {d * (kh - 1) / 2, d * (kw - 1) / 2, d * (kh - 1) / 2, d * (kw - 1) / 2}, ws[0], y,
             nb == 1 ? "" : step);
        if (b == 0) {
            acc = y;
        } else {
            const std::string s = b + 1 == nb ? out : tmp("sum" + std::to_string(b));
            add_node("Add", {acc, y}, {s}, {}, "sum" + std::to_string(b));
            acc = s;
        }
    }
}

void Exporter::shiftwise(const Node& n, const std::string& x, const std::string& out) {
    const TensorDesc& xd = g_.tensor(n.inputs.at(0));
    const int64_t C = xd.shape.at(1), k = n.attrs.small_k, K = n.attrs.big_k;
    if (k < 1 || K < k) fail("kernels K=" + std::to_string(K) + ", k=" + std::to_string(k));
    const int64_t nk = (K + k - 1) / k;
    // w = sum of the paths, as [C, nk, k, k].
    std::vector<double> w;
    for (int p = 0; node_->has_param("weight" + std::to_string(p)); ++p) {
        std::vector<double> wp = param_doubles("weight" + std::to_string(p));
        if (w.empty()) w.assign(wp.size(), 0.0);
        if (wp.size() != w.size()) fail("path weights of different sizes");
        for (size_t i = 0; i < wp.size(); ++i) w[i] += wp[i];
    }
    if (static_cast<int64_t>(w.size()) != C * nk * k * k) {
        fail("path weights have " + std::to_string(w.size()) +
             " elements, expected C*nk*k*k = " + std::to_string(C * nk * k * k));
    }
    Tensor wt(DType::F32, {C, nk, k, k});
    for (size_t i = 0; i < w.size(); ++i) wt.data<float>()[i] = static_cast<float>(w[i]);
    reparam::ShiftwiseKernels sk;
    try {
        sk = reparam::shiftwise_equivalent(wt, g_.constant_value(n, "slot_h"),
                                           g_.constant_value(n, "slot_v"),
                                           g_.constant_value(n, "ident"), static_cast<int>(K));
    } catch (const std::invalid_argument& e) {
        fail(std::string("shift tables: ") + e.what());
    }
    struct Part {
        const Tensor* w;
        int64_t row0, col0;
        const char* name;
    };
    const Part parts[3] = {{&sk.wh, sk.wh_row0, sk.wh_col0, "wh"},
                           {&sk.wv, sk.wv_row0, sk.wv_col0, "wv"},
                           {&sk.ws, sk.ws_row0, sk.ws_col0, "ws"}};
    // A kernel [C,1,kh,kw] whose tap (u, v) reads offset (row0 + u, col0 + v) is a Conv with
    // pads top -row0, left -col0, bottom kh-1+row0, right kw-1+col0 (output H x W).
    auto pads = [](int64_t row0, int64_t col0, int64_t kh, int64_t kw) {
        return std::vector<int64_t>{-row0, -col0, kh - 1 + row0, kw - 1 + col0};
    };
    if (!n.has_param("ah")) {
        if (n.outputs.size() != 3)
            fail("has " + std::to_string(n.outputs.size()) + " outputs, expected yh, yv, ys");
        for (int i = 0; i < 3; ++i) {
            const Part& p = parts[i];
            const int64_t kh = p.w->dim(2), kw = p.w->dim(3);
            std::vector<float> v(p.w->data<float>(), p.w->data<float>() + p.w->numel());
            const std::string wi = floats_init(n.name + "." + p.name, p.w->shape(), v);
            conv(x, wi, "", kh, kw, 1, 1, pads(p.row0, p.col0, kh, kw), C,
                 i == 0 ? out : value(n.outputs[static_cast<size_t>(i)]), p.name);
        }
        return;
    }
    // Fused: one kernel on the union of the three footprints (asymmetric), + x.
    int64_t r0 = INT64_MAX, r1 = INT64_MIN, c0 = INT64_MAX, c1 = INT64_MIN;
    for (const Part& p : parts) {
        r0 = std::min(r0, p.row0);
        c0 = std::min(c0, p.col0);
        r1 = std::max(r1, p.row0 + p.w->dim(2) - 1);
        c1 = std::max(c1, p.col0 + p.w->dim(3) - 1);
    }
    const int64_t sh = r1 - r0 + 1, sw = c1 - c0 + 1;
    const std::vector<double> ah = param_doubles("ah"), av = param_doubles("av"),
                              as = param_doubles("as");
    if (static_cast<int64_t>(ah.size()) != C || static_cast<int64_t>(av.size()) != C ||
        static_cast<int64_t>(as.size()) != C) {
        fail("ah, av, as need " + std::to_string(C) + " elements each");
    }
    const std::vector<double>* scale[3] = {&ah, &av, &as};
    std::vector<double> acc(static_cast<size_t>(C * sh * sw), 0.0);
    for (int i = 0; i < 3; ++i) {
        const Part& p = parts[i];
        const int64_t kh = p.w->dim(2), kw = p.w->dim(3);
        const float* pw = p.w->data<float>();
        for (int64_t c = 0; c < C; ++c) {
            const double s = (*scale[i])[static_cast<size_t>(c)];
            for (int64_t u = 0; u < kh; ++u) {
                for (int64_t v = 0; v < kw; ++v) {
                    const int64_t r = p.row0 + u - r0, q = p.col0 + v - c0;
                    acc[static_cast<size_t>((c * sh + r) * sw + q)] +=
                        s * pw[static_cast<size_t>((c * kh + u) * kw + v)];
                }
            }
        }
    }
    const std::vector<float> cross(acc.begin(), acc.end());
    const std::string wi = floats_init(n.name + ".cross", {C, 1, sh, sw}, cross);
    const std::string y = tmp("cross");
    conv(x, wi, param_init("bias", {C}), sh, sw, 1, 1, pads(r0, c0, sh, sw), C, y, "cross");
    add_node("Add", {y, x}, {out}, {}, "identity");
}

void Exporter::linear(const Node& n, const std::string& x, const std::string& out) {
    const Shape ws = g_.param(n.param("weight")).shape;  // [O, I]
    if (ws.size() != 2) fail("weight " + shape_to_string(ws) + ", expected [O, I]");
    const int64_t O = ws[0], I = ws[1];
    const Layout l = g_.tensor(n.inputs.at(0)).layout;
    const int ca = channel_axis_of(n.inputs.at(0));
    const int rank = static_cast<int>(g_.tensor(n.inputs.at(0)).shape.size());
    const bool bias = n.has_param("bias");
    if (l == Layout::NC && rank == 2) {
        std::vector<std::string> in = {x, param_init("weight", ws)};
        if (bias) in.push_back(param_init("bias", {O}));
        add_node("Gemm", in, {out}, {attr_i("transB", 1)});
    } else if (l == Layout::NCHW && rank == 4) {
        conv(x, param_init("weight", {O, I, 1, 1}), bias ? param_init("bias", {O}) : "", 1, 1, 1, 1,
             {0, 0, 0, 0}, 1, out);
    } else if (ca == rank - 1) {
        // Channels last: x @ W^T (+ b broadcast over the last axis).
        std::vector<float> w = param_floats("weight"), wt(w.size());
        for (int64_t o = 0; o < O; ++o) {
            for (int64_t i = 0; i < I; ++i) {
                wt[static_cast<size_t>(i * O + o)] = w[static_cast<size_t>(o * I + i)];
            }
        }
        const std::string wname = floats_init(n.param("weight") + ".T", {I, O}, wt);
        if (!bias) {
            add_node("MatMul", {x, wname}, {out});
        } else {
            const std::string y = tmp("matmul");
            add_node("MatMul", {x, wname}, {y}, {}, "matmul");
            add_node("Add", {y, param_init("bias", {O})}, {out}, {}, "bias");
        }
    } else {
        fail(std::string("input of layout ") + layout_name(l) + " and rank " +
             std::to_string(rank) + ", expected NC [N, C], NCHW or channels-last");
    }
}

void Exporter::batch_norm(int tensor, const std::string& prefix, double eps, const std::string& x,
                          const std::string& out) {
    const TensorDesc& t = g_.tensor(tensor);
    const int ca = channel_axis_of(tensor);
    const int64_t C = t.shape[static_cast<size_t>(ca)];
    if (ca == 1) {
        add_node(
            "BatchNormalization",
            {x, param_init(prefix + "weight", {C}), param_init(prefix + "bias", {C}),
             param_init(prefix + "running_mean", {C}), param_init(prefix + "running_var", {C})},
            {out}, {attr_f("epsilon", eps)});
        return;
    }
    // Channels last: the affine y = x * t + (beta - mean * t), t = gamma / sqrt(var + eps).
    const std::vector<double> w = param_doubles(prefix + "weight"),
                              b = param_doubles(prefix + "bias"),
                              mu = param_doubles(prefix + "running_mean"),
                              var = param_doubles(prefix + "running_var");
    std::vector<float> sc(static_cast<size_t>(C)), sh(static_cast<size_t>(C));
    for (size_t c = 0; c < sc.size(); ++c) {
        const double s = w[c] / std::sqrt(var[c] + eps);
        sc[c] = static_cast<float>(s);
        sh[c] = static_cast<float>(b[c] - mu[c] * s);
    }
    const std::string key = node_->param(prefix + "weight");
    const std::string y = tmp("scale");
    add_node("Mul", {x, floats_init(key + ".bn_scale", channel_shape(tensor, C), sc)}, {y}, {},
             "scale");
    add_node("Add", {y, floats_init(key + ".bn_shift", channel_shape(tensor, C), sh)}, {out}, {},
             "shift");
}

void Exporter::layer_norm(const Node& n, const std::string& x, const std::string& out) {
    const int id = n.inputs.at(0);
    const TensorDesc& t = g_.tensor(id);
    const int ca = channel_axis_of(id);
    const int rank = static_cast<int>(t.shape.size());
    const int64_t C = t.shape[static_cast<size_t>(ca)];
    const std::vector<std::string> in = {param_init("weight", {C}), param_init("bias", {C})};
    const std::vector<Attr> attrs = {attr_i("axis", -1), attr_f("epsilon", n.attrs.eps)};
    if (ca == rank - 1) {
        add_node("LayerNormalization", {x, in[0], in[1]}, {out}, attrs);
        return;
    }
    // LayerNormalization normalises trailing axes: move the channel axis last and back.
    std::vector<int64_t> to_last, back(static_cast<size_t>(rank));
    for (int d = 0; d < rank; ++d) {
        if (d != ca) to_last.push_back(d);
    }
    to_last.push_back(ca);
    for (int d = 0; d < rank; ++d) back[static_cast<size_t>(to_last[static_cast<size_t>(d)])] = d;
    const std::string a = tmp("to_channels_last"), b = tmp("layer_norm");
    add_node("Transpose", {x}, {a}, {attr_ints("perm", to_last)}, "to_channels_last");
    add_node("LayerNormalization", {a, in[0], in[1]}, {b}, attrs, "layer_norm");
    add_node("Transpose", {b}, {out}, {attr_ints("perm", back)}, "from_channels_last");
}

void Exporter::grn(const Node& n, const std::string& x, const std::string& out) {
    const int id = n.inputs.at(0);
    const TensorDesc& t = g_.tensor(id);
    const int ca = channel_axis_of(id);
    const int64_t C = t.shape[static_cast<size_t>(ca)];
    std::vector<int64_t> spatial;
    for (int d = 1; d < static_cast<int>(t.shape.size()); ++d) {
        if (d != ca) spatial.push_back(d);
    }
    // G = ||x||_2 over the spatial axes; Nx = G / (mean_c G + eps); y = (gamma Nx + 1) x + beta.
    const std::string G = tmp("norm"), m = tmp("mean"), me = tmp("mean_eps"), nx = tmp("nx"),
                      gn = tmp("gamma_nx"), fac = tmp("factor");
    if (spatial.empty()) {
        add_node("Abs", {x}, {G}, {}, "norm");
    } else {
        add_node("ReduceL2", {x}, {G}, {attr_ints("axes", spatial), attr_i("keepdims", 1)}, "norm");
    }
    add_node("ReduceMean", {G}, {m}, {attr_ints("axes", {ca}), attr_i("keepdims", 1)}, "mean");
    add_node("Add", {m, scalar(static_cast<float>(n.attrs.eps))}, {me}, {}, "mean_eps");
    add_node("Div", {G, me}, {nx}, {}, "nx");
    add_node("Mul", {nx, param_init("gamma", channel_shape(id, C))}, {gn}, {}, "gamma_nx");
    add_node("Add", {gn, scalar(1.0f)}, {fac}, {}, "factor");
    if (!n.has_param("beta")) {
        add_node("Mul", {fac, x}, {out}, {}, "apply");
        return;
    }
    const std::string fx = tmp("apply");
    add_node("Mul", {fac, x}, {fx}, {}, "apply");
    add_node("Add", {fx, param_init("beta", channel_shape(id, C))}, {out}, {}, "beta");
}

void Exporter::gelu(const std::string& x, const std::string& out) {
    // 0.5 x (1 + erf(x / sqrt 2)).
    const std::string a = tmp("div"), e = tmp("erf"), p = tmp("add"), m = tmp("mul");
    add_node("Div", {x, scalar(static_cast<float>(std::sqrt(2.0)))}, {a}, {}, "div");
    add_node("Erf", {a}, {e}, {}, "erf");
    add_node("Add", {e, scalar(1.0f)}, {p}, {}, "add");
    add_node("Mul", {x, p}, {m}, {}, "mul");
    add_node("Mul", {m, scalar(0.5f)}, {out}, {}, "half");
}

void Exporter::epilogues(const Node& n, const std::string& x, const std::string& out) {
    const int result = n.outputs.at(0);
    const int64_t C = g_.tensor(result).shape.at(static_cast<size_t>(channel_axis_of(result)));
    std::string cur = x;
    const std::vector<Epilogue>& eps = n.attrs.epilogues;
    for (size_t i = 0; i < eps.size(); ++i) {
        const Epilogue& e = eps[i];
        context_ = e.name.empty() ? n.name + "/e" + std::to_string(i) : e.name;
        const std::string y = i + 1 == eps.size() ? out : tmp("out");
        const std::string pre = "e" + std::to_string(i) + ".";
        switch (e.op) {
            case EpilogueOp::Relu:
                add_node("Relu", {cur}, {y});
                break;
            case EpilogueOp::Sigmoid:
                add_node("Sigmoid", {cur}, {y});
                break;
            case EpilogueOp::Gelu:
                gelu(cur, y);
                break;
            case EpilogueOp::Add:
                if (e.input < 1 || e.input >= static_cast<int>(n.inputs.size())) {
                    fail("epilogue " + std::to_string(i) + " (add) refers to input " +
                         std::to_string(e.input) + " of " + std::to_string(n.inputs.size()));
                }
                add_node("Add", {cur, value(n.inputs[static_cast<size_t>(e.input)])}, {y});
                break;
            case EpilogueOp::Scale:
                add_node("Mul", {cur, param_init(pre + "weight", channel_shape(result, C))}, {y});
                break;
            case EpilogueOp::BatchNorm:
                batch_norm(result, pre, e.eps, cur, y);
                break;
            default:
                fail("epilogue " + std::to_string(i) + " has an op the exporter does not know (" +
                     std::to_string(static_cast<int>(e.op)) + ")");
        }
        cur = y;
    }
    context_ = n.name;
}

void Exporter::emit(const Node& n) {
    node_ = &n;
    context_ = n.name;
    const Attrs& a = n.attrs;
    if (n.inputs.empty() || n.outputs.empty()) fail("has no inputs or no outputs");
    const int xi = n.inputs[0];
    const std::string x = value(xi);
    // The main result goes to a temporary when epilogues follow.
    const std::string final_out = value(n.outputs[0]);
    const std::string out = a.epilogues.empty() ? final_out : tmp("out");
    switch (n.op) {
        case OpKind::Conv2d: {
            const Shape ws = g_.param(n.param("weight")).shape;  // [Co, Ci/groups, kh, kw]
            const std::string b = n.has_param("bias") ? param_init("bias", {ws.at(0)}) : "";
            conv(x, param_init("weight", ws), b, ws.at(2), ws.at(3), a.stride, a.dilation,
                 {a.pad_h, a.pad_w, a.pad_h, a.pad_w}, a.groups, out);
            break;
        }
        case OpKind::DwConv2d:
        case OpKind::DwConv2dSparse:
            dw_conv(n, x, out);
            break;
        case OpKind::DwConv2dMulti:
            dw_multi(n, x, out);
            break;
        case OpKind::ShiftWise:
            shiftwise(n, x, out);
            break;
        case OpKind::Linear:
            linear(n, x, out);
            break;
        case OpKind::BatchNorm:
            batch_norm(xi, "", a.eps, x, out);
            break;
        case OpKind::LayerNorm:
            layer_norm(n, x, out);
            break;
        case OpKind::Grn:
            grn(n, x, out);
            break;
        case OpKind::Gelu:
            gelu(x, out);
            break;
        case OpKind::Relu:
            add_node("Relu", {x}, {out});
            break;
        case OpKind::Sigmoid:
            add_node("Sigmoid", {x}, {out});
            break;
        case OpKind::Softmax:
            add_node("Softmax", {x}, {out}, {attr_i("axis", channel_axis_of(xi))});
            break;
        case OpKind::Add:
        case OpKind::Mul:
            if (n.inputs.size() != 2) fail("has " + std::to_string(n.inputs.size()) + " inputs");
            add_node(n.op == OpKind::Add ? "Add" : "Mul", {x, value(n.inputs[1])}, {out});
            break;
        case OpKind::Scale: {
            const int64_t C = g_.tensor(xi).shape.at(static_cast<size_t>(channel_axis_of(xi)));
            add_node("Mul", {x, param_init("weight", channel_shape(xi, C))}, {out});
            break;
        }
        case OpKind::GlobalAvgPool: {
            if (g_.tensor(xi).shape.size() != 4 || g_.tensor(xi).layout != Layout::NCHW) {
                fail("input '" + g_.tensor(xi).name + "' is not NCHW 4-D");
            }
            if (a.keepdims) {
                add_node("GlobalAveragePool", {x}, {out});
            } else {
                const std::string p = tmp("pool");
                add_node("GlobalAveragePool", {x}, {p}, {}, "pool");
                add_node("Flatten", {p}, {out}, {attr_i("axis", 1)}, "flatten");
            }
            break;
        }
        case OpKind::ChannelSelect: {
            const int ca = channel_axis_of(xi);
            const int64_t C = g_.tensor(xi).shape.at(static_cast<size_t>(ca));
            const Tensor& t = g_.constant_value(n, "index");
            std::vector<int64_t> idx(static_cast<size_t>(t.numel()));
            for (size_t i = 0; i < idx.size(); ++i) {
                if (t.dtype() == DType::I32) {
                    idx[i] = t.data<int32_t>()[i];
                } else if (t.dtype() == DType::I64) {
                    idx[i] = t.data<int64_t>()[i];
                } else {
                    fail("constant '" + n.constant("index") + "' has dtype " +
                         dtype_name(t.dtype()) + ", expected I32 or I64");
                }
                if (idx[i] < 0 || idx[i] >= C) {
                    fail("constant '" + n.constant("index") + "' element " + std::to_string(i) +
                         " = " + std::to_string(idx[i]) + " is outside [0, " + std::to_string(C) +
                         ")");
                }
            }
            const std::string ii =
                initializer(n.constant("index"), f::kInt64, {static_cast<int64_t>(idx.size())},
                            idx.data(), idx.size() * sizeof(int64_t));
            add_node("Gather", {x, ii}, {out}, {attr_i("axis", ca)});
            break;
        }
        case OpKind::Concat: {
            std::vector<std::string> in;
            for (int id : n.inputs) in.push_back(value(id));
            add_node("Concat", in, {out}, {attr_i("axis", channel_axis_of(n.outputs[0]))});
            break;
        }
        case OpKind::Permute: {
            std::vector<int64_t> perm(a.perm.begin(), a.perm.end());
            add_node("Transpose", {x}, {out}, {attr_ints("perm", perm)});
            break;
        }
        case OpKind::Flatten:
            add_node("Flatten", {x}, {out}, {attr_i("axis", 1)});
            break;
        case OpKind::Reorder:
            add_node("Identity", {x}, {out});  // storage only; ONNX values have no layout
            break;
        default:
            fail("op kind " + std::to_string(static_cast<int>(n.op)) +
                 " has no ONNX mapping in graph/onnx_export.cpp");
    }
    if (!a.epilogues.empty()) epilogues(n, out, final_out);
}

Writer value_info(const std::string& name, const Shape& shape, bool dynamic_batch) {
    Writer dims;
    for (size_t d = 0; d < shape.size(); ++d) {
        Writer dim;
        if (d == 0 && dynamic_batch) {
            dim.string_field(f::kDimParam, "N");
        } else {
            dim.int_field(f::kDimValue, shape[d]);
        }
        dims.message_field(f::kShapeDim, dim);
    }
    Writer tensor;
    tensor.int_field(f::kTypeTensorElemType, f::kFloat).message_field(f::kTypeTensorShape, dims);
    Writer type;
    type.message_field(f::kTypeTensorType, tensor);
    Writer v;
    v.string_field(f::kValueInfoName, name).message_field(f::kValueInfoType, type);
    return v;
}

ModelParts Exporter::run(OnnxExportInfo* info) {
    // Every node has an ONNX mapping (before validate, which rejects unknown kinds less clearly).
    for (const Node& n : g_.nodes) {
        node_ = &n;
        switch (n.op) {
            case OpKind::Conv2d:
            case OpKind::DwConv2d:
            case OpKind::DwConv2dMulti:
            case OpKind::DwConv2dSparse:
            case OpKind::ShiftWise:
            case OpKind::Linear:
            case OpKind::BatchNorm:
            case OpKind::LayerNorm:
            case OpKind::Grn:
            case OpKind::Gelu:
            case OpKind::Relu:
            case OpKind::Sigmoid:
            case OpKind::Softmax:
            case OpKind::Add:
            case OpKind::Mul:
            case OpKind::Scale:
            case OpKind::GlobalAvgPool:
            case OpKind::ChannelSelect:
            case OpKind::Concat:
            case OpKind::Permute:
            case OpKind::Flatten:
            case OpKind::Reorder:
                break;
            default:
                throw GraphError("onnx export: node '" + n.name + "' has op kind " +
                                 std::to_string(static_cast<int>(n.op)) +
                                 ", which has no ONNX mapping (graph/onnx_export.cpp)");
        }
    }
    validate(g_);
    for (const TensorDesc& t : g_.tensors) {
        if (t.dtype != DType::F32) {
            throw GraphError("onnx export: tensor '" + t.name + "' has dtype " +
                             dtype_name(t.dtype) + ", expected F32 (only float32 graphs export)");
        }
    }
    if (g_.outputs.empty())
        throw GraphError("onnx export: graph '" + g_.model + "' has no outputs");

    value_.assign(g_.tensors.size(), std::string());
    for (int id : g_.inputs) value(id);
    if (g_.outputs.size() == 1) {
        if (values_.count(options_.output_name) != 0) {
            throw GraphError("onnx export: output name '" + options_.output_name +
                             "' is also a graph input");
        }
        value_[static_cast<size_t>(g_.outputs[0])] = options_.output_name;
        values_.insert(options_.output_name);
    }
    for (int id : g_.outputs) value(id);
    for (int id : g_.outputs) {
        for (int in : g_.inputs) {
            if (id == in) {
                throw GraphError("onnx export: tensor '" + g_.tensor(id).name +
                                 "' is both a graph input and a graph output");
            }
        }
    }
    for (const Node& n : g_.nodes) emit(n);

    ModelParts m;
    for (std::string& s : nodes_) m.graph.push_back(std::move(s));
    {
        Writer w;
        w.string_field(f::kGraphName, g_.model.empty() ? "lkc" : g_.model);
        w.string_field(f::kGraphDocString, "exported by lkc from graph '" + g_.model + "'");
        for (int id : g_.inputs) {
            w.message_field(f::kGraphInput,
                            value_info(value(id), g_.tensor(id).shape, options_.dynamic_batch));
        }
        for (int id : g_.outputs) {
            w.message_field(f::kGraphOutput,
                            value_info(value(id), g_.tensor(id).shape, options_.dynamic_batch));
        }
        m.graph.push_back(w.take());
    }
    for (std::string& s : inits_) m.graph.push_back(std::move(s));
    size_t graph_size = 0;
    for (const std::string& p : m.graph) graph_size += p.size();

    Writer opset;
    opset.string_field(f::kOpsetDomain, "").int_field(f::kOpsetVersion, kOpset);
    Writer head;
    head.int_field(f::kModelIrVersion, kIrVersion)
        .message_field(f::kModelOpsetImport, opset)
        .string_field(f::kModelProducerName, "lkc")
        .string_field(f::kModelProducerVersion, lkc_version())
        .string_field(f::kModelDocString, "lkc graph '" + g_.model + "'");
    m.head = head.take();
    proto::append_tag(&m.head, f::kModelGraph, proto::WireType::Len);
    proto::append_varint(&m.head, graph_size);

    const size_t total = m.size();
    if (total > static_cast<size_t>(INT32_MAX)) {
        throw GraphError("onnx export: graph '" + g_.model + "' serialises to " +
                         std::to_string(total) +
                         " bytes, over protobuf's 2 GiB message limit (external data is not "
                         "written)");
    }
    info_.nodes = nodes_.size();
    info_.initializers = inits_.size();
    info_.bytes = total;
    if (info) *info = info_;
    return m;
}

[[noreturn]] void io_fail(const std::string& path, const std::string& what, int err) {
    throw std::runtime_error("onnx export: " + path + ": " + what + ": " + std::strerror(err));
}

void write_full(int fd, const std::string& s, const std::string& path) {
    size_t done = 0;
    while (done < s.size()) {
        const ssize_t r = ::write(fd, s.data() + done, s.size() - done);
        if (r < 0) {
            if (errno == EINTR) continue;
            io_fail(path, "write failed", errno);
        }
        done += static_cast<size_t>(r);
    }
}

}  // namespace

passes::DeployOptions onnx_deploy_options() {
    passes::DeployOptions o;
    o.reparameterize.cost = [](const Workload& w) {
        if (w.op != Op::ShiftWise) return w.nominal_flops();
        const double l = static_cast<double>(w.num_sub_kernels()) * w.small_k;
        return 2.0 * w.n * w.c * w.h * w.w * l * l;  // the exported cross kernel
    };
    o.reparameterize.sparse_cost = [](const Workload& w, double) { return w.nominal_flops(); };
    return o;
}

std::string onnx_model_bytes(const Graph& g, const OnnxExportOptions& options,
                             OnnxExportInfo* info) {
    ModelParts m = Exporter(g, options).run(info);
    std::string out;
    out.reserve(m.size());
    out += m.head;
    for (const std::string& p : m.graph) out += p;
    return out;
}

void export_onnx(const Graph& deployed, const std::string& path) {
    export_onnx(deployed, path, OnnxExportOptions{}, nullptr);
}

void export_onnx(const Graph& deployed, const std::string& path, const OnnxExportOptions& options,
                 OnnxExportInfo* info) {
    // Everything that can fail on the graph fails before the file system is touched.
    ModelParts m = Exporter(deployed, options).run(info);
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    struct Guard {
        std::string tmp;
        int fd = -1;
        bool committed = false;
        ~Guard() {
            if (fd >= 0) ::close(fd);
            if (!committed) ::unlink(tmp.c_str());
        }
    } guard{tmp};
    do {
        guard.fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } while (guard.fd < 0 && errno == EINTR);
    if (guard.fd < 0) io_fail(path, "cannot create temp file '" + tmp + "'", errno);
    write_full(guard.fd, m.head, path);
    for (const std::string& p : m.graph) write_full(guard.fd, p, path);
    if (::fsync(guard.fd) != 0) io_fail(path, "fsync of the temp file failed", errno);
    const int fd = guard.fd;
    guard.fd = -1;
    if (::close(fd) != 0) io_fail(path, "close of the temp file failed", errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        io_fail(path, "cannot rename '" + tmp + "' into place", errno);
    }
    guard.committed = true;
}

}  // namespace graph
}  // namespace lkc
