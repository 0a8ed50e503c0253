// Graph IR: tensors, nodes and graphs for whole large-kernel networks (issue 5).
//
// A Graph is a list of nodes in topological order over a table of tensor descriptions. Parameters
// (learned weights and BN buffers) live in Graph::params keyed by the official PyTorch state_dict
// names (shared/reference/official_param_names.md); tensors that are not in any state_dict but
// are needed to run (ShiftwiseConv index tables) live in Graph::constants. Nodes refer to both by
// role ("weight" -> "stem.0.conv.weight").
//
// Activations are logically NCHW (4-D) or NC (2-D, [N, features]); the layout tag says where the
// channel axis is: NCHW -> dim 1, NC -> dim 1, NHWC -> dim 3. Channel-wise ops (Linear, norms, GRN,
// Scale, Softmax, Concat, ChannelSelect) work on the channel axis of whatever layout they get; the
// convolution families and pooling require NCHW. The model builders emit NCHW/NC only: the
// official channels-last sub-graphs (permute, LayerNorm/Linear/GRN, permute back) compute the same
// values on the channel axis of NCHW, so no Permute nodes are emitted.
//
// Op semantics (x input, y output; "same" padding d*(k-1)/2 for every depth-wise family):
//   Conv2d          dense / grouped conv: weight [Co, Ci/groups, kh, kw], bias [Co] optional;
//                   stride, explicit pad_h/pad_w, dilation, groups.
//                   OH = (H + 2*pad_h - dilation*(kh-1) - 1) / stride + 1.
//   DwConv2d        depth-wise: weight [C,1,kh,kw] (kh, kw odd), bias [C] optional; stride,
//                   dilation; OH = ceil(H/stride).
//   DwConv2dMulti   sum of B depth-wise branches on one input: weight0..weight{B-1}
//   [C,1,kh_b,kw_b],
//                   attrs.dilations[b], one optional bias [C]; stride.
//   DwConv2dSparse  DwConv2d with weight*mask; mask (constant) like weight, values 0/1.
//   ShiftWise       ShiftwiseConv shift-add (large_kernel_ops.md section 4) on its R input
//                   channels: w = sum of the path weights weight0..weight{P-1}, each [R*nk,1,k,k]
//                   (or [R,nk,k,k]); constants slot_h, slot_v [G,R,nk] and ident [G,R] int32
//                   (runtime/op_inputs.h); attrs.big_k, small_k. Three outputs yh, yv, ys
//                   [N,R,H,W].
//                   Fused inference form (docs/workloads.md; made by passes::reparameterize):
//                   with parameters ah, av, as, bias [R] (all four) it has one output
//                   y = ah*yh + av*yv + as*ys + bias + x.
//   Linear          y[.., o, ..] = bias[o] + sum_i weight[o, i] * x[.., i, ..] on the channel axis;
//                   weight [O, I], bias [O] optional.
//   BatchNorm       inference: (x - running_mean) / sqrt(running_var + eps) * weight + bias;
//                   num_batches_tracked is referenced (so it is owned) but unused.
//   LayerNorm       over the channel axis, biased variance, eps; weight, bias [C].
//   Grn             G[n,c] = ||x[n,c,:,:]||_2 over H, W; Nx = G / (mean_c G + eps);
//                   y = (gamma[c] * Nx[n,c] + 1) * x + beta[c]; gamma, beta [1,1,1,C] (any shape
//                   with C elements); beta optional.
//   Gelu            0.5 x (1 + erf(x / sqrt 2)).   Relu, Sigmoid: as usual.
//   Softmax         over the channel axis.
//   Add, Mul        two inputs of equal rank and layout, numpy broadcasting (each extent equal
//                   or 1), e.g. [N,C,H,W] * [N,C,1,1] (SE channel scale).
//   Scale           y = weight[c] * x (layer scale); weight has C elements.
//   GlobalAvgPool   NCHW -> mean over H, W: [N,C] (NC) or with keepdims [N,C,1,1] (NCHW).
//   ChannelSelect   y = x[:, index[k], ...]; constant index int32 [K], values in [0, C).
//   Concat          along the channel axis; inputs equal except for the channel extent.
//   Permute         y = x.permute(attrs.perm); NCHW <-> NHWC retag the layout, else Any.
//   Flatten         [N, ...] -> [N, prod(...)] (NC).
//   Reorder         y = x: the same logical values stored in another layout (TensorDesc::storage
//                   of input and output differ); inserted by passes::assign_layouts.
//
// Epilogues (Attrs::epilogues, made by passes::fuse_epilogues): elementwise ops applied in order
// to the result of a Conv2d / DwConv2d* / Linear / fused ShiftWise node before it is stored. Their
// extra inputs are appended to Node::inputs, their parameters use the roles "e<i>.<role>" (i =
// position in the list). A node with epilogues computes what the removed nodes computed; the
// reference executor does not run epilogues (passes::lower_for_reference expands them again).
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace lkc {
namespace graph {

// Malformed graphs: shape mismatches, unknown tensors / parameters, broken order. The message
// names the node, the tensor or parameter, and the expected vs the actual value.
class GraphError : public std::runtime_error {
  public:
    explicit GraphError(const std::string& msg) : std::runtime_error(msg) {}
};

// Logical layouts: NCHW, NHWC, NC, Any. Blocked16 is a storage layout only (TensorDesc::storage,
// never TensorDesc::layout): a logically NCHW [N,C,H,W] tensor stored as (N, ceil(C/16), H, W, 16)
// ("NCHW16c", 16 consecutive channels of a pixel in one 64-byte vector, the last block zero-padded)
// and a logically NC [N,C] tensor as (N, ceil(C/16), 16).
enum class Layout { NCHW, NHWC, NC, Any, Blocked16 };
const char* layout_name(Layout l);
// Channel axis of a logical layout (NCHW 1, NHWC 3, NC 1); throws GraphError for Any and for the
// storage layout Blocked16.
int channel_axis(Layout l);

struct TensorDesc {
    std::string name;
    Shape shape;
    DType dtype = DType::F32;
    Layout layout = Layout::NCHW;
    // How the tensor is stored, set by passes::assign_layouts: Any = not assigned (plain row-major
    // in its logical layout), NCHW / NC = plain, Blocked16. Shape inference and validate ignore it.
    Layout storage = Layout::Any;
};

enum class OpKind {
    Conv2d,
    DwConv2d,
    DwConv2dMulti,
    DwConv2dSparse,
    ShiftWise,
    Linear,
    BatchNorm,
    LayerNorm,
    Grn,
    Gelu,
    Relu,
    Sigmoid,
    Softmax,
    Add,
    Mul,
    Scale,
    GlobalAvgPool,
    ChannelSelect,
    Concat,
    Permute,
    Flatten,
    Reorder,
};
// "conv2d", "dwconv2d", "dwconv2d_multi", ..., "global_avg_pool"
const char* op_name(OpKind op);
// Inverse of op_name; throws GraphError listing the known names.
OpKind op_from_name(const std::string& name);

// One fused elementwise op (see the header comment).
enum class EpilogueOp {
    Relu,
    Gelu,
    Sigmoid,
    Add,        // + Node::inputs[input] (same shape as the result: the residual)
    Scale,      // * e<i>.weight[c] (layer scale)
    BatchNorm,  // inference BN as a per-channel affine: roles e<i>.weight, .bias, .running_mean,
                // .running_var (and .num_batches_tracked, kept so the key stays owned); eps
};
const char* epilogue_name(EpilogueOp op);

struct Epilogue {
    EpilogueOp op = EpilogueOp::Relu;
    std::string name;  // the node it replaces (its output tensor is now the producer's output)
    int input = -1;    // Add: index into Node::inputs of the other operand
    double eps = 0;    // BatchNorm
};

struct Attrs {
    int stride = 1;                   // Conv2d and the depth-wise families
    int dilation = 1;                 // Conv2d, DwConv2d, DwConv2dSparse
    int pad_h = 0, pad_w = 0;         // Conv2d only (depth-wise families are always "same")
    int groups = 1;                   // Conv2d
    std::vector<int> dilations;       // DwConv2dMulti: one per branch
    double eps = 0;                   // BatchNorm (1e-5), LayerNorm, Grn (1e-6)
    bool keepdims = false;            // GlobalAvgPool
    int big_k = 0, small_k = 0;       // ShiftWise: K and k
    std::vector<int> perm;            // Permute
    std::vector<Epilogue> epilogues;  // fused elementwise ops, applied in order (see above)
};

struct Node {
    OpKind op = OpKind::Relu;
    std::string name;          // unique; the official module path where there is one
    std::vector<int> inputs;   // tensor ids
    std::vector<int> outputs;  // tensor ids
    // Role -> key in Graph::params. Roles per op: "weight", "bias" (convs, Linear, LayerNorm,
    // BatchNorm), "weight0".. (DwConv2dMulti, ShiftWise), "running_mean", "running_var",
    // "num_batches_tracked" (BatchNorm), "gamma", "beta" (Grn), "ah", "av", "as", "bias" (fused
    // ShiftWise), "e<i>.<role>" (epilogue i).
    std::map<std::string, std::string> params;
    // Role -> key in Graph::constants: "mask" (DwConv2dSparse), "slot_h", "slot_v", "ident"
    // (ShiftWise), "index" (ChannelSelect).
    std::map<std::string, std::string> consts;
    Attrs attrs;

    // The parameter key for a role; throws GraphError naming the node if it has none.
    const std::string& param(const std::string& role) const;
    bool has_param(const std::string& role) const { return params.count(role) != 0; }
    const std::string& constant(const std::string& role) const;
};

// How init_weights fills a parameter (graph/weights.h).
enum class ParamInit {
    Weight,      // conv / linear weight: random, scaled by fan-in
    Bias,        // zeros (random small values in test mode)
    Ones,        // LayerNorm / BatchNorm weight
    Zeros,       // GRN gamma / beta, BatchNorm bias, running_mean
    LayerScale,  // layer-scale gamma (1e-6 officially)
    RunningVar,  // BatchNorm running_var (1)
    Count,       // num_batches_tracked (0)
};

struct Param {
    Shape shape;
    DType dtype = DType::F32;
    bool buffer = false;  // a registered buffer (BN running stats), not a learned parameter
    ParamInit init = ParamInit::Weight;
    double fan_in = 0;  // ParamInit::Weight: inputs summed per output (0: from the shape)
    Tensor value;       // empty until init_weights / load_weights
};

struct Graph {
    std::string model;                    // canonical model name, e.g. "replknet-31b"
    std::vector<TensorDesc> tensors;      // by id
    std::vector<Node> nodes;              // topological order
    std::vector<int> inputs, outputs;     // tensor ids
    std::map<std::string, Param> params;  // official state_dict keys
    std::map<std::string, Tensor> constants;

    const TensorDesc& tensor(int id) const;
    // Tensor id by name; throws GraphError if there is none.
    int tensor_id(const std::string& name) const;
    const Param& param(const std::string& key) const;
    // The value of a node's parameter; throws GraphError if it is missing or not materialised.
    const Tensor& param_value(const Node& n, const std::string& role) const;
    const Tensor& constant_value(const Node& n, const std::string& role) const;
    // True when every parameter has a value.
    bool has_values() const;
};

// Output descriptions of `node` from its inputs, parameters, constants and attributes, with every
// consistency check of the op (see the table above). Output names/layouts are taken from the
// node's existing output tensors when they exist, else left empty.
std::vector<TensorDesc> infer_node(const Graph& g, const Node& node);

// Checks the whole graph: tensor ids in range, every tensor produced once (or a graph input),
// nodes in topological order, unique node and tensor names, every parameter / constant role
// present, every parameter referenced by some node; recomputes every node's output shapes with
// infer_node and compares them with the stored descriptions. Throws GraphError on the first
// problem.
void validate(const Graph& g);

// Re-runs shape inference in order and overwrites the stored output descriptions (after changing
// an input shape, e.g. the batch). Throws GraphError like validate.
void infer_shapes(Graph& g);

// Changes the batch extent of every graph input (dim 0) and re-infers the shapes.
void set_batch(Graph& g, int64_t batch);

}  // namespace graph
}  // namespace lkc
