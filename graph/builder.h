// GraphBuilder: appends checked nodes to a Graph and registers parameters under their official
// PyTorch state_dict keys. Module helpers take the module path ("stem.0.conv") and register the
// keys that module has in PyTorch ("stem.0.conv.weight"); node names are module paths, so tensor
// names match what a forward hook on that module would see.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "graph/ir.h"

namespace lkc {
namespace graph {

class GraphBuilder {
  public:
    explicit GraphBuilder(std::string model);

    int input(const std::string& name, Shape shape, Layout layout = Layout::NCHW);
    void output(int id);

    // Registers a parameter (no value); throws GraphError if the key exists.
    const std::string& param(const std::string& key, Shape shape, ParamInit init,
                             bool buffer = false, DType dtype = DType::F32);
    // Overrides the fan-in init_weights scales a Weight parameter by (default: from its shape).
    void set_fan_in(const std::string& key, double fan_in);
    // Registers a constant; throws GraphError if the key exists.
    const std::string& constant(const std::string& key, Tensor value);

    // Appends a node after checking it with infer_node; creates its output tensors named
    // node.name (one output) or node.name + "." + suffixes[i]. Returns the output ids.
    std::vector<int> add(Node node, const std::vector<std::string>& suffixes = {});
    int add1(Node node) { return add(std::move(node)).at(0); }

    const TensorDesc& desc(int id) const { return graph_.tensor(id); }
    int64_t channels(int id) const;

    // Module helpers. `module` is the PyTorch module path of the layer.
    int conv2d(const std::string& module, int x, int64_t out_channels, int kh, int kw, int stride,
               int pad_h, int pad_w, int groups, bool bias);
    int dwconv(const std::string& module, int x, int kh, int kw, int stride, int dilation,
               bool bias);
    // BatchNorm2d / SyncBatchNorm: weight, bias, running_mean, running_var, num_batches_tracked.
    int batch_norm(const std::string& module, int x, double eps = 1e-5);
    int layer_norm(const std::string& module, int x, double eps = 1e-6);
    int linear(const std::string& module, int x, int64_t out_features, bool bias);
    // GRNwithNHWC: gamma, beta [1,1,1,C] (no beta when use_bias is false).
    int grn(const std::string& module, int x, double eps = 1e-6, bool use_bias = true);
    // Layer scale: parameter `key` [C] applied by a node named `name`.
    int scale(const std::string& name, const std::string& key, int x);
    int unary(OpKind op, const std::string& name, int x);
    int binary(OpKind op, const std::string& name, int a, int b);
    int avg_pool(const std::string& name, int x, bool keepdims);
    int flatten(const std::string& name, int x);
    int channel_select(const std::string& name, int x, const std::string& index_key);
    int concat(const std::string& name, const std::vector<int>& xs);

    // Validates and returns the graph; the builder is empty afterwards.
    Graph finish();

  private:
    Graph graph_;
    std::set<std::string> node_names_, tensor_names_;
};

}  // namespace graph
}  // namespace lkc
