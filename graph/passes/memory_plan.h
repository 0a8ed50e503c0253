// Memory planning: every activation tensor at an offset in one arena, by lifetime.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "graph/ir.h"

namespace lkc {
namespace graph {
namespace passes {

// Bytes a tensor occupies in its storage: Blocked16 N*ceil(C/16)*16*H*W*dtype ([N,C]: H = W = 1),
// else numel * dtype size.
[[nodiscard]] int64_t storage_bytes(const TensorDesc& t);

struct PlanOptions {
    int64_t alignment = 64;  // bytes; every offset and every tensor's slot is a multiple
    // Outputs of in-place-able ops take over the buffer of an input that dies there (see
    // in_place_ok); the sequential minimum below does not assume this.
    bool in_place = true;
    // Graph inputs live from before the first node, graph outputs until after the last; both get
    // arena space unless excluded here (then the caller owns them; offset -1).
    bool inputs_in_arena = true;
    bool outputs_in_arena = true;
};

struct MemoryPlan {
    int64_t alignment = 64;
    // Per tensor id.
    std::vector<int64_t> offset;   // bytes from the arena start; -1: not in the arena
    std::vector<int64_t> bytes;    // storage_bytes rounded up to the alignment
    std::vector<int> first, last;  // live steps, inclusive: producing node .. last reading node
                                   // (graph inputs from -1, graph outputs to nodes.size())
    std::vector<int> in_place_of;  // tensor whose buffer this one takes over, or -1
    int64_t arena_bytes = 0;       // the planner's peak: max offset + bytes
    // The minimum any sequential schedule of this node order needs without buffer sharing: the
    // maximum over steps of the sum of the arena tensors live at that step.
    int64_t sequential_min_bytes = 0;
};

// Live steps of every tensor as in MemoryPlan::first / last (a tensor nothing produces and that is
// no graph input: first = last = -2).
void tensor_lifetimes(const Graph& g, std::vector<int>* first, std::vector<int>* last);

// Whether the output `out` of node `node` may take over the buffer of its input `in`: the node is
// elementwise in that input (ReLU, GELU, sigmoid, Scale, BatchNorm on input 0; Add / Mul on an
// operand of the output's shape) or `in` is the operand of an add epilogue that the node reads
// nowhere else; one output; same storage and byte size; `in` is read by no later node
// (last[in] == node) and is no graph input or output.
[[nodiscard]] bool in_place_ok(const Graph& g, size_t node, int in, int out,
                               const std::vector<int>& last);

// A buffer live over steps [first, last] (inclusive) needing `bytes`; place_buffers sets `offset`
// (greedy by size: largest first, then longest-lived, each at the lowest best-fitting gap among the
// buffers live at the same time) and returns the arena size (max offset + bytes). Buffers whose
// steps overlap never overlap in memory.
struct LiveBuffer {
    int first = 0, last = 0;
    int64_t bytes = 0, offset = 0;
};
int64_t place_buffers(std::vector<LiveBuffer>& bufs);

// Purpose: lifetime-based placement of every activation tensor in one arena (greedy by size:
// largest buffers first, each at the lowest-fitting gap among the buffers live at the same
// time); in-place chains share one buffer.
// Ordering: last, after assign_layouts (sizes follow TensorDesc::storage; unassigned tensors
// count plain). Nodes run in graph order.
[[nodiscard]] MemoryPlan plan_memory(const Graph& g, const PlanOptions& options = {});

// Every problem of a plan for `g`, recomputing lifetimes and sizes from the graph: a tensor
// without a slot or with a short / misaligned one, out of the arena, two tensors live at the same
// step whose bytes overlap (except a legal in-place pair at the same offset), a wrong peak.
// Empty when the plan is valid.
[[nodiscard]] std::vector<std::string> plan_errors(const Graph& g, const MemoryPlan& plan);
// Throws GraphError with the first problem plan_errors finds.
void verify_plan(const Graph& g, const MemoryPlan& plan);

}  // namespace passes
}  // namespace graph
}  // namespace lkc
