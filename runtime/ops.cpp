#include "runtime/ops.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>

#include "runtime/registry.h"
#include "schedules/space.h"

namespace lkc::ops {

namespace {

constexpr int kLanes = 16;

// AOT entry points, argument order as the generators declare their Inputs / Outputs.
using hb = halide_buffer_t*;
using GemmFn = int (*)(hb x, hb w, hb bias, hb scale, hb residual, int act, bool has_residual,
                       hb y);
using ConvFn = int (*)(hb x, hb w, hb kbase, hb bias, int stride, int pad_h, int pad_w,
                       int dilation, bool grouped, int act, hb y);
using AffineFn = int (*)(hb x, hb scale, hb shift, int act, hb y);
using UnaryFn = int (*)(hb x, int op, int channels, hb y);
using BinaryFn = int (*)(hb a, hb b, int op, int channels, bool a_lane0, bool b_lane0, hb y);
using SelectFn = int (*)(hb x, hb index, hb y);
using ConcatFn = int (*)(hb a, hb b, int a_channels, int b_channels, bool aligned, hb y);
using LayerNormFn = int (*)(hb x, hb w, hb b, int channels, float eps, hb y);
using SoftmaxFn = int (*)(hb x, int channels, hb y);
using GrnFn = int (*)(hb x, hb gamma, hb beta, int channels, float eps, hb y);
using PoolFn = int (*)(hb x, hb y);

int blocks_of(int64_t c) { return static_cast<int>((c + kLanes - 1) / kLanes); }

// The first compiled variant of each (kind, device), in build-list order.
const KernelInfo& only_kernel(KernelKind kind, Device d, const char* op) {
    static const std::map<std::pair<KernelKind, Device>, const KernelInfo*> table = [] {
        std::map<std::pair<KernelKind, Device>, const KernelInfo*> m;
        for (const KernelInfo& k : all_kernels()) m.emplace(std::make_pair(k.kind, k.device), &k);
        return m;
    }();
    auto it = table.find({kind, d});
    if (it == table.end()) {
        throw std::invalid_argument(std::string("ops::") + op +
                                    ": no compiled kernel for device '" + device_name(d) + "'");
    }
    return *it->second;
}

// GEMM variants per device with their register tile (tile pixels x cob blocks) and loop order.
struct GemmVariant {
    const KernelInfo* k;
    int tile, cob;
    bool co_inner;
};
const std::vector<GemmVariant>& gemm_variants(Device d) {
    static const std::map<Device, std::vector<GemmVariant>> table = [] {
        std::map<Device, std::vector<GemmVariant>> m;
        for (const KernelInfo& k : all_kernels()) {
            if (k.kind != KernelKind::OpsGemm) continue;
            const space::Params p = kernel_schedule(k);
            const bool co_inner = p.count("co_inner") && space::bool_param(p, "co_inner");
            m[k.device].push_back(
                {&k, space::int_param(p, "tile"), space::int_param(p, "cob"), co_inner});
        }
        return m;
    }();
    static const std::vector<GemmVariant> none;
    auto it = table.find(d);
    return it == table.end() ? none : it->second;
}

hb raw(const Blocked& b) { return const_cast<hb>(b.raw_buffer()); }
template <typename T, int D>
hb raw(const Halide::Runtime::Buffer<T, D>& b) {
    return const_cast<hb>(b.raw_buffer());
}

// Host / device coherence around one kernel call (HalideRuntime.h flags): a CPU kernel needs
// inputs whose newer copy is on a device back on the host, and leaves its output host-dirty; a
// GPU kernel copies host-dirty inputs itself and leaves its output device-dirty, so an output
// that is not also an input must not be host-dirty (Halide rejects buffers dirty on both sides).
void before_call(Device d, std::initializer_list<const BlockedTensor*> inputs, BlockedTensor& y) {
    bool y_is_input = false;
    for (const BlockedTensor* t : inputs)
        y_is_input = y_is_input || t->buf.raw_buffer() == y.buf.raw_buffer();
    if (d == Device::Cpu) {
        for (const BlockedTensor* t : inputs) {
            if (t->buf.device_dirty()) {
                check_halide(const_cast<Blocked&>(t->buf).copy_to_host(), "copy to host", d);
            }
        }
        if (!y_is_input && y.buf.device_dirty()) y.buf.set_device_dirty(false);
    } else if (!y_is_input) {
        y.buf.set_host_dirty(false);
    }
    install_halide_error_handler();
}

void run(int rc, const KernelInfo& k, Device d, BlockedTensor& y) {
    check_halide(rc, std::string("kernel ") + k.name, d);
    if (d == Device::Cpu) y.buf.set_host_dirty(true);
}

std::string op_prefix(const char* op) { return std::string("ops::") + op + ": "; }

void check_layout(const char* op, const char* role, const BlockedTensor& t) {
    check_blocked_layout(op_prefix(op), role, t);
}
void check_shape(const char* op, const char* role, const BlockedTensor& t, const Shape& want) {
    check_blocked_shape(op_prefix(op), role, t, want);
}
void check_channels(const char* op, const char* role, const ChannelVector& v, int c) {
    check_channel_vector(op_prefix(op), role, v, c);
}

std::vector<double> values_of(const Tensor& t, const std::string& what) {
    std::vector<double> v(static_cast<size_t>(t.numel()));
    if (t.dtype() == DType::F32) {
        for (size_t i = 0; i < v.size(); ++i) v[i] = t.data<float>()[i];
    } else if (t.dtype() == DType::F64) {
        for (size_t i = 0; i < v.size(); ++i) v[i] = t.data<double>()[i];
    } else {
        throw std::invalid_argument("tensor '" + what + "' has dtype " + dtype_name(t.dtype()) +
                                    ", expected F32 or F64");
    }
    return v;
}

ChannelVector channels_from(const std::vector<double>& v) {
    ChannelVector r;
    r.channels = static_cast<int>(v.size());
    r.buf = Halide::Runtime::Buffer<float, 2>(kLanes, blocks_of(r.channels));
    r.buf.fill(0.0f);
    for (size_t c = 0; c < v.size(); ++c)
        r.buf(static_cast<int>(c) % kLanes, static_cast<int>(c) / kLanes) =
            static_cast<float>(v[c]);
    r.buf.set_host_dirty();  // a GPU copies it on first use
    return r;
}

// The blocked buffer Halide should use as an unread input of y's shape: y itself.
const Blocked& unused_like(const BlockedTensor& y) { return y.buf; }

// GEMM variant cost: FMAs computed (pixel tiles and output-block tiles rounded up, clamped parts
// recomputed) times the load pressure: (tile + cob) loads per tile * cob FMAs; the machine
// sustains about one load per FMA before loads limit (Zen: 2 FMA, 2 zmm loads per cycle).
double gemm_cost(const GemmVariant& v, int w, int blocks) {
    const double px = double((w + v.tile - 1) / v.tile) * v.tile;
    const double ob = double((blocks + v.cob - 1) / v.cob) * v.cob;
    const double loads = double(v.tile + v.cob) / (double(v.tile) * v.cob);
    return px * ob * std::max(1.0, 2.0 * loads);
}

const KernelInfo& gemm_kernel(const BlockedTensor& x, const PackedLinear& w, Device d,
                              const std::string& name) {
    if (!name.empty()) {
        const KernelInfo* k = find_kernel(name, d);
        if (!k || k->kind != KernelKind::OpsGemm) {
            throw std::invalid_argument("ops::gemm: no GEMM kernel '" + name + "' on device '" +
                                        device_name(d) + "'");
        }
        return *k;
    }
    const std::vector<GemmVariant>& v = gemm_variants(d);
    if (v.empty()) {
        throw std::invalid_argument(std::string("ops::gemm: no compiled kernel for device '") +
                                    device_name(d) + "'");
    }
    // Loop order: output blocks inside the pixel tiles when the whole packed weight matrix fits
    // in half the L2 (<= 512 KB) and an image's input does not (>= 2 MB), so the co-outer order
    // would re-read the input from L3 once per co tile (56x56 512 -> 128: 77 -> 90+ % of peak;
    // docs/ops.md). Otherwise co tiles outside (each tile's weight panel reused from L1 / L2).
    const double weight_bytes = 4.0 * w.in_channels * w.out_channels;
    const double image_bytes = 4.0 * kLanes * x.blocks() * x.h() * x.w();
    const bool want_co_inner = weight_bytes <= 512.0 * 1024 && image_bytes >= 2.0 * 1024 * 1024;
    const int ob = blocks_of(w.out_channels);
    const GemmVariant* best = nullptr;
    for (const GemmVariant& g : v) {
        if (best && gemm_cost(g, x.w(), ob) > gemm_cost(*best, x.w(), ob)) continue;
        if (best && gemm_cost(g, x.w(), ob) == gemm_cost(*best, x.w(), ob) &&
            (g.co_inner != want_co_inner))
            continue;
        best = &g;
    }
    return *best->k;
}

// The conv variant for w on d: the one reducing the fewest input lanes that still covers the
// input channels (lanes < 16 only for a dense conv with Ci <= lanes, i.e. the image stems).
const KernelInfo& conv_kernel(const PackedConv2d& w, Device d) {
    static const std::map<Device, std::vector<std::pair<int, const KernelInfo*>>> table = [] {
        std::map<Device, std::vector<std::pair<int, const KernelInfo*>>> m;
        for (const KernelInfo& k : all_kernels()) {
            if (k.kind != KernelKind::OpsConv2d) continue;
            const space::Params p = kernel_schedule(k);
            const int lanes = p.count("lanes") ? space::int_param(p, "lanes") : kLanes;
            m[k.device].push_back({lanes, &k});
        }
        return m;
    }();
    const KernelInfo* best = nullptr;
    int best_lanes = 0;
    auto it = table.find(d);
    if (it != table.end()) {
        for (const auto& [lanes, k] : it->second) {
            const bool ok = lanes >= kLanes || (w.geom.groups == 1 && w.in_channels <= lanes);
            if (ok && (!best || lanes < best_lanes)) best = k, best_lanes = lanes;
        }
    }
    if (!best) {
        throw std::invalid_argument(std::string("ops::conv2d: no compiled kernel for device '") +
                                    device_name(d) + "'");
    }
    return *best;
}

}  // namespace

// Every blocked tensor must be 5-D with 16 lanes and the block count of its channel count.
void check_blocked_layout(const std::string& prefix, const char* role, const BlockedTensor& t) {
    if (!t.buf.data() && !t.buf.raw_buffer()->device) {
        throw std::invalid_argument(prefix + "tensor '" + role + "' has no storage");
    }
    if (t.buf.dimensions() != 5 || t.buf.dim(0).extent() != kLanes || t.channels <= 0 ||
        t.blocks() != blocks_of(t.channels)) {
        throw std::invalid_argument(prefix + "tensor '" + role + "' has " +
                                    std::to_string(t.blocks()) + " channel blocks of " +
                                    std::to_string(t.buf.dim(0).extent()) + " lanes for " +
                                    std::to_string(t.channels) + " channels, expected " +
                                    std::to_string(blocks_of(t.channels)) + " blocks of 16");
    }
}

void check_blocked_shape(const std::string& prefix, const char* role, const BlockedTensor& t,
                         const Shape& want) {
    check_blocked_layout(prefix, role, t);
    if (t.shape() != want) {
        throw std::invalid_argument(prefix + "tensor '" + role + "' has shape " +
                                    shape_to_string(t.shape()) + ", expected " +
                                    shape_to_string(want));
    }
}

void check_channel_vector(const std::string& prefix, const char* role, const ChannelVector& v,
                          int c) {
    if (v.channels != c || v.buf.dimensions() != 2 || v.buf.dim(0).extent() != kLanes ||
        v.buf.dim(1).extent() != blocks_of(c)) {
        throw std::invalid_argument(prefix + "parameter '" + role + "' has " +
                                    std::to_string(v.channels) + " channels, expected " +
                                    std::to_string(c));
    }
}

void check_conv2d_weight(const std::string& prefix, const Tensor& weight, const ConvGeometry& g) {
    const Shape& s = weight.shape();
    if (s.size() != 4 || s[0] <= 0 || s[1] <= 0 || s[2] <= 0 || s[3] <= 0) {
        throw std::invalid_argument(prefix + "weight has shape " + shape_to_string(s) +
                                    ", expected [Co, Ci/groups, kh, kw]");
    }
    if (g.groups <= 0 || s[0] % g.groups != 0 || g.stride <= 0 || g.dilation <= 0 || g.pad_h < 0 ||
        g.pad_w < 0) {
        throw std::invalid_argument(
            prefix + "weight " + shape_to_string(s) + " with groups " + std::to_string(g.groups) +
            ", stride " + std::to_string(g.stride) + ", dilation " + std::to_string(g.dilation) +
            ", pad " + std::to_string(g.pad_h) + "x" + std::to_string(g.pad_w) +
            ": expected groups dividing Co, stride and dilation >= 1, pads >= 0");
    }
}

// ---- Tensors ----------------------------------------------------------------------------------

BlockedTensor make_blocked_tensor(int n, int c, int h, int w) {
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) {
        throw std::invalid_argument("make_blocked_tensor: non-positive extent in " +
                                    shape_to_string({n, c, h, w}));
    }
    BlockedTensor t;
    t.buf = make_blocked(n, c, h, w);
    t.buf.set_host_dirty();  // the zeros are the data until a kernel writes it
    t.channels = c;
    return t;
}

