#include "graph/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <sstream>

#include "graph/executor.h"
#include "graph/models/models.h"
#include "graph/node_workload.h"
#include "graph/train/memory_plan.h"
#include "runtime/dw_train.h"
#include "runtime/lane_blocks.h"
#include "runtime/layers.h"
#include "runtime/op_runner.h"
#include "runtime/ops.h"
#include "runtime/train_ops.h"

namespace lkc {
namespace train {

namespace {

using graph::Graph;
using graph::Node;
using graph::OpKind;
using ops::BlockedTensor;
using ops::ChannelVector;
using Buf = Halide::Runtime::Buffer<float>;

[[noreturn]] void fail(const Node& n, const std::string& what) {
    throw graph::GraphError("trainer: node '" + n.name + "' (" + graph::op_name(n.op) +
                            "): " + what);
}

Tensor f32(const Tensor& t) {
    if (t.dtype() == DType::F32) {
        Tensor r(DType::F32, t.shape());
        std::memcpy(r.raw(), t.raw(), t.nbytes());
        return r;
    }
    if (t.dtype() != DType::F64)
        throw std::invalid_argument("trainer: a parameter is neither F32 nor F64");
    Tensor r(DType::F32, t.shape());
    for (int64_t i = 0; i < t.numel(); ++i) r.data<float>()[i] = float(t.data<double>()[i]);
    return r;
}

Tensor reshaped(const Tensor& t, const Shape& s) {
    Tensor out(t.dtype(), s);
    if (out.numel() != t.numel()) throw std::logic_error("trainer: reshape of a different size");
    std::memcpy(out.raw(), t.raw(), t.nbytes());
    return out;
}

Buf zeros_like(const Buf& b) {
    std::vector<int> ext;
    for (int i = 0; i < b.dimensions(); ++i) ext.push_back(b.dim(i).extent());
    Buf z(ext);
    z.fill(0.0f);
    return z;
}

Buf copy_buf(const Buf& b) {
    Buf c = zeros_like(b);
    c.copy_from(b);
    return c;
}

// Per-channel vector (16, ceil(C/16)) <-> tensor of the parameter's shape.
Tensor channel_tensor(const ChannelVector& v, const Shape& shape) {
    const std::vector<float> vals = train_ops::channel_values(v);
    Tensor t(DType::F32, shape);
    std::copy(vals.begin(), vals.begin() + t.numel(), t.data<float>());
    return t;
}
void set_channels(ChannelVector& v, const Tensor& t) {
    const Tensor f = f32(t);
    v.buf.fill(0.0f);
    for (int64_t c = 0; c < f.numel(); ++c) v.buf(int(c % 16), int(c / 16)) = f.data<float>()[c];
    v.buf.set_host_dirty();
}

// dst = src with sample n scaled by s[n] (drop path; host, CPU trainer).
void scale_samples(const Blocked& src, const std::vector<float>& s, Blocked& dst) {
    dst.copy_from(src);
    for (int n = 0; n < dst.dim(4).extent(); ++n) {
        Halide::Runtime::Buffer<float, 4> v = dst.sliced(4, n);
        if (s[size_t(n)] == 0.0f) {
            v.fill(0.0f);
        } else if (s[size_t(n)] != 1.0f) {
            const float k = s[size_t(n)];
            v.for_each_value([k](float& e) { e *= k; });
        }
    }
    dst.set_host_dirty();
}

double now_ms() {
    using namespace std::chrono;
    return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

// How a parameter is stored for the kernels.
enum class Store {
    Packed,    // PackedLinear::weight layout (1x1 conv / Linear weights)
    Channels,  // ChannelVector (16, ceil(C/16)): biases, norms, GRN, layer scale
    Plain,     // the graph's own row-major layout (k x k conv and depth-wise weights)
};

struct Slot {
    std::string key;
    Store store = Store::Plain;
    Shape shape;         // the graph parameter's shape
    int ci = 0, co = 0;  // Packed: in / out channels
    Buf value, grad, m, v, ema, mask;
    bool decay = false;  // weight decay (>= 2-D parameters only)
    Tensor plain;        // Plain: the tensor whose storage `value` views
    int version = 0;     // bumped at each update (dw layers re-pack)
};

struct NodeState {
    // 1x1 conv / Linear
    ops::PackedLinear lin, lin_t;
    Halide::Runtime::Buffer<float, 3> dlin;
    ChannelVector dbias;
    bool has_bias = false;
    // GEMM variants (forward, backward-data, backward-weight; empty: the registry's choice),
    // timed at the first forward / backward on these shapes when measure_gemm.
    struct GemmVariants {
        std::string fwd, bd, bw;
        bool fwd_timed = false, bwd_timed = false;
    } kv;
    // Lane-block masked: the GEMMs on the kept blocks (runtime/lane_blocks.h). wc / wc_t are
    // re-gathered after every update, dwc is the compact weight gradient of one backward, act
    // the compact input (input axis, kept for the backward) or output (output axis), dact its
    // gradient. Compact and dense GEMMs compute the same numbers (the pruned terms are exact
    // zeros), so which runs is a matter of time: the node runs dense for 3 micro-batches, then
    // compact for 3, and keeps the faster (the first of each untimed: variant timing).
    struct Compact {
        bool on = false, out_axis = true;
        std::vector<int> kept;
        ops::PackedLinear wc, wc_t;
        Halide::Runtime::Buffer<float, 3> dwc;
        BlockedTensor act, dact;
        GemmVariants kv;
        int trials = 0, choice = -1;  // choice: -1 measuring, 0 dense, 1 compact
        bool use = false;             // this micro-batch's mode
        double t_fwd = 0, t_dense = 0, t_compact = 0;
    } cmp;
    // k x k conv
    ops::ConvGeometry geom;
    ops::PackedConv2d conv;
    train_ops::PackedConv2dBackward convb;
    Halide::Runtime::Buffer<float, 4> dconv;
    // BatchNorm
    train_ops::BatchNormTrain bn;
    train_ops::BatchNormSaved saved;
    ChannelVector dgamma, dbeta;
    // LayerNorm / GRN / Scale
    ops::LayerNormParams ln;
    ops::GrnParams grn;
    ops::ChannelAffine scale;
    // ChannelSelect
    ops::ChannelIndex index;
    train_ops::ChannelSelectBackward index_b;
    // Depth-wise families
    Workload wl;
    bool sparse = false;     // runs the sparse kernels (masked weights)
    int sparse_choice = -1;  // measured at the first masked forward: 1 sparse, 0 dense kernels
    std::unique_ptr<DwLayer> layer;
    int layer_version = -1;
    std::unique_ptr<OpRunner> bwd_data, bwd_weight;
    std::vector<int> slots;  // parameter slots of the node, by role order
    std::map<std::string, int> role_slot;
    int group = -1;  // dwconv2d: its DwGroup; -1: the OpRunner path (sparse kernels)
    // Residual add with drop path: the rate, this step's per-sample scale of the branch (0 or
    // 1 / (1 - rate)) and the scaled branch.
    double drop_rate = 0;
    std::vector<float> drop_scale;
    BlockedTensor dropped;
    double fwd_ms = 0, bwd_ms = 0;
};

// Dense depth-wise nodes reading one tensor, run by one DwTrainLayer on blocked buffers (the
// train form of a re-parameterised block: its branches in one pass, one output each). Their
// outputs and output gradients are slices of one stacked buffer each, so the layer reads and
// writes them in place. Membership is settled at the first forward (`decided`): masked members
// whose sparse kernels measure faster leave for the OpRunner path, and a group whose fused
// layer measures slower than one layer per member is split.
struct DwGroup {
    std::vector<int> members;  // node indices, ascending; the first runs the group
    int input = -1;
    bool decided = false;
    std::unique_ptr<DwTrainLayer> layer;
    Stacked act, grad;
    int version = -1;
    std::string choice;                 // how membership was settled (profile, tests)
    std::vector<std::string> variants;  // one layer: the measured (or restored) kernel variants
};

}  // namespace

struct Trainer::Impl {
    TrainOptions o;
    Graph g;
    Device d = Device::Cpu;
    std::vector<Slot> slots;
    std::map<std::string, int> slot_of;
    std::vector<NodeState> ns;
    std::vector<DwGroup> groups;
    std::vector<BlockedTensor> act, grad, scratch;
    std::vector<bool> grad_set, needs_grad;
    MaskSet masks;
    std::mt19937_64 rng;
    std::mt19937_64 drop_rng;  // drop path: its own stream (checkpointed)
    int64_t steps = 0;         // optimizer steps taken
    int micro = 0;             // micro-batches since the last step
    bool timing = false;
    bool groups_masked = false;  // groups rebuilt since masks appeared
    // Memory plan: the arena, and the two views of each recomputed activation.
    TrainMemoryPlan plan;
    bool use_recompute = false;
    Halide::Runtime::Buffer<float, 1> arena;
    std::vector<BlockedTensor> act_home, grad_home;  // as allocated (fused groups re-point)
    std::vector<Blocked> fwd_view, back_view;
    std::vector<bool> recomputed_now;

    // ---- set-up ---------------------------------------------------------------------------

    int add_slot(const std::string& key, Store store, Buf value, Tensor plain = Tensor(),
                 int ci = 0, int co = 0) {
        auto it = slot_of.find(key);
        if (it != slot_of.end()) return it->second;
        Slot s;
        s.key = key;
        s.store = store;
        s.shape = g.param(key).shape;
        s.ci = ci;
        s.co = co;
        s.value = value;
        s.plain = plain;
        s.grad = zeros_like(value);
        s.m = zeros_like(value);
        if (o.optimizer == "adamw") s.v = zeros_like(value);
        if (o.ema_decay > 0) s.ema = copy_buf(value);
        s.decay = s.shape.size() >= 2;
        slots.push_back(std::move(s));
        slot_of[key] = int(slots.size()) - 1;
        return int(slots.size()) - 1;
    }

    Tensor value(const Node& n, const std::string& role) const {
        return f32(g.param_value(n, role));
    }

    // A plain slot for (n, role): the tensor and a flat view of it.
    int plain_slot(const Node& n, const std::string& role) {
        const std::string key = n.param(role);
        auto it = slot_of.find(key);
        if (it != slot_of.end()) return it->second;
        Tensor t = value(n, role);
        Buf view(t.data<float>(), {int(t.numel())});
        return add_slot(key, Store::Plain, view, t);
    }

    int channel_slot(const std::string& key, ChannelVector& v) {
        return add_slot(key, Store::Channels, Buf(v.buf));
    }

    // A norm's per-channel weight / bias as optimizer slots with gradients dgamma / dbeta.
    template <class Bind>
    void bind_affine(const Node& n, NodeState& s, ChannelVector& weight, ChannelVector& bias,
                     Bind& bind) {
        const int C = int(shape_numel(g.param(n.param("weight")).shape));
        s.dgamma = train_ops::make_channel_grad(C);
        s.dbeta = train_ops::make_channel_grad(C);
        const int sw = channel_slot(n.param("weight"), weight);
        const int sb = channel_slot(n.param("bias"), bias);
        slots[size_t(sw)].grad = Buf(s.dgamma.buf);
        slots[size_t(sb)].grad = Buf(s.dbeta.buf);
        bind("weight", sw);
        bind("bias", sb);
    }

