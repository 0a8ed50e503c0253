#include "graph/passes/memory_plan.h"

#include <algorithm>
#include <limits>

namespace lkc {
namespace graph {
namespace passes {

namespace {

int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

bool elementwise_in_input0(OpKind op) {
    return op == OpKind::Relu || op == OpKind::Gelu || op == OpKind::Sigmoid ||
           op == OpKind::Scale || op == OpKind::BatchNorm;
}

std::string tname(const Graph& g, int t) { return "tensor '" + g.tensors[size_t(t)].name + "'"; }

// Maximum over steps of the summed bytes of the arena tensors live at that step.
int64_t sequential_min(const std::vector<int>& first, const std::vector<int>& last,
                       const std::vector<int64_t>& bytes, const std::vector<bool>& in_arena,
                       size_t steps) {
    std::vector<int64_t> delta(steps + 3, 0);  // step s at index s + 1
    for (size_t t = 0; t < first.size(); ++t) {
        if (!in_arena[t]) continue;
        delta[size_t(first[t] + 1)] += bytes[t];
        delta[size_t(last[t] + 2)] -= bytes[t];
    }
    int64_t live = 0, peak = 0;
    for (int64_t d : delta) {
        live += d;
        peak = std::max(peak, live);
    }
    return peak;
}

}  // namespace

int64_t storage_bytes(const TensorDesc& t) {
    const int64_t e = static_cast<int64_t>(dtype_size(t.dtype));
    if (t.storage == Layout::Blocked16) {
        const int64_t n = t.shape.at(0), c = t.shape.at(1);
        const int64_t hw = t.shape.size() == 4 ? t.shape[2] * t.shape[3] : 1;
        return n * ((c + 15) / 16) * 16 * hw * e;
    }
    return shape_numel(t.shape) * e;
}

void tensor_lifetimes(const Graph& g, std::vector<int>* first, std::vector<int>* last) {
    const int steps = static_cast<int>(g.nodes.size());
    first->assign(g.tensors.size(), -2);
    last->assign(g.tensors.size(), -2);
    for (int t : g.inputs) (*first)[size_t(t)] = -1;
    for (int i = 0; i < steps; ++i) {
        for (int t : g.nodes[size_t(i)].outputs) (*first)[size_t(t)] = i;
    }
    for (size_t t = 0; t < g.tensors.size(); ++t) (*last)[t] = (*first)[t];
    for (int i = 0; i < steps; ++i) {
        for (int t : g.nodes[size_t(i)].inputs)
            (*last)[size_t(t)] = std::max((*last)[size_t(t)], i);
    }
    for (int t : g.outputs) (*last)[size_t(t)] = steps;
}

bool in_place_ok(const Graph& g, size_t node, int in, int out, const std::vector<int>& last) {
    const Node& n = g.nodes.at(node);
    if (n.outputs.size() != 1 || n.outputs[0] != out) return false;
    if (last.at(size_t(in)) != static_cast<int>(node)) return false;
    for (int t : g.inputs) {
        if (t == in) return false;
    }
    for (int t : g.outputs) {
        if (t == in) return false;
    }
    const TensorDesc& a = g.tensor(in);
    const TensorDesc& y = g.tensor(out);
    if (a.storage != y.storage || a.dtype != y.dtype || storage_bytes(a) != storage_bytes(y)) {
        return false;
    }
    if (n.attrs.epilogues.empty()) {
        if (elementwise_in_input0(n.op)) return n.inputs[0] == in;
        if (n.op == OpKind::Add || n.op == OpKind::Mul) {
            return (n.inputs[0] == in || n.inputs[1] == in) && a.shape == y.shape;
        }
        return false;
    }
    // The residual operand of an add epilogue, when the main op does not read it too.
    bool operand = false;
    std::vector<bool> extra(n.inputs.size(), false);
    for (const Epilogue& e : n.attrs.epilogues) {
        if (e.op == EpilogueOp::Add) {
            extra[size_t(e.input)] = true;
            operand = operand || n.inputs[size_t(e.input)] == in;
        }
    }
    for (size_t i = 0; i < n.inputs.size(); ++i) {
        if (!extra[i] && n.inputs[i] == in) return false;
    }
    return operand;
}

int64_t place_buffers(std::vector<LiveBuffer>& bufs) {
    // Greedy by size: largest first (then longest-lived), lowest best-fitting gap.
    std::vector<size_t> order(bufs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        if (bufs[a].bytes != bufs[b].bytes) return bufs[a].bytes > bufs[b].bytes;
        const int da = bufs[a].last - bufs[a].first, db = bufs[b].last - bufs[b].first;
        if (da != db) return da > db;
        return a < b;
    });
    int64_t peak = 0;
    std::vector<size_t> placed;
    for (size_t i : order) {
        LiveBuffer& b = bufs[i];
        std::vector<size_t> live;
        for (size_t j : placed) {
            if (!(bufs[j].last < b.first || bufs[j].first > b.last)) live.push_back(j);
        }
        std::sort(live.begin(), live.end(),
                  [&](size_t x, size_t y) { return bufs[x].offset < bufs[y].offset; });
        int64_t end = 0, best = -1, best_gap = std::numeric_limits<int64_t>::max();
        for (size_t j : live) {
            const int64_t gap = bufs[j].offset - end;
            if (gap >= b.bytes && gap < best_gap) {
                best = end;
                best_gap = gap;
            }
            end = std::max(end, bufs[j].offset + bufs[j].bytes);
        }
        b.offset = best >= 0 ? best : end;
        placed.push_back(i);
        peak = std::max(peak, b.offset + b.bytes);
    }
    return peak;
}

MemoryPlan plan_memory(const Graph& g, const PlanOptions& o) {
    if (o.alignment < 1) throw GraphError("plan_memory: alignment must be >= 1");
    const size_t nt = g.tensors.size();
    MemoryPlan p;
    p.alignment = o.alignment;
    tensor_lifetimes(g, &p.first, &p.last);
    p.bytes.resize(nt);
    p.offset.assign(nt, -1);
    p.in_place_of.assign(nt, -1);
    std::vector<bool> in_arena(nt, false);
    for (size_t t = 0; t < nt; ++t) {
        p.bytes[t] = round_up(storage_bytes(g.tensors[t]), o.alignment);
        in_arena[t] = p.first[t] != -2;
    }
    if (!o.inputs_in_arena) {
        for (int t : g.inputs) in_arena[size_t(t)] = false;
    }
    if (!o.outputs_in_arena) {
        for (int t : g.outputs) in_arena[size_t(t)] = false;
    }

    // Buffers: in-place chains share one.
    std::vector<int> buffer(nt, -1);
    std::vector<std::vector<int>> members;
    for (size_t t = 0; t < nt; ++t) {
        if (in_arena[t] && p.first[t] == -1) {
            buffer[t] = static_cast<int>(members.size());
            members.push_back({static_cast<int>(t)});
        }
    }
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& n = g.nodes[i];
        for (int y : n.outputs) {
            if (!in_arena[size_t(y)] || buffer[size_t(y)] >= 0) continue;
            if (o.in_place && n.outputs.size() == 1) {
                for (int x : n.inputs) {
                    if (in_arena[size_t(x)] && in_place_ok(g, i, x, y, p.last)) {
                        p.in_place_of[size_t(y)] = x;
                        buffer[size_t(y)] = buffer[size_t(x)];
                        members[size_t(buffer[size_t(x)])].push_back(y);
                        break;
                    }
                }
            }
            if (buffer[size_t(y)] < 0) {
                buffer[size_t(y)] = static_cast<int>(members.size());
                members.push_back({y});
            }
        }
    }
    std::vector<LiveBuffer> bufs;
    for (const auto& m : members) {
        LiveBuffer b{std::numeric_limits<int>::max(), std::numeric_limits<int>::min(), 0, 0};
        for (int t : m) {
            b.first = std::min(b.first, p.first[size_t(t)]);
            b.last = std::max(b.last, p.last[size_t(t)]);
            b.bytes = std::max(b.bytes, p.bytes[size_t(t)]);
        }
        bufs.push_back(b);
    }
    p.arena_bytes = place_buffers(bufs);
    for (size_t t = 0; t < nt; ++t) {
        if (buffer[t] >= 0) p.offset[t] = bufs[size_t(buffer[t])].offset;
    }
    p.sequential_min_bytes = sequential_min(p.first, p.last, p.bytes, in_arena, g.nodes.size());
    return p;
}

std::vector<std::string> plan_errors(const Graph& g, const MemoryPlan& p) {
    std::vector<std::string> err;
    const size_t nt = g.tensors.size();
    if (p.offset.size() != nt || p.bytes.size() != nt || p.in_place_of.size() != nt) {
        err.push_back("plan has " + std::to_string(p.offset.size()) + " offsets, " +
                      std::to_string(p.bytes.size()) + " sizes and " +
                      std::to_string(p.in_place_of.size()) + " in-place entries for " +
                      std::to_string(nt) + " tensors");
        return err;
    }
    if (p.alignment < 1) {
        err.push_back("plan alignment " + std::to_string(p.alignment) + " must be >= 1");
        return err;
    }
    std::vector<int> first, last;
    tensor_lifetimes(g, &first, &last);
    std::vector<bool> io(nt, false);
    for (int t : g.inputs) io[size_t(t)] = true;
    for (int t : g.outputs) io[size_t(t)] = true;
    std::vector<bool> in_arena(nt, false);
    std::vector<int64_t> need(nt, 0), slot(nt, 0);
    int64_t peak = 0;
    for (size_t t = 0; t < nt; ++t) {
        const int tt = static_cast<int>(t);
        need[t] = storage_bytes(g.tensors[t]);
        slot[t] = round_up(need[t], p.alignment);
        if (first[t] == -2) continue;  // not an activation of this graph
        if (p.offset[t] < 0) {
            if (!io[t]) err.push_back(tname(g, tt) + " has no offset in the arena");
            continue;
        }
        in_arena[t] = true;
        if (p.offset[t] % p.alignment != 0) {
            err.push_back(tname(g, tt) + " offset " + std::to_string(p.offset[t]) +
                          " is not a multiple of " + std::to_string(p.alignment));
        }
        if (p.bytes[t] < need[t]) {
            err.push_back(tname(g, tt) + " has a slot of " + std::to_string(p.bytes[t]) +
                          " bytes, expected >= " + std::to_string(need[t]));
        }
        if (p.offset[t] + need[t] > p.arena_bytes) {
            err.push_back(tname(g, tt) + " [" + std::to_string(p.offset[t]) + ", " +
                          std::to_string(p.offset[t] + need[t]) + ") ends beyond the arena of " +
                          std::to_string(p.arena_bytes) + " bytes");
        }
        peak = std::max(peak, p.offset[t] + p.bytes[t]);
    }
    // Declared in-place pairs must be legal and share the offset.
    std::vector<int> producer(nt, -1);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        for (int t : g.nodes[i].outputs) producer[size_t(t)] = static_cast<int>(i);
    }
    for (size_t t = 0; t < nt; ++t) {
        const int s = p.in_place_of[t];
        if (s < 0) continue;
        if (s >= static_cast<int>(nt) || producer[t] < 0 ||
            !in_place_ok(g, size_t(producer[t]), s, static_cast<int>(t), last)) {
            err.push_back(tname(g, static_cast<int>(t)) + " is declared in place of tensor id " +
                          std::to_string(s) + ", which its producer may not overwrite");
        } else if (p.offset[t] != p.offset[size_t(s)]) {
            err.push_back(tname(g, static_cast<int>(t)) + " is declared in place of " +
                          tname(g, s) + " but has offset " + std::to_string(p.offset[t]) + " vs " +
                          std::to_string(p.offset[size_t(s)]));
        }
    }
    auto legal_alias = [&](size_t a, size_t b) {
        return (p.in_place_of[b] == static_cast<int>(a) ||
                p.in_place_of[a] == static_cast<int>(b)) &&
               p.offset[a] == p.offset[b];
    };
    for (size_t a = 0; a < nt; ++a) {
        if (!in_arena[a]) continue;
        for (size_t b = a + 1; b < nt; ++b) {
            if (!in_arena[b] || last[a] < first[b] || last[b] < first[a]) continue;
            const bool overlap =
                p.offset[a] < p.offset[b] + need[b] && p.offset[b] < p.offset[a] + need[a];
            if (overlap && !legal_alias(a, b)) {
                const int s0 = std::max(first[a], first[b]);
                err.push_back(tname(g, int(a)) + " [" + std::to_string(p.offset[a]) + ", " +
                              std::to_string(p.offset[a] + need[a]) + ") and " + tname(g, int(b)) +
                              " [" + std::to_string(p.offset[b]) + ", " +
                              std::to_string(p.offset[b] + need[b]) +
                              ") overlap while both are live (step " + std::to_string(s0) + ")");
            }
        }
    }
    if (p.arena_bytes != peak) {
        err.push_back("arena_bytes " + std::to_string(p.arena_bytes) +
                      " is not the end of the highest slot, " + std::to_string(peak));
    }
    return err;
}

void verify_plan(const Graph& g, const MemoryPlan& p) {
    std::vector<std::string> err = plan_errors(g, p);
    if (!err.empty()) {
        throw GraphError(
            "memory plan for graph '" + g.model + "': " + err[0] +
            (err.size() > 1 ? " (and " + std::to_string(err.size() - 1) + " more)" : ""));
    }
}

}  // namespace passes
}  // namespace graph
}  // namespace lkc