BlockedTensor to_blocked_tensor(const Tensor& t) {
    if (t.dtype() != DType::F32 || (t.ndim() != 4 && t.ndim() != 2)) {
        throw std::invalid_argument("to_blocked_tensor: tensor " + shape_to_string(t.shape()) +
                                    " of dtype " + dtype_name(t.dtype()) +
                                    ", expected F32 [N, C, H, W] or [N, C]");
    }
    if (t.ndim() == 2) {
        Tensor v(DType::F32, {t.dim(0), t.dim(1), 1, 1});
        std::copy(t.data<float>(), t.data<float>() + t.numel(), v.data<float>());
        return to_blocked_tensor(v);
    }
    BlockedTensor b =
        make_blocked_tensor(int(t.dim(0)), int(t.dim(1)), int(t.dim(2)), int(t.dim(3)));
    to_blocked_into(t, b.buf);
    b.buf.set_host_dirty();
    return b;
}

void to_host(BlockedTensor& t) { check_halide(t.buf.copy_to_host(), "copy to host", Device::Cpu); }

Tensor from_blocked_tensor(BlockedTensor& t, bool nc) {
    to_host(t);
    Tensor r = from_blocked(t.buf, t.channels);
    if (!nc) return r;
    if (t.h() != 1 || t.w() != 1) {
        throw std::invalid_argument("from_blocked_tensor: [N, C] requested from " +
                                    shape_to_string(t.shape()));
    }
    Tensor v(DType::F32, {t.n(), t.channels});
    std::copy(r.data<float>(), r.data<float>() + r.numel(), v.data<float>());
    return v;
}

