#include "graph/executor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>

#include "graph/cost.h"
#include "graph/node_workload.h"
#include "graph/passes/pipeline.h"
#include "runtime/layers.h"
#include "runtime/ops.h"
#include "runtime/registry.h"
#include "runtime/schedule_selection.h"

namespace lkc {
namespace graph {

namespace {

constexpr int kLanes = 16;

[[noreturn]] void fail(const Node& n, const std::string& what) {
    throw GraphError("executor: node '" + n.name + "' (" + op_name(n.op) + "): " + what);
}

Tensor as_f32(const Tensor& t) {
    if (t.dtype() == DType::F32) return t;
    Tensor r(DType::F32, t.shape());
    float* o = r.data<float>();
    if (t.dtype() == DType::F64) {
        const double* p = t.data<double>();
        for (int64_t i = 0; i < t.numel(); ++i) o[i] = float(p[i]);
        return r;
    }
    throw std::invalid_argument("executor: a parameter has dtype " +
                                std::string(dtype_name(t.dtype())) + ", expected F32 or F64");
}

Tensor reshaped(const Tensor& t, const Shape& s) {
    if (shape_numel(s) != t.numel()) {
        throw std::invalid_argument("executor: cannot view " + shape_to_string(t.shape()) + " as " +
                                    shape_to_string(s));
    }
    Tensor r(t.dtype(), s);
    std::copy(static_cast<const uint8_t*>(t.raw()),
              static_cast<const uint8_t*>(t.raw()) + t.nbytes(), static_cast<uint8_t*>(r.raw()));
    return r;
}

// Logical [N, C, H, W] of a tensor description (NC: H = W = 1).
struct Dims {
    int n = 1, c = 1, h = 1, w = 1;
};
Dims dims_of(const TensorDesc& t) {
    Dims d;
    if (t.shape.size() == 4) {
        d = {int(t.shape[0]), int(t.shape[1]), int(t.shape[2]), int(t.shape[3])};
    } else if (t.shape.size() == 2) {
        d = {int(t.shape[0]), int(t.shape[1]), 1, 1};
    } else {
        throw GraphError("executor: tensor '" + t.name + "' has rank " +
                         std::to_string(t.shape.size()) + ", expected 2 or 4");
    }
    return d;
}

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

double depthwise_cost_ms(const Workload& w, Device d) {
    try {
        const Selection s = select_kernel_explained(w, d);
        if (s.tuned_ms > 0) return s.tuned_ms;
        const KernelInfo& k = hand_default_kernel(w, d);
        double units = estimated_cost(k, w);
        if (!std::isfinite(units) || units >= 1e29) return std::numeric_limits<double>::infinity();
        if (k.kind == KernelKind::SparseFwd || k.kind == KernelKind::SparseWgrad) {
            units *= double(w.c) * w.n / 16.0;  // per channel, 8-lane vectors
        } else {
            units *= double(w.out_h()) * ((w.c + 15) / 16) * w.n;
        }
        return units / (2 * 3.5e9) * 1e3;
    } catch (const std::exception&) {
        return std::numeric_limits<double>::infinity();
    }
}

struct Executor::Impl {
    ExecOptions opt;
    Graph g;
    passes::MemoryPlan plan;
    std::vector<std::string> forms;
    std::vector<uint8_t> arena_storage;
    uint8_t* arena = nullptr;
    // Per tensor id: its blocked view into the arena (blocked storage) or plain storage.
    std::vector<ops::BlockedTensor> bt;
    std::vector<float*> plain;
    std::vector<bool> blocked;
    // Graph input/output bindings of the current run.
    std::map<int, const Tensor*> in_bind;
    std::map<int, Tensor*> out_bind;
    struct Step {
        std::string name, op, kernel;
        double flops = 0;
        std::function<void()> fn;
        std::vector<int> outputs;
    };
    std::vector<Step> steps;
    std::vector<NodeProfile> profile;
    std::vector<std::string> choices;
    std::vector<LayerKernel> layer_kernels;
    // Packed parameters stay alive here (steps hold pointers).
    std::vector<std::unique_ptr<ops::PackedLinear>> linears;
    std::vector<std::unique_ptr<ops::PackedConv2d>> convs;
    std::vector<std::unique_ptr<ops::ChannelAffine>> affines;
    std::vector<std::unique_ptr<ops::LayerNormParams>> norms;
    std::vector<std::unique_ptr<ops::GrnParams>> grns;
    std::vector<std::unique_ptr<ops::ChannelIndex>> indices;
    std::vector<std::unique_ptr<DwLayer>> dws;
    std::vector<std::unique_ptr<ops::BlockedTensor>> scratch;

