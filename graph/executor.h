// The fast graph executor (issue 5, "Executor"): runs a whole network with lkc's kernels.
//
// Construction compiles a graph once: the passes (graph/passes: BN folding, structural
// re-parameterisation with forms chosen by kernel cost — tuned records' times where they exist,
// the registry's estimate elsewhere —, epilogue fusion, blocked layouts), the lifetime memory
// plan (one arena for every activation), and per node its kernel with packed weights
// (runtime/ops.h, runtime/layers.h). run() then only calls kernels: activations stay in the
// NCHW16c blocked layout in the arena between nodes; the input image is converted once at the
// start and the logits once at the end. Deterministic: the same inputs give bitwise the same
// outputs (fixed kernel choice and thread split).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "graph/ir.h"
#include "graph/passes/memory_plan.h"
#include "runtime/device.h"
#include "runtime/tensor.h"
#include "runtime/workload.h"

namespace lkc {
namespace graph {

struct ExecOptions {
    Device device = Device::Cpu;
    // Run the deploy passes (the fast path). False: the graph as given (train form: every branch,
    // BN and add as its own node) — for checking the passes against the model's own form.
    bool deploy = true;
    // Tuning records for kernel choice (empty: the built-in tables plus the user's file);
    // no_records: hand defaults only.
    std::vector<std::string> records;
    bool no_records = false;
    // Time each node in run() (synchronising after each; last_profile()).
    bool profile = false;
    // After each node, copy its outputs to the host and throw GraphError naming the node if any
    // element is NaN or infinite (debugging a device or a model; slow).
    bool check_finite = false;
    // Depth-wise kernels pinned by workload string (an AOT binary's specialised kernels); a
    // workload not listed is chosen as usual.
    std::map<std::string, std::string> kernels;
};

// One depth-wise layer's kernel: what `lkc compile` specialises.
struct LayerKernel {
    std::string node, workload, kernel, generator;
    std::map<std::string, std::string> params;  // canonical schedule
    std::string library;                         // "" compiled in; else the cached library
};

struct NodeProfile {
    std::string name, op, kernel;  // kernel: variant name, or the ops call
    double ms = 0;                 // last run
    double flops = 0;              // nominal, 2 per multiply-add (0 for element-wise ops)
};

class Executor {
  public:
    // `g` must have parameter values (init_weights / load_weights). Throws GraphError for a graph
    // it cannot run, std::invalid_argument / KernelError from kernel set-up.
    Executor(const Graph& g, const ExecOptions& options = {});
    ~Executor();
    Executor(const Executor&) = delete;
    Executor& operator=(const Executor&) = delete;

    // inputs: {"x": [N, C, H, W] f32} with the graph's input shape (batch included). Returns the
    // graph outputs by tensor name ("head": [N, classes]) as f32.
    std::map<std::string, Tensor> run(const std::map<std::string, Tensor>& inputs);

    const Graph& graph() const;  // the graph that runs (after the passes)
    const passes::MemoryPlan& plan() const;
    // Per node of the last run() (empty unless ExecOptions::profile).
    const std::vector<NodeProfile>& last_profile() const;
    // "how each depth-wise layer's kernel was chosen", one line per layer (for --verbose).
    std::vector<std::string> kernel_choices() const;
    // The deploy form chosen per merged layer ("node: dense (cost ...) / multi (...)").
    std::vector<std::string> form_choices() const;
    // The kernel of every depth-wise layer, in graph order.
    const std::vector<LayerKernel>& layer_kernels() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The time estimate the executor gives the re-parameterisation pass for a depth-wise workload on
// d: an exact tuned record's median where one exists, else the registry's cost estimate of the
// kernel select_kernel would run, converted to ms at one zmm FMA per cycle per core at 3.5 GHz
// (both in ms). +inf when no kernel runs it.
double depthwise_cost_ms(const Workload& w, Device d);

}  // namespace graph
}  // namespace lkc