    void setup_node(size_t i) {
        const Node& n = g.nodes[i];
        NodeState& s = ns[i];
        auto bind = [&](const std::string& role, int slot) {
            s.role_slot[role] = slot;
            s.slots.push_back(slot);
        };
        switch (n.op) {
            case OpKind::Conv2d:
            case OpKind::Linear: {
                const Tensor w = value(n, "weight");
                Tensor b;
                s.has_bias = n.has_param("bias");
                if (s.has_bias) b = value(n, "bias");
                const bool pointwise =
                    n.op == OpKind::Linear ||
                    (w.dim(2) == 1 && w.dim(3) == 1 && n.attrs.stride == 1 && n.attrs.pad_h == 0 &&
                     n.attrs.pad_w == 0 && n.attrs.groups == 1 && n.attrs.dilation == 1);
                if (pointwise) {
                    s.lin = ops::pack_linear(w, s.has_bias ? &b : nullptr);
                    s.lin_t = train_ops::make_linear_transposed(s.lin);
                    train_ops::transpose_linear(s.lin, s.lin_t, d);
                    s.dlin =
                        train_ops::make_linear_weight_grad(s.lin.in_channels, s.lin.out_channels);
                    const int sw = add_slot(n.param("weight"), Store::Packed, Buf(s.lin.weight),
                                            Tensor(), s.lin.in_channels, s.lin.out_channels);
                    bind("weight", sw);
                    slots[size_t(sw)].grad = Buf(s.dlin);
                    if (s.has_bias) {
                        const int sb = channel_slot(n.param("bias"), s.lin.bias);
                        bind("bias", sb);
                        s.dbias = train_ops::make_channel_grad(s.lin.out_channels);
                        slots[size_t(sb)].grad = Buf(s.dbias.buf);
                    }
                } else {
                    s.geom.stride = n.attrs.stride;
                    s.geom.pad_h = n.attrs.pad_h;
                    s.geom.pad_w = n.attrs.pad_w;
                    s.geom.dilation = n.attrs.dilation;
                    s.geom.groups = n.attrs.groups;
                    const int sw = plain_slot(n, "weight");
                    bind("weight", sw);
                    s.conv = ops::pack_conv2d(slots[size_t(sw)].plain, s.has_bias ? &b : nullptr,
                                              s.geom);
                    s.convb = train_ops::pack_conv2d_backward(slots[size_t(sw)].plain, s.geom);
                    s.dconv = train_ops::make_conv2d_weight_grad(s.convb);
                    // The optimizer's gradient is the flat view of dconv ([Co, Ci/g, kh, kw]).
                    slots[size_t(sw)].grad =
                        Buf(s.dconv.data(), {int(s.dconv.number_of_elements())});
                    if (s.has_bias) {
                        const int sb = channel_slot(n.param("bias"), s.conv.bias);
                        bind("bias", sb);
                        s.dbias = train_ops::make_channel_grad(int(w.dim(0)));
                        slots[size_t(sb)].grad = Buf(s.dbias.buf);
                    }
                }
                return;
            }
            case OpKind::DwConv2d:
            case OpKind::DwConv2dMulti:
            case OpKind::DwConv2dSparse:
            case OpKind::ShiftWise: {
                const auto w = graph::node_workload(g, n, Pass::Fwd);
                if (!w) fail(n, "outside the depth-wise kernels' limits");
                s.wl = *w;
                if (n.op == OpKind::ShiftWise && n.has_param("ah"))
                    fail(n, "the fused inference form is not a train form");
                for (const auto& [role, key] : n.params) {
                    (void)key;
                    bind(role, plain_slot(n, role));
                }
                return;
            }
            case OpKind::BatchNorm: {
                s.bn = train_ops::pack_batchnorm_train(value(n, "weight"), value(n, "bias"),
                                                       value(n, "running_mean"),
                                                       value(n, "running_var"), n.attrs.eps);
                s.saved = train_ops::make_batchnorm_saved(int(g.param(n.param("weight")).shape[0]));
                bind_affine(n, s, s.bn.gamma, s.bn.beta, bind);
                return;
            }
            case OpKind::LayerNorm: {
                s.ln = ops::pack_layer_norm(value(n, "weight"), value(n, "bias"), n.attrs.eps);
                bind_affine(n, s, s.ln.weight, s.ln.bias, bind);
                return;
            }
            case OpKind::Grn: {
                Tensor beta;
                if (n.has_param("beta")) beta = value(n, "beta");
                s.grn =
                    ops::pack_grn(value(n, "gamma"), beta.empty() ? nullptr : &beta, n.attrs.eps);
                const int C = int(shape_numel(g.param(n.param("gamma")).shape));
                s.dgamma = train_ops::make_channel_grad(C);
                s.dbeta = train_ops::make_channel_grad(C);
                const int sg = channel_slot(n.param("gamma"), s.grn.gamma);
                slots[size_t(sg)].grad = Buf(s.dgamma.buf);
                bind("gamma", sg);
                if (n.has_param("beta")) {
                    const int sb = channel_slot(n.param("beta"), s.grn.beta);
                    slots[size_t(sb)].grad = Buf(s.dbeta.buf);
                    bind("beta", sb);
                }
                return;
            }
            case OpKind::Scale: {
                s.scale = ops::layer_scale_affine(value(n, "weight"));
                const int C = int(shape_numel(g.param(n.param("weight")).shape));
                s.dgamma = train_ops::make_channel_grad(C);
                const int sw = channel_slot(n.param("weight"), s.scale.scale);
                slots[size_t(sw)].grad = Buf(s.dgamma.buf);
                bind("weight", sw);
                return;
            }
            case OpKind::ChannelSelect: {
                const int C = int(g.tensor(n.inputs[0]).shape[1]);
                s.index = ops::pack_channel_index(g.constant_value(n, "index"), C);
                s.index_b = train_ops::pack_channel_select_backward(s.index);
                return;
            }
            case OpKind::Gelu:
            case OpKind::Relu:
            case OpKind::Sigmoid:
            case OpKind::Softmax:
            case OpKind::Add:
            case OpKind::Mul:
            case OpKind::GlobalAvgPool:
            case OpKind::Concat:
            case OpKind::Flatten:
                return;
            default:
                fail(n, "no training support for this op");
        }
    }

    // ---- depth-wise layers ---------------------------------------------------------------

    std::map<std::string, Tensor> dw_params(const Node& n, NodeState& s) {
        std::map<std::string, Tensor> p;
        const Workload& w = s.wl;
        auto slot_tensor = [&](const std::string& role) -> Tensor& {
            return slots[size_t(s.role_slot.at(role))].plain;
        };
        if (w.op == Op::ShiftWise) {
            const int R = w.c, nk = w.num_sub_kernels(), k = w.small_k;
            Tensor sum(DType::F32, {R, nk, k, k});
            for (const auto& [role, slot] : s.role_slot) {
                if (role.rfind("weight", 0) != 0) continue;
                const Tensor& t = slots[size_t(slot)].plain;
                for (int64_t i = 0; i < t.numel(); ++i) sum.data<float>()[i] += t.data<float>()[i];
            }
            p["w"] = sum;
            for (const char* r : {"slot_h", "slot_v", "ident"}) p[r] = g.constant_value(n, r);
        } else if (w.op == Op::DwConv2dMulti) {
            for (size_t b = 0; b < w.branches.size(); ++b)
                p["w" + std::to_string(b)] = slot_tensor("weight" + std::to_string(b));
        } else {
            p["w"] = slot_tensor("weight");
            if (w.op == Op::DwConv2dSparse) p["mask"] = f32(g.constant_value(n, "mask"));
        }
        if (s.role_slot.count("bias") && w.op != Op::ShiftWise) p["b"] = slot_tensor("bias");
        return p;
    }

    int node_version(const NodeState& s) const {
        int v = 0;
        for (int sl : s.slots) v += slots[size_t(sl)].version;
        return v;
    }

    // Dense layers with masked weights run the sparse kernels when those measure faster: at the
    // first masked forward both layers are built and run on the batch (median of 3, layer set-up
    // included: weights change every step, so the tap lists are rebuilt every step too). The
    // masks keep their counts through prune-and-regrow, so the choice holds for the run.
    Workload run_workload(const Node& n, NodeState& s, const std::map<std::string, Tensor>& p) {
        Workload w = s.wl;
        s.sparse = false;
        if (w.op != Op::DwConv2d || !s.role_slot.count("weight") ||
            !masks.masks().count(n.param("weight")))
            return w;
        Workload sp = w;
        sp.op = Op::DwConv2dSparse;
        if (s.sparse_choice < 0) {
            std::map<std::string, Tensor> ps = p;
            ps["mask"] = masks.masks().at(n.param("weight"));
            const BlockedTensor& x = act[size_t(n.inputs[0])];
            Blocked& y = act[size_t(n.outputs[0])].buf;
            auto time_ms = [&](const Workload& wl, const std::map<std::string, Tensor>& params) {
                std::vector<double> t;
                for (int r = 0; r < 3; ++r) {
                    const double t0 = now_ms();
                    make_dw_layer(wl, d, params)->run(x.buf, y);
                    t.push_back(now_ms() - t0);
                }
                std::sort(t.begin(), t.end());
                return t[1];
            };
            s.sparse_choice = time_ms(sp, ps) < time_ms(w, p) ? 1 : 0;
        }
        s.sparse = s.sparse_choice == 1;
        return s.sparse ? sp : w;
    }

    void dw_forward(const Node& n, NodeState& s) {
        const int ver = node_version(s);
        if (!s.layer || s.layer_version != ver) {
            std::map<std::string, Tensor> p = dw_params(n, s);
            Workload w = run_workload(n, s, p);
            if (s.sparse) p["mask"] = masks.masks().at(n.param("weight"));
            s.layer = make_dw_layer(w, d, p);
            s.layer_version = ver;
            Workload bd = w, bw = w;
            bd.pass = Pass::BwdData;
            bw.pass = Pass::BwdWeight;
            if (!s.bwd_data || s.bwd_data->workload() != bd) s.bwd_data = make_runner(bd, d);
            if (!s.bwd_weight || s.bwd_weight->workload() != bw) s.bwd_weight = make_runner(bw, d);
        }
        const BlockedTensor& x = act[size_t(n.inputs[0])];
        if (n.outputs.size() == 1) {
            s.layer->run(x.buf, act[size_t(n.outputs[0])].buf);
        } else {
            std::vector<Blocked*> ys;
            for (int o : n.outputs) ys.push_back(&act[size_t(o)].buf);
            s.layer->run(x.buf, ys);
        }
    }

