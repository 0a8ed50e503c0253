// Parameter values: loading official checkpoints converted to safetensors, deterministic
// initialisation, export, and the key-set verification hashes of official_param_names.md
// section 6.
#pragma once

#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

#include "graph/ir.h"
#include "runtime/tensor.h"

namespace lkc {
namespace graph {

// A checkpoint that does not fit the model. The message names the source and lists every
// missing, unexpected, mis-shaped or wrong-dtype tensor (the first 20, then a count).
class WeightsError : public std::runtime_error {
  public:
    explicit WeightsError(const std::string& msg) : std::runtime_error(msg) {}
};

// Official: what the PyTorch constructors produce (conv / linear weights normal(0, 0.02), biases
// 0, BN weight 1, bias 0, running_mean 0, running_var 1, LN 1 / 0, GRN gamma, beta 0, layer scale
// 1e-6). The layer scale makes every residual branch ~1e-6, so outputs barely depend on it.
// Test: every value random and non-degenerate so each branch contributes (weights uniform with
// variance 1 / fan_in, biases and shifts U(-0.2, 0.2), BN / LN weights and running_var
// U(0.5, 1.5), layer scale U(0.5, 1)), for comparing executors.
enum class InitMode { Official, Test };

// Fills every parameter from `seed`: each tensor from its own stream keyed by (seed, name), so the
// values do not depend on construction order or platform. num_batches_tracked is 0.
void init_weights(Graph& g, uint64_t seed, InitMode mode = InitMode::Official);

// Loads a safetensors file written by safetensors.torch.save_file(model.state_dict(), path):
// every parameter must be present with its exact shape and dtype (F32; I64 [] for
// num_batches_tracked), and the file may hold nothing else except the ShiftwiseConv index tables
// under their attribute paths (section 4.3), which must then equal the rebuilt ones. Names are
// taken as they are: a 'module.' / 'model.' / 'backbone.' prefix (never written by the official
// code, section 5) is reported with a hint, not stripped. On any problem throws WeightsError and
// leaves the graph unchanged. File errors are lkc::SafetensorsError.
void load_weights(Graph& g, const std::string& safetensors_path);
// The same for tensors already in memory; `source` names them in messages.
void load_state_dict(Graph& g, const std::map<std::string, Tensor>& tensors,
                     const std::string& source);

// Every parameter value by key (what write_safetensors needs); throws GraphError if one has none.
std::map<std::string, Tensor> state_dict(const Graph& g);

// sha256 over the sorted parameter keys, each followed by '\n' ("names"), and over lines
// "key\td0,d1,...\n" ("names+shapes"), as in official_param_names.md section 6.
std::string state_dict_names_sha256(const Graph& g);
std::string state_dict_shapes_sha256(const Graph& g);

}  // namespace graph
}  // namespace lkc
