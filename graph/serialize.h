// A graph as JSON (structure, attributes, parameter and constant descriptions) plus its values as
// safetensors: how `lkc compile` ships a deployed graph inside an AOT binary or next to it.
//
//   {"format":1,"model":"replknet-31b","inputs":[0],"outputs":[514],
//    "tensors":[{"name","shape","dtype","layout","storage"}...],
//    "nodes":[{"op","name","inputs","outputs","params":{role:key},"consts":{role:key},
//              "attrs":{...},"epilogues":[{"op","name","input","eps"}]}...],
//    "params":{key:{"shape","dtype","buffer","init","fan_in"}}, "constants":[key...]}
//
// Values: every parameter under its key and every constant under "const:" + key, one safetensors
// file (or image). graph_from_json + values reproduce the graph exactly (validate() passes).
#pragma once

#include <map>
#include <string>

#include "graph/ir.h"

namespace lkc {
namespace graph {

constexpr int kGraphFormat = 1;

// Structure only (no values).
std::string graph_to_json(const Graph& g);
// Throws GraphError naming the field at fault ("nodes[3].op: unknown op 'conv3d'").
Graph graph_from_json(const std::string& text);

// Parameter and constant values as one tensor map ("const:<key>" for constants).
std::map<std::string, Tensor> graph_values(const Graph& g);
// Sets the values of `g` from such a map; every parameter and constant must be present with its
// shape and dtype (GraphError naming the key otherwise); nothing else may be there.
void set_graph_values(Graph& g, const std::map<std::string, Tensor>& values);

}  // namespace graph
}  // namespace lkc
