// Naive double-precision executor: runs any Graph with plain loops, every node exactly as the op
// table in graph/ir.h defines it (dense depth-wise convs through runtime/reference_dwconv.h, the
// others written out here). The independent reference the fast executor is tested against; not
// for speed.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "graph/ir.h"
#include "runtime/tensor.h"

namespace lkc {
namespace graph {

struct ReferenceOptions {
    bool keep_all = false;  // keep every intermediate tensor (ReferenceResult::values)
};

struct ReferenceResult {
    std::map<std::string, Tensor> outputs;  // graph outputs by tensor name, F64
    std::vector<Tensor> values;             // keep_all: every tensor by id (F64); else empty
};

// `inputs` holds every graph input by tensor name ("x" for the model builders), F32 or F64 with
// exactly the input's shape; nothing else. Every parameter needs a value. Throws GraphError naming
// the tensor / node at fault (missing input, wrong shape, bad index table, ...).
ReferenceResult run_reference(const Graph& g, const std::map<std::string, Tensor>& inputs,
                              const ReferenceOptions& options = {});

// F32 <-> F64 copy (same shape); other dtypes throw GraphError.
Tensor convert_float(const Tensor& t, DType dtype);

}  // namespace graph
}  // namespace lkc
