// The text `lkc inspect --model NAME` prints: a summary (model, input/output, parameter count,
// MACs / FLOPs), MACs by op kind, then the graph one node per line with shapes, parameters,
// per-layer MACs and the workload string of depth-wise layers.
#pragma once

#include <string>

#include "graph/ir.h"

namespace lkc {
namespace graph {

struct InspectOptions {
    bool nodes = true;  // one line per node
    bool by_op = true;  // MACs per op kind
};

std::string inspect_text(const Graph& g, const InspectOptions& options = {});

// "79,864,168"
std::string group_thousands(int64_t v);
// "15.39 G", "843.2 M", "12.0 k"
std::string si_number(double v);

}  // namespace graph
}  // namespace lkc