ChannelVector pack_channels(const Tensor& v, const std::string& what) {
    if (v.numel() <= 0) throw std::invalid_argument("parameter '" + what + "' is empty");
    return channels_from(values_of(v, what));
}

ChannelVector constant_channels(int c, float value) {
    return channels_from(std::vector<double>(static_cast<size_t>(c), value));
}

// ---- GEMM -------------------------------------------------------------------------------------

PackedLinear pack_linear(const Tensor& weight, const Tensor* bias) {
    const Shape& s = weight.shape();
    const bool ok =
        (s.size() == 2 || (s.size() == 4 && s[2] == 1 && s[3] == 1)) && s[0] > 0 && s[1] > 0;
    if (!ok) {
        throw std::invalid_argument("pack_linear: weight has shape " + shape_to_string(s) +
                                    ", expected [Co, Ci] or [Co, Ci, 1, 1]");
    }
    const int co = static_cast<int>(s[0]), ci = static_cast<int>(s[1]);
    const std::vector<double> w = values_of(weight, "weight");
    PackedLinear p;
    p.in_channels = ci;
    p.out_channels = co;
    p.weight = Halide::Runtime::Buffer<float, 3>(kLanes, kLanes * blocks_of(ci), blocks_of(co));
    p.weight.fill(0.0f);
    for (int o = 0; o < co; ++o)
        for (int i = 0; i < ci; ++i)
            p.weight(o % kLanes, i, o / kLanes) = static_cast<float>(w[size_t(o) * ci + i]);
    if (bias) {
        if (bias->numel() != co || bias->ndim() != 1) {
            throw std::invalid_argument("pack_linear: bias has shape " +
                                        shape_to_string(bias->shape()) + ", expected [" +
                                        std::to_string(co) + "]");
        }
        p.bias = pack_channels(*bias, "bias");
    } else {
        p.bias = constant_channels(co, 0.0f);
    }
    p.ones = constant_channels(co, 1.0f);
    p.weight.set_host_dirty();
    return p;
}