    Tensor value(const Node& n, const std::string& role) const {
        return as_f32(g.param_value(n, role));
    }

    ops::BlockedTensor& T(int id) { return bt[size_t(id)]; }

    void compile();
    void add_step(const Node& n, const std::string& kernel, std::function<void()> fn);
    void build_node(size_t idx);
    // Epilogues of node n (from position `from` on) applied to its output in place.
    void build_epilogues(const Node& n, size_t from, std::vector<std::function<void()>>* fns);
};

void Executor::Impl::add_step(const Node& n, const std::string& kernel, std::function<void()> fn) {
    Step s;
    s.name = n.name;
    s.op = op_name(n.op);
    s.kernel = kernel;
    s.fn = std::move(fn);
    s.outputs = n.outputs;
    steps.push_back(std::move(s));
}

void Executor::Impl::build_epilogues(const Node& n, size_t from,
                                     std::vector<std::function<void()>>* fns) {
    const Device d = opt.device;
    const int out = n.outputs.at(0);
    for (size_t i = from; i < n.attrs.epilogues.size(); ++i) {
        const Epilogue& e = n.attrs.epilogues[i];
        const std::string pre = "e" + std::to_string(i) + ".";
        switch (e.op) {
            case EpilogueOp::Relu:
            case EpilogueOp::Gelu:
            case EpilogueOp::Sigmoid: {
                const ops::Unary u = e.op == EpilogueOp::Relu   ? ops::Unary::Relu
                                     : e.op == EpilogueOp::Gelu ? ops::Unary::Gelu
                                                                : ops::Unary::Sigmoid;
                fns->push_back([this, u, out, d] { ops::unary(u, T(out), T(out), d); });
                break;
            }
            case EpilogueOp::Add: {
                const int other = n.inputs.at(size_t(e.input));
                fns->push_back([this, out, other, d] {
                    ops::binary(ops::Binary::Add, T(out), T(other), T(out), d);
                });
                break;
            }
            case EpilogueOp::Scale: {
                affines.push_back(std::make_unique<ops::ChannelAffine>(
                    ops::layer_scale_affine(value(n, pre + "weight"))));
                const ops::ChannelAffine* a = affines.back().get();
                fns->push_back(
                    [this, a, out, d] { ops::affine(T(out), *a, ops::Act::None, T(out), d); });
                break;
            }
            case EpilogueOp::BatchNorm: {
                affines.push_back(std::make_unique<ops::ChannelAffine>(ops::batchnorm_affine(
                    value(n, pre + "weight"), value(n, pre + "bias"),
                    value(n, pre + "running_mean"), value(n, pre + "running_var"), e.eps)));
                const ops::ChannelAffine* a = affines.back().get();
                fns->push_back(
                    [this, a, out, d] { ops::affine(T(out), *a, ops::Act::None, T(out), d); });
                break;
            }
        }
    }
}

void Executor::Impl::build_node(size_t idx) {
    const Node& n = g.nodes[idx];
    const Device d = opt.device;
    std::vector<std::function<void()>> post;  // epilogues not fused into the kernel
    auto run_all = [](std::function<void()> main, std::vector<std::function<void()>> rest) {
        return [main = std::move(main), rest = std::move(rest)] {
            main();
            for (const auto& f : rest) f();
        };
    };
    const int out = n.outputs.empty() ? -1 : n.outputs[0];
    switch (n.op) {
        case OpKind::Reorder: {
            const int in = n.inputs.at(0);
            if (!blocked[size_t(in)] && blocked[size_t(out)]) {
                // A plain NCHW / NC graph input into the arena's blocked layout.
                add_step(n, "to_blocked", [this, in, out] {
                    auto it = in_bind.find(in);
                    const Tensor& t = *it->second;
                    ops::BlockedTensor& y = T(out);
                    const int N = y.n(), C = y.channels, H = y.h(), W = y.w();
                    const float* src = t.data<float>();
                    float* dst = y.buf.data();
                    std::fill(dst, dst + y.buf.number_of_elements(), 0.0f);
                    for (int b = 0; b < N; ++b)
                        for (int c = 0; c < C; ++c)
                            for (int i = 0; i < H; ++i)
                                for (int j = 0; j < W; ++j)
                                    dst[((((size_t(b) * y.blocks() + c / kLanes) * H + i) * W + j) *
                                         kLanes) +
                                        c % kLanes] = src[((size_t(b) * C + c) * H + i) * W + j];
                    y.buf.set_host_dirty();
                });
            } else if (blocked[size_t(in)] && !blocked[size_t(out)]) {
                add_step(n, "from_blocked", [this, in, out] {
                    ops::BlockedTensor& x = T(in);
                    ops::to_host(x);
                    Tensor* t = out_bind.at(out);
                    const int N = x.n(), C = x.channels, H = x.h(), W = x.w();
                    const float* src = x.buf.data();
                    float* dst = t->data<float>();
                    for (int b = 0; b < N; ++b)
                        for (int c = 0; c < C; ++c)
                            for (int i = 0; i < H; ++i)
                                for (int j = 0; j < W; ++j)
                                    dst[((size_t(b) * C + c) * H + i) * W + j] =
                                        src[((((size_t(b) * x.blocks() + c / kLanes) * H + i) * W +
                                              j) *
                                             kLanes) +
                                            c % kLanes];
                });
            } else {
                fail(n, "a reorder between two tensors of the same storage");
            }
            return;
        }
        case OpKind::Conv2d:
        case OpKind::Linear: {
            const Tensor w = value(n, "weight");
            Tensor b;
            if (n.has_param("bias")) b = value(n, "bias");
            const TensorDesc& xd = g.tensor(n.inputs.at(0));
            const bool pointwise =
                n.op == OpKind::Linear ||
                (w.dim(2) == 1 && w.dim(3) == 1 && n.attrs.stride == 1 && n.attrs.pad_h == 0 &&
                 n.attrs.pad_w == 0 && n.attrs.groups == 1 && n.attrs.dilation == 1);
            (void)xd;
            if (pointwise) {
                linears.push_back(std::make_unique<ops::PackedLinear>(
                    ops::pack_linear(w, b.empty() ? nullptr : &b)));
                const ops::PackedLinear* pl = linears.back().get();
                // Fuse a leading activation, a layer scale and a residual add into the GEMM.
                ops::Act act = ops::Act::None;
                int residual = -1;
                const ops::ChannelAffine* scale_a = nullptr;
                size_t i = 0;
                const auto& eps = n.attrs.epilogues;
                if (i < eps.size() &&
                    (eps[i].op == EpilogueOp::Relu || eps[i].op == EpilogueOp::Gelu)) {
                    act = eps[i].op == EpilogueOp::Relu ? ops::Act::Relu : ops::Act::Gelu;
                    ++i;
                }
                ops::ChannelVector* scale_v = nullptr;
                if (i < eps.size() && eps[i].op == EpilogueOp::Scale) {
                    affines.push_back(std::make_unique<ops::ChannelAffine>(
                        ops::layer_scale_affine(value(n, "e" + std::to_string(i) + ".weight"))));
                    scale_a = affines.back().get();
                    scale_v = &affines.back()->scale;
                    ++i;
                }
                if (i < eps.size() && eps[i].op == EpilogueOp::Add) {
                    residual = n.inputs.at(size_t(eps[i].input));
                    ++i;
                }
                (void)scale_a;
                build_epilogues(n, i, &post);
                const int in = n.inputs.at(0);
                const std::string kname = ops::gemm_kernel_name(T(in), *pl, d);
                add_step(n, kname,
                         run_all(
                             [this, in, out, pl, act, residual, scale_v, d] {
                                 ops::Epilogue e;
                                 e.act = act;
                                 e.residual = residual >= 0 ? &T(residual) : nullptr;
                                 e.scale = scale_v;
                                 ops::gemm(T(in), *pl, e, T(out), d);
                             },
                             post));
            } else {
                ops::ConvGeometry geo;
                geo.stride = n.attrs.stride;
                geo.pad_h = n.attrs.pad_h;
                geo.pad_w = n.attrs.pad_w;
                geo.dilation = n.attrs.dilation;
                geo.groups = n.attrs.groups;
                convs.push_back(std::make_unique<ops::PackedConv2d>(
                    ops::pack_conv2d(w, b.empty() ? nullptr : &b, geo)));
                const ops::PackedConv2d* pc = convs.back().get();
                ops::Act act = ops::Act::None;
                size_t i = 0;
                if (!n.attrs.epilogues.empty() && n.attrs.epilogues[0].op == EpilogueOp::Relu) {
                    act = ops::Act::Relu;
                    i = 1;
                }
                build_epilogues(n, i, &post);
                const int in = n.inputs.at(0);
                add_step(n, "conv2d",
                         run_all([this, in, out, pc, act,
                                  d] { ops::conv2d(T(in), *pc, act, T(out), d); },
                                 post));
            }
            return;
        }
        case OpKind::DwConv2d:
        case OpKind::DwConv2dMulti:
        case OpKind::DwConv2dSparse:
        case OpKind::ShiftWise: {
            const auto wl = node_workload(g, n, Pass::Fwd);
            if (!wl) fail(n, "outside the depth-wise kernels' limits");
            std::map<std::string, Tensor> p;
            switch (n.op) {
                case OpKind::DwConv2d:
                    p["w"] = value(n, "weight");
                    break;
                case OpKind::DwConv2dSparse:
                    p["w"] = value(n, "weight");
                    p["mask"] = as_f32(g.constant_value(n, "mask"));
                    break;
                case OpKind::DwConv2dMulti:
                    for (size_t b = 0; b < wl->branches.size(); ++b)
                        p["w" + std::to_string(b)] = value(n, "weight" + std::to_string(b));
                    break;
                default: {
                    // Shift-wise: the paths' weights summed, as [R, nk, k, k].
                    const int R = wl->c, nk = wl->num_sub_kernels(), k = wl->small_k;
                    Tensor sum(DType::F32, {R, nk, k, k});
                    for (const auto& kv : n.params) {
                        if (kv.first.rfind("weight", 0) != 0) continue;
                        const Tensor t = value(n, kv.first);
                        if (t.numel() != sum.numel()) fail(n, "weight " + kv.first + " size");
                        for (int64_t i = 0; i < t.numel(); ++i)
                            sum.data<float>()[i] += t.data<float>()[i];
                    }
                    p["w"] = sum;
                    for (const char* r : {"slot_h", "slot_v", "ident"})
                        p[r] = g.constant_value(n, r);
                    if (n.has_param("ah")) {
                        for (const char* r : {"ah", "av", "as"}) p[r] = value(n, r);
                        p["b"] = value(n, "bias");
                    }
                    break;
                }
            }
            if (n.has_param("bias") && n.op != OpKind::ShiftWise) p["b"] = value(n, "bias");
            auto pin = opt.kernels.find(to_string(*wl));
            dws.push_back(make_dw_layer(*wl, d, p, pin == opt.kernels.end() ? "" : pin->second));
            DwLayer* layer = dws.back().get();
            {
                const KernelInfo* k = find_kernel(layer->kernel_name(), d);
                LayerKernel lk;
                lk.node = n.name;
                lk.workload = to_string(*wl);
                lk.kernel = layer->kernel_name();
                if (k) {
                    lk.generator = k->generator;
                    lk.params = kernel_schedule(*k);
                    lk.library = k->library;
                }
                layer_kernels.push_back(lk);
            }
            const Selection sel = layer->selection();
            choices.push_back(n.name + ": " + to_string(*wl) + " -> " + layer->kernel_name() +
                              " (" + sel.how + (sel.source.empty() ? "" : ", " + sel.source) + ")");
            build_epilogues(n, 0, &post);
            const int in = n.inputs.at(0);
            std::vector<int> outs = n.outputs;
            add_step(n, layer->kernel_name(),
                     run_all(
                         [this, layer, in, outs] {
                             if (outs.size() == 1) {
                                 layer->run(T(in).buf, T(outs[0]).buf);
                             } else {
                                 std::vector<Blocked*> ys;
                                 for (int o : outs) ys.push_back(&T(o).buf);
                                 layer->run(T(in).buf, ys);
                             }
                         },
                         post));
            steps.back().flops = wl->nominal_flops();
            return;
        }
        case OpKind::BatchNorm: {
            affines.push_back(std::make_unique<ops::ChannelAffine>(ops::batchnorm_affine(
                value(n, "weight"), value(n, "bias"), value(n, "running_mean"),
                value(n, "running_var"), n.attrs.eps)));
            const ops::ChannelAffine* a = affines.back().get();
            const int in = n.inputs.at(0);
            add_step(n, "affine",
                     [this, a, in, out, d] { ops::affine(T(in), *a, ops::Act::None, T(out), d); });
            return;
        }
        case OpKind::Scale: {
            affines.push_back(
                std::make_unique<ops::ChannelAffine>(ops::layer_scale_affine(value(n, "weight"))));
            const ops::ChannelAffine* a = affines.back().get();
            const int in = n.inputs.at(0);
            add_step(n, "affine",
                     [this, a, in, out, d] { ops::affine(T(in), *a, ops::Act::None, T(out), d); });
            return;
        }
        case OpKind::LayerNorm: {
            norms.push_back(std::make_unique<ops::LayerNormParams>(
                ops::pack_layer_norm(value(n, "weight"), value(n, "bias"), n.attrs.eps)));
            const ops::LayerNormParams* p = norms.back().get();
            const int in = n.inputs.at(0);
            add_step(n, "layer_norm",
                     [this, p, in, out, d] { ops::layer_norm(T(in), *p, T(out), d); });
            return;
        }
        case OpKind::Grn: {
            Tensor beta;
            if (n.has_param("beta")) beta = value(n, "beta");
            grns.push_back(std::make_unique<ops::GrnParams>(
                ops::pack_grn(value(n, "gamma"), beta.empty() ? nullptr : &beta, n.attrs.eps)));
            const ops::GrnParams* p = grns.back().get();
            const int in = n.inputs.at(0);
            add_step(n, "grn", [this, p, in, out, d] { ops::grn(T(in), *p, T(out), d); });
            return;
        }
        case OpKind::Gelu:
        case OpKind::Relu:
        case OpKind::Sigmoid: {
            const ops::Unary u = n.op == OpKind::Relu   ? ops::Unary::Relu
                                 : n.op == OpKind::Gelu ? ops::Unary::Gelu
                                                        : ops::Unary::Sigmoid;
            const int in = n.inputs.at(0);
            add_step(n, "unary", [this, u, in, out, d] { ops::unary(u, T(in), T(out), d); });
            return;
        }
        case OpKind::Softmax: {
            const int in = n.inputs.at(0);
            add_step(n, "softmax", [this, in, out, d] { ops::softmax(T(in), T(out), d); });
            return;
        }
        case OpKind::Add:
        case OpKind::Mul: {
            const ops::Binary b = n.op == OpKind::Add ? ops::Binary::Add : ops::Binary::Mul;
            const int a = n.inputs.at(0), c = n.inputs.at(1);
            add_step(n, "binary",
                     [this, b, a, c, out, d] { ops::binary(b, T(a), T(c), T(out), d); });
            return;
        }
        case OpKind::GlobalAvgPool: {
            const int in = n.inputs.at(0);
            add_step(n, "global_avg_pool",
                     [this, in, out, d] { ops::global_avg_pool(T(in), T(out), d); });
            return;
        }
        case OpKind::ChannelSelect: {
            const int in = n.inputs.at(0);
            indices.push_back(std::make_unique<ops::ChannelIndex>(ops::pack_channel_index(
                g.constant_value(n, "index"), int(dims_of(g.tensor(in)).c))));
            const ops::ChannelIndex* ix = indices.back().get();
            add_step(n, "channel_select",
                     [this, ix, in, out, d] { ops::channel_select(T(in), *ix, T(out), d); });
            return;
        }
        case OpKind::Concat: {
            if (n.inputs.size() != 2)
                fail(n, "concat of " + std::to_string(n.inputs.size()) + " inputs (2 supported)");
            const int a = n.inputs[0], b = n.inputs[1];
            add_step(n, "concat", [this, a, b, out, d] { ops::concat(T(a), T(b), T(out), d); });
            return;
        }
        case OpKind::Flatten: {
            // [N, C, 1, 1] -> [N, C]: the same blocked storage.
            const int in = n.inputs.at(0);
            const Dims di = dims_of(g.tensor(in));
            if (di.h != 1 || di.w != 1)
                fail(n, "flatten of a map larger than 1x1 is not supported");
            add_step(n, "copy", [this, in, out] {
                ops::to_host(T(in));
                T(out).buf.copy_from(T(in).buf);
                T(out).buf.set_host_dirty();
            });
            return;
        }
        case OpKind::Permute:
            fail(n, "permute is not supported by the executor (the builders emit none)");
    }
    fail(n, "unsupported op");
}

void Executor::Impl::compile() {
    const Device d = opt.device;
    if (opt.no_records) {
        disable_schedules();
    } else {
        use_schedules(opt.records);
    }
    if (opt.deploy) {
        passes::DeployOptions po;
        po.reparameterize.cost = [d](const Workload& w) { return depthwise_cost_ms(w, d); };
        std::vector<passes::FormChoice> report;
        po.reparameterize.report = &report;
        g = passes::deploy(g, po);
        for (const passes::FormChoice& c : report) {
            std::string line = c.node + ": " + passes::deploy_form_name(c.chosen) + " [";
            for (const passes::FormCandidate& f : c.candidates) {
                char buf[64];
                std::snprintf(buf, sizeof(buf), "%s %.4g ms", passes::deploy_form_name(f.form),
                              f.cost);
                line += std::string(&f == &c.candidates[0] ? "" : ", ") + buf;
            }
            forms.push_back(line + "]");
        }
    } else {
        passes::LayoutOptions lo;
        g = passes::assign_layouts(g, lo);
    }
    plan = passes::plan_memory(g);
    arena_storage.assign(size_t(plan.arena_bytes + 64), 0);
    arena = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(arena_storage.data()) + 63) &
                                       ~uintptr_t(63));
    const size_t nt = g.tensors.size();
    bt.assign(nt, {});
    plain.assign(nt, nullptr);
    blocked.assign(nt, false);
    for (size_t i = 0; i < nt; ++i) {
        const TensorDesc& t = g.tensors[i];
        if (plan.offset[i] < 0) continue;
        float* p = reinterpret_cast<float*>(arena + plan.offset[i]);
        if (t.storage == Layout::Blocked16) {
            const Dims di = dims_of(t);
            bt[i].buf = Blocked(p, kLanes, di.w, di.h, (di.c + kLanes - 1) / kLanes, di.n);
            bt[i].channels = di.c;
            blocked[i] = true;
        } else {
            plain[i] = p;
        }
    }
    for (size_t i = 0; i < g.nodes.size(); ++i) build_node(i);
    for (Step& s : steps)
        if (s.flops == 0) {
            for (const Node& n : g.nodes)
                if (n.name == s.name) {
                    const NodeCost c = node_cost(g, n);
                    s.flops = 2.0 * double(c.macs);
                    break;
                }
        }
}

Executor::Executor(const Graph& g, const ExecOptions& options) : impl_(std::make_unique<Impl>()) {
    install_halide_error_handler();
    if (!g.has_values()) {
        throw GraphError("executor: model '" + g.model +
                         "' has parameters without values (load_weights or init_weights first)");
    }
    impl_->opt = options;
    impl_->g = g;
    impl_->compile();
}

Executor::~Executor() = default;

std::map<std::string, Tensor> Executor::run(const std::map<std::string, Tensor>& inputs) {
    Impl& m = *impl_;
    m.in_bind.clear();
    m.out_bind.clear();
    for (int id : m.g.inputs) {
        const TensorDesc& t = m.g.tensor(id);
        const std::string key = inputs.count(t.name) ? t.name : "x";
        auto it = inputs.find(key);
        if (it == inputs.end()) {
            throw std::invalid_argument("executor: no input '" + t.name + "' (shape " +
                                        shape_to_string(t.shape) + ")");
        }
        if (it->second.dtype() != DType::F32 || it->second.shape() != t.shape) {
            throw std::invalid_argument("executor: input '" + t.name + "' is " +
                                        std::string(dtype_name(it->second.dtype())) + " " +
                                        shape_to_string(it->second.shape()) + ", expected F32 " +
                                        shape_to_string(t.shape));
        }
        m.in_bind[id] = &it->second;
    }
    std::map<std::string, Tensor> out;
    for (int id : m.g.outputs) {
        const TensorDesc& t = m.g.tensor(id);
        out[t.name] = Tensor(DType::F32, t.shape);
        m.out_bind[id] = &out[t.name];
    }
    m.profile.clear();
    for (Impl::Step& s : m.steps) {
        if (m.opt.check_finite) {
            s.fn();
            for (int o : s.outputs) {
                if (!m.blocked[size_t(o)]) continue;
                ops::BlockedTensor& t = m.T(o);
                ops::to_host(t);
                const float* p = t.buf.data();
                for (size_t i = 0; i < size_t(t.buf.number_of_elements()); ++i)
                    if (!std::isfinite(p[i])) {
                        throw GraphError("executor: node '" + s.name + "' (" + s.op + ", " +
                                         s.kernel + ") wrote " + std::to_string(p[i]) +
                                         " at element " + std::to_string(i) + " of '" +
                                         m.g.tensor(o).name + "'");
                    }
            }
            continue;
        }
        if (!m.opt.profile) {
            s.fn();
            continue;
        }
        const double t0 = now_ms();
        s.fn();
        // Wait for the device (CPU kernels return when done).
        const double t1 = now_ms();
        m.profile.push_back({s.name, s.op, s.kernel, t1 - t0, s.flops});
    }
    return out;
}

const Graph& Executor::graph() const { return impl_->g; }
const passes::MemoryPlan& Executor::plan() const { return impl_->plan; }
const std::vector<NodeProfile>& Executor::last_profile() const { return impl_->profile; }
std::vector<std::string> Executor::kernel_choices() const { return impl_->choices; }
std::vector<std::string> Executor::form_choices() const { return impl_->forms; }
const std::vector<LayerKernel>& Executor::layer_kernels() const { return impl_->layer_kernels; }

}  // namespace graph
}  // namespace lkc
