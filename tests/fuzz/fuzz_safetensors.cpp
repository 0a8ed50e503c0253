// libFuzzer target for the safetensors parser. Malformed input must raise SafetensorsError;
// any other exception, crash or sanitizer report is a bug.
//
// Build and run from the repo root:
//   clang++-14 -fsanitize=fuzzer,address,undefined -std=c++17 -g -O1 -I. runtime/tensor.cpp
//       runtime/safetensors.cpp tests/fuzz/fuzz_safetensors.cpp -o /tmp/fuzz_safetensors
//   mkdir -p /tmp/st_corpus
//   /tmp/fuzz_safetensors -max_total_time=180 /tmp/st_corpus tests/fuzz/corpus
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "runtime/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    try {
        lkc::SafetensorsFile f = lkc::parse_safetensors(data, size, "fuzz.safetensors");
        // Parsed tensors must lie within the input and have consistent sizes.
        size_t total = 0;
        for (const auto& kv : f.tensors) {
            const lkc::Tensor& t = kv.second;
            if (t.empty() ||
                t.nbytes() != static_cast<size_t>(t.numel()) * lkc::dtype_size(t.dtype())) {
                std::abort();
            }
            total += t.nbytes();
        }
        if (total > size) std::abort();
    } catch (const lkc::SafetensorsError&) {
        // Expected for malformed input.
    }
    return 0;
}