std::string gemm_kernel_name(const BlockedTensor& x, const PackedLinear& w, Device d) {
    return gemm_kernel(x, w, d, "").name;
}

std::vector<std::string> gemm_kernel_names(Device d) {
    std::vector<std::string> v;
    for (const GemmVariant& g : gemm_variants(d)) v.push_back(g.k->name);
    return v;
}

void gemm(const BlockedTensor& x, const PackedLinear& w, const Epilogue& e, BlockedTensor& y,
          Device d, const std::string& kernel) {
    check_layout("gemm", "x", x);
    if (x.channels != w.in_channels) {
        throw std::invalid_argument(
            "ops::gemm: tensor 'x' has shape " + shape_to_string(x.shape()) + ", expected " +
            std::to_string(w.in_channels) + " channels (weight [" + std::to_string(w.out_channels) +
            ", " + std::to_string(w.in_channels) + "])");
    }
    const Shape ys{x.n(), w.out_channels, x.h(), x.w()};
    check_shape("gemm", "y", y, ys);
    if (e.residual) check_shape("gemm", "residual", *e.residual, ys);
    if (e.scale) check_channels("gemm", "scale", *e.scale, w.out_channels);
    if (y.buf.raw_buffer() == x.buf.raw_buffer() || y.buf.data() == x.buf.data()) {
        throw std::invalid_argument("ops::gemm: output 'y' aliases input 'x'");
    }
    const KernelInfo& k = gemm_kernel(x, w, d, kernel);
    before_call(d, {&x, e.residual ? e.residual : &x}, y);
    const Blocked& res = e.residual ? e.residual->buf : unused_like(y);
    const ChannelVector& scale = e.scale ? *e.scale : w.ones;
    run(reinterpret_cast<GemmFn>(k.fn)(raw(x.buf), raw(w.weight), raw(w.bias.buf), raw(scale.buf),
                                       raw(res), static_cast<int>(e.act), e.residual != nullptr,
                                       raw(y.buf)),
        k, d, y);
}