    void dw_backward(const Node& n, NodeState& s) {
        const Workload& w = s.bwd_data->workload();
        std::map<std::string, Tensor> p = dw_params(n, s);
        if (s.sparse) p["mask"] = masks.masks().at(n.param("weight"));
        // dy tensors in file layout.
        std::map<std::string, Tensor> dys;
        if (w.op == Op::ShiftWise) {
            const char* names[] = {"dyh", "dyv", "dys"};
            for (size_t k = 0; k < 3; ++k) {
                const int o = n.outputs[k];
                dys[names[k]] = grad_set[size_t(o)] ? ops::from_blocked_tensor(grad[size_t(o)])
                                                    : Tensor(DType::F32, g.tensor(o).shape);
            }
        } else {
            dys["dy"] = ops::from_blocked_tensor(grad[size_t(n.outputs[0])]);
        }
        const int in = n.inputs[0];
        if (needs_grad[size_t(in)]) {
            std::map<std::string, Tensor> bin = dys;
            for (const auto& [k, t] : p)
                if (k != "b") bin[k] = t;
            s.bwd_data->set_inputs(bin);
            s.bwd_data->run();
            const Tensor dx = s.bwd_data->outputs().at("dx");
            add_grad(in, ops::to_blocked_tensor(dx));
        }
        std::map<std::string, Tensor> win = dys;
        win["x"] = ops::from_blocked_tensor(act[size_t(in)]);
        if (w.op == Op::ShiftWise) {
            for (const char* r : {"slot_h", "slot_v", "ident"}) win[r] = p.at(r);
        }
        if (s.sparse || w.op == Op::DwConv2dSparse) win["mask"] = p.at("mask");
        s.bwd_weight->set_inputs(win);
        s.bwd_weight->run();
        const auto out = s.bwd_weight->outputs();
        auto add_to = [&](int slot, const Tensor& t) {
            Buf& gb = slots[size_t(slot)].grad;
            float* q = gb.data();
            for (int64_t i = 0; i < t.numel(); ++i) q[i] += t.data<float>()[i];
            gb.set_host_dirty();
        };
        for (const auto& [role, slot] : s.role_slot) {
            if (role == "bias") {
                add_to(slot, out.at("db"));
            } else if (w.op == Op::DwConv2dMulti) {
                add_to(slot, out.at("dw" + role.substr(6)));
            } else {
                add_to(slot, out.at("dw"));  // shift-wise paths: the gradient of their sum
            }
        }
    }

    // ---- memory plan ----------------------------------------------------------------------

    BlockedTensor arena_view(int64_t offset, const Shape& s) {
        const int N = int(s[0]), C = int(s[1]), H = s.size() == 4 ? int(s[2]) : 1,
                  W = s.size() == 4 ? int(s[3]) : 1;
        BlockedTensor b;
        b.channels = C;
        b.buf = Blocked(arena.data() + offset / 4, 16, W, H, (C + 15) / 16, N);
        return b;
    }

    void allocate(bool planned) {
        plan = plan_training_memory(g, needs_grad, use_recompute);
        if (planned) {
            // One Halide buffer: at most 2^31 - 1 floats (8 GiB).
            if (plan.arena_bytes / 4 > int64_t(std::numeric_limits<int>::max()))
                throw std::invalid_argument(
                    "trainer: the step needs a " + std::to_string(plan.arena_bytes >> 20) +
                    " MiB activation / gradient arena, more than one buffer holds (8 GiB): use a "
                    "smaller --batch with --grad-accum");
            arena =
                Halide::Runtime::Buffer<float, 1>(int(std::max<int64_t>(16, plan.arena_bytes / 4)));
            arena.fill(o.poison_arena ? std::numeric_limits<float>::quiet_NaN() : 0.0f);
        }
        const size_t nt = g.tensors.size();
        act_home.clear();
        grad_home.clear();
        fwd_view.assign(nt, Blocked());
        back_view.assign(nt, Blocked());
        recomputed_now.assign(nt, false);
        for (size_t i = 0; i < nt; ++i) {
            const Shape& s = g.tensors[i].shape;
            const int N = int(s[0]), C = int(s[1]), H = s.size() == 4 ? int(s[2]) : 1,
                      W = s.size() == 4 ? int(s[3]) : 1;
            auto own = [&]() { return ops::make_blocked_tensor(N, C, H, W); };
            act[i] = planned && plan.act_offset[i] >= 0 ? arena_view(plan.act_offset[i], s) : own();
            if (needs_grad[i]) {
                grad[i] = planned && plan.grad_offset[i] >= 0 ? arena_view(plan.grad_offset[i], s)
                                                              : own();
                scratch[i] = planned && plan.scratch_offset[i] >= 0
                                 ? arena_view(plan.scratch_offset[i], s)
                                 : own();
            }
            act_home.push_back(act[i]);
            grad_home.push_back(grad[i]);
            if (plan.recomputed[i]) {
                fwd_view[i] = act[i].buf;
                back_view[i] = arena_view(plan.back_offset[i], s).buf;
            }
        }
    }

    // Before a forward: recomputed activations back at their forward storage.
    void begin_forward() {
        if (!use_recompute) return;
        for (size_t t = 0; t < act.size(); ++t)
            if (plan.recomputed[t]) {
                act[t].buf = fwd_view[t];
                recomputed_now[t] = false;
            }
    }

    // The backward of every node in reverse order, recomputing what a node's backward reads
    // first (at its backward storage).
    void backward_all() {
        std::vector<int> producer(g.tensors.size(), -1);
        if (use_recompute)
            for (size_t i = 0; i < g.nodes.size(); ++i)
                for (int t : g.nodes[i].outputs) producer[size_t(t)] = int(i);
        for (size_t i = g.nodes.size(); i-- > 0;) {
            const double t0 = timing ? now_ms() : 0;
            if (use_recompute) {
                for (int t : backward_reads(g, g.nodes[i])) {
                    if (!plan.recomputed[size_t(t)] || recomputed_now[size_t(t)]) continue;
                    act[size_t(t)].buf = back_view[size_t(t)];
                    forward_node(size_t(producer[size_t(t)]));
                    recomputed_now[size_t(t)] = true;
                }
            }
            backward_node(i);
            if (timing) ns[i].bwd_ms = now_ms() - t0;
        }
    }

    // ---- depth-wise groups (runtime/dw_train.h) --------------------------------------------

