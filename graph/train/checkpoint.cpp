#include "graph/train/checkpoint.h"

#include <sstream>
#include <stdexcept>

#include "runtime/safetensors.h"

namespace lkc {
namespace train {

Tensor rng_tensor(const std::mt19937_64& rng) {
    std::ostringstream os;
    os << rng;
    const std::string s = os.str();
    Tensor t(DType::U8, {int64_t(s.size())});
    std::copy(s.begin(), s.end(), t.data<uint8_t>());
    return t;
}

std::mt19937_64 rng_from_tensor(const Tensor& t, const std::string& what) {
    if (t.dtype() != DType::U8 || t.ndim() != 1) {
        throw std::runtime_error("checkpoint tensor '" + what + "' is not a U8 vector");
    }
    std::istringstream is(std::string(t.data<uint8_t>(), t.data<uint8_t>() + t.numel()));
    std::mt19937_64 r;
    is >> r;
    if (is.fail()) throw std::runtime_error("checkpoint tensor '" + what + "' is not an RNG state");
    return r;
}

Tensor scalar_i64(int64_t v) {
    Tensor t(DType::I64, {});
    *t.data<int64_t>() = v;
    return t;
}

int64_t scalar_value(const Tensor& t, const std::string& what) {
    if (t.dtype() != DType::I64 || t.numel() != 1) {
        throw std::runtime_error("checkpoint tensor '" + what + "' is not an I64 scalar");
    }
    return *t.data<int64_t>();
}

void write_checkpoint(const std::string& path, const CheckpointData& c) {
    write_safetensors(path, c.tensors, c.metadata);  // temp file, fsync, rename
}

CheckpointData read_checkpoint(const std::string& path) {
    SafetensorsFile f = read_safetensors(path);
    CheckpointData c;
    c.tensors = std::move(f.tensors);
    c.metadata = std::move(f.metadata);
    for (const char* k : {"train.step", "train.epoch", "train.batch_in_epoch"})
        if (!c.tensors.count(k)) {
            throw std::runtime_error(path + ": not a training checkpoint (no tensor '" + k + "')");
        }
    return c;
}

}  // namespace train
}  // namespace lkc
