#include "graph/train/memory_plan.h"

#include <algorithm>
#include <limits>

#include "graph/passes/memory_plan.h"

namespace lkc {
namespace train {

using graph::Graph;
using graph::Node;
using graph::OpKind;

namespace {

int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

int64_t blocked_bytes(const graph::TensorDesc& t) {
    const int64_t n = t.shape.at(0), c = t.shape.at(1);
    const int64_t hw = t.shape.size() == 4 ? t.shape[2] * t.shape[3] : 1;
    return n * ((c + 15) / 16) * 16 * hw * 4;
}

// Stride-1 dense depth-wise nodes reading one tensor may run as one layer at the first of them
// (graph/train/trainer.cpp, DwGroup): that node's steps write their outputs and read their
// gradients. Node index -> the node whose steps act for it.
std::vector<int> runner_of(const Graph& g) {
    std::vector<int> r(g.nodes.size());
    std::vector<int> first_on(g.tensors.size(), -1);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        r[i] = int(i);
        const Node& n = g.nodes[i];
        if (n.op != OpKind::DwConv2d || n.attrs.stride != 1) continue;
        int& f = first_on[size_t(n.inputs[0])];
        if (f < 0) f = int(i);
        r[i] = f;
    }
    return r;
}

}  // namespace

std::vector<int> backward_reads(const Graph& g, const Node& n) {
    (void)g;
    switch (n.op) {
        case OpKind::Conv2d:
        case OpKind::Linear:
        case OpKind::DwConv2d:
        case OpKind::DwConv2dMulti:
        case OpKind::DwConv2dSparse:
        case OpKind::ShiftWise:
        case OpKind::BatchNorm:
        case OpKind::LayerNorm:
        case OpKind::Grn:
        case OpKind::Gelu:
        case OpKind::Relu:
        case OpKind::Scale:
            return {n.inputs[0]};
        case OpKind::Sigmoid:
        case OpKind::Softmax:
            return {n.outputs[0]};
        case OpKind::Mul:
            return {n.inputs[0], n.inputs[1]};
        case OpKind::Add:  // the broadcasting form goes through binary_backward with both
            if (g.tensor(n.inputs[0]).shape != g.tensor(n.inputs[1]).shape)
                return {n.inputs[0], n.inputs[1]};
            return {};
        default:  // GlobalAvgPool, ChannelSelect, Concat, Flatten: shapes only
            return {};
    }
}

TrainMemoryPlan plan_training_memory(const Graph& g, const std::vector<bool>& needs_grad,
                                     bool recompute, int64_t alignment) {
    const size_t nt = g.tensors.size();
    const int N = int(g.nodes.size());
    auto back = [&](int node) { return 2 * N - node; };
    TrainMemoryPlan p;
    p.saved.assign(nt, false);
    p.recomputed.assign(nt, false);
    p.act_first.assign(nt, -1);
    p.act_last.assign(nt, -1);
    p.back_first.assign(nt, -1);
    p.back_last.assign(nt, -1);
    p.grad_first.assign(nt, -1);
    p.grad_last.assign(nt, -1);
    p.act_offset.assign(nt, -1);
    p.back_offset.assign(nt, -1);
    p.grad_offset.assign(nt, -1);
    p.scratch_offset.assign(nt, -1);
    p.bytes.assign(nt, 0);
    std::vector<bool> input(nt, false), output(nt, false);
    for (int t : g.inputs) input[size_t(t)] = true;
    for (int t : g.outputs) output[size_t(t)] = true;
    const std::vector<int> runner = runner_of(g);
    std::vector<int> producer(nt, -1);
    for (int i = 0; i < N; ++i)
        for (int t : g.nodes[size_t(i)].outputs) producer[size_t(t)] = i;

    for (size_t t = 0; t < nt; ++t) {
        p.bytes[t] = round_up(blocked_bytes(g.tensors[t]), alignment);
        if (producer[t] >= 0) {
            p.act_first[t] = runner[size_t(producer[t])];
            p.act_last[t] = producer[t];
        }
    }
    // Forward reads, the loss, backward reads.
    std::vector<int> read_first(nt, std::numeric_limits<int>::max()), read_last(nt, -1);
    for (int i = 0; i < N; ++i) {
        const Node& n = g.nodes[size_t(i)];
        for (int t : n.inputs) p.act_last[size_t(t)] = std::max(p.act_last[size_t(t)], i);
        for (int t : backward_reads(g, n)) {
            p.saved[size_t(t)] = true;
            read_first[size_t(t)] = std::min(read_first[size_t(t)], back(i));
            read_last[size_t(t)] = std::max(read_last[size_t(t)], back(i));
        }
    }
    for (int t : g.outputs) p.act_last[size_t(t)] = std::max(p.act_last[size_t(t)], N);
    for (size_t t = 0; t < nt; ++t) {
        if (!p.saved[t] || input[t]) continue;
        const int pr = producer[t];
        auto elementwise = [&](int node) {
            return node >= 0 && (g.nodes[size_t(node)].op == OpKind::Gelu ||
                                 g.nodes[size_t(node)].op == OpKind::Relu);
        };
        // The recompute reads the op's input at the first backward read: that input must be kept
        // (not recomputed itself).
        const bool cheap =
            elementwise(pr) && !elementwise(producer[size_t(g.nodes[size_t(pr)].inputs[0])]);
        if (recompute && cheap && !output[t]) {
            p.recomputed[t] = true;
            p.back_first[t] = read_first[t];
            p.back_last[t] = read_last[t];
        } else {
            p.act_last[t] = std::max(p.act_last[t], read_last[t]);
        }
    }
    // Gradients: from the first contribution (the backward of the last reader, or the loss) to
    // the producer's backward (its runner's, for grouped depth-wise nodes).
    for (size_t t = 0; t < nt; ++t) {
        if (!needs_grad[t] || producer[t] < 0) continue;
        int first = back(runner[size_t(producer[t])]);
        if (output[t]) first = std::min(first, N);
        p.grad_last[t] = back(runner[size_t(producer[t])]);
        p.grad_first[t] = first;
    }
    for (int i = 0; i < N; ++i)
        for (int t : g.nodes[size_t(i)].inputs)
            if (p.grad_first[size_t(t)] >= 0)
                p.grad_first[size_t(t)] = std::min(p.grad_first[size_t(t)], back(i));

    // One arena: activation, recomputed, gradient and scratch intervals.
    struct Ref {
        size_t t;
        int kind;  // 0 act, 1 back, 2 grad, 3 scratch
    };
    std::vector<graph::passes::LiveBuffer> bufs;
    std::vector<Ref> refs;
    for (size_t t = 0; t < nt; ++t) {
        if (input[t] || producer[t] < 0) continue;
        bufs.push_back({p.act_first[t], p.act_last[t], p.bytes[t], 0});
        refs.push_back({t, 0});
        p.separate_bytes += p.bytes[t];
        if (p.recomputed[t]) {
            bufs.push_back({p.back_first[t], p.back_last[t], p.bytes[t], 0});
            refs.push_back({t, 1});
        }
        if (p.grad_first[t] >= 0) {
            for (int k : {2, 3}) {
                bufs.push_back({p.grad_first[t], p.grad_last[t], p.bytes[t], 0});
                refs.push_back({t, k});
                p.separate_bytes += p.bytes[t];
            }
        }
    }
    p.arena_bytes = graph::passes::place_buffers(bufs);
    std::vector<int64_t> delta(size_t(2 * N + 3), 0);
    for (size_t b = 0; b < bufs.size(); ++b) {
        const Ref& r = refs[b];
        std::vector<int64_t>& off = r.kind == 0   ? p.act_offset
                                    : r.kind == 1 ? p.back_offset
                                    : r.kind == 2 ? p.grad_offset
                                                  : p.scratch_offset;
        off[r.t] = bufs[b].offset;
        delta[size_t(bufs[b].first)] += bufs[b].bytes;
        delta[size_t(bufs[b].last + 1)] -= bufs[b].bytes;
    }
    int64_t live = 0;
    for (int64_t d : delta) {
        live += d;
        p.live_peak_bytes = std::max(p.live_peak_bytes, live);
    }
    return p;
}

std::vector<std::string> plan_errors(const Graph& g, const TrainMemoryPlan& p) {
    std::vector<std::string> err;
    struct B {
        std::string what;
        int first, last;
        int64_t off, bytes;
    };
    std::vector<B> bs;
    for (size_t t = 0; t < g.tensors.size(); ++t) {
        const std::string name = "'" + g.tensors[t].name + "'";
        const int64_t need = blocked_bytes(g.tensors[t]);
        if (p.act_offset[t] >= 0)
            bs.push_back(
                {"activation " + name, p.act_first[t], p.act_last[t], p.act_offset[t], need});
        if (p.back_offset[t] >= 0)
            bs.push_back(
                {"recomputed " + name, p.back_first[t], p.back_last[t], p.back_offset[t], need});
        if (p.grad_offset[t] >= 0)
            bs.push_back(
                {"gradient " + name, p.grad_first[t], p.grad_last[t], p.grad_offset[t], need});
        if (p.scratch_offset[t] >= 0)
            bs.push_back(
                {"scratch " + name, p.grad_first[t], p.grad_last[t], p.scratch_offset[t], need});
    }
    for (const B& b : bs)
        if (b.off + b.bytes > p.arena_bytes || b.first > b.last)
            err.push_back(b.what + " [" + std::to_string(b.off) + ", +" + std::to_string(b.bytes) +
                          ") steps " + std::to_string(b.first) + ".." + std::to_string(b.last) +
                          " is outside the arena of " + std::to_string(p.arena_bytes) +
                          " bytes or empty");
    for (size_t a = 0; a < bs.size(); ++a)
        for (size_t b = a + 1; b < bs.size(); ++b) {
            if (bs[a].last < bs[b].first || bs[b].last < bs[a].first) continue;
            if (bs[a].off < bs[b].off + bs[b].bytes && bs[b].off < bs[a].off + bs[a].bytes)
                err.push_back(bs[a].what + " and " + bs[b].what +
                              " share memory while both are live (steps " +
                              std::to_string(std::max(bs[a].first, bs[b].first)) + "..)");
        }
    return err;
}

}  // namespace train
}  // namespace lkc
