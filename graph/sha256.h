// SHA-256 (FIPS 180-4) for the key-set verification hashes of official_param_names.md section 6.
#pragma once

#include <cstddef>
#include <string>

namespace lkc {
namespace graph {

// Lower-case hex digest of `size` bytes at `data`.
std::string sha256_hex(const void* data, size_t size);
inline std::string sha256_hex(const std::string& s) { return sha256_hex(s.data(), s.size()); }

}  // namespace graph
}  // namespace lkc
