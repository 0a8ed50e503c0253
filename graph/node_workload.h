// The workload string (runtime/workload.h) of a depth-wise node: the key its kernel, tuning
// record and benchmark row use.
#pragma once

#include <optional>

#include "graph/ir.h"
#include "runtime/workload.h"

namespace lkc {
namespace graph {

// DwConv2d, DwConv2dMulti, DwConv2dSparse and ShiftWise nodes; nullopt for every other op and for
// nodes outside the workload limits (kernels above 63, dilation above 7, ...).
std::optional<Workload> node_workload(const Graph& g, const Node& n, Pass pass = Pass::Fwd);

}  // namespace graph
}  // namespace lkc
