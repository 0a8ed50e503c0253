// Host tensors: a dtype, a row-major shape (PyTorch order, outermost first) and 64-byte aligned
// storage. This is the file/user-facing representation; kernels use their own internal layouts
// and convert at the edges (runtime/dwconv2d.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lkc {

enum class DType { F32, F16, BF16, F64, I8, U8, I16, I32, I64, Bool };

// Bytes per element.
size_t dtype_size(DType t);
// safetensors spelling: "F32", "BF16", "I64", ...
const char* dtype_name(DType t);
// Parses the safetensors spelling; returns false for an unknown name.
bool dtype_from_name(const std::string& name, DType* out);

using Shape = std::vector<int64_t>;

// "[1, 128, 56, 56]"
std::string shape_to_string(const Shape& s);
// Product of the extents (1 for a 0-d tensor). Throws on a negative extent or overflow.
int64_t shape_numel(const Shape& s);

class Tensor {
  public:
    Tensor() = default;
    // Allocates zero-filled storage.
    Tensor(DType dtype, Shape shape);

    DType dtype() const { return dtype_; }
    const Shape& shape() const { return shape_; }
    int64_t dim(int i) const { return shape_.at(static_cast<size_t>(i)); }
    int ndim() const { return static_cast<int>(shape_.size()); }
    int64_t numel() const { return numel_; }
    size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
    bool empty() const { return data_ == nullptr; }
    // A copy with its own storage (copies of a Tensor share it).
    Tensor clone() const;

    void* raw() { return data_.get(); }
    const void* raw() const { return data_.get(); }
    // Typed access; throws if T does not match the dtype's size class (checked by dtype).
    template <typename T>
    T* data();
    template <typename T>
    const T* data() const;

  private:
    DType dtype_ = DType::F32;
    Shape shape_;
    int64_t numel_ = 0;
    std::shared_ptr<std::byte> data_;
};

}  // namespace lkc