    // Masked weights that get lane-row masks: stride-1 dense depth-wise nodes (DwTrainLayer's
    // row-mask kernels; stride-2 ones keep per-weight masks).
    std::set<std::string> lane_row_keys() const {
        const auto maskable = maskable_params(g);
        const std::set<std::string> mk(maskable.begin(), maskable.end());
        std::set<std::string> keys;
        for (size_t i = 0; i < g.nodes.size(); ++i)
            if (g.nodes[i].op == OpKind::DwConv2d && ns[i].wl.op == Op::DwConv2d &&
                ns[i].wl.stride == 1 && mk.count(g.nodes[i].param("weight")))
                keys.insert(g.nodes[i].param("weight"));
        return keys;
    }
    // Masked Linear / 1x1 conv weights with two or more lane blocks on the longer axis.
    std::set<std::string> lane_block_keys() const {
        const auto maskable = maskable_params(g);
        const std::set<std::string> mk(maskable.begin(), maskable.end());
        std::set<std::string> keys;
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            const Node& n = g.nodes[i];
            if ((n.op != OpKind::Conv2d && n.op != OpKind::Linear) || !ns[i].lin.in_channels ||
                !mk.count(n.param("weight")))
                continue;
            if (lane_blockable(g.param(n.param("weight")).shape)) keys.insert(n.param("weight"));
        }
        return keys;
    }
    // A GEMM node's compact form from its current lane-block mask (after init, resume, prune);
    // off for other nodes or with compact_gemm Never.
    void set_compact(size_t i) {
        const Node& n = g.nodes[i];
        NodeState& s = ns[i];
        auto& c = s.cmp;
        const bool was_on = c.on;
        const size_t was_kept = c.kept.size();
        c.on = false;
        if ((n.op != OpKind::Conv2d && n.op != OpKind::Linear) || !s.lin.in_channels) return;
        const std::string& key = n.param("weight");
        if (o.compact_gemm != TrainOptions::Compact::Never && masks.lane_blocks(key) &&
            masks.masks().count(key)) {
            c.out_axis = masks.lane_axis(key) == LaneAxis::Out;
            const std::vector<uint8_t> flags = masks.block_flags(key);
            c.kept = train_ops::kept_blocks(flags);
            c.on = c.kept.size() < flags.size();  // all kept (ERK: small layers): dense GEMMs
        }
        // Same compact shapes (a prune moves blocks, not their count): the buffers stay, and
        // after_update re-gathers the weights. Other shapes: new buffers, measure again.
        if (!c.on || (was_on && c.kept.size() == was_kept)) return;
        c.kv = NodeState::GemmVariants{};
        c.trials = 0;
        c.choice = o.compact_gemm == TrainOptions::Compact::Always ? 1 : -1;
        c.t_dense = c.t_compact = 0;
        c.wc = train_ops::make_linear_blocks(s.lin, c.kept, c.out_axis);
        c.wc_t = train_ops::make_linear_transposed(c.wc);
        c.dwc = train_ops::make_linear_weight_grad(c.wc.in_channels, c.wc.out_channels);
    }
    // The fastest of `names` for run(name): one untimed call each, then the least time of two.
    template <typename F>
    std::string fastest_of(const std::vector<std::string>& names, F run) {
        std::string best;
        double best_ms = std::numeric_limits<double>::infinity();
        for (const std::string& k : names) {
            run(k);
            double t = std::numeric_limits<double>::infinity();
            for (int rep = 0; rep < 2; ++rep) {
                const double t0 = now_ms();
                run(k);
                t = std::min(t, now_ms() - t0);
            }
            if (t < best_ms) best_ms = t, best = k;
        }
        return best;
    }
    // y = gemm(x, w) with the forward variant of kv (timed first when due).
    void gemm_forward(NodeState::GemmVariants& kv, const BlockedTensor& x,
                      const ops::PackedLinear& w, BlockedTensor& y) {
        if (o.measure_gemm && !kv.fwd_timed) {
            kv.fwd = fastest_of(ops::gemm_kernel_names(d), [&](const std::string& k) {
                ops::gemm(x, w, ops::Epilogue{}, y, d, k);
            });
            kv.fwd_timed = true;
        }
        ops::gemm(x, w, ops::Epilogue{}, y, d, kv.fwd);
    }
    // dx = wt dy (overwritten) with the backward-data variant of kv.
    void gemm_backward_data(NodeState::GemmVariants& kv, const BlockedTensor& dy,
                            const ops::PackedLinear& wt, BlockedTensor& dx) {
        if (o.measure_gemm && !kv.bwd_timed)
            kv.bd = fastest_of(ops::gemm_kernel_names(d), [&](const std::string& k) {
                train_ops::linear_backward_data(dy, wt, dx, d, false, k);
            });
        train_ops::linear_backward_data(dy, wt, dx, d, false, kv.bd);
    }
    // dw (+)= dy x^T (no bias) with the backward-weight variant of kv, timed on a scratch buffer
    // (accumulate holds); marks kv's backward timed.
    void gemm_backward_weight(NodeState::GemmVariants& kv, const BlockedTensor& x,
                              const BlockedTensor& dy, Halide::Runtime::Buffer<float, 3>& dw,
                              bool accumulate) {
        if (o.measure_gemm && !kv.bwd_timed) {
            Halide::Runtime::Buffer<float, 3> tmp(dw.dim(0).extent(), dw.dim(1).extent(),
                                                  dw.dim(2).extent());
            kv.bw = fastest_of(train_ops::linear_wgrad_kernel_names(d), [&](const std::string& k) {
                train_ops::linear_backward_weight(x, dy, tmp, nullptr, d, false, k);
            });
        }
        train_ops::linear_backward_weight(x, dy, dw, nullptr, d, accumulate, kv.bw);
        kv.bwd_timed = true;
    }
    // The forward of a 1x1 conv / Linear: dense, or on the kept blocks (measured, see Compact).
    void gemm_node_forward(NodeState& s, const BlockedTensor& x, BlockedTensor& y) {
        auto& c = s.cmp;
        if (!c.on) return gemm_forward(s.kv, x, s.lin, y);
        c.use = c.choice >= 0 ? c.choice == 1 : c.trials >= 3;
        const double t0 = now_ms();
        if (c.use) {
            compact_forward(s, x, y);
        } else {
            gemm_forward(s.kv, x, s.lin, y);
        }
        c.t_fwd = now_ms() - t0;
    }
    void gemm_node_backward(NodeState& s, const BlockedTensor& x, const BlockedTensor& dy, int in0,
                            bool need_dx) {
        auto& c = s.cmp;
        const double t0 = now_ms();
        if (c.on && c.use) {
            compact_backward(s, x, dy, in0, need_dx);
        } else {
            if (need_dx) {
                gemm_backward_data(s.kv, dy, s.lin_t, grad_out(in0));
                commit(in0);
            }
            gemm_backward_weight(s.kv, x, dy, s.dlin, /*accumulate=*/true);
            if (s.has_bias) train_ops::bias_backward(dy, s.dbias, d, true);
        }
        if (!c.on || c.choice >= 0) return;
        const double t = c.t_fwd + now_ms() - t0;
        if (c.trials == 1 || c.trials == 2) c.t_dense += t;
        if (c.trials == 4 || c.trials == 5) c.t_compact += t;
        if (++c.trials == 6) c.choice = c.t_compact < c.t_dense ? 1 : 0;
    }
    // t as the compact tensor of `like`'s N, H, W with the kept blocks (reallocated on a change).
    static void ensure_compact(BlockedTensor& t, const BlockedTensor& like,
                               const std::vector<int>& kept) {
        if (!t.buf.data() || t.n() != like.n() || t.h() != like.h() || t.w() != like.w() ||
            t.blocks() != int(kept.size()))
            t = train_ops::make_compact(like, kept);
    }
    void compact_forward(NodeState& s, const BlockedTensor& x, BlockedTensor& y) {
        auto& c = s.cmp;
        if (c.out_axis) {
            ensure_compact(c.act, y, c.kept);
            gemm_forward(c.kv, x, c.wc, c.act);
            train_ops::scatter_blocks(c.act, c.kept, &s.lin.bias, y);  // pruned rows: bias
        } else {
            ensure_compact(c.act, x, c.kept);  // kept for the backward
            train_ops::gather_blocks(x, c.kept, c.act);
            gemm_forward(c.kv, c.act, c.wc, y);
        }
    }
    void compact_backward(NodeState& s, const BlockedTensor& x, const BlockedTensor& dy, int in0,
                          bool need_dx) {
        auto& c = s.cmp;
        // The kept blocks' running gradient sum goes in and the kernel accumulates onto it, as
        // the dense kernel does (prior + pixel-block partials): bitwise equal over micro-batches.
        train_ops::copy_linear_grad(s.dlin, c.kept, c.out_axis, c.dwc, true);
        if (c.out_axis) {
            ensure_compact(c.dact, dy, c.kept);
            train_ops::gather_blocks(dy, c.kept, c.dact);
            if (need_dx) {
                gemm_backward_data(c.kv, c.dact, c.wc_t, grad_out(in0));
                commit(in0);
            }
            gemm_backward_weight(c.kv, x, c.dact, c.dwc, true);
        } else {
            if (need_dx) {
                ensure_compact(c.dact, x, c.kept);
                gemm_backward_data(c.kv, dy, c.wc_t, c.dact);
                train_ops::scatter_blocks(c.dact, c.kept, nullptr, grad_out(in0));
                commit(in0);
            }
            gemm_backward_weight(c.kv, c.act, dy, c.dwc, true);
        }
        train_ops::copy_linear_grad(s.dlin, c.kept, c.out_axis, c.dwc, false);
        if (s.has_bias) train_ops::bias_backward(dy, s.dbias, d, true);  // bias is not masked
    }
    bool lane_rows_node(int i) const {
        const Node& n = g.nodes[size_t(i)];
        return n.has_param("weight") && masks.lane_rows(n.param("weight")) &&
               masks.masks().count(n.param("weight"));
    }
    // A one-node group's row mask from the node's current mask (after init, resume, prune).
    void set_row_mask(DwGroup& gr) {
        if (!gr.layer || gr.members.size() != 1 || !lane_rows_node(gr.members[0])) return;
        gr.layer->set_row_mask(masks.row_flags(g.nodes[size_t(gr.members[0])].param("weight")));
    }

    // Candidate groups: dense dwconv2d nodes of stride 1 by input tensor (a block's branches);
    // any other dense dwconv2d node (stride 2) alone. Rebuilt when masks first appear, so that
    // masked members are measured against the sparse kernels.
    void make_groups() {
        groups.clear();
        std::map<int, int> by_input;
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            NodeState& s = ns[i];
            s.group = -1;
            if (g.nodes[i].op != OpKind::DwConv2d || s.wl.op != Op::DwConv2d) continue;
            // Back to the planned buffers (a fused group may have re-pointed them).
            const int o = g.nodes[i].outputs[0];
            act[size_t(o)] = act_home[size_t(o)];
            grad[size_t(o)] = grad_home[size_t(o)];
            s.sparse_choice = -1;
            s.layer.reset();
            const int in = g.nodes[i].inputs[0];
            auto it = by_input.find(in);
            int gi;
            if (s.wl.stride == 1 && it != by_input.end()) {
                gi = it->second;
            } else {
                groups.emplace_back();
                gi = int(groups.size()) - 1;
                groups[size_t(gi)].input = in;
                if (s.wl.stride == 1) by_input[in] = gi;
            }
            groups[size_t(gi)].members.push_back(int(i));
            s.group = gi;
        }
    }

    std::unique_ptr<DwTrainLayer> make_group_layer(const std::vector<int>& members) {
        const Workload& w0 = ns[size_t(members[0])].wl;
        std::vector<Branch> br;
        for (int i : members) {
            const Workload& w = ns[size_t(i)].wl;
            br.push_back({w.kh, w.kw, w.dilation});
        }
        auto l = std::make_unique<DwTrainLayer>(w0.n, w0.c, w0.h, w0.w, w0.stride, br, d);
        set_group_weights(*l, members);
        return l;
    }

    void set_group_weights(DwTrainLayer& l, const std::vector<int>& members) {
        std::vector<const float*> wp, bp;
        for (int i : members) {
            const NodeState& s = ns[size_t(i)];
            wp.push_back(slots[size_t(s.role_slot.at("weight"))].plain.data<float>());
            auto b = s.role_slot.find("bias");
            bp.push_back(b == s.role_slot.end() ? nullptr
                                                : slots[size_t(b->second)].plain.data<float>());
        }
        l.set_weights(wp, bp);
    }

    // One forward + backward-data + backward-weight of each layer on the batch (ms), summed.
    struct LayerTimer {
        std::vector<std::unique_ptr<DwTrainLayer>> layers;
        std::vector<Stacked> y;
        Blocked dx;
        std::vector<float> dw;
        double run(const Blocked& x) {
            const double t0 = now_ms();
            for (size_t i = 0; i < layers.size(); ++i) {
                std::vector<float*> dwp(size_t(layers[i]->branches()), dw.data());
                layers[i]->forward(x, y[i]);
                layers[i]->backward_data(y[i], dx);
                layers[i]->backward_weight(x, y[i], dwp, {});
            }
            return now_ms() - t0;
        }
    };
    LayerTimer layer_timer(const std::vector<std::vector<int>>& sets, const Blocked& x) {
        LayerTimer t;
        for (const auto& members : sets) {
            t.layers.push_back(make_group_layer(members));
            t.y.push_back(t.layers.back()->make_outputs());
        }
        t.dx = Blocked(x.dim(0).extent(), x.dim(1).extent(), x.dim(2).extent(), x.dim(3).extent(),
                       x.dim(4).extent());
        // Every dw[i] of a branch accumulates into one scratch (only the time matters).
        t.dw.assign(size_t(x.dim(3).extent()) * 16 * 63 * 63, 0.0f);
        return t;
    }

    void bind_group(DwGroup& gr) {
        gr.layer = make_group_layer(gr.members);
        gr.version = group_version(gr);
        gr.decided = true;
        set_row_mask(gr);
        if (gr.members.size() == 1) {  // the node's own (arena) buffers, seen as one slot
            const int o = g.nodes[size_t(gr.members[0])].outputs[0];
            gr.act = stacked_view(act[size_t(o)].buf);
            gr.grad = stacked_view(grad[size_t(o)].buf);
            return;
        }
        gr.act = gr.layer->make_outputs();
        gr.grad = gr.layer->make_outputs();
        for (size_t b = 0; b < gr.members.size(); ++b) {
            const int o = g.nodes[size_t(gr.members[b])].outputs[0];
            act[size_t(o)].buf = gr.act.sliced(3, int(b));
            grad[size_t(o)].buf = gr.grad.sliced(3, int(b));
        }
    }

    int group_version(const DwGroup& gr) const {
        int v = 0;
        for (int i : gr.members) v += node_version(ns[size_t(i)]);
        return v;
    }

