// The inverse of the executor-oriented passes, for checking them with the reference executor.
#pragma once

#include "graph/ir.h"

namespace lkc {
namespace graph {
namespace passes {

// Purpose: the same computation with only the ops graph/reference_executor runs: epilogues
// expanded back into nodes (named as the nodes they replaced), fused shift-wise nodes into
// ShiftWise + Linear(diag ah, bias) / Scale(av) / Scale(as) + adds with the identity, Reorder nodes
// removed (graph outputs keep their names), storage tags cleared. Values are unchanged (the
// diagonal Linear adds exact zeros). For tests and debugging; any pass order. Shape-only graphs
// stay shape-only.
[[nodiscard]] Graph lower_for_reference(const Graph& g);

}  // namespace passes
}  // namespace graph
}  // namespace lkc
