#include "runtime/train_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <stdexcept>

#include "HalideRuntime.h"
#include "HalideRuntimeCuda.h"
#include "HalideRuntimeOpenCL.h"
#include "runtime/registry.h"
#include "schedules/space.h"

namespace lkc::train_ops {

namespace {

constexpr int kLanes = 16;

// AOT entry points, argument order as the generators declare their Inputs / Outputs.
using hb = halide_buffer_t*;
using WgradFn = int (*)(hb x, hb dy, hb prior, bool accumulate, hb dw);
using TransposeFn = int (*)(hb w, hb wt);
using Im2colFn = int (*)(hb x, int kh, int kw, int stride, int pad_h, int pad_w, int dilation,
                         int channels, int cstride, bool aligned, hb cols);
using Col2imFn = int (*)(hb dcols, int kh, int kw, int stride, int pad_h, int pad_w, int dilation,
                         hb dx);
using UnpackFn = int (*)(hb dcw, hb prior, int groups, int cstride, bool accumulate, hb dw);
using UnaryBwdFn = int (*)(hb v, hb dy, int op, int channels, hb dx);
using BinaryBwdFn = int (*)(hb dy, hb other, int op, int rw, int rh, int rn, bool lane_sum,
                            bool other_lane0, int channels, hb out);
using ReduceFn = int (*)(hb a, hb b, hb shift, hb prior_s, hb prior_p, bool has_b, bool accumulate,
                         hb sum, hb prod);
using PoolBwdFn = int (*)(hb dy, hb dx);
using SelectBwdFn = int (*)(hb dy, hb table, hb dx);
using SliceFn = int (*)(hb x, int offset, int channels, hb y);
using BnFwdFn = int (*)(hb x, hb gamma, hb beta, hb rm, hb rv, float momentum, float eps,
                        int channels, hb y, hb mean, hb rstd, hb rm_out, hb rv_out);
using BnBwdFn = int (*)(hb x, hb dy, hb gamma, hb mean, hb rstd, hb prior_g, hb prior_b,
                        bool accumulate, hb dx, hb dgamma, hb dbeta);
using NormBwdFn = int (*)(hb x, hb dy, hb w, hb prior_w, hb prior_b, int channels, float eps,
                          bool accumulate, hb dx, hb dw, hb db);
using XentFn = int (*)(hb logits, hb labels, int channels, float smoothing, hb dlogits, hb loss,
                       hb correct);
using AdamwFn = int (*)(hb p, hb g, hb m, hb v, float step_size, float inv_sqrt_bc2, float beta1,
                        float beta2, float eps, float decay, float grad_scale, hb p_out, hb m_out,
                        hb v_out);
using SgdFn = int (*)(hb p, hb g, hb buf, float lr, float momentum, float dampening, float wd,
                      float grad_scale, bool nesterov, bool first_step, hb p_out, hb buf_out);
using EmaFn = int (*)(hb ema, hb w, float decay, hb out);
using AxpbyFn = int (*)(hb x, hb y, float a, float b, hb out);
using MaskFn = int (*)(hb w, hb mask, hb out);

int blocks_of(int64_t c) { return static_cast<int>((c + kLanes - 1) / kLanes); }

std::string prefix(const char* op) { return std::string("train_ops::") + op + ": "; }

// The first compiled variant of each (kind, device), in build-list order.
const KernelInfo& only_kernel(KernelKind kind, Device d, const char* op) {
    static const std::map<std::pair<KernelKind, Device>, const KernelInfo*> table = [] {
        std::map<std::pair<KernelKind, Device>, const KernelInfo*> m;
        for (const KernelInfo& k : all_kernels()) m.emplace(std::make_pair(k.kind, k.device), &k);
        return m;
    }();
    auto it = table.find({kind, d});
    if (it == table.end()) {
        throw std::invalid_argument(prefix(op) + "no compiled kernel for device '" +
                                    device_name(d) + "'");
    }
    return *it->second;
}

hb raw(const Blocked& b) { return const_cast<hb>(b.raw_buffer()); }
template <typename T, int D>
hb raw(const Halide::Runtime::Buffer<T, D>& b) {
    return const_cast<hb>(b.raw_buffer());
}
hb raw(const ChannelVector& v) { return raw(v.buf); }

// Host / device coherence around one kernel call (see runtime/ops.cpp): a CPU kernel needs the
// host copy of every input; outputs that are not also inputs are fully overwritten, so their
// stale copy on the other side is dropped; CPU outputs become host-dirty.
void before_call(Device d, std::initializer_list<hb> inputs, std::initializer_list<hb> outputs) {
    install_halide_error_handler();
    for (hb y : outputs) {
        const bool is_input = std::find(inputs.begin(), inputs.end(), y) != inputs.end();
        if (is_input) continue;
        if (d == Device::Cpu) {
            y->set_device_dirty(false);
        } else {
            y->set_host_dirty(false);
        }
    }
    if (d == Device::Cpu) {
        for (hb x : inputs) {
            if (x->device_dirty()) check_halide(halide_copy_to_host(nullptr, x), "copy to host", d);
        }
    }
}

void after_call(int rc, const KernelInfo& k, Device d, std::initializer_list<hb> outputs) {
    check_halide(rc, std::string("kernel ") + k.name, d);
    if (d == Device::Cpu) {
        for (hb y : outputs) y->set_host_dirty(true);
    }
}

void check_layout(const char* op, const char* role, const BlockedTensor& t) {
    ops::check_blocked_layout(prefix(op), role, t);
}
void check_shape(const char* op, const char* role, const BlockedTensor& t, const Shape& want) {
    ops::check_blocked_shape(prefix(op), role, t, want);
}
void check_channels(const char* op, const char* role, const ChannelVector& v, int c) {
    ops::check_channel_vector(prefix(op), role, v, c);
}

template <typename T, int D>
Shape dims_of(const Halide::Runtime::Buffer<T, D>& b) {
    Shape s;
    for (int i = 0; i < b.dimensions(); ++i) s.push_back(b.dim(i).extent());
    return s;
}

template <typename T, int D>
void check_buffer(const char* op, const char* role, const Halide::Runtime::Buffer<T, D>& b,
                  const Shape& want, const char* layout) {
    if (!b.data() && !b.raw_buffer()->device) {
        throw std::invalid_argument(prefix(op) + "buffer '" + role + "' has no storage");
    }
    if (dims_of(b) != want) {
        throw std::invalid_argument(prefix(op) + "buffer '" + role + "' has Halide extents " +
                                    shape_to_string(dims_of(b)) + ", expected " +
                                    shape_to_string(want) + " (" + layout + ")");
    }
}

ChannelVector zeros(int c) { return ops::constant_channels(c, 0.0f); }

// ---- GEMM weight-gradient variants ------------------------------------------------------

struct WgradVariant {
    const KernelInfo* k;
    int tile, cob;
};
const std::vector<WgradVariant>& wgrad_variants(Device d) {
    static const std::map<Device, std::vector<WgradVariant>> table = [] {
        std::map<Device, std::vector<WgradVariant>> m;
        for (const KernelInfo& k : all_kernels()) {
            if (k.kind != KernelKind::TrainGemmWgrad) continue;
            const space::Params p = kernel_schedule(k);
            m[k.device].push_back({&k, space::int_param(p, "tile"), space::int_param(p, "cob")});
        }
        return m;
    }();
    static const std::vector<WgradVariant> none;
    auto it = table.find(d);
    return it == table.end() ? none : it->second;
}

// Cost of a variant: output blocks rounded up to whole cob tiles (the clamped blocks of the
// last tile are recomputed) times the loads per FMA ((cob + tile) per tile * cob FMAs).
double wgrad_cost(const WgradVariant& v, int out_blocks) {
    const double ob = double((out_blocks + v.cob - 1) / v.cob) * v.cob;
    const double loads = double(v.tile + v.cob) / (double(v.tile) * v.cob);
    return ob * std::max(1.0, 2.0 * loads);
}

const KernelInfo& wgrad_kernel(int out_blocks, Device d, const std::string& name) {
    if (!name.empty()) {
        const KernelInfo* k = find_kernel(name, d);
        if (!k || k->kind != KernelKind::TrainGemmWgrad) {
            throw std::invalid_argument(
                "train_ops::linear_backward_weight: no weight-gradient "
                "kernel '" +
                name + "' on device '" + device_name(d) + "'");
        }
        return *k;
    }
    const std::vector<WgradVariant>& v = wgrad_variants(d);
    if (v.empty()) {
        throw std::invalid_argument(std::string("train_ops::linear_backward_weight: no compiled "
                                                "kernel for device '") +
                                    device_name(d) + "'");
    }
    const WgradVariant* best = &v[0];
    for (const WgradVariant& g : v)
        if (wgrad_cost(g, out_blocks) < wgrad_cost(*best, out_blocks)) best = &g;
    return *best->k;
}

// The GEMM weight gradient of x (K channels) and dy (Co channels) into a packed (16, 16
// ceil(K/16), ceil(Co/16)) buffer.
void run_wgrad(const char* op, const BlockedTensor& x, const BlockedTensor& dy,
               Halide::Runtime::Buffer<float, 3>& dw, Device d, bool accumulate,
               const std::string& kernel) {
    const KernelInfo& k = wgrad_kernel(dy.blocks(), d, kernel);
    (void)op;
    before_call(d, {raw(x.buf), raw(dy.buf), raw(dw)}, {raw(dw)});
    after_call(
        reinterpret_cast<WgradFn>(k.fn)(raw(x.buf), raw(dy.buf), raw(dw), accumulate, raw(dw)), k,
        d, {raw(dw)});
}

// Per-channel sums of a (and of a * (b - shift) when b is given) over N, H, W.
void channel_sums(const char* op, const BlockedTensor& a, const BlockedTensor* b,
                  const ChannelVector* shift, ChannelVector* sum, ChannelVector* prod, Device d,
                  bool accumulate, const char* sum_role = "dbias",
                  const char* prod_role = "dscale") {
    const int c = a.channels;
    ChannelVector scratch_s, scratch_p, scratch_shift;
    if (sum) {
        check_channels(op, sum_role, *sum, c);
    } else {
        scratch_s = zeros(c);
        sum = &scratch_s;
    }
    if (prod) {
        check_channels(op, prod_role, *prod, c);
    } else {
        scratch_p = zeros(c);
        prod = &scratch_p;
    }
    if (!shift) {
        scratch_shift = zeros(c);
        shift = &scratch_shift;
    }
    const BlockedTensor& bb = b ? *b : a;
    const KernelInfo& k = only_kernel(KernelKind::TrainChannelReduce, d, op);
    before_call(d, {raw(a.buf), raw(bb.buf), raw(*shift), raw(*sum), raw(*prod)},
                {raw(*sum), raw(*prod)});
    after_call(reinterpret_cast<ReduceFn>(k.fn)(raw(a.buf), raw(bb.buf), raw(*shift), raw(*sum),
                                                raw(*prod), b != nullptr, accumulate, raw(*sum),
                                                raw(*prod)),
               k, d, {raw(*sum), raw(*prod)});
}

// ---- Flat views -------------------------------------------------------------------------

// A 1-D view of a dense buffer sharing its host pointer, device allocation and flags; commit()
// writes the flags and device handle (a GPU kernel may have allocated one) back.
struct FlatView {
    halide_buffer_t b{};
    halide_dimension_t dim{};
    hb orig = nullptr;
    FlatView(const char* op, const char* role, hb o) : orig(o) {
        if (!o || (!o->host && !o->device)) {
            throw std::invalid_argument(prefix(op) + "buffer '" + role + "' has no storage");
        }
        if (o->type.code != halide_type_float || o->type.bits != 32 || o->type.lanes != 1) {
            throw std::invalid_argument(prefix(op) + "buffer '" + role + "' is not f32");
        }
        // Dense: strides are the running products of the extents (any dimension order).
        int64_t n = 1;
        std::vector<std::pair<int64_t, int64_t>> sd;  // (stride, extent)
        for (int i = 0; i < o->dimensions; ++i) sd.push_back({o->dim[i].stride, o->dim[i].extent});
        std::sort(sd.begin(), sd.end());
        for (const auto& [stride, extent] : sd) {
            if (extent != 1 && stride != n) {
                throw std::invalid_argument(prefix(op) + "buffer '" + role +
                                            "' is not dense (stride " + std::to_string(stride) +
                                            ", expected " + std::to_string(n) + ")");
            }
            n *= extent;
        }
        b = *o;
        b.dimensions = 1;
        dim.min = 0;
        dim.extent = static_cast<int32_t>(n);
        dim.stride = 1;
        b.dim = &dim;
        if (o->host && o->dimensions > 0) {
            // host points at the element with all coordinates at their min: unchanged.
        }
    }
    int64_t numel() const { return dim.extent; }
    void commit() {
        orig->flags = b.flags;
        orig->device = b.device;
        orig->device_interface = b.device_interface;
    }
};

void check_same_size(const char* op, const char* role, const FlatView& v, const FlatView& ref,
                     const char* ref_role) {
    if (v.numel() != ref.numel()) {
        throw std::invalid_argument(prefix(op) + "buffer '" + role + "' has " +
                                    std::to_string(v.numel()) + " elements, expected " +
                                    std::to_string(ref.numel()) + " (like '" + ref_role + "')");
    }
}

}  // namespace

// ---- Small helpers --------------------------------------------------------------------------

ChannelVector make_channel_grad(int channels) {
    if (channels <= 0) {
        throw std::invalid_argument("train_ops::make_channel_grad: " + std::to_string(channels) +
                                    " channels");
    }
    return zeros(channels);
}

std::vector<float> channel_values(const ChannelVector& v) {
    if (v.buf.device_dirty()) check_halide(v.buf.copy_to_host(), "copy to host", Device::Cpu);
    std::vector<float> r(static_cast<size_t>(v.channels));
    for (int c = 0; c < v.channels; ++c) r[size_t(c)] = v.buf(c % kLanes, c / kLanes);
    return r;
}

int64_t FlatRef::numel() const {
    int64_t n = 1;
    for (int i = 0; raw && i < raw->dimensions; ++i) n *= raw->dim[i].extent;
    return raw ? n : 0;
}

// ---- GEMM backward --------------------------------------------------------------------------

PackedLinear pack_linear_transposed(const Tensor& weight) {
    const Shape& s = weight.shape();
    const bool ok =
        (s.size() == 2 || (s.size() == 4 && s[2] == 1 && s[3] == 1)) && s[0] > 0 && s[1] > 0;
    if (!ok || weight.dtype() != DType::F32) {
        throw std::invalid_argument("train_ops::pack_linear_transposed: weight has shape " +
                                    shape_to_string(s) + " and dtype " +
                                    dtype_name(weight.dtype()) +
                                    ", expected F32 [Co, Ci] or [Co, Ci, 1, 1]");
    }
    const int64_t co = s[0], ci = s[1];
    Tensor t(DType::F32, {ci, co});
    for (int64_t o = 0; o < co; ++o)
        for (int64_t i = 0; i < ci; ++i)
            t.data<float>()[i * co + o] = weight.data<float>()[o * ci + i];
    return ops::pack_linear(t, nullptr);
}

PackedLinear make_linear_transposed(const PackedLinear& w) {
    PackedLinear t;
    t.in_channels = w.out_channels;
    t.out_channels = w.in_channels;
    t.weight = Halide::Runtime::Buffer<float, 3>(kLanes, kLanes * blocks_of(t.in_channels),
                                                 blocks_of(t.out_channels));
    t.weight.fill(0.0f);
    t.weight.set_host_dirty();
    t.bias = zeros(t.out_channels);
    t.ones = ops::constant_channels(t.out_channels, 1.0f);
    return t;
}

void transpose_linear(const PackedLinear& w, PackedLinear& wt, Device d) {
    const char* op = "transpose_linear";
    check_buffer(op, "w.weight", w.weight,
                 {kLanes, kLanes * blocks_of(w.in_channels), blocks_of(w.out_channels)},
                 "PackedLinear (16, 16 ceil(Ci/16), ceil(Co/16))");
    if (wt.in_channels != w.out_channels || wt.out_channels != w.in_channels) {
        throw std::invalid_argument(prefix(op) + "'wt' is [" + std::to_string(wt.out_channels) +
                                    ", " + std::to_string(wt.in_channels) + "], expected [" +
                                    std::to_string(w.in_channels) + ", " +
                                    std::to_string(w.out_channels) + "] (make_linear_transposed)");
    }
    check_buffer(op, "wt.weight", wt.weight,
                 {kLanes, kLanes * blocks_of(w.out_channels), blocks_of(w.in_channels)},
                 "PackedLinear (16, 16 ceil(Co/16), ceil(Ci/16))");
    const KernelInfo& k = only_kernel(KernelKind::TrainLinearTranspose, d, op);
    before_call(d, {raw(w.weight)}, {raw(wt.weight)});
    after_call(reinterpret_cast<TransposeFn>(k.fn)(raw(w.weight), raw(wt.weight)), k, d,
               {raw(wt.weight)});
}

void linear_backward_data(const BlockedTensor& dy, const PackedLinear& wt, BlockedTensor& dx,
                          Device d, bool accumulate, const std::string& kernel) {
    check_layout("linear_backward_data", "dy", dy);
    if (dy.channels != wt.in_channels) {
        throw std::invalid_argument("train_ops::linear_backward_data: tensor 'dy' has shape " +
                                    shape_to_string(dy.shape()) + ", expected " +
                                    std::to_string(wt.in_channels) +
                                    " channels (the layer's output channels)");
    }
    check_shape("linear_backward_data", "dx", dx, {dy.n(), wt.out_channels, dy.h(), dy.w()});
    ops::Epilogue e;
    if (accumulate) e.residual = &dx;
    ops::gemm(dy, wt, e, dx, d, kernel);
}

Halide::Runtime::Buffer<float, 3> make_linear_weight_grad(int in_channels, int out_channels) {
    if (in_channels <= 0 || out_channels <= 0) {
        throw std::invalid_argument("train_ops::make_linear_weight_grad: [" +
                                    std::to_string(out_channels) + ", " +
                                    std::to_string(in_channels) + "]");
    }
    Halide::Runtime::Buffer<float, 3> b(kLanes, kLanes * blocks_of(in_channels),
                                        blocks_of(out_channels));
    b.fill(0.0f);
    b.set_host_dirty();
    return b;
}

std::string linear_wgrad_kernel_name(const BlockedTensor& x, const BlockedTensor& dy, Device d) {
    (void)x;
    return wgrad_kernel(dy.blocks(), d, "").name;
}

std::vector<std::string> linear_wgrad_kernel_names(Device d) {
    std::vector<std::string> v;
    for (const WgradVariant& g : wgrad_variants(d)) v.push_back(g.k->name);
    return v;
}

void linear_backward_weight(const BlockedTensor& x, const BlockedTensor& dy,
                            Halide::Runtime::Buffer<float, 3>& dweight, ChannelVector* dbias,
                            Device d, bool accumulate, const std::string& kernel) {
    const char* op = "linear_backward_weight";
    check_layout(op, "x", x);
    check_shape(op, "dy", dy, {x.n(), dy.channels, x.h(), x.w()});
    check_buffer(op, "dweight", dweight, {kLanes, kLanes * x.blocks(), dy.blocks()},
                 "PackedLinear (16, 16 ceil(Ci/16), ceil(Co/16))");
    run_wgrad(op, x, dy, dweight, d, accumulate, kernel);
    if (dbias) channel_sums(op, dy, nullptr, nullptr, dbias, nullptr, d, accumulate);
}

Tensor unpack_linear(const Halide::Runtime::Buffer<float, 3>& packed, int in_channels,
                     int out_channels) {
    check_buffer("unpack_linear", "packed", packed,
                 {kLanes, kLanes * blocks_of(in_channels), blocks_of(out_channels)},
                 "PackedLinear (16, 16 ceil(Ci/16), ceil(Co/16))");
    auto& p = const_cast<Halide::Runtime::Buffer<float, 3>&>(packed);
    if (p.device_dirty()) check_halide(p.copy_to_host(), "copy to host", Device::Cpu);
    Tensor t(DType::F32, {out_channels, in_channels});
    for (int o = 0; o < out_channels; ++o)
        for (int i = 0; i < in_channels; ++i)
            t.data<float>()[size_t(o) * in_channels + i] = p(o % kLanes, i, o / kLanes);
    return t;
}

// ---- Dense conv backward ----------------------------------------------------------------------

int PackedConv2dBackward::out_h(int h) const {
    return (h + 2 * geom.pad_h - geom.dilation * (kh - 1) - 1) / geom.stride + 1;
}
int PackedConv2dBackward::out_w(int w) const {
    return (w + 2 * geom.pad_w - geom.dilation * (kw - 1) - 1) / geom.stride + 1;
}

PackedConv2dBackward pack_conv2d_backward(const Tensor& weight, const ops::ConvGeometry& g) {
    const std::string name = "train_ops::pack_conv2d_backward: ";
    if (weight.dtype() != DType::F32) {
        throw std::invalid_argument(name + "weight has dtype " + dtype_name(weight.dtype()) +
                                    ", expected F32");
    }
    ops::check_conv2d_weight(name, weight, g);
    const Shape& s = weight.shape();
    PackedConv2dBackward p;
    p.out_channels = static_cast<int>(s[0]);
    const int cig = static_cast<int>(s[1]);
    p.in_channels = cig * g.groups;
    p.kh = static_cast<int>(s[2]);
    p.kw = static_cast<int>(s[3]);
    p.geom = g;
    const int taps = p.kh * p.kw, co = p.out_channels, cog = co / g.groups;
    const int ci16 = kLanes * blocks_of(p.in_channels);
    // W^T over the aligned columns: row k = tap * ci16 + ci, column co.
    const int64_t ka = int64_t(taps) * ci16;
    Tensor wt(DType::F32, {ka, co});
    std::fill(wt.data<float>(), wt.data<float>() + wt.numel(), 0.0f);
    const float* w = weight.data<float>();
    for (int o = 0; o < co; ++o) {
        const int grp = o / cog;
        for (int cl = 0; cl < cig; ++cl)
            for (int u = 0; u < p.kh; ++u)
                for (int v = 0; v < p.kw; ++v) {
                    const int64_t k = int64_t(u * p.kw + v) * ci16 + grp * cig + cl;
                    wt.data<float>()[k * co + o] =
                        w[((size_t(o) * cig + cl) * p.kh + u) * p.kw + v];
                }
    }
    p.data_weight = ops::pack_linear(wt, nullptr);
    // Compact columns for few input channels when they halve the columns (the stems).
    const int compact = kLanes * blocks_of(int64_t(taps) * p.in_channels);
    if (2 * int64_t(compact) <= ka) {
        p.wgrad_cstride = p.in_channels;
        p.wgrad_columns = taps * p.in_channels;
    } else {
        p.wgrad_cstride = ci16;
        p.wgrad_columns = static_cast<int>(ka);
    }
    return p;
}

Halide::Runtime::Buffer<float, 4> make_conv2d_weight_grad(const PackedConv2dBackward& w) {
    Halide::Runtime::Buffer<float, 4> b(w.kw, w.kh, w.in_channels / w.geom.groups, w.out_channels);
    b.fill(0.0f);
    b.set_host_dirty();
    return b;
}

Tensor conv2d_weight_grad_tensor(const Halide::Runtime::Buffer<float, 4>& dweight) {
    auto& b = const_cast<Halide::Runtime::Buffer<float, 4>&>(dweight);
    if (b.device_dirty()) check_halide(b.copy_to_host(), "copy to host", Device::Cpu);
    Tensor t(DType::F32,
             {b.dim(3).extent(), b.dim(2).extent(), b.dim(1).extent(), b.dim(0).extent()});
    float* o = t.data<float>();
    b.for_each_element([&](int v, int u, int cl, int co) {
        o[((size_t(co) * b.dim(2).extent() + cl) * b.dim(1).extent() + u) * b.dim(0).extent() + v] =
            b(v, u, cl, co);
    });
    return t;
}

namespace {
// A workspace tensor of exactly this shape (reallocated when the shape changes).
BlockedTensor& workspace(BlockedTensor& t, int n, int c, int h, int w) {
    if (!t.buf.data() || t.shape() != Shape{n, c, h, w}) t = ops::make_blocked_tensor(n, c, h, w);
    return t;
}
}  // namespace

void conv2d_backward(const BlockedTensor& x, const BlockedTensor& dy, const PackedConv2dBackward& w,
                     BlockedTensor* dx, Halide::Runtime::Buffer<float, 4>* dweight,
                     ChannelVector* dbias, Device d, bool accumulate) {
    const char* op = "conv2d_backward";
    check_layout(op, "x", x);
    if (x.channels != w.in_channels) {
        throw std::invalid_argument(prefix(op) + "tensor 'x' has shape " +
                                    shape_to_string(x.shape()) + ", expected " +
                                    std::to_string(w.in_channels) + " channels");
    }
    const int oh = w.out_h(x.h()), ow = w.out_w(x.w());
    if (oh <= 0 || ow <= 0) {
        throw std::invalid_argument(prefix(op) + "tensor 'x' " + shape_to_string(x.shape()) +
                                    " is smaller than the kernel's dilated extent");
    }
    check_shape(op, "dy", dy, {x.n(), w.out_channels, oh, ow});
    const ops::ConvGeometry& g = w.geom;
    if (dx) {
        check_shape(op, "dx", *dx, x.shape());
        const int ka = w.kh * w.kw * kLanes * x.blocks();
        BlockedTensor& dcols = workspace(w.dcols, x.n(), ka, oh, ow);
        ops::gemm(dy, w.data_weight, {}, dcols, d);
        const KernelInfo& k = only_kernel(KernelKind::TrainCol2im, d, op);
        before_call(d, {raw(dcols.buf)}, {raw(dx->buf)});
        after_call(reinterpret_cast<Col2imFn>(k.fn)(raw(dcols.buf), w.kh, w.kw, g.stride, g.pad_h,
                                                    g.pad_w, g.dilation, raw(dx->buf)),
                   k, d, {raw(dx->buf)});
    }
    if (dweight) {
        check_buffer(op, "dweight", *dweight,
                     {w.kw, w.kh, w.in_channels / g.groups, w.out_channels},
                     "(kw, kh, Ci/groups, Co) = PyTorch [Co, Ci/groups, kh, kw]");
        BlockedTensor& cols = workspace(w.cols, x.n(), w.wgrad_columns, oh, ow);
        const bool aligned = w.wgrad_cstride % kLanes == 0;
        const KernelInfo& ki = only_kernel(KernelKind::TrainIm2col, d, op);
        before_call(d, {raw(x.buf)}, {raw(cols.buf)});
        after_call(reinterpret_cast<Im2colFn>(ki.fn)(raw(x.buf), w.kh, w.kw, g.stride, g.pad_h,
                                                     g.pad_w, g.dilation, w.in_channels,
                                                     w.wgrad_cstride, aligned, raw(cols.buf)),
                   ki, d, {raw(cols.buf)});
        auto& dcw = w.dcols_weight;
        const Shape want{kLanes, kLanes * cols.blocks(), dy.blocks()};
        if (!dcw.data() || dims_of(dcw) != want) {
            dcw = Halide::Runtime::Buffer<float, 3>(kLanes, kLanes * cols.blocks(), dy.blocks());
        }
        run_wgrad(op, cols, dy, dcw, d, false, "");
        const KernelInfo& ku = only_kernel(KernelKind::TrainConvWgradUnpack, d, op);
        before_call(d, {raw(dcw), raw(*dweight)}, {raw(*dweight)});
        after_call(reinterpret_cast<UnpackFn>(ku.fn)(raw(dcw), raw(*dweight), g.groups,
                                                     w.wgrad_cstride, accumulate, raw(*dweight)),
                   ku, d, {raw(*dweight)});
    }
    if (dbias) channel_sums(op, dy, nullptr, nullptr, dbias, nullptr, d, accumulate);
}

// ---- Element-wise backward --------------------------------------------------------------------

void unary_backward(UnaryGrad op, const BlockedTensor& v, const BlockedTensor& dy,
                    BlockedTensor& dx, Device d) {
    const char* name = "unary_backward";
    check_layout(name, "v", v);
    check_shape(name, "dy", dy, v.shape());
    check_shape(name, "dx", dx, v.shape());
    const KernelInfo& k = only_kernel(KernelKind::TrainUnaryBwd, d, name);
    before_call(d, {raw(v.buf), raw(dy.buf)}, {raw(dx.buf)});
    after_call(reinterpret_cast<UnaryBwdFn>(k.fn)(raw(v.buf), raw(dy.buf), static_cast<int>(op),
                                                  v.channels, raw(dx.buf)),
               k, d, {raw(dx.buf)});
}

void binary_backward(ops::Binary op, const BlockedTensor& a, const BlockedTensor& b,
                     const BlockedTensor& dy, BlockedTensor* da, BlockedTensor* db, Device d) {
    const char* name = "binary_backward";
    check_layout(name, "a", a);
    check_layout(name, "b", b);
    const Shape sa = a.shape(), sb = b.shape();
    Shape out(4);
    for (size_t i = 0; i < 4; ++i) {
        if (sa[i] != sb[i] && sa[i] != 1 && sb[i] != 1) {
            throw std::invalid_argument(prefix(name) + "tensors 'a' " + shape_to_string(sa) +
                                        " and 'b' " + shape_to_string(sb) +
                                        " do not broadcast (each extent equal or 1)");
        }
        out[i] = std::max(sa[i], sb[i]);
    }
    check_shape(name, "dy", dy, out);
    const KernelInfo& k = only_kernel(KernelKind::TrainBinaryBwd, d, name);
    auto one = [&](const BlockedTensor& self, const BlockedTensor& other, BlockedTensor* g,
                   const char* role) {
        if (!g) return;
        check_shape(name, role, *g, self.shape());
        if (g->buf.data() == dy.buf.data() && self.shape() != dy.shape()) {
            throw std::invalid_argument(prefix(name) + "output '" + role + "' aliases 'dy'");
        }
        const int rw = dy.w() / self.w(), rh = dy.h() / self.h(), rn = dy.n() / self.n();
        const bool lane_sum = self.channels == 1 && dy.channels > 1;
        const bool other_lane0 = other.channels == 1 && dy.channels > 1;
        before_call(d, {raw(dy.buf), raw(other.buf)}, {raw(g->buf)});
        after_call(reinterpret_cast<BinaryBwdFn>(k.fn)(raw(dy.buf), raw(other.buf),
                                                       static_cast<int>(op), rw, rh, rn, lane_sum,
                                                       other_lane0, dy.channels, raw(g->buf)),
                   k, d, {raw(g->buf)});
    };
    one(a, b, da, "da");
    one(b, a, db, "db");
}

void affine_backward(const BlockedTensor& x, const ChannelVector& scale, const BlockedTensor& dy,
                     BlockedTensor* dx, ChannelVector* dscale, ChannelVector* dshift, Device d,
                     bool accumulate) {
    const char* name = "affine_backward";
    check_layout(name, "x", x);
    check_channels(name, "scale", scale, x.channels);
    check_shape(name, "dy", dy, x.shape());
    if (dx) {
        check_shape(name, "dx", *dx, x.shape());
        ops::ChannelAffine a{scale, zeros(x.channels)};
        ops::affine(dy, a, ops::Act::None, *dx, d);
    }
    if (dscale || dshift) {
        if (dscale) check_channels(name, "dscale", *dscale, x.channels);
        if (dshift) check_channels(name, "dshift", *dshift, x.channels);
        channel_sums(name, dy, dscale ? &x : nullptr, nullptr, dshift, dscale, d, accumulate,
                     "dshift", "dscale");
    }
}

void bias_backward(const BlockedTensor& dy, ChannelVector& dbias, Device d, bool accumulate) {
    check_layout("bias_backward", "dy", dy);
    channel_sums("bias_backward", dy, nullptr, nullptr, &dbias, nullptr, d, accumulate);
}

// ---- BatchNorm ---------------------------------------------------------------------------------

BatchNormTrain pack_batchnorm_train(const Tensor& weight, const Tensor& bias,
                                    const Tensor& running_mean, const Tensor& running_var,
                                    double eps, double momentum) {
    const int64_t c = weight.numel();
    const std::pair<const Tensor*, const char*> parts[] = {{&weight, "weight"},
                                                           {&bias, "bias"},
                                                           {&running_mean, "running_mean"},
                                                           {&running_var, "running_var"}};
    for (const auto& [t, name] : parts) {
        if (t->ndim() != 1 || t->numel() != c || c <= 0) {
            throw std::invalid_argument("train_ops::pack_batchnorm_train: " + std::string(name) +
                                        " has shape " + shape_to_string(t->shape()) +
                                        ", expected [" + std::to_string(c) + "]");
        }
    }
    BatchNormTrain bn;
    bn.gamma = ops::pack_channels(weight, "weight");
    bn.beta = ops::pack_channels(bias, "bias");
    bn.running_mean = ops::pack_channels(running_mean, "running_mean");
    bn.running_var = ops::pack_channels(running_var, "running_var");
    bn.eps = static_cast<float>(eps);
    bn.momentum = static_cast<float>(momentum);
    return bn;
}

BatchNormSaved make_batchnorm_saved(int channels) {
    return {make_channel_grad(channels), make_channel_grad(channels)};
}

void batchnorm_forward_train(const BlockedTensor& x, BatchNormTrain& bn, BlockedTensor& y,
                             BatchNormSaved& saved, Device d) {
    const char* name = "batchnorm_forward_train";
    check_layout(name, "x", x);
    const int c = x.channels;
    check_channels(name, "gamma", bn.gamma, c);
    check_channels(name, "beta", bn.beta, c);
    check_channels(name, "running_mean", bn.running_mean, c);
    check_channels(name, "running_var", bn.running_var, c);
    check_channels(name, "saved.mean", saved.mean, c);
    check_channels(name, "saved.rstd", saved.rstd, c);
    check_shape(name, "y", y, x.shape());
    if (int64_t(x.n()) * x.h() * x.w() < 2) {
        throw std::invalid_argument(prefix(name) + "tensor 'x' has shape " +
                                    shape_to_string(x.shape()) +
                                    ": training mode needs more than one value per channel");
    }
    const KernelInfo& k = only_kernel(KernelKind::TrainBnFwd, d, name);
    hb rm = raw(bn.running_mean), rv = raw(bn.running_var);
    before_call(d, {raw(x.buf), raw(bn.gamma), raw(bn.beta), rm, rv},
                {raw(y.buf), raw(saved.mean), raw(saved.rstd), rm, rv});
    after_call(reinterpret_cast<BnFwdFn>(k.fn)(raw(x.buf), raw(bn.gamma), raw(bn.beta), rm, rv,
                                               bn.momentum, bn.eps, c, raw(y.buf), raw(saved.mean),
                                               raw(saved.rstd), rm, rv),
               k, d, {raw(y.buf), raw(saved.mean), raw(saved.rstd), rm, rv});
}

void batchnorm_backward(const BlockedTensor& x, const BlockedTensor& dy, const ChannelVector& gamma,
                        const BatchNormSaved& saved, BlockedTensor& dx, ChannelVector& dgamma,
                        ChannelVector& dbeta, Device d, bool accumulate) {
    const char* name = "batchnorm_backward";
    check_layout(name, "x", x);
    const int c = x.channels;
    check_shape(name, "dy", dy, x.shape());
    check_shape(name, "dx", dx, x.shape());
    check_channels(name, "gamma", gamma, c);
    check_channels(name, "saved.mean", saved.mean, c);
    check_channels(name, "saved.rstd", saved.rstd, c);
    check_channels(name, "dgamma", dgamma, c);
    check_channels(name, "dbeta", dbeta, c);
    const KernelInfo& k = only_kernel(KernelKind::TrainBnBwd, d, name);
    before_call(d,
                {raw(x.buf), raw(dy.buf), raw(gamma), raw(saved.mean), raw(saved.rstd), raw(dgamma),
                 raw(dbeta)},
                {raw(dx.buf), raw(dgamma), raw(dbeta)});
    after_call(reinterpret_cast<BnBwdFn>(k.fn)(raw(x.buf), raw(dy.buf), raw(gamma), raw(saved.mean),
                                               raw(saved.rstd), raw(dgamma), raw(dbeta), accumulate,
                                               raw(dx.buf), raw(dgamma), raw(dbeta)),
               k, d, {raw(dx.buf), raw(dgamma), raw(dbeta)});
}

// ---- Normalisations, pooling, channel movement
// ----------------------------------------------------

namespace {
void norm_backward(const char* name, KernelKind kind, const BlockedTensor& x,
                   const ChannelVector& w, const char* w_role, float eps, const BlockedTensor& dy,
                   BlockedTensor& dx, ChannelVector& dw, const char* dw_role, ChannelVector& db,
                   const char* db_role, Device d, bool accumulate) {
    check_layout(name, "x", x);
    const int c = x.channels;
    check_channels(name, w_role, w, c);
    check_shape(name, "dy", dy, x.shape());
    check_shape(name, "dx", dx, x.shape());
    check_channels(name, dw_role, dw, c);
    check_channels(name, db_role, db, c);
    const KernelInfo& k = only_kernel(kind, d, name);
    before_call(d, {raw(x.buf), raw(dy.buf), raw(w), raw(dw), raw(db)},
                {raw(dx.buf), raw(dw), raw(db)});
    after_call(reinterpret_cast<NormBwdFn>(k.fn)(raw(x.buf), raw(dy.buf), raw(w), raw(dw), raw(db),
                                                 c, eps, accumulate, raw(dx.buf), raw(dw), raw(db)),
               k, d, {raw(dx.buf), raw(dw), raw(db)});
}
}  // namespace

void layer_norm_backward(const BlockedTensor& x, const ops::LayerNormParams& p,
                         const BlockedTensor& dy, BlockedTensor& dx, ChannelVector& dweight,
                         ChannelVector& dbias, Device d, bool accumulate) {
    norm_backward("layer_norm_backward", KernelKind::TrainLayerNormBwd, x, p.weight, "weight",
                  p.eps, dy, dx, dweight, "dweight", dbias, "dbias", d, accumulate);
}

void grn_backward(const BlockedTensor& x, const ops::GrnParams& p, const BlockedTensor& dy,
                  BlockedTensor& dx, ChannelVector& dgamma, ChannelVector& dbeta, Device d,
                  bool accumulate) {
    norm_backward("grn_backward", KernelKind::TrainGrnBwd, x, p.gamma, "gamma", p.eps, dy, dx,
                  dgamma, "dgamma", dbeta, "dbeta", d, accumulate);
}

void global_avg_pool_backward(const BlockedTensor& dy, BlockedTensor& dx, Device d) {
    const char* name = "global_avg_pool_backward";
    check_layout(name, "dx", dx);
    check_shape(name, "dy", dy, {dx.n(), dx.channels, 1, 1});
    const KernelInfo& k = only_kernel(KernelKind::TrainAvgPoolBwd, d, name);
    before_call(d, {raw(dy.buf)}, {raw(dx.buf)});
    after_call(reinterpret_cast<PoolBwdFn>(k.fn)(raw(dy.buf), raw(dx.buf)), k, d, {raw(dx.buf)});
}

ChannelSelectBackward pack_channel_select_backward(const ops::ChannelIndex& index) {
    const int K = index.index.dim(0).extent(), C = index.in_channels;
    if (K <= 0 || C <= 0) {
        throw std::invalid_argument("train_ops::pack_channel_select_backward: empty index");
    }
    if (index.index.device_dirty()) {
        check_halide(index.index.copy_to_host(), "copy to host", Device::Cpu);
    }
    std::vector<std::vector<int>> ks(static_cast<size_t>(C));
    for (int k = 0; k < K; ++k) {
        const int c = index.index(k);
        if (c < 0 || c >= C) {
            throw std::invalid_argument("train_ops::pack_channel_select_backward: index element " +
                                        std::to_string(k) + " = " + std::to_string(c) +
                                        " is outside [0, " + std::to_string(C) + ")");
        }
        ks[size_t(c)].push_back(k);
    }
    size_t m = 1;
    for (const auto& v : ks) m = std::max(m, v.size());
    ChannelSelectBackward s;
    s.in_channels = C;
    s.out_channels = K;
    s.table = Halide::Runtime::Buffer<int32_t, 2>(kLanes * blocks_of(C), static_cast<int>(m));
    s.table.fill(-1);
    for (int c = 0; c < C; ++c)
        for (size_t j = 0; j < ks[size_t(c)].size(); ++j)
            s.table(c, static_cast<int>(j)) = ks[size_t(c)][j];
    s.table.set_host_dirty();
    return s;
}

void channel_select_backward(const BlockedTensor& dy, const ChannelSelectBackward& s,
                             BlockedTensor& dx, Device d) {
    const char* name = "channel_select_backward";
    check_layout(name, "dy", dy);
    if (dy.channels != s.out_channels) {
        throw std::invalid_argument(
            prefix(name) + "tensor 'dy' has shape " + shape_to_string(dy.shape()) + ", expected " +
            std::to_string(s.out_channels) + " channels (the index table's)");
    }
    check_shape(name, "dx", dx, {dy.n(), s.in_channels, dy.h(), dy.w()});
    if (dx.buf.data() == dy.buf.data()) {
        throw std::invalid_argument(prefix(name) + "output 'dx' aliases input 'dy'");
    }
    const KernelInfo& k = only_kernel(KernelKind::TrainSelectBwd, d, name);
    before_call(d, {raw(dy.buf), raw(s.table)}, {raw(dx.buf)});
    after_call(reinterpret_cast<SelectBwdFn>(k.fn)(raw(dy.buf), raw(s.table), raw(dx.buf)), k, d,
               {raw(dx.buf)});
}

void channel_slice(const BlockedTensor& x, int offset, BlockedTensor& y, Device d) {
    const char* name = "channel_slice";
    check_layout(name, "x", x);
    check_layout(name, "y", y);
    if (offset < 0 || offset + y.channels > x.channels) {
        throw std::invalid_argument(prefix(name) + "channels [" + std::to_string(offset) + ", " +
                                    std::to_string(offset + y.channels) + ") of tensor 'x' " +
                                    shape_to_string(x.shape()) + " are out of range");
    }
    check_shape(name, "y", y, {x.n(), y.channels, x.h(), x.w()});
    if (y.buf.data() == x.buf.data()) {
        throw std::invalid_argument(prefix(name) + "output 'y' aliases input 'x'");
    }
    const KernelInfo& k = only_kernel(KernelKind::TrainChannelSlice, d, name);
    before_call(d, {raw(x.buf)}, {raw(y.buf)});
    after_call(reinterpret_cast<SliceFn>(k.fn)(raw(x.buf), offset, y.channels, raw(y.buf)), k, d,
               {raw(y.buf)});
}

void concat_backward(const BlockedTensor& dy, BlockedTensor& da, BlockedTensor& db, Device d) {
    check_layout("concat_backward", "dy", dy);
    check_layout("concat_backward", "da", da);
    check_layout("concat_backward", "db", db);
    check_shape("concat_backward", "dy", dy, {da.n(), da.channels + db.channels, da.h(), da.w()});
    channel_slice(dy, 0, da, d);
    channel_slice(dy, da.channels, db, d);
}

// ---- Loss ---------------------------------------------------------------------------------------

LossResult softmax_cross_entropy(const BlockedTensor& logits, const std::vector<int32_t>& labels,
                                 double smoothing, BlockedTensor& dlogits, Device d) {
    const char* name = "softmax_cross_entropy";
    check_layout(name, "logits", logits);
    const int n = logits.n(), K = logits.channels;
    if (logits.h() != 1 || logits.w() != 1) {
        throw std::invalid_argument(prefix(name) + "tensor 'logits' has shape " +
                                    shape_to_string(logits.shape()) + ", expected [" +
                                    std::to_string(n) + ", " + std::to_string(K) + ", 1, 1]");
    }
    check_shape(name, "dlogits", dlogits, logits.shape());
    if (static_cast<int>(labels.size()) != n) {
        throw std::invalid_argument(prefix(name) + "labels has " + std::to_string(labels.size()) +
                                    " elements, expected " + std::to_string(n));
    }
    if (!(smoothing >= 0.0 && smoothing <= 1.0)) {
        throw std::invalid_argument(prefix(name) + "smoothing " + std::to_string(smoothing) +
                                    " is outside [0, 1]");
    }
    Halide::Runtime::Buffer<int32_t, 1> lab(n);
    for (int i = 0; i < n; ++i) {
        if (labels[size_t(i)] < 0 || labels[size_t(i)] >= K) {
            throw std::invalid_argument(prefix(name) + "label " + std::to_string(i) + " = " +
                                        std::to_string(labels[size_t(i)]) + " is outside [0, " +
                                        std::to_string(K) + ")");
        }
        lab(i) = labels[size_t(i)];
    }
    lab.set_host_dirty();
    Halide::Runtime::Buffer<float, 1> loss(n);
    Halide::Runtime::Buffer<int32_t, 1> correct(n);
    const KernelInfo& k = only_kernel(KernelKind::TrainXent, d, name);
    before_call(d, {raw(logits.buf), raw(lab)}, {raw(dlogits.buf), raw(loss), raw(correct)});
    after_call(
        reinterpret_cast<XentFn>(k.fn)(raw(logits.buf), raw(lab), K, static_cast<float>(smoothing),
                                       raw(dlogits.buf), raw(loss), raw(correct)),
        k, d, {raw(dlogits.buf), raw(loss), raw(correct)});
    if (loss.device_dirty()) check_halide(loss.copy_to_host(), "copy to host", d);
    if (correct.device_dirty()) check_halide(correct.copy_to_host(), "copy to host", d);
    LossResult r;
    for (int i = 0; i < n; ++i) {
        r.loss += loss(i);
        r.correct += correct(i);
    }
    r.loss /= n;
    return r;
}

LossResult softmax_cross_entropy(const Tensor& logits, const std::vector<int32_t>& labels,
                                 double smoothing, Tensor* dlogits, Device d) {
    if (logits.ndim() != 2 || logits.dtype() != DType::F32) {
        throw std::invalid_argument("train_ops::softmax_cross_entropy: tensor 'logits' has shape " +
                                    shape_to_string(logits.shape()) + " and dtype " +
                                    dtype_name(logits.dtype()) + ", expected F32 [N, K]");
    }
    const BlockedTensor z = ops::to_blocked_tensor(logits);
    BlockedTensor dz = ops::make_blocked_tensor(z.n(), z.channels, 1, 1);
    const LossResult r = softmax_cross_entropy(z, labels, smoothing, dz, d);
    if (dlogits) *dlogits = ops::from_blocked_tensor(dz, true);
    return r;
}

// ---- Optimizers --------------------------------------------------------------------------------

namespace {
// Runs a flat kernel over views of the buffers; inputs / outputs are indices into `views`.
void flat_call(Device d, std::vector<FlatView*> ins, std::vector<FlatView*> outs,
               const std::function<int()>& call, const KernelInfo& k) {
    install_halide_error_handler();
    for (FlatView* o : outs) {
        if (std::find(ins.begin(), ins.end(), o) != ins.end()) continue;
        if (d == Device::Cpu) {
            o->b.set_device_dirty(false);
        } else {
            o->b.set_host_dirty(false);
        }
    }
    if (d == Device::Cpu) {
        for (FlatView* v : ins) {
            if (v->b.device_dirty()) {
                const int rc = halide_copy_to_host(nullptr, &v->b);
                v->commit();
                check_halide(rc, "copy to host", d);
            }
        }
    }
    const int rc = call();
    if (d == Device::Cpu && rc == 0) {
        for (FlatView* o : outs) o->b.set_host_dirty(true);
    }
    for (FlatView* v : ins) v->commit();
    for (FlatView* v : outs) v->commit();
    check_halide(rc, std::string("kernel ") + k.name, d);
}
}  // namespace

void adamw_step(FlatRef param, FlatRef grad, FlatRef m, FlatRef v, const AdamWConfig& c,
                int64_t step, Device d, double grad_scale) {
    const char* name = "adamw_step";
    if (step < 1)
        throw std::invalid_argument(prefix(name) + "step " + std::to_string(step) + " < 1");
    FlatView p(name, "param", param.raw), g(name, "grad", grad.raw), mm(name, "m", m.raw),
        vv(name, "v", v.raw);
    check_same_size(name, "grad", g, p, "param");
    check_same_size(name, "m", mm, p, "param");
    check_same_size(name, "v", vv, p, "param");
    // Bias corrections from the f32 betas the kernel decays m and v with (1 - beta2 in f32 is
    // 1.3e-5 off 1 - 0.999 in double: step 1 would not give m / sqrt(v) = g / |g|).
    const double b1 = static_cast<float>(c.beta1), b2 = static_cast<float>(c.beta2);
    const double bc1 = 1.0 - std::pow(b1, double(step));
    const double bc2 = 1.0 - std::pow(b2, double(step));
    const KernelInfo& k = only_kernel(KernelKind::TrainAdamw, d, name);
    flat_call(
        d, {&p, &g, &mm, &vv}, {&p, &mm, &vv},
        [&] {
            return reinterpret_cast<AdamwFn>(k.fn)(
                &p.b, &g.b, &mm.b, &vv.b, float(c.lr / bc1), float(1.0 / std::sqrt(bc2)),
                float(c.beta1), float(c.beta2), float(c.eps), float(1.0 - c.lr * c.weight_decay),
                float(grad_scale), &p.b, &mm.b, &vv.b);
        },
        k);
}

void sgd_step(FlatRef param, FlatRef grad, FlatRef buf, const SgdConfig& c, int64_t step, Device d,
              double grad_scale) {
    const char* name = "sgd_step";
    if (step < 1)
        throw std::invalid_argument(prefix(name) + "step " + std::to_string(step) + " < 1");
    FlatView p(name, "param", param.raw), g(name, "grad", grad.raw), b(name, "buf", buf.raw);
    check_same_size(name, "grad", g, p, "param");
    check_same_size(name, "buf", b, p, "param");
    const KernelInfo& k = only_kernel(KernelKind::TrainSgd, d, name);
    flat_call(
        d, {&p, &g, &b}, {&p, &b},
        [&] {
            return reinterpret_cast<SgdFn>(k.fn)(
                &p.b, &g.b, &b.b, float(c.lr), float(c.momentum), float(c.dampening),
                float(c.weight_decay), float(grad_scale), c.nesterov, step == 1, &p.b, &b.b);
        },
        k);
}

void ema_update(FlatRef ema, FlatRef w, double decay, Device d) {
    const char* name = "ema_update";
    FlatView e(name, "ema", ema.raw), x(name, "w", w.raw);
    check_same_size(name, "w", x, e, "ema");
    const KernelInfo& k = only_kernel(KernelKind::TrainEma, d, name);
    flat_call(
        d, {&e, &x}, {&e},
        [&] { return reinterpret_cast<EmaFn>(k.fn)(&e.b, &x.b, float(decay), &e.b); }, k);
}

void axpby(double a, FlatRef x, double b, FlatRef y, Device d) {
    const char* name = "axpby";
    FlatView yv(name, "y", y.raw);
    const bool same = x.raw == y.raw;
    FlatView xv(name, "x", x.raw);
    check_same_size(name, "x", xv, yv, "y");
    FlatView* xp = same ? &yv : &xv;
    const KernelInfo& k = only_kernel(KernelKind::TrainAxpby, d, name);
    std::vector<FlatView*> ins = {&yv};
    if (!same) ins.push_back(&xv);
    flat_call(
        d, ins, {&yv},
        [&] { return reinterpret_cast<AxpbyFn>(k.fn)(&xp->b, &yv.b, float(a), float(b), &yv.b); },
        k);
}

void mask_multiply(FlatRef w, FlatRef mask, Device d) {
    const char* name = "mask_multiply";
    FlatView wv(name, "w", w.raw), mv(name, "mask", mask.raw);
    check_same_size(name, "mask", mv, wv, "w");
    const KernelInfo& k = only_kernel(KernelKind::TrainMaskMul, d, name);
    flat_call(
        d, {&wv, &mv}, {&wv}, [&] { return reinterpret_cast<MaskFn>(k.fn)(&wv.b, &mv.b, &wv.b); },
        k);
}

}  // namespace lkc::train_ops