    // Settles group gi's membership at its first forward (see DwGroup).
    void decide_group(int gi) {
        std::vector<int> keep;
        for (int i : groups[size_t(gi)].members) {
            const Node& n = g.nodes[size_t(i)];
            NodeState& s = ns[size_t(i)];
            if (masks.masks().count(n.param("weight")) && !lane_rows_node(i)) {
                run_workload(n, s, dw_params(n, s));
                if (s.sparse) {
                    s.group = -1;
                    continue;
                }
            }
            keep.push_back(i);
        }
        groups[size_t(gi)].members = keep;
        if (keep.empty()) {
            groups[size_t(gi)].decided = true;
            return;
        }
        bool lane_rows = false;
        for (int i : keep) lane_rows = lane_rows || lane_rows_node(i);
        if (keep.size() > 1) {
            bool split = o.fuse_branches == TrainOptions::Fuse::Never || lane_rows;
            std::string why = lane_rows ? "lane-row masks: one layer each"
                              : split   ? "--fuse-branches never"
                                        : "--fuse-branches always";
            if (o.fuse_branches == TrainOptions::Fuse::Measure && !lane_rows) {
                const Blocked& x = act[size_t(groups[size_t(gi)].input)].buf;
                // Interleaved, after a warm-up of each, the minimum of 5: steady against
                // other load on the machine (medians of 3 picked wrongly here).
                LayerTimer one = layer_timer({keep}, x), each = layer_timer({}, x);
                for (int i : keep) {
                    each.layers.push_back(make_group_layer({i}));
                    each.y.push_back(each.layers.back()->make_outputs());
                }
                one.run(x);
                each.run(x);
                double fused = 1e30, separate = 1e30;
                for (int r = 0; r < 5; ++r) {
                    fused = std::min(fused, one.run(x));
                    separate = std::min(separate, each.run(x));
                }
                char buf[96];
                std::snprintf(buf, sizeof buf,
                              "fused %.3f ms vs separate %.3f ms (fwd+bwd, min of 5)", fused,
                              separate);
                why = buf;
                split = separate < fused;
            }
            groups[size_t(gi)].choice = why;
            if (split) {
                groups[size_t(gi)].members = {keep[0]};
                for (size_t k = 1; k < keep.size(); ++k) {
                    DwGroup one;
                    one.members = {keep[k]};
                    one.input = groups[size_t(gi)].input;
                    one.choice = why;
                    groups.push_back(std::move(one));
                    ns[size_t(keep[k])].group = int(groups.size()) - 1;
                    bind_group(groups.back());
                }
            }
        }
        bind_group(groups[size_t(gi)]);
        // One layer per node: each pass's fastest compiled variant on this batch.
        // Lane-row masked layers always (the registry never picks the row-mask variants).
        for (DwGroup& gr : groups)
            if (gr.decided && gr.members.size() == 1 && gr.variants.empty() &&
                (o.measure_variants || lane_rows_node(gr.members[0]))) {
                gr.choice += (gr.choice.empty() ? "" : "; ") +
                             gr.layer->measure_variants(act[size_t(gr.input)].buf);
                gr.variants = gr.layer->variant_names();
            }
    }

    // How each node's depth-wise kernels were settled, for checkpoints (a resumed run must run
    // the same kernels to repeat the losses bitwise): -1 not yet, 0 its own layer, 1 fused with
    // its block, 2 the sparse kernels.
    std::vector<int64_t> dw_layout() const {
        std::vector<int64_t> code(g.nodes.size(), -1);
        for (const DwGroup& gr : groups)
            if (gr.decided)
                for (int m : gr.members) code[size_t(m)] = gr.members.size() > 1 ? 1 : 0;
        for (size_t i = 0; i < g.nodes.size(); ++i)
            if (g.nodes[i].op == OpKind::DwConv2d && ns[i].sparse_choice == 1 && ns[i].group < 0)
                code[i] = 2;
        return code;
    }
    void apply_dw_layout(const std::vector<int64_t>& code) {
        if (code.size() != g.nodes.size())
            throw std::runtime_error("checkpoint: train.dw_layout has " +
                                     std::to_string(code.size()) + " entries for " +
                                     std::to_string(g.nodes.size()) + " nodes");
        for (size_t i = 0; i < code.size(); ++i) {
            const Node& n = g.nodes[i];
            const bool grouped = n.op == OpKind::DwConv2d && ns[i].wl.op == Op::DwConv2d;
            const bool masked = grouped && masks.masks().count(n.param("weight"));
            const int64_t c = code[i];
            if (c < -1 || c > 2 || (c >= 0 && !grouped) || (c == 2 && !masked))
                throw std::runtime_error(
                    "checkpoint: train.dw_layout[" + std::to_string(i) +
                    "] = " + std::to_string(c) + " for node '" + n.name + "' (" +
                    graph::op_name(n.op) + (masked ? ", masked" : "") +
                    "): expected -1, 0 or 1 for a depth-wise node, 2 only for a masked one, -1 "
                    "for any other");
        }
        make_groups();
        std::vector<DwGroup> old = std::move(groups);
        groups.clear();
        auto add = [&](std::vector<int> members, bool bind) {
            DwGroup gr;
            gr.members = std::move(members);
            gr.input = g.nodes[size_t(gr.members[0])].inputs[0];
            gr.choice = "from the checkpoint";
            groups.push_back(std::move(gr));
            for (int m : groups.back().members) ns[size_t(m)].group = int(groups.size()) - 1;
            if (bind) bind_group(groups.back());
        };
        for (DwGroup& og : old) {
            bool settled = true;
            for (int m : og.members) settled = settled && code[size_t(m)] >= 0;
            if (!settled) {
                add(og.members, false);
                continue;
            }
            std::vector<int> fused;
            for (int m : og.members) {
                NodeState& s = ns[size_t(m)];
                if (masks.masks().count(g.nodes[size_t(m)].param("weight")))
                    s.sparse_choice = code[size_t(m)] == 2 ? 1 : 0;
                if (code[size_t(m)] == 2) {
                    s.group = -1;
                } else if (code[size_t(m)] == 1) {
                    fused.push_back(m);
                } else {
                    add({m}, true);
                }
            }
            if (!fused.empty()) add(fused, true);
        }
    }

    void group_forward(size_t i) {
        if (!groups[size_t(ns[i].group)].decided) decide_group(ns[i].group);
        if (ns[i].group < 0) return dw_forward(g.nodes[i], ns[i]);  // left for the sparse kernels
        DwGroup& gr = groups[size_t(ns[i].group)];
        if (gr.members[0] != int(i)) return;  // the first member runs the group
        const int ver = group_version(gr);
        if (ver != gr.version) {
            set_group_weights(*gr.layer, gr.members);
            gr.version = ver;
        }
        gr.layer->forward(act[size_t(gr.input)].buf, gr.act);
    }

    // At the first member, the last of the group reached in reverse order: every member's output
    // gradient is complete.
    void group_backward(size_t i) {
        DwGroup& gr = groups[size_t(ns[i].group)];
        if (gr.members[0] != int(i)) return;
        bool any = false;
        for (size_t b = 0; b < gr.members.size(); ++b) {
            const int o = g.nodes[size_t(gr.members[b])].outputs[0];
            if (grad_set[size_t(o)]) {
                any = true;
            } else {
                grad[size_t(o)].buf.fill(0.0f);
            }
        }
        if (!any) return;
        const int in = gr.input;
        if (needs_grad[size_t(in)]) {
            gr.layer->backward_data(gr.grad, grad_out(in).buf);
            commit(in);
        }
        std::vector<float*> dw, db;
        for (int m : gr.members) {
            const NodeState& s = ns[size_t(m)];
            dw.push_back(slots[size_t(s.role_slot.at("weight"))].grad.data());
            auto b = s.role_slot.find("bias");
            db.push_back(b == s.role_slot.end() ? nullptr : slots[size_t(b->second)].grad.data());
        }
        gr.layer->backward_weight(act[size_t(in)].buf, gr.grad, dw, db);
        for (int m : gr.members)
            for (int sl : ns[size_t(m)].slots) slots[size_t(sl)].grad.set_host_dirty();
    }

    // ---- gradient bookkeeping --------------------------------------------------------------

    // grad[id] += t (or = t on the first contribution).
    void add_grad(int id, const BlockedTensor& t) {
        if (!needs_grad[size_t(id)]) return;
        if (!grad_set[size_t(id)]) {
            grad[size_t(id)].buf.copy_from(t.buf);
            grad[size_t(id)].buf.set_host_dirty();
            grad_set[size_t(id)] = true;
        } else {
            ops::binary(ops::Binary::Add, grad[size_t(id)], t, grad[size_t(id)], d);
        }
    }
    // The buffer a backward kernel writes input id's contribution into: grad[id] itself on the
    // first contribution, else scratch[id] (added by commit()).
    BlockedTensor& grad_out(int id) {
        return grad_set[size_t(id)] ? scratch[size_t(id)] : grad[size_t(id)];
    }
    void commit(int id) {
        if (!grad_set[size_t(id)]) {
            grad_set[size_t(id)] = true;
        } else {
            ops::binary(ops::Binary::Add, grad[size_t(id)], scratch[size_t(id)], grad[size_t(id)],
                        d);
        }
    }

    // ---- forward / backward ----------------------------------------------------------------

    void forward_node(size_t i) {
        const Node& n = g.nodes[i];
        NodeState& s = ns[i];
        auto X = [&](int k) -> BlockedTensor& { return act[size_t(n.inputs[size_t(k)])]; };
        BlockedTensor& Y = act[size_t(n.outputs.empty() ? 0 : n.outputs[0])];
        switch (n.op) {
            case OpKind::Conv2d:
            case OpKind::Linear:
                if (s.lin.in_channels) {
                    gemm_node_forward(s, X(0), Y);
                } else {
                    ops::conv2d(X(0), s.conv, ops::Act::None, Y, d);
                }
                return;
            case OpKind::DwConv2d:
                if (s.group >= 0) return group_forward(i);
                return dw_forward(n, s);
            case OpKind::DwConv2dMulti:
            case OpKind::DwConv2dSparse:
            case OpKind::ShiftWise:
                return dw_forward(n, s);
            case OpKind::BatchNorm:
                return train_ops::batchnorm_forward_train(X(0), s.bn, Y, s.saved, d);
            case OpKind::LayerNorm:
                return ops::layer_norm(X(0), s.ln, Y, d);
            case OpKind::Grn:
                return ops::grn(X(0), s.grn, Y, d);
            case OpKind::Gelu:
                return ops::unary(ops::Unary::Gelu, X(0), Y, d);
            case OpKind::Relu:
                return ops::unary(ops::Unary::Relu, X(0), Y, d);
            case OpKind::Sigmoid:
                return ops::unary(ops::Unary::Sigmoid, X(0), Y, d);
            case OpKind::Softmax:
                return ops::softmax(X(0), Y, d);
            case OpKind::Add:
                if (s.drop_rate > 0) {
                    std::bernoulli_distribution keep(1.0 - s.drop_rate);
                    s.drop_scale.resize(size_t(Y.n()));
                    for (float& v : s.drop_scale)
                        v = keep(drop_rng) ? float(1.0 / (1.0 - s.drop_rate)) : 0.0f;
                    ops::to_host(X(1));
                    scale_samples(X(1).buf, s.drop_scale, s.dropped.buf);
                    return ops::binary(ops::Binary::Add, X(0), s.dropped, Y, d);
                }
                return ops::binary(ops::Binary::Add, X(0), X(1), Y, d);
            case OpKind::Mul:
                return ops::binary(ops::Binary::Mul, X(0), X(1), Y, d);
            case OpKind::Scale:
                return ops::affine(X(0), s.scale, ops::Act::None, Y, d);
            case OpKind::GlobalAvgPool:
                return ops::global_avg_pool(X(0), Y, d);
            case OpKind::ChannelSelect:
                return ops::channel_select(X(0), s.index, Y, d);
            case OpKind::Concat:
                return ops::concat(X(0), X(1), Y, d);
            case OpKind::Flatten:
                ops::to_host(X(0));
                Y.buf.copy_from(X(0).buf);
                Y.buf.set_host_dirty();
                return;
            default:
                fail(n, "no training support for this op");
        }
    }

