#include "graph/reference_executor.h"

#include <cmath>
#include <cstring>

#include "runtime/reference_dwconv.h"

namespace lkc {
namespace graph {

namespace {

using Vec = std::vector<double>;

struct Value {
    Shape shape;
    Layout layout = Layout::NCHW;
    Vec d;
};

[[noreturn]] void fail(const Node& n, const std::string& what) {
    throw GraphError(std::string("reference executor: node '") + n.name + "' (" + op_name(n.op) +
                     "): " + what);
}

Vec to_vec(const Tensor& t, const std::string& what) {
    Vec v(static_cast<size_t>(t.numel()));
    switch (t.dtype()) {
        case DType::F32: {
            const float* p = t.data<float>();
            for (size_t i = 0; i < v.size(); ++i) v[i] = p[i];
            break;
        }
        case DType::F64:
            std::memcpy(v.data(), t.data<double>(), v.size() * sizeof(double));
            break;
        default:
            throw GraphError("reference executor: " + what + " has dtype " + dtype_name(t.dtype()) +
                             ", expected F32 or F64");
    }
    return v;
}

std::vector<int64_t> to_ints(const Tensor& t) {
    std::vector<int64_t> v(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < v.size(); ++i) {
        switch (t.dtype()) {
            case DType::I32:
                v[i] = t.data<int32_t>()[i];
                break;
            case DType::I64:
                v[i] = t.data<int64_t>()[i];
                break;
            case DType::U8:
            case DType::Bool:
                v[i] = t.data<uint8_t>()[i];
                break;
            case DType::F32: {
                float f = t.data<float>()[i];
                v[i] = static_cast<int64_t>(f);
                if (static_cast<float>(v[i]) != f)
                    v[i] = -1;  // not an integer: rejected by callers
                break;
            }
            default:
                throw GraphError(std::string("reference executor: integer table of dtype ") +
                                 dtype_name(t.dtype()));
        }
    }
    return v;
}

Vec param(const Graph& g, const Node& n, const std::string& role) {
    return to_vec(g.param_value(n, role), "parameter '" + n.param(role) + "'");
}

// (outer, C, inner) decomposition of a tensor around its channel axis.
struct Split {
    int64_t outer, c, inner;
};
Split split(const Node& n, const Value& v) {
    switch (v.layout) {
        case Layout::NCHW:
            return {v.shape[0], v.shape[1], v.shape[2] * v.shape[3]};
        case Layout::NC:
            return {v.shape[0], v.shape[1], 1};
        case Layout::NHWC:
            return {v.shape[0] * v.shape[1] * v.shape[2], v.shape[3], 1};
        case Layout::Any:
            break;
    }
    fail(n, "needs a channel axis, the input has layout 'any'");
}

Value make(const TensorDesc& t) {
    Value v;
    v.shape = t.shape;
    v.layout = t.layout;
    v.d.assign(static_cast<size_t>(shape_numel(t.shape)), 0.0);
    return v;
}

void conv2d(const Graph& g, const Node& n, const Value& x, Value& y) {
    const Attrs& a = n.attrs;
    Vec w = param(g, n, "weight");
    Vec b = n.has_param("bias") ? param(g, n, "bias") : Vec();
    const Shape& ws = g.param(n.param("weight")).shape;
    const int64_t N = x.shape[0], Ci = x.shape[1], H = x.shape[2], W = x.shape[3];
    const int64_t Co = y.shape[1], OH = y.shape[2], OW = y.shape[3];
    const int64_t kh = ws[2], kw = ws[3], cig = Ci / a.groups, cog = Co / a.groups;
    for (int64_t nn = 0; nn < N; ++nn) {
        for (int64_t co = 0; co < Co; ++co) {
            double* yp = &y.d[static_cast<size_t>((nn * Co + co) * OH * OW)];
            if (!b.empty()) {
                for (int64_t i = 0; i < OH * OW; ++i) yp[i] = b[static_cast<size_t>(co)];
            }
            const int64_t grp = co / cog;
            for (int64_t cl = 0; cl < cig; ++cl) {
                const int64_t ci = grp * cig + cl;
                const double* xp = &x.d[static_cast<size_t>((nn * Ci + ci) * H * W)];
                for (int64_t u = 0; u < kh; ++u) {
                    for (int64_t v = 0; v < kw; ++v) {
                        const double wt =
                            w[static_cast<size_t>(((co * cig + cl) * kh + u) * kw + v)];
                        for (int64_t i = 0; i < OH; ++i) {
                            const int64_t r = i * a.stride + u * a.dilation - a.pad_h;
                            if (r < 0 || r >= H) continue;
                            for (int64_t j = 0; j < OW; ++j) {
                                const int64_t q = j * a.stride + v * a.dilation - a.pad_w;
                                if (q < 0 || q >= W) continue;
                                yp[i * OW + j] += wt * xp[r * W + q];
                            }
                        }
                    }
                }
            }
        }
    }
}

// One depth-wise conv through the double reference; adds into y.
void dw_add(const Value& x, const Vec& w, const Shape& ws, int stride, int dilation, Value& y) {
    Vec r = ref::dwconv_fwd(x.d, w, {}, static_cast<int>(x.shape[0]), static_cast<int>(x.shape[1]),
                            static_cast<int>(x.shape[2]), static_cast<int>(x.shape[3]),
                            static_cast<int>(ws[2]), static_cast<int>(ws[3]), stride, dilation);
    for (size_t i = 0; i < r.size(); ++i) y.d[i] += r[i];
}

void add_channel_bias(const Vec& b, Value& y) {
    const int64_t C = y.shape[1], hw = y.shape[2] * y.shape[3];
    for (int64_t nn = 0; nn < y.shape[0]; ++nn) {
        for (int64_t c = 0; c < C; ++c) {
            for (int64_t i = 0; i < hw; ++i)
                y.d[static_cast<size_t>((nn * C + c) * hw + i)] += b[c];
        }
    }
}

// Section 4 of large_kernel_ops.md literally, through the sub-kernel maps z.
void shiftwise(const Graph& g, const Node& n, const Value& x, Value& yh, Value& yv, Value& ys) {
    const int64_t N = x.shape[0], R = x.shape[1], H = x.shape[2], W = x.shape[3];
    const int64_t k = n.attrs.small_k, K = n.attrs.big_k, nk = (K + k - 1) / k;
    const int64_t e = (k - 1) - k / 2, mid = K / 2, zh = H + 2 * e, zw = W + 2 * e;
    Vec w;
    for (int p = 0; n.has_param("weight" + std::to_string(p)); ++p) {
        Vec wp = param(g, n, "weight" + std::to_string(p));
        if (w.empty()) w.assign(wp.size(), 0.0);
        for (size_t i = 0; i < wp.size(); ++i) w[i] += wp[i];
    }
    std::vector<int64_t> sh = to_ints(g.constant_value(n, "slot_h"));
    std::vector<int64_t> sv = to_ints(g.constant_value(n, "slot_v"));
    std::vector<int64_t> id = to_ints(g.constant_value(n, "ident"));
    const int64_t G = g.constant_value(n, "ident").dim(0);
    for (const auto* t : {&sh, &sv, &id}) {
        for (size_t i = 0; i < t->size(); ++i) {
            if ((*t)[i] < 0 || (*t)[i] >= nk) {
                const char* role = t == &sh ? "slot_h" : t == &sv ? "slot_v" : "ident";
                fail(n, std::string("constant '") + n.constant(role) + "' element " +
                            std::to_string(i) + " = " + std::to_string((*t)[i]) +
                            " is outside [0, " + std::to_string(nk) + ")");
            }
        }
    }
    std::vector<int64_t> rp(static_cast<size_t>(nk));
    for (int64_t s = 0; s < nk; ++s) rp[static_cast<size_t>(s)] = mid - s * k - (k - 1);
    Vec z(static_cast<size_t>(nk * zh * zw));
    for (int64_t nn = 0; nn < N; ++nn) {
        for (int64_t c = 0; c < R; ++c) {
            const double* xp = &x.d[static_cast<size_t>((nn * R + c) * H * W)];
            std::fill(z.begin(), z.end(), 0.0);
            for (int64_t j = 0; j < nk; ++j) {
                double* zp = &z[static_cast<size_t>(j * zh * zw)];
                for (int64_t u = 0; u < k; ++u) {
                    for (int64_t v = 0; v < k; ++v) {
                        const double wt = w[static_cast<size_t>(((c * nk + j) * k + u) * k + v)];
                        for (int64_t p = 0; p < zh; ++p) {
                            const int64_t r = p + u - (k - 1);
                            if (r < 0 || r >= H) continue;
                            for (int64_t q = 0; q < zw; ++q) {
                                const int64_t s = q + v - (k - 1);
                                if (s < 0 || s >= W) continue;
                                zp[p * zw + q] += wt * xp[r * W + s];
                            }
                        }
                    }
                }
            }
            const size_t o = static_cast<size_t>((nn * R + c) * H * W);
            auto zat = [&](int64_t j, int64_t p, int64_t q) {
                if (p < 0 || p >= zh || q < 0 || q >= zw) return 0.0;
                return z[static_cast<size_t>((j * zh + p) * zw + q)];
            };
            for (int64_t gq = 0; gq < G; ++gq) {
                for (int64_t j = 0; j < nk; ++j) {
                    const size_t ti = static_cast<size_t>((gq * R + c) * nk + j);
                    const int64_t ph = rp[static_cast<size_t>(sh[ti])];
                    const int64_t pv = rp[static_cast<size_t>(sv[ti])];
                    for (int64_t i = 0; i < H; ++i) {
                        for (int64_t t = 0; t < W; ++t) {
                            yh.d[o + static_cast<size_t>(i * W + t)] += zat(j, i + e, t - ph);
                            yv.d[o + static_cast<size_t>(i * W + t)] += zat(j, i - pv, t + e);
                        }
                    }
                }
                const int64_t js = id[static_cast<size_t>(gq * R + c)];
                for (int64_t i = 0; i < H; ++i) {
                    for (int64_t t = 0; t < W; ++t) {
                        ys.d[o + static_cast<size_t>(i * W + t)] += zat(js, i + e, t + e);
                    }
                }
            }
        }
    }
}

// Index of element `flat` of `out_shape` in a broadcast operand of shape `in_shape`.
size_t broadcast_index(size_t flat, const Shape& out_shape, const Shape& in_shape) {
    size_t idx = 0, stride = 1;
    for (size_t d = out_shape.size(); d-- > 0;) {
        const size_t ext = static_cast<size_t>(out_shape[d]);
        const size_t coord = flat % ext;
        flat /= ext;
        if (in_shape[d] != 1) idx += coord * stride;
        stride *= static_cast<size_t>(in_shape[d]);
    }
    return idx;
}

void run_node(const Graph& g, const Node& n, const std::vector<const Value*>& in,
              std::vector<Value>& out) {
    const Attrs& a = n.attrs;
    const Value& x = *in.at(0);
    Value& y = out.at(0);
    switch (n.op) {
        case OpKind::Conv2d:
            conv2d(g, n, x, y);
            break;
        case OpKind::DwConv2d: {
            dw_add(x, param(g, n, "weight"), g.param(n.param("weight")).shape, a.stride, a.dilation,
                   y);
            if (n.has_param("bias")) add_channel_bias(param(g, n, "bias"), y);
            break;
        }
        case OpKind::DwConv2dSparse: {
            Vec w = param(g, n, "weight");
            std::vector<int64_t> m = to_ints(g.constant_value(n, "mask"));
            for (size_t i = 0; i < w.size(); ++i) {
                if (m[i] != 0 && m[i] != 1) {
                    fail(n, "constant '" + n.constant("mask") + "' element " + std::to_string(i) +
                                " is not 0 or 1");
                }
                w[i] *= static_cast<double>(m[i]);
            }
            dw_add(x, w, g.param(n.param("weight")).shape, a.stride, a.dilation, y);
            if (n.has_param("bias")) add_channel_bias(param(g, n, "bias"), y);
            break;
        }
        case OpKind::DwConv2dMulti: {
            for (size_t b = 0; b < a.dilations.size(); ++b) {
                const std::string r = "weight" + std::to_string(b);
                dw_add(x, param(g, n, r), g.param(n.param(r)).shape, a.stride, a.dilations[b], y);
            }
            if (n.has_param("bias")) add_channel_bias(param(g, n, "bias"), y);
            break;
        }
        case OpKind::ShiftWise:
            shiftwise(g, n, x, out.at(0), out.at(1), out.at(2));
            break;
        case OpKind::Linear: {
            Vec w = param(g, n, "weight");
            Vec b = n.has_param("bias") ? param(g, n, "bias") : Vec();
            const Split si = split(n, x), so = split(n, y);
            for (int64_t o = 0; o < si.outer; ++o) {
                for (int64_t co = 0; co < so.c; ++co) {
                    for (int64_t i = 0; i < si.inner; ++i) {
                        double acc = b.empty() ? 0.0 : b[static_cast<size_t>(co)];
                        for (int64_t ci = 0; ci < si.c; ++ci) {
                            acc += w[static_cast<size_t>(co * si.c + ci)] *
                                   x.d[static_cast<size_t>((o * si.c + ci) * si.inner + i)];
                        }
                        y.d[static_cast<size_t>((o * so.c + co) * so.inner + i)] = acc;
                    }
                }
            }
            break;
        }
        case OpKind::BatchNorm: {
            Vec w = param(g, n, "weight"), b = param(g, n, "bias");
            Vec mu = param(g, n, "running_mean"), var = param(g, n, "running_var");
            const Split s = split(n, x);
            for (int64_t o = 0; o < s.outer; ++o) {
                for (int64_t c = 0; c < s.c; ++c) {
                    const double t = w[c] / std::sqrt(var[c] + a.eps);
                    for (int64_t i = 0; i < s.inner; ++i) {
                        const size_t k = static_cast<size_t>((o * s.c + c) * s.inner + i);
                        y.d[k] = (x.d[k] - mu[c]) * t + b[c];
                    }
                }
            }
            break;
        }
        case OpKind::LayerNorm: {
            Vec w = param(g, n, "weight"), b = param(g, n, "bias");
            const Split s = split(n, x);
            for (int64_t o = 0; o < s.outer; ++o) {
                for (int64_t i = 0; i < s.inner; ++i) {
                    auto at = [&](int64_t c) {
                        return static_cast<size_t>((o * s.c + c) * s.inner + i);
                    };
                    double mean = 0, var = 0;
                    for (int64_t c = 0; c < s.c; ++c) mean += x.d[at(c)];
                    mean /= static_cast<double>(s.c);
                    for (int64_t c = 0; c < s.c; ++c)
                        var += (x.d[at(c)] - mean) * (x.d[at(c)] - mean);
                    var /= static_cast<double>(s.c);
                    const double inv = 1.0 / std::sqrt(var + a.eps);
                    for (int64_t c = 0; c < s.c; ++c) {
                        y.d[at(c)] = (x.d[at(c)] - mean) * inv * w[c] + b[c];
                    }
                }
            }
            break;
        }
        case OpKind::Grn: {
            Vec gamma = param(g, n, "gamma");
            Vec beta = n.has_param("beta") ? param(g, n, "beta") : Vec(gamma.size(), 0.0);
            const Split s = split(n, x);
            const int64_t N = x.shape[0], per_n = s.outer / N;  // NHWC: H*W outer rows per image
            std::vector<double> G(static_cast<size_t>(N * s.c), 0.0);
            for (int64_t o = 0; o < s.outer; ++o) {
                for (int64_t c = 0; c < s.c; ++c) {
                    for (int64_t i = 0; i < s.inner; ++i) {
                        const double v = x.d[static_cast<size_t>((o * s.c + c) * s.inner + i)];
                        G[static_cast<size_t>((o / per_n) * s.c + c)] += v * v;
                    }
                }
            }
            std::vector<double> Nx(G.size());
            for (int64_t nn = 0; nn < N; ++nn) {
                double mean = 0;
                for (int64_t c = 0; c < s.c; ++c) {
                    G[static_cast<size_t>(nn * s.c + c)] =
                        std::sqrt(G[static_cast<size_t>(nn * s.c + c)]);
                    mean += G[static_cast<size_t>(nn * s.c + c)];
                }
                mean /= static_cast<double>(s.c);
                for (int64_t c = 0; c < s.c; ++c) {
                    Nx[static_cast<size_t>(nn * s.c + c)] =
                        G[static_cast<size_t>(nn * s.c + c)] / (mean + a.eps);
                }
            }
            for (int64_t o = 0; o < s.outer; ++o) {
                for (int64_t c = 0; c < s.c; ++c) {
                    const double f =
                        gamma[c] * Nx[static_cast<size_t>((o / per_n) * s.c + c)] + 1.0;
                    for (int64_t i = 0; i < s.inner; ++i) {
                        const size_t k = static_cast<size_t>((o * s.c + c) * s.inner + i);
                        y.d[k] = f * x.d[k] + beta[c];
                    }
                }
            }
            break;
        }
        case OpKind::Gelu:
            for (size_t i = 0; i < x.d.size(); ++i) {
                y.d[i] = 0.5 * x.d[i] * (1.0 + std::erf(x.d[i] / std::sqrt(2.0)));
            }
            break;
        case OpKind::Relu:
            for (size_t i = 0; i < x.d.size(); ++i) y.d[i] = x.d[i] > 0 ? x.d[i] : 0.0;
            break;
        case OpKind::Sigmoid:
            for (size_t i = 0; i < x.d.size(); ++i) y.d[i] = 1.0 / (1.0 + std::exp(-x.d[i]));
            break;
        case OpKind::Softmax: {
            const Split s = split(n, x);
            for (int64_t o = 0; o < s.outer; ++o) {
                for (int64_t i = 0; i < s.inner; ++i) {
                    auto at = [&](int64_t c) {
                        return static_cast<size_t>((o * s.c + c) * s.inner + i);
                    };
                    double m = x.d[at(0)], sum = 0;
                    for (int64_t c = 1; c < s.c; ++c) m = std::max(m, x.d[at(c)]);
                    for (int64_t c = 0; c < s.c; ++c) sum += std::exp(x.d[at(c)] - m);
                    for (int64_t c = 0; c < s.c; ++c) y.d[at(c)] = std::exp(x.d[at(c)] - m) / sum;
                }
            }
            break;
        }
        case OpKind::Add:
        case OpKind::Mul: {
            const Value& b = *in.at(1);
            const bool add = n.op == OpKind::Add;
            for (size_t i = 0; i < y.d.size(); ++i) {
                const double u = x.d[broadcast_index(i, y.shape, x.shape)];
                const double v = b.d[broadcast_index(i, y.shape, b.shape)];
                y.d[i] = add ? u + v : u * v;
            }
            break;
        }
        case OpKind::Scale: {
            Vec w = param(g, n, "weight");
            const Split s = split(n, x);
            for (int64_t o = 0; o < s.outer; ++o) {
                for (int64_t c = 0; c < s.c; ++c) {
                    for (int64_t i = 0; i < s.inner; ++i) {
                        const size_t k = static_cast<size_t>((o * s.c + c) * s.inner + i);
                        y.d[k] = w[c] * x.d[k];
                    }
                }
            }
            break;
        }
        case OpKind::GlobalAvgPool: {
            const int64_t NC = x.shape[0] * x.shape[1], hw = x.shape[2] * x.shape[3];
            for (int64_t i = 0; i < NC; ++i) {
                double s = 0;
                for (int64_t j = 0; j < hw; ++j) s += x.d[static_cast<size_t>(i * hw + j)];
                y.d[static_cast<size_t>(i)] = s / static_cast<double>(hw);
            }
            break;
        }
        case OpKind::ChannelSelect: {
            std::vector<int64_t> idx = to_ints(g.constant_value(n, "index"));
            const Split si = split(n, x), so = split(n, y);
            for (int64_t o = 0; o < si.outer; ++o) {
                for (int64_t c = 0; c < so.c; ++c) {
                    for (int64_t i = 0; i < si.inner; ++i) {
                        y.d[static_cast<size_t>((o * so.c + c) * so.inner + i)] =
                            x.d[static_cast<size_t>(
                                (o * si.c + idx[static_cast<size_t>(c)]) * si.inner + i)];
                    }
                }
            }
            break;
        }
        case OpKind::Concat: {
            const Split so = split(n, y);
            int64_t c0 = 0;
            for (const Value* v : in) {
                const Split si = split(n, *v);
                for (int64_t o = 0; o < si.outer; ++o) {
                    for (int64_t c = 0; c < si.c; ++c) {
                        for (int64_t i = 0; i < si.inner; ++i) {
                            y.d[static_cast<size_t>((o * so.c + c0 + c) * so.inner + i)] =
                                v->d[static_cast<size_t>((o * si.c + c) * si.inner + i)];
                        }
                    }
                }
                c0 += si.c;
            }
            break;
        }
        case OpKind::Permute: {
            const size_t r = x.shape.size();
            std::vector<size_t> in_stride(r, 1);
            for (size_t d = r - 1; d-- > 0;) {
                in_stride[d] = in_stride[d + 1] * static_cast<size_t>(x.shape[d + 1]);
            }
            for (size_t i = 0; i < y.d.size(); ++i) {
                size_t flat = i, src = 0;
                for (size_t d = r; d-- > 0;) {
                    const size_t ext = static_cast<size_t>(y.shape[d]);
                    src += (flat % ext) * in_stride[static_cast<size_t>(a.perm[d])];
                    flat /= ext;
                }
                y.d[i] = x.d[src];
            }
            break;
        }
        case OpKind::Flatten:
            y.d = x.d;
            break;
    }
}

}  // namespace

Tensor convert_float(const Tensor& t, DType dtype) {
    if ((t.dtype() != DType::F32 && t.dtype() != DType::F64) ||
        (dtype != DType::F32 && dtype != DType::F64)) {
        throw GraphError(std::string("convert_float: ") + dtype_name(t.dtype()) + " -> " +
                         dtype_name(dtype) + ", expected F32 / F64 on both sides");
    }
    Tensor r(dtype, t.shape());
    Vec v = to_vec(t, "tensor");
    if (dtype == DType::F64) {
        std::memcpy(r.data<double>(), v.data(), v.size() * sizeof(double));
    } else {
        float* p = r.data<float>();
        for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
    }
    return r;
}

ReferenceResult run_reference(const Graph& g, const std::map<std::string, Tensor>& inputs,
                              const ReferenceOptions& options) {
    const size_t nt = g.tensors.size();
    std::vector<Value> values(nt);
    std::vector<bool> ready(nt, false);
    for (const auto& kv : inputs) {
        bool known = false;
        for (int id : g.inputs) known = known || g.tensor(id).name == kv.first;
        if (!known) {
            throw GraphError("reference executor: '" + kv.first + "' is not an input of graph '" +
                             g.model + "'");
        }
    }
    for (int id : g.inputs) {
        const TensorDesc& t = g.tensor(id);
        auto it = inputs.find(t.name);
        if (it == inputs.end()) {
            throw GraphError("reference executor: graph input '" + t.name + "' " +
                             shape_to_string(t.shape) + " is not given");
        }
        if (it->second.shape() != t.shape) {
            throw GraphError("reference executor: input '" + t.name + "' has shape " +
                             shape_to_string(it->second.shape()) + ", expected " +
                             shape_to_string(t.shape));
        }
        Value& v = values[static_cast<size_t>(id)];
        v.shape = t.shape;
        v.layout = t.layout;
        v.d = to_vec(it->second, "input '" + t.name + "'");
        ready[static_cast<size_t>(id)] = true;
    }
    // Last node that reads each tensor, to free values early.
    std::vector<int> last_use(nt, -1);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        for (int id : g.nodes[i].inputs) last_use[static_cast<size_t>(id)] = static_cast<int>(i);
    }
    std::vector<bool> is_output(nt, false);
    for (int id : g.outputs) is_output[static_cast<size_t>(id)] = true;

    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& n = g.nodes[i];
        std::vector<const Value*> in;
        for (int id : n.inputs) {
            if (!ready.at(static_cast<size_t>(id))) {
                fail(n, "input tensor '" + g.tensor(id).name + "' has not been computed");
            }
            in.push_back(&values[static_cast<size_t>(id)]);
        }
        std::vector<Value> out;
        for (int id : n.outputs) out.push_back(make(g.tensor(id)));
        run_node(g, n, in, out);
        for (size_t k = 0; k < n.outputs.size(); ++k) {
            values[static_cast<size_t>(n.outputs[k])] = std::move(out[k]);
            ready[static_cast<size_t>(n.outputs[k])] = true;
        }
        if (!options.keep_all) {
            for (int id : n.inputs) {
                const size_t u = static_cast<size_t>(id);
                if (last_use[u] == static_cast<int>(i) && !is_output[u]) Vec().swap(values[u].d);
            }
        }
    }
    auto to_tensor = [](const Value& v) {
        Tensor t(DType::F64, v.shape);
        std::memcpy(t.data<double>(), v.d.data(), v.d.size() * sizeof(double));
        return t;
    };
    ReferenceResult r;
    for (int id : g.outputs) {
        r.outputs.emplace(g.tensor(id).name, to_tensor(values[static_cast<size_t>(id)]));
    }
    if (options.keep_all) {
        for (size_t id = 0; id < nt; ++id) {
            r.values.push_back(ready[id] ? to_tensor(values[id]) : Tensor());
        }
    }
    return r;
}

}  // namespace graph
}  // namespace lkc
