// Reading and writing of safetensors files (https://github.com/huggingface/safetensors format):
// an 8-byte little-endian u64 header length N, N bytes of UTF-8 JSON header, then raw
// little-endian tensor data addressed by per-tensor data_offsets relative to the data section.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>

#include "runtime/tensor.h"

namespace lkc {

// Every malformed-file and I/O problem is reported with this type. The message starts with the
// file name and names the tensor/field at fault and what was expected.
class SafetensorsError : public std::runtime_error {
  public:
    explicit SafetensorsError(const std::string& msg) : std::runtime_error(msg) {}
};

struct SafetensorsFile {
    std::map<std::string, Tensor> tensors;        // by name, ordered
    std::map<std::string, std::string> metadata;  // the "__metadata__" object, if any
};

// Limits enforced by the reader (and the writer).
constexpr uint64_t kSafetensorsMaxHeaderBytes = uint64_t{100} << 20;  // 100 MiB
constexpr uint64_t kSafetensorsMaxDataBytes = uint64_t{64} << 30;     // 64 GiB
constexpr int kSafetensorsMaxRank = 8;

// Reads and validates a regular file. Tensor data is read straight into the tensors' storage.
SafetensorsFile read_safetensors(const std::string& path);

// Parses and validates an in-memory file image. `what` names the source in error messages.
SafetensorsFile parse_safetensors(const uint8_t* data, size_t size, const std::string& what);

// Writes atomically: a temp file `path + ".tmp.<pid>"` in the same directory is written, fsynced
// and renamed over `path`. On failure the temp file is removed, `path` is untouched, and a
// SafetensorsError is thrown. Tensors are laid out contiguously in name order; "__metadata__" is
// emitted only when `metadata` is non-empty.
void write_safetensors(const std::string& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// The exact bytes write_safetensors would put in the file (header + data). Exposed for tests and
// for callers that want an in-memory image.
std::string serialize_safetensors(const std::map<std::string, Tensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {},
                                  const std::string& what = "<memory>");

}  // namespace lkc
