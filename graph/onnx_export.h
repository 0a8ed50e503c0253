// ONNX export: a graph (train form or any passes::deploy output) as an ONNX ModelProto, opset 17,
// IR version 8, written in the protobuf wire format by hand (no protobuf / onnx dependency).
//
// The model: input "x" [N, C, H, W] float (N symbolic by default), output "logits" (the graph's
// single output, e.g. [N, classes]; with several outputs each keeps its sanitised tensor name),
// every parameter an initializer (float32 raw_data, little-endian). Node, value and initializer
// names are the lkc node / tensor / parameter names, sanitised (onnx_sanitize_name) and made
// unique; ops that expand to several ONNX nodes name them "<lkc node>/<step>".
//
// Mapping (docs/onnx.md has the full table):
//   Conv2d, DwConv2d (group = C, pads d*(k-1)/2), DwConv2dSparse (weight * mask) -> Conv;
//   DwConv2dMulti -> one Conv per branch (bias on the first) + Add;
//   ShiftWise (three outputs) -> three Convs with the equivalent kernels of
//     reparam::shiftwise_equivalent and asymmetric pads;
//   fused ShiftWise -> one Conv with the cross kernel ah*wh + av*wv + as*ws on its asymmetric
//     extent [-K/2, nk*k-1-K/2]^2 (asymmetric pads) and the bias, + Add of the input;
//   Linear -> Gemm (NC), 1x1 Conv (NCHW), MatMul + Add (NHWC); BatchNorm -> BatchNormalization
//   (NCHW, NC), Mul + Add (NHWC); LayerNorm -> LayerNormalization on the last axis (Transpose
//   around it for NCHW); GRN -> ReduceL2 / ReduceMean / Div / Mul / Add; GELU -> Div, Erf, Add,
//   Mul (no opset-20 Gelu); ReLU, Sigmoid, Softmax (channel axis), Add, Mul; Scale -> Mul;
//   GlobalAvgPool -> GlobalAveragePool (+ Flatten); ChannelSelect -> Gather; Concat; Permute ->
//   Transpose; Flatten; Reorder -> Identity; epilogues -> the same ONNX nodes after the producer.
//
//   Graph train = build_model("replknet-31b");
//   load_weights(train, "RepLKNet-31B.safetensors");
//   Graph g = passes::deploy(train, onnx_deploy_options());  // or any DeployOptions
//   export_onnx(g, "replknet-31b.onnx");                     // "x" [N,3,224,224] -> "logits"
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "graph/ir.h"
#include "graph/passes/pipeline.h"

namespace lkc {
namespace graph {

struct OnnxExportOptions {
    // dim 0 of every graph input and output is the symbolic dimension "N" (any batch at run
    // time); false: the graph's own batch extent.
    bool dynamic_batch = true;
    // ONNX name of the graph output when there is exactly one.
    std::string output_name = "logits";
};

// What was written.
struct OnnxExportInfo {
    size_t nodes = 0;                      // ONNX NodeProtos
    size_t initializers = 0;               // TensorProtos
    int64_t initializer_elements = 0;      // elements over all initializers
    size_t bytes = 0;                      // serialised ModelProto
    std::map<std::string, int> op_counts;  // ONNX op_type -> nodes
};

// Deploy options for a runtime that computes every kernel tap (ONNX Runtime): the default
// pipeline with each layer's form priced by the multiply-adds of its exported Convs, zero taps
// included (dense / sparse: Kh*Kw; multi: the sum over branches; fused shift-wise: its (nk*k)^2
// cross kernel). Picks dense for RepLKNet and UniRepLKNet, the branch strips for SLaK and
// ShiftWise (their crosses are mostly zeros).
[[nodiscard]] passes::DeployOptions onnx_deploy_options();

// The serialised ModelProto of `g`. `g` needs parameter values (init_weights / load_weights)
// and must pass validate. Throws GraphError naming the node and what it cannot export: an op kind
// the exporter does not know, a tensor that is not float32, a channel-wise op on a tensor of
// layout 'any', a parameter without a value, bad shift-wise tables or masks, or a model over
// protobuf's 2 GiB limit (external data is not written).
std::string onnx_model_bytes(const Graph& g, const OnnxExportOptions& options = {},
                             OnnxExportInfo* info = nullptr);

// Writes onnx_model_bytes(deployed) to `path` atomically (temp file "<path>.tmp.<pid>", fsync,
// rename): on any error `path` is untouched (an existing file keeps its contents) and no temp
// file remains. The hook for `lkc export --onnx`. Throws GraphError as above and std::runtime_error
// naming the file for I/O errors.
void export_onnx(const Graph& deployed, const std::string& path);
void export_onnx(const Graph& deployed, const std::string& path, const OnnxExportOptions& options,
                 OnnxExportInfo* info = nullptr);

// An ONNX name for an lkc name: [A-Za-z0-9_.:/-] kept, every other byte -> '_', empty -> "_"
// ("stages.0.blocks.0.pw1.conv+bn" -> "stages.0.blocks.0.pw1.conv_bn").
std::string onnx_sanitize_name(const std::string& name);

// The protobuf wire format (https://protobuf.dev/programming-guides/encoding/), as much as ONNX
// needs: varints, 32-bit floats, length-delimited fields. Exposed for the tests.
namespace proto {

enum class WireType : uint32_t { Varint = 0, Fixed64 = 1, Len = 2, Fixed32 = 5 };

// Base-128 varint, least significant group first (negative int64 as its 10-byte two's complement).
void append_varint(std::string* out, uint64_t v);
// (field << 3) | wire type, as a varint.
void append_tag(std::string* out, uint32_t field, WireType type);

// Appends fields to one message; nested messages are serialised first and appended as bytes.
class Writer {
  public:
    // int32 / int64 / enum / bool field (varint).
    Writer& int_field(uint32_t field, int64_t v);
    // float field (fixed32, little-endian IEEE 754).
    Writer& float_field(uint32_t field, float v);
    // string / bytes / nested message field (length-delimited).
    Writer& bytes_field(uint32_t field, const void* data, size_t size);
    Writer& string_field(uint32_t field, const std::string& s) {
        return bytes_field(field, s.data(), s.size());
    }
    Writer& message_field(uint32_t field, const Writer& m) {
        return bytes_field(field, m.bytes().data(), m.bytes().size());
    }
    // repeated int64, one varint field per element (proto2's unpacked encoding, as onnx.proto
    // declares AttributeProto.ints and TensorProto.dims).
    Writer& int_fields(uint32_t field, const std::vector<int64_t>& v);

    const std::string& bytes() const { return buf_; }
    std::string take() { return std::move(buf_); }

  private:
    std::string buf_;
};

}  // namespace proto

}  // namespace graph
}  // namespace lkc