// ---- Conv -------------------------------------------------------------------------------------

int PackedConv2d::out_h(int h) const {
    return (h + 2 * geom.pad_h - geom.dilation * (kh - 1) - 1) / geom.stride + 1;
}
int PackedConv2d::out_w(int w) const {
    return (w + 2 * geom.pad_w - geom.dilation * (kw - 1) - 1) / geom.stride + 1;
}

PackedConv2d pack_conv2d(const Tensor& weight, const Tensor* bias, const ConvGeometry& g) {
    check_conv2d_weight("pack_conv2d: ", weight, g);
    const Shape& s = weight.shape();
    PackedConv2d p;
    p.out_channels = static_cast<int>(s[0]);
    const int cig = static_cast<int>(s[1]);
    p.in_channels = cig * g.groups;
    p.kh = static_cast<int>(s[2]);
    p.kw = static_cast<int>(s[3]);
    p.geom = g;
    const int co = p.out_channels, cog = co / g.groups, cob = blocks_of(co);
    const int cib = blocks_of(p.in_channels);
    // Input-block range of each output block: the union of its lanes' groups.
    std::vector<int> lo(static_cast<size_t>(cob)), hi(static_cast<size_t>(cob));
    int kb = 0;
    for (int ob = 0; ob < cob; ++ob) {
        const int c0 = ob * kLanes, c1 = std::min(co, c0 + kLanes) - 1;
        lo[ob] = (c0 / cog) * cig / kLanes;
        hi[ob] = blocks_of((c1 / cog + 1) * cig);
        kb = std::max(kb, hi[ob] - lo[ob]);
    }
    if (g.groups == 1) kb = cib;
    p.kbase = Halide::Runtime::Buffer<int32_t, 1>(cob);
    for (int ob = 0; ob < cob; ++ob) p.kbase(ob) = g.groups == 1 ? 0 : std::min(lo[ob], cib - kb);
    p.weight = Halide::Runtime::Buffer<float, 6>(kLanes, kLanes, p.kw, p.kh, kb, cob);
    p.weight.fill(0.0f);
    const std::vector<double> w = values_of(weight, "weight");
    for (int o = 0; o < co; ++o) {
        const int ob = o / kLanes, grp = o / cog;
        for (int b = 0; b < kb; ++b)
            for (int l = 0; l < kLanes; ++l) {
                const int ci = (p.kbase(ob) + b) * kLanes + l;
                const int cl = ci - grp * cig;  // index inside the group
                if (ci >= p.in_channels || cl < 0 || cl >= cig) continue;
                for (int u = 0; u < p.kh; ++u)
                    for (int v = 0; v < p.kw; ++v)
                        p.weight(o % kLanes, l, v, u, b, ob) =
                            static_cast<float>(w[((size_t(o) * cig + cl) * p.kh + u) * p.kw + v]);
            }
    }
    p.weight.set_host_dirty();
    p.kbase.set_host_dirty();
    if (bias) {
        if (bias->numel() != co || bias->ndim() != 1) {
            throw std::invalid_argument("pack_conv2d: bias has shape " +
                                        shape_to_string(bias->shape()) + ", expected [" +
                                        std::to_string(co) + "]");
        }
        p.bias = pack_channels(*bias, "bias");
    } else {
        p.bias = constant_channels(co, 0.0f);
    }
    return p;
}

