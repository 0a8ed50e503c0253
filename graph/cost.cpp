#include "graph/cost.h"

#include <algorithm>

namespace lkc {
namespace graph {

namespace {

int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
}

double numel(const Shape& s) { return static_cast<double>(shape_numel(s)); }

const Shape& in_shape(const Graph& g, const Node& n, size_t i = 0) {
    return g.tensor(n.inputs.at(i)).shape;
}
const Shape& out_shape(const Graph& g, const Node& n, size_t i = 0) {
    return g.tensor(n.outputs.at(i)).shape;
}

// Depth-wise conv with "same" padding: (nominal, useful) MACs.
void dw_macs(const Shape& x, const Shape& y, int64_t kh, int64_t kw, int stride, int dilation,
             double* nominal, double* useful) {
    const double nc = static_cast<double>(x[0]) * static_cast<double>(x[1]);
    *nominal += nc * static_cast<double>(y[2]) * static_cast<double>(y[3]) * kh * kw;
    *useful += nc *
               static_cast<double>(
                   valid_taps_1d(x[2], y[2], kh, stride, dilation, dilation * (kh - 1) / 2)) *
               static_cast<double>(
                   valid_taps_1d(x[3], y[3], kw, stride, dilation, dilation * (kw - 1) / 2));
}

}  // namespace

int64_t valid_taps_1d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t dilation,
                      int64_t pad) {
    int64_t total = 0;
    for (int64_t t = 0; t < k; ++t) {
        const int64_t off = t * dilation - pad;  // input index = o*stride + off
        // first o with o*stride + off >= 0, last o with o*stride + off <= in - 1
        const int64_t first = std::max<int64_t>(0, floor_div(-off + stride - 1, stride));
        const int64_t last = std::min<int64_t>(out - 1, floor_div(in - 1 - off, stride));
        if (last >= first) total += last - first + 1;
    }
    return total;
}

ParamCount count_params(const Graph& g) {
    ParamCount c;
    for (const auto& kv : g.params) {
        const int64_t n = shape_numel(kv.second.shape);
        if (kv.second.buffer) {
            c.buffers += n;
            ++c.buffer_tensors;
        } else {
            c.parameters += n;
            ++c.parameter_tensors;
        }
    }
    return c;
}

NodeCost node_cost(const Graph& g, const Node& n) {
    NodeCost c;
    const Attrs& a = n.attrs;
    switch (n.op) {
        case OpKind::Conv2d: {
            const Shape& x = in_shape(g, n);
            const Shape& y = out_shape(g, n);
            const Shape& w = g.param(n.param("weight")).shape;
            const double per_out = static_cast<double>(w[1]) * w[2] * w[3];
            c.macs = numel(y) * per_out;
            c.useful_macs =
                static_cast<double>(y[0]) * y[1] * w[1] *
                static_cast<double>(
                    valid_taps_1d(x[2], y[2], w[2], a.stride, a.dilation, a.pad_h)) *
                static_cast<double>(valid_taps_1d(x[3], y[3], w[3], a.stride, a.dilation, a.pad_w));
            if (n.has_param("bias")) c.elementwise = numel(y);
            break;
        }
        case OpKind::DwConv2d:
        case OpKind::DwConv2dSparse: {
            const Shape& w = g.param(n.param("weight")).shape;
            dw_macs(in_shape(g, n), out_shape(g, n), w[2], w[3], a.stride, a.dilation, &c.macs,
                    &c.useful_macs);
            if (n.has_param("bias")) c.elementwise = numel(out_shape(g, n));
            break;
        }
        case OpKind::DwConv2dMulti: {
            for (size_t b = 0; b < a.dilations.size(); ++b) {
                const Shape& w = g.param(n.param("weight" + std::to_string(b))).shape;
                dw_macs(in_shape(g, n), out_shape(g, n), w[2], w[3], a.stride, a.dilations[b],
                        &c.macs, &c.useful_macs);
            }
            c.elementwise =
                numel(out_shape(g, n)) * (a.dilations.size() - 1 + (n.has_param("bias") ? 1 : 0));
            break;
        }
        case OpKind::ShiftWise: {
            const Shape& x = in_shape(g, n);
            const int64_t k = a.small_k, nk = (a.big_k + k - 1) / k, strip = nk * k;
            const int64_t mid = a.big_k / 2, e = (k - 1) / 2;
            const double nr = static_cast<double>(x[0]) * x[1];
            const int64_t H = x[2], W = x[3];
            c.macs = nr * H * W * static_cast<double>(2 * k * strip + k * k);
            auto taps = [&](int64_t kh, int64_t kw, int64_t ph, int64_t pw) {
                return static_cast<double>(valid_taps_1d(H, H, kh, 1, 1, ph)) *
                       static_cast<double>(valid_taps_1d(W, W, kw, 1, 1, pw));
            };
            c.useful_macs =
                nr * (taps(k, strip, e, mid) + taps(strip, k, mid, e) + taps(k, k, e, e));
            int paths = 0;
            while (n.has_param("weight" + std::to_string(paths))) ++paths;
            const int64_t ep = (k - 1) - k / 2;
            const double zmap = nr * nk * static_cast<double>(H + 2 * ep) * (W + 2 * ep);
            c.official_macs = paths * zmap * k * k;
            const double groups = static_cast<double>(g.constant_value(n, "ident").dim(0));
            c.elementwise = zmap * 2 * groups + nr * H * W * groups;  // shift-adds
            break;
        }
        case OpKind::Linear: {
            const Shape& w = g.param(n.param("weight")).shape;
            c.macs = numel(out_shape(g, n)) * static_cast<double>(w[1]);
            c.useful_macs = c.macs;
            if (n.has_param("bias")) c.elementwise = numel(out_shape(g, n));
            break;
        }
        case OpKind::BatchNorm:
            c.elementwise = 2 * numel(out_shape(g, n));
            break;
        case OpKind::LayerNorm:
            c.elementwise = 8 * numel(out_shape(g, n));
            break;
        case OpKind::Grn:
            c.elementwise = 6 * numel(out_shape(g, n));
            break;
        case OpKind::Gelu:
            c.elementwise = 8 * numel(out_shape(g, n));
            break;
        case OpKind::Sigmoid:
            c.elementwise = 4 * numel(out_shape(g, n));
            break;
        case OpKind::Softmax:
            c.elementwise = 5 * numel(out_shape(g, n));
            break;
        case OpKind::Relu:
        case OpKind::Add:
        case OpKind::Mul:
        case OpKind::Scale:
            c.elementwise = numel(out_shape(g, n));
            break;
        case OpKind::GlobalAvgPool:
            c.elementwise = numel(in_shape(g, n));
            break;
        case OpKind::ChannelSelect:
        case OpKind::Concat:
        case OpKind::Permute:
        case OpKind::Flatten:
            break;
    }
    if (n.op != OpKind::ShiftWise) c.official_macs = c.macs;
    return c;
}

std::vector<NodeCost> node_costs(const Graph& g) {
    std::vector<NodeCost> r;
    r.reserve(g.nodes.size());
    for (const Node& n : g.nodes) r.push_back(node_cost(g, n));
    return r;
}

NodeCost total_cost(const Graph& g) {
    NodeCost t;
    for (const Node& n : g.nodes) {
        NodeCost c = node_cost(g, n);
        t.macs += c.macs;
        t.useful_macs += c.useful_macs;
        t.official_macs += c.official_macs;
        t.elementwise += c.elementwise;
    }
    return t;
}

}  // namespace graph
}  // namespace lkc