    void backward_node(size_t i) {
        const Node& n = g.nodes[i];
        NodeState& s = ns[i];
        if (n.op == OpKind::DwConv2d && s.group >= 0) return group_backward(i);
        bool any = false;
        for (int o : n.outputs) any = any || grad_set[size_t(o)];
        if (!any) return;
        const int out = n.outputs.empty() ? -1 : n.outputs[0];
        BlockedTensor& dY = grad[size_t(out)];
        auto in = [&](int k) { return n.inputs[size_t(k)]; };
        auto X = [&](int k) -> BlockedTensor& { return act[size_t(in(k))]; };
        auto need = [&](int k) { return bool(needs_grad[size_t(in(k))]); };
        switch (n.op) {
            case OpKind::Conv2d:
            case OpKind::Linear:
                if (s.lin.in_channels) {
                    gemm_node_backward(s, X(0), dY, in(0), need(0));
                } else {
                    BlockedTensor* dx = need(0) ? &grad_out(in(0)) : nullptr;
                    train_ops::conv2d_backward(X(0), dY, s.convb, dx, &s.dconv,
                                               s.has_bias ? &s.dbias : nullptr, d, true);
                    if (dx) commit(in(0));
                }
                return;
            case OpKind::DwConv2d:
            case OpKind::DwConv2dMulti:
            case OpKind::DwConv2dSparse:
            case OpKind::ShiftWise:
                return dw_backward(n, s);
            case OpKind::BatchNorm:
                train_ops::batchnorm_backward(X(0), dY, s.bn.gamma, s.saved, grad_out(in(0)),
                                              s.dgamma, s.dbeta, d, true);
                if (need(0)) commit(in(0));
                return;
            case OpKind::LayerNorm:
                train_ops::layer_norm_backward(X(0), s.ln, dY, grad_out(in(0)), s.dgamma, s.dbeta,
                                               d, true);
                if (need(0)) commit(in(0));
                return;
            case OpKind::Grn:
                train_ops::grn_backward(X(0), s.grn, dY, grad_out(in(0)), s.dgamma, s.dbeta, d,
                                        true);
                if (need(0)) commit(in(0));
                return;
            case OpKind::Gelu:
            case OpKind::Relu:
            case OpKind::Sigmoid: {
                if (!need(0)) return;
                const train_ops::UnaryGrad op = n.op == OpKind::Gelu ? train_ops::UnaryGrad::Gelu
                                                : n.op == OpKind::Relu
                                                    ? train_ops::UnaryGrad::Relu
                                                    : train_ops::UnaryGrad::Sigmoid;
                const BlockedTensor& v = n.op == OpKind::Sigmoid ? act[size_t(out)] : X(0);
                train_ops::unary_backward(op, v, dY, grad_out(in(0)), d);
                commit(in(0));
                return;
            }
            case OpKind::Softmax: {
                // dx = y * (dy - sum_c y dy) per pixel (host: the CPU trainer; no model uses it).
                if (!need(0)) return;
                BlockedTensor& Yv = act[size_t(out)];
                ops::to_host(Yv);
                ops::to_host(dY);
                BlockedTensor& dX = grad_out(in(0));
                const int C = Yv.channels;
                for (int b = 0; b < Yv.n(); ++b)
                    for (int h = 0; h < Yv.h(); ++h)
                        for (int w = 0; w < Yv.w(); ++w) {
                            double dot = 0;
                            for (int c = 0; c < C; ++c)
                                dot += double(Yv.buf(c % 16, w, h, c / 16, b)) *
                                       dY.buf(c % 16, w, h, c / 16, b);
                            for (int c = 0; c < Yv.blocks() * 16; ++c)
                                dX.buf(c % 16, w, h, c / 16, b) =
                                    c < C ? float(Yv.buf(c % 16, w, h, c / 16, b) *
                                                  (dY.buf(c % 16, w, h, c / 16, b) - dot))
                                          : 0.0f;
                        }
                dX.buf.set_host_dirty();
                commit(in(0));
                return;
            }
            case OpKind::Add:
            case OpKind::Mul: {
                const ops::Binary op = n.op == OpKind::Add ? ops::Binary::Add : ops::Binary::Mul;
                const bool same = X(0).shape() == X(1).shape() && X(0).shape() == dY.shape();
                if (op == ops::Binary::Add && s.drop_rate > 0) {  // x + scale_n * y
                    add_grad(in(0), dY);
                    ops::to_host(dY);
                    scale_samples(dY.buf, s.drop_scale, s.dropped.buf);
                    add_grad(in(1), s.dropped);
                    return;
                }
                if (op == ops::Binary::Add && same) {
                    for (int k = 0; k < 2; ++k) add_grad(in(k), dY);  // dy flows to both
                    return;
                }
                BlockedTensor* da = need(0) ? &grad_out(in(0)) : nullptr;
                // The two inputs may be the same tensor (x * x): the second goes to a temporary.
                BlockedTensor tmp_b;
                BlockedTensor* db = nullptr;
                if (need(1)) {
                    if (in(1) == in(0)) {
                        tmp_b =
                            ops::make_blocked_tensor(X(1).n(), X(1).channels, X(1).h(), X(1).w());
                        db = &tmp_b;
                    } else {
                        db = &grad_out(in(1));
                    }
                }
                train_ops::binary_backward(op, X(0), X(1), dY, da, db, d);
                if (da) commit(in(0));
                if (db == &tmp_b) {
                    add_grad(in(1), tmp_b);
                } else if (db) {
                    commit(in(1));
                }
                return;
            }
            case OpKind::Scale: {
                BlockedTensor* dx = need(0) ? &grad_out(in(0)) : nullptr;
                train_ops::affine_backward(X(0), s.scale.scale, dY, dx, &s.dgamma, nullptr, d,
                                           true);
                if (dx) commit(in(0));
                return;
            }
            case OpKind::GlobalAvgPool:
                if (!need(0)) return;
                train_ops::global_avg_pool_backward(dY, grad_out(in(0)), d);
                commit(in(0));
                return;
            case OpKind::ChannelSelect:
                if (!need(0)) return;
                train_ops::channel_select_backward(dY, s.index_b, grad_out(in(0)), d);
                commit(in(0));
                return;
            case OpKind::Concat: {
                BlockedTensor& da = grad_out(in(0));
                BlockedTensor& db = grad_out(in(1));
                train_ops::concat_backward(dY, da, db, d);
                if (need(0)) commit(in(0));
                if (need(1)) commit(in(1));
                return;
            }
            case OpKind::Flatten:
                if (!need(0)) return;
                ops::to_host(dY);
                grad_out(in(0)).buf.copy_from(dY.buf);
                grad_out(in(0)).buf.set_host_dirty();
                commit(in(0));
                return;
            default:
                fail(n, "no training support for this op");
        }
    }

    // ---- optimizer -------------------------------------------------------------------------

    double lr_at(int64_t step) const {
        if (step < o.warmup_steps)
            return o.lr * double(step + 1) / double(std::max<int64_t>(1, o.warmup_steps));
        const double t = double(step - o.warmup_steps) /
                         double(std::max<int64_t>(1, o.total_steps - o.warmup_steps));
        return o.min_lr + (o.lr - o.min_lr) * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, t)));
    }

    void optimizer_step() {
        const double lr = lr_at(steps);
        const double scale = 1.0 / double(std::max(1, o.grad_accum));
        ++steps;
        for (Slot& s : slots) {
            // A masked weight is the constant 0 in the forward: its gradient is 0 (also what the
            // sparse kernels compute), so moments never build up at pruned positions.
            if (s.mask.data()) train_ops::mask_multiply(s.grad, s.mask, d);
            if (o.optimizer == "adamw") {
                train_ops::AdamWConfig c;
                c.lr = lr;
                c.beta1 = o.beta1;
                c.beta2 = o.beta2;
                c.weight_decay = s.decay ? o.weight_decay : 0.0;
                train_ops::adamw_step(s.value, s.grad, s.m, s.v, c, steps, d, scale);
            } else {
                train_ops::SgdConfig c;
                c.lr = lr;
                c.momentum = o.momentum;
                c.weight_decay = s.decay ? o.weight_decay : 0.0;
                train_ops::sgd_step(s.value, s.grad, s.m, c, steps, d, scale);
            }
            if (s.mask.data()) train_ops::mask_multiply(s.value, s.mask, d);
            if (s.ema.data()) train_ops::ema_update(s.ema, s.value, o.ema_decay, d);
            ++s.version;
        }
        after_update();
    }

    // Re-derive what depends on updated weights: W^T of the GEMMs, packed k x k convs, plain
    // tensors from the host copies.
    void after_update() {
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            const Node& n = g.nodes[i];
            NodeState& s = ns[i];
            if (s.lin.in_channels) {
                // W^T for the path(s) that may run: dense, compact, both while measuring.
                if (!s.cmp.on || s.cmp.choice != 1) train_ops::transpose_linear(s.lin, s.lin_t, d);
                if (s.cmp.on && s.cmp.choice != 0) {
                    train_ops::gather_linear(s.lin, s.cmp.kept, s.cmp.out_axis, s.cmp.wc);
                    train_ops::transpose_linear(s.cmp.wc, s.cmp.wc_t, d);
                }
            } else if (n.op == OpKind::Conv2d) {
                Slot& w = slots[size_t(s.role_slot.at("weight"))];
                check_halide(w.value.copy_to_host(), "copy to host", d);
                // Re-pack the weight only: the bias buffer is the optimizer slot's own storage.
                const ChannelVector bias = s.conv.bias;
                s.conv = ops::pack_conv2d(w.plain, nullptr, s.geom);
                if (s.has_bias) s.conv.bias = bias;
                s.convb = train_ops::pack_conv2d_backward(w.plain, s.geom);
            }
        }
        for (Slot& s : slots)
            if (s.store == Store::Plain) check_halide(s.value.copy_to_host(), "copy to host", d);
    }

    void zero_grads() {
        for (Slot& s : slots) {
            s.grad.fill(0.0f);
            s.grad.set_host_dirty();
        }
    }

    // ---- masks -----------------------------------------------------------------------------

    // The slot layout of a graph-shaped mask tensor.
    Buf slot_mask(const Slot& s, const Tensor& m) {
        if (s.store == Store::Packed) {
            const ops::PackedLinear pm = ops::pack_linear(reshaped(m, {s.co, s.ci}), nullptr);
            return copy_buf(Buf(pm.weight));
        }
        Buf b(static_cast<int>(m.numel()));
        std::copy(m.data<float>(), m.data<float>() + m.numel(), b.data());
        b.set_host_dirty();
        return b;
    }
    void install_masks() {
        if (!masks.empty() && !groups_masked) {
            make_groups();  // masked members: measured against the sparse kernels
            groups_masked = true;
        }
        for (const auto& [key, m] : masks.masks()) {
            if (masks.lane_rows(key)) masks.row_flags(key);  // throw for a non-uniform mask
            if (masks.lane_blocks(key)) masks.block_flags(key);
            Slot& s = slots[size_t(slot_of.at(key))];
            s.mask = slot_mask(s, m);
            train_ops::mask_multiply(s.value, s.mask, d);
            ++s.version;
        }
        for (DwGroup& gr : groups) set_row_mask(gr);
        for (size_t i = 0; i < g.nodes.size(); ++i) set_compact(i);
        after_update();
    }

    // The graph-shaped tensor of a slot buffer (value, state).
    Tensor tensor_of(const Slot& s, const Buf& b) const {
        Buf hb = b;
        check_halide(hb.copy_to_host(), "copy to host", d);
        if (s.store == Store::Packed) {
            Halide::Runtime::Buffer<float, 3> p(hb);
            return reshaped(train_ops::unpack_linear(p, s.ci, s.co), s.shape);
        }
        if (s.store == Store::Channels) {
            ChannelVector v;
            v.buf = Halide::Runtime::Buffer<float, 2>(hb);
            v.channels = int(shape_numel(s.shape));
            return channel_tensor(v, s.shape);
        }
        Tensor t(DType::F32, s.shape);
        std::copy(hb.data(), hb.data() + t.numel(), t.data<float>());
        return t;
    }
    void set_from_tensor(Slot& s, Buf& b, const Tensor& t0) {
        const Tensor t = f32(t0);
        if (t.numel() != shape_numel(s.shape))
            throw std::runtime_error("checkpoint tensor for '" + s.key + "' has the wrong size");
        if (s.store == Store::Packed) {
            const ops::PackedLinear p = ops::pack_linear(reshaped(t, {s.co, s.ci}), nullptr);
            b.copy_from(Buf(p.weight));
        } else if (s.store == Store::Channels) {
            b.fill(0.0f);
            for (int64_t c = 0; c < t.numel(); ++c)
                b(int(c % 16), int(c / 16)) = t.data<float>()[c];
        } else {
            std::copy(t.data<float>(), t.data<float>() + t.numel(), b.data());
        }
        b.set_host_dirty();
    }
};

