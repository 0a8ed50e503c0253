// Helpers shared by the passes (internal to graph/passes): use lists, rebuilding a graph after
// nodes were replaced or removed, derived parameter names, F32 <-> double copies.
#pragma once

#include <string>
#include <vector>

#include "graph/ir.h"
#include "runtime/tensor.h"

namespace lkc {
namespace graph {
namespace passes {
namespace detail {

// Producers and consumers of every tensor, over the nodes not marked removed.
struct Uses {
    std::vector<int> producer;                // node index, -1: graph input or none
    std::vector<std::vector<int>> consumers;  // node indices, one entry per use
    std::vector<bool> output;                 // graph output

    Uses(const Graph& g, const std::vector<bool>& removed);
    // The one node reading `t` (possibly through several of its inputs) when nothing else reads
    // it and it is not a graph output; else -1.
    int sole_consumer(int t) const;
};

// Drops the removed nodes, the tensors nothing produces or reads (ids renumbered in order) and
// the parameters no node references, then validates. Constants are kept (export needs them).
void rebuild(Graph& g, const std::vector<bool>& removed);

// "a.b.conv" + "a.b.bn" -> "a.b.conv+bn": `other` without the dotted prefix it shares with base.
std::string derived_name(const std::string& base, const std::string& other);
// Longest common dotted prefix ("a.b.c", "a.b.d" -> "a.b"); "" when there is none.
std::string common_prefix(const std::vector<std::string>& names);
// `name`, or name + "#2", "#3", ... if a node or tensor of that name exists.
std::string unique_node_name(const Graph& g, const std::string& name);
std::string unique_tensor_name(const Graph& g, const std::string& name);

// Registers a derived parameter (learned, F32); `value` may be empty (shape-only graphs). Throws
// GraphError naming the key if it exists already.
const std::string& add_param(Graph& g, const std::string& key, const Shape& shape, Tensor value,
                             ParamInit init);
// A parameter's value, or an empty tensor when it has none.
Tensor value_of(const Graph& g, const std::string& key);

// Whether every listed parameter has a value (true) or none has (false); throws GraphError naming
// `where` and the first parameter without a value when only some have one.
bool all_or_no_values(const Graph& g, const std::vector<std::string>& keys,
                      const std::string& where);

std::vector<double> to_doubles(const Tensor& t);                        // F32 -> double
Tensor from_doubles(const Shape& shape, const std::vector<double>& v);  // rounded once to F32

// Per-channel affine of an inference BatchNorm node: y = scale * x + shift (values needed).
void bn_affine(const Graph& g, const Node& bn, std::vector<double>* scale,
               std::vector<double>* shift);

bool is_dw_family(OpKind op);  // DwConv2d, DwConv2dMulti, DwConv2dSparse

}  // namespace detail
}  // namespace passes
}  // namespace graph
}  // namespace lkc
