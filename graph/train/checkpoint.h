// Training checkpoints: one safetensors file with everything a resumed run needs, written
// atomically (temp file, fsync, rename: runtime/safetensors.h):
//   <key>               the model's parameters and BN buffers (official state_dict names)
//   opt.m.<key>, opt.v.<key>, opt.mom.<key>   optimizer state (AdamW moments / SGD momentum)
//   ema.<key>           EMA weights (when on)
//   mask.<key>          dynamic-sparsity masks (when on)
//   train.step, train.epoch, train.batch_in_epoch   I64 0-d
//   train.rng.<name>    U8: the text state of each std::mt19937_64 (data order, drop path, masks)
// and metadata: model, options (JSON), lkc version.
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <string>

#include "runtime/tensor.h"

namespace lkc {
namespace train {

struct CheckpointData {
    std::map<std::string, Tensor> tensors;  // everything above
    std::map<std::string, std::string> metadata;
};

// RNG <-> U8 tensor (the engine's stream text, exact).
Tensor rng_tensor(const std::mt19937_64& rng);
std::mt19937_64 rng_from_tensor(const Tensor& t, const std::string& what);

Tensor scalar_i64(int64_t v);
int64_t scalar_value(const Tensor& t, const std::string& what);

void write_checkpoint(const std::string& path, const CheckpointData& c);
// Throws std::runtime_error naming the file / tensor when it is unreadable or incomplete.
CheckpointData read_checkpoint(const std::string& path);

}  // namespace train
}  // namespace lkc