Trainer::Trainer(const graph::Graph& g, const TrainOptions& o) : impl_(std::make_unique<Impl>()) {
    install_halide_error_handler();
    Impl& m = *impl_;
    if (o.optimizer != "adamw" && o.optimizer != "sgd") {
        throw std::invalid_argument("optimizer '" + o.optimizer + "': expected adamw or sgd");
    }
    if (o.grad_accum < 1) throw std::invalid_argument("grad_accum must be >= 1");
    if (o.sparsity < 0 || o.sparsity >= 1)
        throw std::invalid_argument("sparsity must be in [0, 1)");
    if (!g.has_values())
        throw graph::GraphError("trainer: model '" + g.model + "' has parameters without values");
    m.o = o;
    m.d = o.device;
    m.rng.seed(o.seed);
    // Every activation and gradient is an NCHW16c BlockedTensor (set up below); the graph keeps
    // its logical layouts (no layout pass: its Reorder nodes would be copies here).
    m.g = g;
    const size_t nt = m.g.tensors.size();
    m.act.resize(nt);
    m.grad.resize(nt);
    m.scratch.resize(nt);
    m.grad_set.assign(nt, false);
    m.needs_grad.assign(nt, true);
    for (int id : m.g.inputs) m.needs_grad[size_t(id)] = false;
    m.use_recompute = o.recompute && o.plan_memory;
    m.allocate(o.plan_memory);
    m.ns.resize(m.g.nodes.size());
    for (size_t i = 0; i < m.g.nodes.size(); ++i) {
        const graph::Node& n = m.g.nodes[i];
        if (n.op == OpKind::Reorder)
            throw graph::GraphError("trainer: node '" + n.name +
                                    "': train a graph before layout passes");
        m.setup_node(i);
    }
    m.make_groups();
    m.drop_rng.seed(o.seed ^ 0x6a09e667f3bcc908ULL);
    if (o.drop_path < 0 || o.drop_path >= 1)
        throw std::invalid_argument("drop_path must be in [0, 1)");
    const std::vector<std::vector<int>> blocks = graph::drop_path_blocks(m.g);
    if (o.drop_path > 0 && blocks.empty())
        throw std::invalid_argument("drop_path: model '" + m.g.model +
                                    "' has no residual adds ('<block>.residual')");
    for (size_t k = 0; k < blocks.size(); ++k) {
        const double rate =
            blocks.size() > 1 ? o.drop_path * double(k) / double(blocks.size() - 1) : 0.0;
        for (int i : blocks[k]) {
            const graph::Node& n = m.g.nodes[size_t(i)];
            NodeState& s = m.ns[size_t(i)];
            s.drop_rate = rate;
            if (rate > 0) {
                const Shape& sh = m.g.tensor(n.outputs[0]).shape;
                s.dropped =
                    ops::make_blocked_tensor(int(sh[0]), int(sh[1]), int(sh[2]), int(sh[3]));
            }
        }
    }
    if (o.sparsity > 0 && o.mask_structure == MaskStructure::LaneRows) {
        m.masks.set_lane_rows(g, m.lane_row_keys());
        m.masks.set_lane_blocks(g, m.lane_block_keys());
    }
    if (o.sparsity > 0 && o.mask_init != MaskInit::Snip) {
        const auto keys = maskable_params(g);
        m.masks.init_random(g, layer_densities(g, keys, 1.0 - o.sparsity, o.mask_init), m.rng);
        m.install_masks();
    }
}

Trainer::~Trainer() = default;

void Trainer::init_masks_snip(const Tensor& x, const std::vector<int32_t>& labels) {
    Impl& m = *impl_;
    if (m.o.sparsity <= 0) return;
    // One forward / backward for the gradients, then |w * g| per maskable weight.
    m.zero_grads();
    std::fill(m.grad_set.begin(), m.grad_set.end(), false);
    const int in = m.g.inputs[0];
    m.act[size_t(in)] = ops::to_blocked_tensor(x);
    m.begin_forward();
    for (size_t i = 0; i < m.g.nodes.size(); ++i) m.forward_node(i);
    const int out = m.g.outputs[0];
    train_ops::softmax_cross_entropy(m.act[size_t(out)], labels, m.o.label_smoothing,
                                     m.grad[size_t(out)], m.d);
    m.grad_set[size_t(out)] = true;
    m.backward_all();
    std::map<std::string, Tensor> scores;
    for (const std::string& key : maskable_params(m.g)) {
        const Slot& s = m.slots[size_t(m.slot_of.at(key))];
        const Tensor w = m.tensor_of(s, s.value), gr = m.tensor_of(s, s.grad);
        Tensor sc(DType::F32, w.shape());
        for (int64_t i = 0; i < w.numel(); ++i)
            sc.data<float>()[i] = std::fabs(w.data<float>()[i] * gr.data<float>()[i]);
        scores[key] = sc;
    }
    m.masks.init_snip(m.g, scores, 1.0 - m.o.sparsity);
    m.zero_grads();
    m.install_masks();
}

StepResult Trainer::step(const Tensor& x, const std::vector<int32_t>& labels) {
    Impl& m = *impl_;
    const int in = m.g.inputs[0], out = m.g.outputs[0];
    const graph::TensorDesc& xd = m.g.tensor(in);
    if (x.dtype() != DType::F32 || x.shape() != xd.shape) {
        throw std::invalid_argument("trainer: input is " + std::string(dtype_name(x.dtype())) +
                                    " " + shape_to_string(x.shape()) + ", expected F32 " +
                                    shape_to_string(xd.shape));
    }
    if (int64_t(labels.size()) != xd.shape[0]) {
        throw std::invalid_argument("trainer: " + std::to_string(labels.size()) +
                                    " labels for a batch of " + std::to_string(xd.shape[0]));
    }
    if (m.micro == 0) m.zero_grads();
    m.act[size_t(in)] = ops::to_blocked_tensor(x);
    m.begin_forward();
    for (size_t i = 0; i < m.g.nodes.size(); ++i) {
        const double t0 = m.timing ? now_ms() : 0;
        m.forward_node(i);
        if (m.timing) m.ns[i].fwd_ms = now_ms() - t0;
    }
    std::fill(m.grad_set.begin(), m.grad_set.end(), false);
    StepResult r;
    const train_ops::LossResult lr = train_ops::softmax_cross_entropy(
        m.act[size_t(out)], labels, m.o.label_smoothing, m.grad[size_t(out)], m.d);
    m.grad_set[size_t(out)] = true;
    m.backward_all();
    r.loss = lr.loss;
    r.correct = lr.correct;
    r.samples = int(labels.size());
    r.lr = m.lr_at(m.steps);
    if (++m.micro >= m.o.grad_accum) {
        m.micro = 0;
        m.optimizer_step();
        r.applied = true;
        if (!m.masks.empty() && m.o.prune_every > 0 && m.steps % m.o.prune_every == 0) {
            // Prune-and-regrow on the graph-shaped weights, then back into the slots.
            Graph tmp = m.g;
            for (const auto& [key, mk] : m.masks.masks()) {
                const Slot& s = m.slots[size_t(m.slot_of.at(key))];
                tmp.params.at(key).value = m.tensor_of(s, s.value);
            }
            r.pruned = m.masks.prune_and_regrow(
                tmp, cosine_rate(m.o.prune_rate, m.steps, m.o.total_steps), m.rng);
            for (const auto& [key, mk] : m.masks.masks()) {
                Slot& s = m.slots[size_t(m.slot_of.at(key))];
                m.set_from_tensor(s, s.value, tmp.params.at(key).value);
                if (s.store == Store::Plain)
                    std::copy(s.value.data(), s.value.data() + s.plain.numel(),
                              s.plain.data<float>());
                ++s.version;
            }
            m.install_masks();
        }
    }
    return r;
}

graph::Graph Trainer::model(bool ema) const {
    const Impl& m = *impl_;
    Graph out = m.g;
    for (const Slot& s : m.slots)
        out.params.at(s.key).value = m.tensor_of(s, ema && s.ema.data() ? s.ema : s.value);
    // BN running statistics.
    for (size_t i = 0; i < m.g.nodes.size(); ++i) {
        const Node& n = m.g.nodes[i];
        if (n.op != OpKind::BatchNorm) continue;
        const Shape& cs = m.g.param(n.param("running_mean")).shape;
        out.params.at(n.param("running_mean")).value = channel_tensor(m.ns[i].bn.running_mean, cs);
        out.params.at(n.param("running_var")).value = channel_tensor(m.ns[i].bn.running_var, cs);
        if (n.has_param("num_batches_tracked")) {
            Tensor t(DType::I64, {});
            *t.data<int64_t>() = m.steps * m.o.grad_accum + m.micro;
            out.params.at(n.param("num_batches_tracked")).value = t;
        }
    }
    return out;
}