void conv2d(const BlockedTensor& x, const PackedConv2d& w, Act act, BlockedTensor& y, Device d) {
    check_layout("conv2d", "x", x);
    if (x.channels != w.in_channels) {
        throw std::invalid_argument(
            "ops::conv2d: tensor 'x' has shape " + shape_to_string(x.shape()) + ", expected " +
            std::to_string(w.in_channels) + " channels (weight [" + std::to_string(w.out_channels) +
            ", " + std::to_string(w.in_channels / w.geom.groups) + ", " + std::to_string(w.kh) +
            ", " + std::to_string(w.kw) + "], groups " + std::to_string(w.geom.groups) + ")");
    }
    const int oh = w.out_h(x.h()), ow = w.out_w(x.w());
    if (oh <= 0 || ow <= 0) {
        throw std::invalid_argument("ops::conv2d: tensor 'x' " + shape_to_string(x.shape()) +
                                    " is smaller than the " + std::to_string(w.kh) + "x" +
                                    std::to_string(w.kw) + " kernel's dilated extent");
    }
    check_shape("conv2d", "y", y, {x.n(), w.out_channels, oh, ow});
    if (y.buf.data() == x.buf.data()) {
        throw std::invalid_argument("ops::conv2d: output 'y' aliases input 'x'");
    }
    const KernelInfo& k = conv_kernel(w, d);
    before_call(d, {&x}, y);
    const ConvGeometry& g = w.geom;
    run(reinterpret_cast<ConvFn>(k.fn)(raw(x.buf), raw(w.weight), raw(w.kbase), raw(w.bias.buf),
                                       g.stride, g.pad_h, g.pad_w, g.dilation, g.groups > 1,
                                       static_cast<int>(act), raw(y.buf)),
        k, d, y);
}

// ---- Affine -----------------------------------------------------------------------------------

ChannelAffine batchnorm_affine(const Tensor& weight, const Tensor& bias, const Tensor& mean,
                               const Tensor& var, double eps) {
    const int64_t c = weight.numel();
    const std::pair<const Tensor*, const char*> parts[] = {
        {&weight, "weight"}, {&bias, "bias"}, {&mean, "running_mean"}, {&var, "running_var"}};
    for (const auto& [t, name] : parts) {
        if (t->ndim() != 1 || t->numel() != c || c <= 0) {
            throw std::invalid_argument("batchnorm_affine: " + std::string(name) + " has shape " +
                                        shape_to_string(t->shape()) + ", expected [" +
                                        std::to_string(c) + "]");
        }
    }
    const auto w = values_of(weight, "weight"), b = values_of(bias, "bias");
    const auto m = values_of(mean, "running_mean"), v = values_of(var, "running_var");
    std::vector<double> scale(static_cast<size_t>(c)), shift(static_cast<size_t>(c));
    for (size_t i = 0; i < scale.size(); ++i) {
        scale[i] = w[i] / std::sqrt(v[i] + eps);
        shift[i] = b[i] - m[i] * scale[i];
    }
    return {channels_from(scale), channels_from(shift)};
}

ChannelAffine layer_scale_affine(const Tensor& gamma) {
    ChannelVector s = pack_channels(gamma, "gamma");
    return {s, constant_channels(s.channels, 0.0f)};
}

void affine(const BlockedTensor& x, const ChannelAffine& a, Act act, BlockedTensor& y, Device d) {
    check_layout("affine", "x", x);
    check_channels("affine", "scale", a.scale, x.channels);
    check_channels("affine", "shift", a.shift, x.channels);
    check_shape("affine", "y", y, x.shape());
    const KernelInfo& k = only_kernel(KernelKind::OpsAffine, d, "affine");
    before_call(d, {&x}, y);
    run(reinterpret_cast<AffineFn>(k.fn)(raw(x.buf), raw(a.scale.buf), raw(a.shift.buf),
                                         static_cast<int>(act), raw(y.buf)),
        k, d, y);
}

// ---- Element-wise -----------------------------------------------------------------------------

