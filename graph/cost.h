// Parameter and FLOP counts of a graph (per node and total).
//
// Conventions (docs/graph.md has the measured numbers):
// - Parameters: elements of the learned tensors (what sum(p.numel() for p in
//   model.parameters()) gives); BN running statistics and num_batches_tracked are buffers, counted
//   apart. SLaK is counted densely (its pruned weights are stored as zeros).
// - macs: multiply-accumulates of the conv / linear families at every kernel tap, padding taps
//   included (the convention of fvcore / thop / mmcv, and of the published "FLOPs" of RepLKNet,
//   SLaK and UniRepLKNet, which are MAC counts). Conv2d: N*OH*OW*Co*(Ci/groups)*kh*kw; depth-wise:
//   N*C*OH*OW*kh*kw per branch; Linear: N*spatial*I*O; ShiftWise: the three equivalent depth-wise
//   convs of large_kernel_ops.md section 4, N*R*H*W*(2*k*nk*k + k*k) (Workload::nominal_flops / 2;
//   the official op instead computes P paths of R*nk 3x3 maps of (H+2e)x(W+2e), reported as
//   official_macs).
// - flops = 2 * macs (one multiply and one add each), the hardware convention of
//   Workload::nominal_flops and of the benchmark's % of peak.
// - useful_macs: only the taps that land inside the input (exact; equals macs for 1x1 and linear).
// - elementwise: other arithmetic, per output element: BatchNorm 2, LayerNorm 8, GRN 6, GELU 8,
//   Sigmoid 4, Softmax 5, ReLU / Add / Mul / Scale 1, pooling 1 per input element, conv biases 1.
//   Rough op counts, not in the published figures.
#pragma once

#include <cstdint>
#include <vector>

#include "graph/ir.h"

namespace lkc {
namespace graph {

struct ParamCount {
    int64_t parameters = 0;  // learned elements
    int64_t buffers = 0;     // buffer elements (BN running stats, num_batches_tracked)
    int64_t parameter_tensors = 0;
    int64_t buffer_tensors = 0;
};
ParamCount count_params(const Graph& g);

struct NodeCost {
    double macs = 0;
    double useful_macs = 0;
    double official_macs = 0;  // = macs except ShiftWise (see above)
    double elementwise = 0;
    double flops() const { return 2 * macs; }
};

NodeCost node_cost(const Graph& g, const Node& n);
// One entry per node, in node order.
std::vector<NodeCost> node_costs(const Graph& g);
NodeCost total_cost(const Graph& g);

// Kernel taps of a 1-D "window" that land inside [0, in): sum over outputs o < out and taps
// t < k of [0 <= o*stride + t*dilation - pad < in].
int64_t valid_taps_1d(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t dilation,
                      int64_t pad);

}  // namespace graph
}  // namespace lkc