int64_t Trainer::optimizer_steps() const { return impl_->steps; }
double Trainer::learning_rate(int64_t step) const { return impl_->lr_at(step); }
const MaskSet& Trainer::masks() const { return impl_->masks; }

std::vector<std::pair<std::string, double>> Trainer::drop_path_rates() const {
    std::vector<std::pair<std::string, double>> r;
    const Impl& m = *impl_;
    for (const auto& block : graph::drop_path_blocks(m.g))
        for (int i : block) r.push_back({m.g.nodes[size_t(i)].name, m.ns[size_t(i)].drop_rate});
    return r;
}

int64_t Trainer::peak_bytes() const {
    const Impl& m = *impl_;
    int64_t b = m.arena.data() ? m.plan.arena_bytes : m.plan.separate_bytes;
    for (const DwGroup& gr : m.groups)
        if (gr.members.size() > 1) b += 2 * int64_t(gr.act.number_of_elements()) * 4;
    for (const Slot& s : m.slots) {
        const int64_t e = int64_t(s.value.number_of_elements()) * 4;
        b += e * (2 + (s.v.data() ? 1 : 0) + (s.ema.data() ? 1 : 0) + (s.mask.data() ? 1 : 0));
    }
    return b;
}

std::string Trainer::memory_summary() const {
    const Impl& m = *impl_;
    int rec = 0;
    for (bool r : m.plan.recomputed) rec += r;
    auto mib = [](int64_t b) { return double(b) / 1048576.0; };
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "activations + gradients %.1f MiB (%s; live peak %.1f MiB, a buffer each "
                  "%.1f MiB), %d recomputed",
                  mib(m.arena.data() ? m.plan.arena_bytes : m.plan.separate_bytes),
                  m.arena.data() ? "planned arena" : "a buffer each", mib(m.plan.live_peak_bytes),
                  mib(m.plan.separate_bytes), m.use_recompute ? rec : 0);
    return buf;
}

std::vector<Trainer::NodeTime> Trainer::last_times() const {
    std::vector<NodeTime> v;
    const Impl& m = *impl_;
    for (size_t i = 0; i < m.g.nodes.size(); ++i) {
        NodeTime t{m.g.nodes[i].name, graph::op_name(m.g.nodes[i].op), m.ns[i].fwd_ms,
                   m.ns[i].bwd_ms, ""};
        const NodeState& s = m.ns[i];
        if (s.group >= 0) {
            const DwGroup& gr = m.groups[size_t(s.group)];
            if (gr.members.size() > 1)
                t.kernels = gr.members[0] == int(i)
                                ? "fused x" + std::to_string(gr.members.size())
                                : "in the fused layer of " + m.g.nodes[size_t(gr.members[0])].name;
            else
                t.kernels = "own layer";
            if (!gr.choice.empty()) t.kernels += " (" + gr.choice + ")";
            if (gr.layer && gr.members[0] == int(i)) t.kernels += ": " + gr.layer->kernel_names();
        } else if (s.layer) {
            t.kernels =
                (s.sparse ? "sparse kernels: " : "OpRunner path: ") + s.layer->kernel_name();
        } else if (s.lin.in_channels) {
            auto name = [](const std::string& k) { return k.empty() ? "(cost model)" : k; };
            const auto& c = s.cmp;
            const NodeState::GemmVariants& kv = c.on && c.use ? c.kv : s.kv;
            t.kernels = "gemm " + name(kv.fwd) + " / " + name(kv.bd) + " / " + name(kv.bw);
            if (c.on) {
                const int ch = c.out_axis ? s.lin.out_channels : s.lin.in_channels;
                char buf[96];
                std::snprintf(buf, sizeof buf, "%.3f ms vs dense %.3f ms (fwd+bwd, 2 steps)",
                              c.t_compact, c.t_dense);
                const std::string how = c.choice < 0   ? " (measuring)"
                                        : c.trials < 6 ? " (always)"
                                                       : std::string(" (") + buf + ")";
                t.kernels += std::string(c.use ? " on " : " dense; lane blocks kept ") +
                             std::to_string(c.kept.size()) + " of " +
                             std::to_string((ch + 15) / 16) + (c.out_axis ? " output" : " input") +
                             " blocks" + how;
            }
        }
        v.push_back(t);
    }
    return v;
}

void Trainer::set_timing(bool on) { impl_->timing = on; }

CheckpointData Trainer::state() const {
    const Impl& m = *impl_;
    CheckpointData c;
    const Graph g = model(false);
    for (const auto& [key, p] : g.params) c.tensors[key] = p.value;
    for (const Slot& s : m.slots) {
        c.tensors[(m.o.optimizer == "adamw" ? "opt.m." : "opt.mom.") + s.key] = m.tensor_of(s, s.m);
        if (s.v.data()) c.tensors["opt.v." + s.key] = m.tensor_of(s, s.v);
        if (s.ema.data()) c.tensors["ema." + s.key] = m.tensor_of(s, s.ema);
    }
    // Copies: Tensors share storage, and prune-and-regrow edits the live masks in place.
    for (const auto& [key, mk] : m.masks.masks()) c.tensors["mask." + key] = mk.clone();
    c.tensors["train.optimizer_steps"] = scalar_i64(m.steps);
    c.tensors["train.micro"] = scalar_i64(m.micro);
    c.tensors["train.rng.trainer"] = rng_tensor(m.rng);
    c.tensors["train.rng.drop_path"] = rng_tensor(m.drop_rng);
    const std::vector<int64_t> layout = m.dw_layout();
    Tensor lt(DType::I64, {int64_t(layout.size())});
    std::copy(layout.begin(), layout.end(), lt.data<int64_t>());
    c.tensors["train.dw_layout"] = lt;
    // The measured kernel variants of one-node groups, one line each: "<node> <fwd> <bwd_data>
    // <bwd_weight>" (a resumed run must run the same kernels to repeat the losses bitwise).
    std::string vs;
    for (const DwGroup& gr : m.groups)
        if (gr.decided && gr.members.size() == 1 && !gr.variants.empty())
            vs += std::to_string(gr.members[0]) + " " + gr.variants[0] + " " + gr.variants[1] +
                  " " + gr.variants[2] + "\n";
    Tensor vt(DType::U8, {int64_t(vs.size())});
    std::copy(vs.begin(), vs.end(), vt.data<uint8_t>());
    c.tensors["train.dw_variants"] = vt;
    return c;
}

void Trainer::load_state(const CheckpointData& c) {
    Impl& m = *impl_;
    auto need = [&](const std::string& k) -> const Tensor& {
        auto it = c.tensors.find(k);
        if (it == c.tensors.end()) throw std::runtime_error("checkpoint has no tensor '" + k + "'");
        return it->second;
    };
    m.steps = scalar_value(need("train.optimizer_steps"), "train.optimizer_steps");
    m.micro = int(scalar_value(need("train.micro"), "train.micro"));
    m.rng = rng_from_tensor(need("train.rng.trainer"), "train.rng.trainer");
    if (c.tensors.count("train.rng.drop_path") || m.o.drop_path > 0)
        m.drop_rng = rng_from_tensor(need("train.rng.drop_path"), "train.rng.drop_path");
    for (Slot& s : m.slots) {
        m.set_from_tensor(s, s.value, need(s.key));
        if (s.store == Store::Plain)
            std::copy(s.value.data(), s.value.data() + s.plain.numel(), s.plain.data<float>());
        m.set_from_tensor(s, s.m, need((m.o.optimizer == "adamw" ? "opt.m." : "opt.mom.") + s.key));
        if (s.v.data()) m.set_from_tensor(s, s.v, need("opt.v." + s.key));
        if (s.ema.data()) m.set_from_tensor(s, s.ema, need("ema." + s.key));
        ++s.version;
    }
    for (size_t i = 0; i < m.g.nodes.size(); ++i) {
        const Node& n = m.g.nodes[i];
        if (n.op != OpKind::BatchNorm) continue;
        set_channels(m.ns[i].bn.running_mean, need(n.param("running_mean")));
        set_channels(m.ns[i].bn.running_var, need(n.param("running_var")));
    }
    auto& mk = m.masks.masks();
    mk.clear();
    for (const auto& [k, t] : c.tensors)
        if (k.rfind("mask.", 0) == 0) mk[k.substr(5)] = t.clone();
    if (!mk.empty()) m.install_masks();
    m.after_update();
    auto lt = c.tensors.find("train.dw_layout");
    if (lt != c.tensors.end()) {
        if (lt->second.dtype() != DType::I64 || lt->second.shape().size() != 1)
            throw std::runtime_error("checkpoint: train.dw_layout is not a 1-D I64 tensor");
        const int64_t* p = lt->second.data<int64_t>();
        m.apply_dw_layout(std::vector<int64_t>(p, p + lt->second.numel()));
    }
    auto vt = c.tensors.find("train.dw_variants");
    if (vt != c.tensors.end()) {
        if (vt->second.dtype() != DType::U8 || vt->second.shape().size() != 1)
            throw std::runtime_error("checkpoint: train.dw_variants is not a 1-D U8 tensor");
        const std::string text(vt->second.data<uint8_t>(),
                               vt->second.data<uint8_t>() + vt->second.numel());
        std::istringstream lines(text);
        std::string line;
        int ln = 0;
        while (std::getline(lines, line)) {
            ++ln;
            std::istringstream f(line);
            long node = -1;
            std::string fw, bd, bw, extra;
            auto bad = [&](const std::string& why) {
                return std::runtime_error("checkpoint: train.dw_variants line " +
                                          std::to_string(ln) + " '" + line + "': " + why);
            };
            if (!(f >> node >> fw >> bd >> bw) || (f >> extra))
                throw bad("expected '<node> <fwd> <bwd_data> <bwd_weight>'");
            if (node < 0 || size_t(node) >= m.g.nodes.size() || m.ns[size_t(node)].group < 0)
                throw bad("not a depth-wise node run as a layer");
            DwGroup& gr = m.groups[size_t(m.ns[size_t(node)].group)];
            if (!gr.layer || gr.members.size() != 1 || !gr.decided)
                throw bad("node '" + m.g.nodes[size_t(node)].name +
                          "' is not a one-node layer in train.dw_layout");
            try {
                gr.layer->use_variants(fw, bd, bw);
            } catch (const std::invalid_argument& e) {
                throw bad(e.what());
            }
            gr.variants = gr.layer->variant_names();
            gr.choice = "from the checkpoint";
        }
    }
}

}  // namespace train
}  // namespace lkc