void unary(Unary op, const BlockedTensor& x, BlockedTensor& y, Device d) {
    check_layout("unary", "x", x);
    check_shape("unary", "y", y, x.shape());
    const KernelInfo& k = only_kernel(KernelKind::OpsUnary, d, "unary");
    before_call(d, {&x}, y);
    run(reinterpret_cast<UnaryFn>(k.fn)(raw(x.buf), static_cast<int>(op), x.channels, raw(y.buf)),
        k, d, y);
}

void binary(Binary op, const BlockedTensor& a, const BlockedTensor& b, BlockedTensor& y, Device d) {
    check_layout("binary", "a", a);
    check_layout("binary", "b", b);
    const Shape sa = a.shape(), sb = b.shape();
    Shape out(4);
    for (size_t i = 0; i < 4; ++i) {
        if (sa[i] != sb[i] && sa[i] != 1 && sb[i] != 1) {
            throw std::invalid_argument("ops::binary: tensors 'a' " + shape_to_string(sa) +
                                        " and 'b' " + shape_to_string(sb) +
                                        " do not broadcast (each extent equal or 1)");
        }
        out[i] = std::max(sa[i], sb[i]);
    }
    check_shape("binary", "y", y, out);
    const KernelInfo& k = only_kernel(KernelKind::OpsBinary, d, "binary");
    before_call(d, {&a, &b}, y);
    const bool a0 = a.channels == 1 && y.channels > 1, b0 = b.channels == 1 && y.channels > 1;
    run(reinterpret_cast<BinaryFn>(k.fn)(raw(a.buf), raw(b.buf), static_cast<int>(op), y.channels,
                                         a0, b0, raw(y.buf)),
        k, d, y);
}

// ---- Reductions -------------------------------------------------------------------------------

LayerNormParams pack_layer_norm(const Tensor& weight, const Tensor& bias, double eps) {
    if (weight.numel() != bias.numel()) {
        throw std::invalid_argument("pack_layer_norm: bias has shape " +
                                    shape_to_string(bias.shape()) + ", expected " +
                                    std::to_string(weight.numel()) + " elements like weight " +
                                    shape_to_string(weight.shape()));
    }
    return {pack_channels(weight, "weight"), pack_channels(bias, "bias"), static_cast<float>(eps)};
}

void layer_norm(const BlockedTensor& x, const LayerNormParams& p, BlockedTensor& y, Device d) {
    check_layout("layer_norm", "x", x);
    check_channels("layer_norm", "weight", p.weight, x.channels);
    check_channels("layer_norm", "bias", p.bias, x.channels);
    check_shape("layer_norm", "y", y, x.shape());
    const KernelInfo& k = only_kernel(KernelKind::OpsLayerNorm, d, "layer_norm");
    before_call(d, {&x}, y);
    run(reinterpret_cast<LayerNormFn>(k.fn)(raw(x.buf), raw(p.weight.buf), raw(p.bias.buf),
                                            x.channels, p.eps, raw(y.buf)),
        k, d, y);
}

GrnParams pack_grn(const Tensor& gamma, const Tensor* beta, double eps) {
    GrnParams p;
    p.gamma = pack_channels(gamma, "gamma");
    if (beta) {
        if (beta->numel() != gamma.numel()) {
            throw std::invalid_argument("pack_grn: beta has shape " +
                                        shape_to_string(beta->shape()) + ", expected " +
                                        std::to_string(gamma.numel()) + " elements like gamma " +
                                        shape_to_string(gamma.shape()));
        }
        p.beta = pack_channels(*beta, "beta");
    } else {
        p.beta = constant_channels(p.gamma.channels, 0.0f);
    }
    p.eps = static_cast<float>(eps);
    return p;
}

void grn(const BlockedTensor& x, const GrnParams& p, BlockedTensor& y, Device d) {
    check_layout("grn", "x", x);
    check_channels("grn", "gamma", p.gamma, x.channels);
    check_channels("grn", "beta", p.beta, x.channels);
    check_shape("grn", "y", y, x.shape());
    const KernelInfo& k = only_kernel(KernelKind::OpsGrn, d, "grn");
    before_call(d, {&x}, y);
    run(reinterpret_cast<GrnFn>(k.fn)(raw(x.buf), raw(p.gamma.buf), raw(p.beta.buf), x.channels,
                                      p.eps, raw(y.buf)),
        k, d, y);
}

