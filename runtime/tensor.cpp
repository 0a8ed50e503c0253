#include "runtime/tensor.h"

#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <type_traits>

namespace lkc {

namespace {
struct DTypeInfo {
    DType type;
    const char* name;
    size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F32, "F32", 4},   {DType::F16, "F16", 2}, {DType::BF16, "BF16", 2},
    {DType::F64, "F64", 8},   {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::I16, "I16", 2},   {DType::I32, "I32", 4}, {DType::I64, "I64", 8},
    {DType::Bool, "BOOL", 1},
};

const DTypeInfo& info(DType t) {
    for (const auto& d : kDTypes) {
        if (d.type == t) return d;
    }
    throw std::logic_error("unknown DType value");
}

template <typename T>
bool type_matches(DType d) {
    if constexpr (std::is_same_v<T, float>) return d == DType::F32;
    if constexpr (std::is_same_v<T, double>) return d == DType::F64;
    if constexpr (std::is_same_v<T, int32_t>) return d == DType::I32;
    if constexpr (std::is_same_v<T, int64_t>) return d == DType::I64;
    if constexpr (std::is_same_v<T, uint16_t>)
        return d == DType::F16 || d == DType::BF16 || d == DType::I16;
    if constexpr (std::is_same_v<T, uint8_t>) return d == DType::U8 || d == DType::Bool;
    if constexpr (std::is_same_v<T, int8_t>) return d == DType::I8;
    return false;
}
}  // namespace

size_t dtype_size(DType t) { return info(t).size; }
const char* dtype_name(DType t) { return info(t).name; }

bool dtype_from_name(const std::string& name, DType* out) {
    for (const auto& d : kDTypes) {
        if (name == d.name) {
            *out = d.type;
            return true;
        }
    }
    return false;
}

std::string shape_to_string(const Shape& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) {
        if (i) r += ", ";
        r += std::to_string(s[i]);
    }
    return r + "]";
}

int64_t shape_numel(const Shape& s) {
    int64_t n = 1;
    for (int64_t e : s) {
        if (e < 0) throw std::invalid_argument("negative extent in shape " + shape_to_string(s));
        if (e != 0 && n > std::numeric_limits<int64_t>::max() / e) {
            throw std::invalid_argument("element count overflows in shape " + shape_to_string(s));
        }
        n *= e;
    }
    return n;
}

Tensor::Tensor(DType dtype, Shape shape) : dtype_(dtype), shape_(std::move(shape)) {
    numel_ = shape_numel(shape_);
    // 64-byte alignment and a 64-byte tail so vector loads of the last element stay in bounds.
    size_t bytes = (nbytes() + 64 + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    std::memset(p, 0, bytes);
    data_ =
        std::shared_ptr<std::byte>(static_cast<std::byte*>(p), [](std::byte* q) { std::free(q); });
}

Tensor Tensor::clone() const {
    Tensor t;
    t.dtype_ = dtype_;
    t.shape_ = shape_;
    t.numel_ = numel_;
    if (data_) {
        t = Tensor(dtype_, shape_);
        std::memcpy(t.raw(), raw(), nbytes());
    }
    return t;
}

template <typename T>
T* Tensor::data() {
    if (!type_matches<T>(dtype_)) {
        throw std::invalid_argument(std::string("tensor of dtype ") + dtype_name(dtype_) +
                                    " accessed with a mismatched element type");
    }
    return reinterpret_cast<T*>(data_.get());
}

template <typename T>
const T* Tensor::data() const {
    return const_cast<Tensor*>(this)->data<T>();
}

#define LKC_INSTANTIATE(T)         \
    template T* Tensor::data<T>(); \
    template const T* Tensor::data<T>() const;
LKC_INSTANTIATE(float)
LKC_INSTANTIATE(double)
LKC_INSTANTIATE(int32_t)
LKC_INSTANTIATE(int64_t)
LKC_INSTANTIATE(uint16_t)
LKC_INSTANTIATE(uint8_t)
LKC_INSTANTIATE(int8_t)
#undef LKC_INSTANTIATE

}  // namespace lkc