void softmax(const BlockedTensor& x, BlockedTensor& y, Device d) {
    check_layout("softmax", "x", x);
    check_shape("softmax", "y", y, x.shape());
    const KernelInfo& k = only_kernel(KernelKind::OpsSoftmax, d, "softmax");
    before_call(d, {&x}, y);
    run(reinterpret_cast<SoftmaxFn>(k.fn)(raw(x.buf), x.channels, raw(y.buf)), k, d, y);
}

void global_avg_pool(const BlockedTensor& x, BlockedTensor& y, Device d) {
    check_layout("global_avg_pool", "x", x);
    check_shape("global_avg_pool", "y", y, {x.n(), x.channels, 1, 1});
    const KernelInfo& k = only_kernel(KernelKind::OpsAvgPool, d, "global_avg_pool");
    before_call(d, {&x}, y);
    run(reinterpret_cast<PoolFn>(k.fn)(raw(x.buf), raw(y.buf)), k, d, y);
}

// ---- Channel gather / concat ------------------------------------------------------------------

ChannelIndex pack_channel_index(const Tensor& index, int in_channels) {
    if (index.ndim() != 1 || index.numel() <= 0) {
        throw std::invalid_argument("pack_channel_index: index has shape " +
                                    shape_to_string(index.shape()) + ", expected [K], K >= 1");
    }
    ChannelIndex r;
    r.in_channels = in_channels;
    r.index = Halide::Runtime::Buffer<int32_t, 1>(static_cast<int>(index.numel()));
    for (int64_t i = 0; i < index.numel(); ++i) {
        int64_t v = -1;
        switch (index.dtype()) {
            case DType::I32:
                v = index.data<int32_t>()[i];
                break;
            case DType::I64:
                v = index.data<int64_t>()[i];
                break;
            case DType::F32: {
                const float f = index.data<float>()[i];
                v = f == std::floor(f) ? static_cast<int64_t>(f) : -1;
                break;
            }
            default:
                throw std::invalid_argument(std::string("pack_channel_index: index has dtype ") +
                                            dtype_name(index.dtype()) + ", expected I32 or I64");
        }
        if (v < 0 || v >= in_channels) {
            throw std::invalid_argument("pack_channel_index: index element " + std::to_string(i) +
                                        " = " + std::to_string(v) + " is outside [0, " +
                                        std::to_string(in_channels) + ")");
        }
        r.index(static_cast<int>(i)) = static_cast<int32_t>(v);
    }
    r.index.set_host_dirty();
    return r;
}

void channel_select(const BlockedTensor& x, const ChannelIndex& idx, BlockedTensor& y, Device d) {
    check_layout("channel_select", "x", x);
    if (x.channels != idx.in_channels) {
        throw std::invalid_argument(
            "ops::channel_select: tensor 'x' has shape " + shape_to_string(x.shape()) +
            ", expected " + std::to_string(idx.in_channels) + " channels (the index table's)");
    }
    check_shape("channel_select", "y", y, {x.n(), idx.index.dim(0).extent(), x.h(), x.w()});
    if (y.buf.data() == x.buf.data()) {
        throw std::invalid_argument("ops::channel_select: output 'y' aliases input 'x'");
    }
    const KernelInfo& k = only_kernel(KernelKind::OpsSelect, d, "channel_select");
    before_call(d, {&x}, y);
    run(reinterpret_cast<SelectFn>(k.fn)(raw(x.buf), raw(idx.index), raw(y.buf)), k, d, y);
}

void concat(const BlockedTensor& a, const BlockedTensor& b, BlockedTensor& y, Device d) {
    check_layout("concat", "a", a);
    if (b.n() != a.n() || b.h() != a.h() || b.w() != a.w()) {
        check_shape("concat", "b", b, {a.n(), b.channels, a.h(), a.w()});
    }
    check_layout("concat", "b", b);
    check_shape("concat", "y", y, {a.n(), a.channels + b.channels, a.h(), a.w()});
    if (y.buf.data() == a.buf.data() || y.buf.data() == b.buf.data()) {
        throw std::invalid_argument("ops::concat: output 'y' aliases an input");
    }
    const KernelInfo& k = only_kernel(KernelKind::OpsConcat, d, "concat");
    before_call(d, {&a, &b}, y);
    run(reinterpret_cast<ConcatFn>(k.fn)(raw(a.buf), raw(b.buf), a.channels, b.channels,
                                         a.channels % kLanes == 0, raw(y.buf)),
        k, d, y);
}

}  // namespace lkc::ops
