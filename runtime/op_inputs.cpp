#include "runtime/op_inputs.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace lkc {

namespace {

bool is_table(const std::string& name) {
    return name == "slot_h" || name == "slot_v" || name == "ident";
}

std::string branch_name(const char* prefix, size_t b) { return prefix + std::to_string(b); }

// The canonical name; throws WorkloadError (an std::invalid_argument) for a workload outside the
// grammar, so every function below rejects hand-built nonsense the same way.
std::string name_of(const Workload& w) { return to_string(w); }

std::string join_names(const std::map<std::string, Shape>& m) {
    std::string s;
    for (const auto& kv : m) s += (s.empty() ? "" : ", ") + kv.first;
    return s;
}

// Deterministic on every platform: only raw mt19937 output (fully specified by the standard) is
// used, never std::uniform_*_distribution or std::shuffle (implementation-defined algorithms).
class Rng {
  public:
    explicit Rng(uint32_t seed) : g_(seed) {}
    // Uniform in [0, n), n >= 1 (multiply-shift; the bias is below 2^-32 * n).
    uint32_t below(uint32_t n) { return static_cast<uint32_t>((uint64_t{g_()} * n) >> 32); }
    // Uniform in [-1, 1) with 24 random bits, exactly representable in float.
    float unit() {
        return static_cast<float>(static_cast<int32_t>(g_() >> 8) - (1 << 23)) / 8388608.0f;
    }
    // Uniform integer in [-m, m].
    float small_int(int m) { return static_cast<float>(static_cast<int>(below(2 * m + 1)) - m); }
    // Fisher-Yates on v.
    template <typename T>
    void shuffle(std::vector<T>& v) {
        for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(uint32_t(i))]);
    }

  private:
    std::mt19937 g_;
};

std::string fmt_value(double v) {
    std::ostringstream os;
    os << v;
    return os.str();
}

}  // namespace

std::map<std::string, Shape> op_input_shapes(const Workload& w) {
    name_of(w);
    const Shape x{w.n, w.c, w.h, w.w}, y{w.n, w.c, w.out_h(), w.out_w()};
    switch (w.op) {
        case Op::DwConv2d:
        case Op::DwConv2dSparse: {
            const Shape k{w.c, 1, w.kh, w.kw};
            std::map<std::string, Shape> m;
            switch (w.pass) {
                case Pass::Fwd:
                    m = {{"x", x}, {"w", k}};
                    break;
                case Pass::BwdData:
                    m = {{"dy", y}, {"w", k}};
                    break;
                case Pass::BwdWeight:
                    m = {{"x", x}, {"dy", y}};
                    break;
            }
            if (w.op == Op::DwConv2dSparse) m["mask"] = k;
            return m;
        }
        case Op::DwConv2dMulti: {
            std::map<std::string, Shape> m;
            if (w.pass == Pass::Fwd || w.pass == Pass::BwdWeight) m["x"] = x;
            if (w.pass == Pass::BwdData || w.pass == Pass::BwdWeight) m["dy"] = y;
            if (w.pass != Pass::BwdWeight) {
                for (size_t b = 0; b < w.branches.size(); ++b) {
                    m[branch_name("w", b)] = {w.c, 1, w.branches[b].kh, w.branches[b].kw};
                }
            }
            return m;
        }
        case Op::ShiftWise: {
            const int64_t nk = w.num_sub_kernels(), k = w.small_k;
            std::map<std::string, Shape> m = {{"slot_h", {w.groups, w.c, nk}},
                                              {"slot_v", {w.groups, w.c, nk}},
                                              {"ident", {w.groups, w.c}}};
            if (w.pass == Pass::Fwd || w.pass == Pass::BwdWeight) m["x"] = x;
            if (w.pass == Pass::Fwd || w.pass == Pass::BwdData) m["w"] = {w.c, nk, k, k};
            if (w.pass != Pass::Fwd) m["dyh"] = m["dyv"] = m["dys"] = x;  // stride 1: same as x
            return m;
        }
    }
    return {};
}

std::map<std::string, Shape> op_optional_inputs(const Workload& w) {
    name_of(w);
    if (w.pass != Pass::Fwd) return {};
    if (w.op == Op::ShiftWise) {
        return {{"ah", {w.c}}, {"av", {w.c}}, {"as", {w.c}}, {"b", {w.c}}};
    }
    return {{"b", {w.c}}};
}

std::map<std::string, Shape> op_output_shapes(const Workload& w) {
    name_of(w);
    const Shape x{w.n, w.c, w.h, w.w};
    switch (w.pass) {
        case Pass::Fwd:
            if (w.op == Op::ShiftWise) return {{"yh", x}, {"yv", x}, {"ys", x}};
            return {{"y", {w.n, w.c, w.out_h(), w.out_w()}}};
        case Pass::BwdData:
            return {{"dx", x}};
        case Pass::BwdWeight:
            switch (w.op) {
                case Op::DwConv2d:
                case Op::DwConv2dSparse:
                    return {{"dw", {w.c, 1, w.kh, w.kw}}, {"db", {w.c}}};
                case Op::DwConv2dMulti: {
                    std::map<std::string, Shape> m = {{"db", {w.c}}};
                    for (size_t b = 0; b < w.branches.size(); ++b) {
                        m[branch_name("dw", b)] = {w.c, 1, w.branches[b].kh, w.branches[b].kw};
                    }
                    return m;
                }
                case Op::ShiftWise:
                    return {{"dw", {w.c, w.num_sub_kernels(), w.small_k, w.small_k}}};
            }
    }
    return {};
}

void check_op_inputs(const Workload& w, const std::map<std::string, Tensor>& inputs) {
    const std::string wl = name_of(w);
    const auto required = op_input_shapes(w);
    const auto optional = op_optional_inputs(w);

    for (const auto& kv : inputs) {
        if (!required.count(kv.first) && !optional.count(kv.first)) {
            std::string valid = join_names(required);
            if (!optional.empty()) valid += "; optional: " + join_names(optional);
            throw std::invalid_argument("unexpected tensor '" + kv.first + "' for " + wl +
                                        " (expected: " + valid + ")");
        }
    }
    for (const auto& kv : required) {
        if (!inputs.count(kv.first)) {
            throw std::invalid_argument("missing input tensor '" + kv.first + "' " +
                                        shape_to_string(kv.second) + " for " + wl);
        }
    }
    std::string given, missing;
    for (const auto& kv : optional) {
        std::string& list = inputs.count(kv.first) ? given : missing;
        list += (list.empty() ? "" : ", ") + kv.first;
    }
    if (!given.empty() && !missing.empty()) {
        throw std::invalid_argument("incomplete optional inputs for " + wl + ": given " + given +
                                    ", missing " + missing + " (" + join_names(optional) +
                                    " are given together or not at all)");
    }

    for (const auto& kv : inputs) {
        const std::string& name = kv.first;
        const Tensor& t = kv.second;
        const Shape& want = required.count(name) ? required.at(name) : optional.at(name);
        if (t.empty() && want != Shape{}) {
            throw std::invalid_argument("tensor '" + name + "' is empty, expected shape " +
                                        shape_to_string(want) + " for " + wl);
        }
        if (t.shape() != want) {
            throw std::invalid_argument("tensor '" + name + "' has shape " +
                                        shape_to_string(t.shape()) + ", expected " +
                                        shape_to_string(want) + " for " + wl);
        }
        const DType d = t.dtype();
        if (is_table(name)) {
            if (d != DType::I32) {
                throw std::invalid_argument("tensor '" + name + "' has dtype " + dtype_name(d) +
                                            ", expected I32 for " + wl);
            }
        } else if (name == "mask") {
            if (d != DType::F32 && d != DType::U8 && d != DType::Bool && d != DType::I32) {
                throw std::invalid_argument("tensor 'mask' has dtype " +
                                            std::string(dtype_name(d)) +
                                            ", expected F32, U8, BOOL or I32 for " + wl);
            }
        } else if (d != DType::F32) {
            throw std::invalid_argument("tensor '" + name + "' has dtype " + dtype_name(d) +
                                        ", expected F32 for " + wl);
        }
    }
}

std::vector<uint8_t> read_mask(const Workload& w, const Tensor& mask) {
    const std::string wl = name_of(w);
    if (w.op != Op::DwConv2dSparse) {
        throw std::invalid_argument("read_mask: " + wl + " is not a dwconv2d_sparse workload");
    }
    const Shape want{w.c, 1, w.kh, w.kw};
    if (mask.empty() || mask.shape() != want) {
        throw std::invalid_argument("tensor 'mask' has shape " + shape_to_string(mask.shape()) +
                                    ", expected " + shape_to_string(want) + " for " + wl);
    }
    const size_t n = static_cast<size_t>(mask.numel());
    std::vector<double> v(n);
    switch (mask.dtype()) {
        case DType::F32:
            std::copy(mask.data<float>(), mask.data<float>() + n, v.begin());
            break;
        case DType::U8:
        case DType::Bool:
            std::copy(mask.data<uint8_t>(), mask.data<uint8_t>() + n, v.begin());
            break;
        case DType::I32:
            std::copy(mask.data<int32_t>(), mask.data<int32_t>() + n, v.begin());
            break;
        default:
            throw std::invalid_argument("tensor 'mask' has dtype " +
                                        std::string(dtype_name(mask.dtype())) +
                                        ", expected F32, U8, BOOL or I32 for " + wl);
    }
    std::vector<uint8_t> out(n);
    for (size_t i = 0; i < n; ++i) {
        if (!(v[i] == 0.0 || v[i] == 1.0)) {
            const size_t kw = size_t(w.kw), kh = size_t(w.kh);
            throw std::invalid_argument("mask[" + std::to_string(i / (kh * kw)) + ",0," +
                                        std::to_string(i / kw % kh) + "," + std::to_string(i % kw) +
                                        "] = " + fmt_value(v[i]) + ": must be 0 or 1");
        }
        out[i] = v[i] == 1.0 ? 1 : 0;
    }
    return out;
}

ShiftTables read_shift_tables(const Workload& w, const Tensor& slot_h, const Tensor& slot_v,
                              const Tensor& ident) {
    const std::string wl = name_of(w);
    if (w.op != Op::ShiftWise) {
        throw std::invalid_argument("read_shift_tables: " + wl + " is not a shiftwise workload");
    }
    ShiftTables t;
    t.groups = w.groups;
    t.channels = w.c;
    t.nk = w.num_sub_kernels();
    const int G = t.groups, C = t.channels, nk = t.nk;

    auto read = [&](const char* name, const Tensor& src, const Shape& want) {
        if (src.empty() || src.shape() != want) {
            throw std::invalid_argument("tensor '" + std::string(name) + "' has shape " +
                                        shape_to_string(src.shape()) + ", expected " +
                                        shape_to_string(want) + " for " + wl);
        }
        if (src.dtype() != DType::I32) {
            throw std::invalid_argument("tensor '" + std::string(name) + "' has dtype " +
                                        dtype_name(src.dtype()) + ", expected I32 for " + wl);
        }
        return std::vector<int32_t>(src.data<int32_t>(), src.data<int32_t>() + src.numel());
    };
    const std::string range = "0.." + std::to_string(nk - 1);
    for (const char* name : {"slot_h", "slot_v"}) {
        std::vector<int32_t> v = read(name, name[5] == 'h' ? slot_h : slot_v, {G, C, nk});
        for (int g = 0; g < G; ++g)
            for (int c = 0; c < C; ++c) {
                const std::string where =
                    std::string(name) + "[g=" + std::to_string(g) + ",c=" + std::to_string(c) + "]";
                std::vector<int> first(size_t(nk), -1);  // j where each slot was seen
                for (int j = 0; j < nk; ++j) {
                    const int32_t s = v[(size_t(g) * C + c) * nk + j];
                    if (s < 0 || s >= nk) {
                        throw std::invalid_argument(where + ": value " + std::to_string(s) +
                                                    " at j=" + std::to_string(j) +
                                                    " is out of range " + range +
                                                    "; each row must be a permutation of " + range);
                    }
                    if (first[s] >= 0) {
                        throw std::invalid_argument(where + ": value " + std::to_string(s) +
                                                    " repeated (j=" + std::to_string(first[s]) +
                                                    " and j=" + std::to_string(j) +
                                                    "); each row must be a permutation of " +
                                                    range);
                    }
                    first[s] = j;
                }
            }
        (name[5] == 'h' ? t.slot_h : t.slot_v) = std::move(v);
    }
    t.ident = read("ident", ident, {G, C});
    for (int g = 0; g < G; ++g)
        for (int c = 0; c < C; ++c) {
            const int32_t s = t.ident[size_t(g) * C + c];
            if (s < 0 || s >= nk) {
                throw std::invalid_argument("ident[g=" + std::to_string(g) +
                                            ",c=" + std::to_string(c) + "] = " + std::to_string(s) +
                                            ": out of range " + range);
            }
        }
    return t;
}

std::map<std::string, Tensor> make_example_inputs(const Workload& w, uint32_t seed, bool small_int,
                                                  double density, bool with_optional) {
    if (!(density >= 0.0 && density <= 1.0)) {
        throw std::invalid_argument("make_example_inputs: density " + fmt_value(density) +
                                    " must be in [0, 1]");
    }
    auto shapes = op_input_shapes(w);
    if (with_optional) {
        for (const auto& kv : op_optional_inputs(w)) shapes.insert(kv);
    }
    Rng rng(seed);
    std::map<std::string, Tensor> out;
    for (const auto& [name, shape] : shapes) {  // map order: deterministic
        if (is_table(name)) {
            Tensor t(DType::I32, shape);
            int32_t* p = t.data<int32_t>();
            const int nk = w.num_sub_kernels();
            if (name == "ident") {
                for (int64_t i = 0; i < t.numel(); ++i) p[i] = int32_t(rng.below(uint32_t(nk)));
            } else {
                std::vector<int32_t> perm(size_t(nk), 0);
                for (int64_t row = 0; row < t.numel() / nk; ++row) {
                    std::iota(perm.begin(), perm.end(), 0);
                    rng.shuffle(perm);
                    std::copy(perm.begin(), perm.end(), p + row * nk);
                }
            }
            out.emplace(name, std::move(t));
            continue;
        }
        Tensor t(DType::F32, shape);
        float* p = t.data<float>();
        if (name == "mask") {
            // Per channel: round(density*Kh*Kw) taps (lround, at least 1) chosen uniformly.
            const int taps = w.kh * w.kw;
            const int m =
                std::max(1, std::min(taps, static_cast<int>(std::lround(density * taps))));
            std::vector<int> pos(size_t(taps), 0);
            for (int c = 0; c < w.c; ++c) {
                std::iota(pos.begin(), pos.end(), 0);
                rng.shuffle(pos);
                for (int i = 0; i < m; ++i) p[int64_t(c) * taps + pos[i]] = 1.0f;
            }
        } else {
            const bool weight = name == "w" || (name[0] == 'w' && name.size() > 1);
            const bool scale = name == "b" || name == "ah" || name == "av" || name == "as";
            const int bound = weight ? 2 : scale ? 4 : 3;
            for (int64_t i = 0; i < t.numel(); ++i) {
                p[i] = small_int ? rng.small_int(bound) : rng.unit();
            }
        }
        out.emplace(name, std::move(t));
    }
    return out;
}

}  // namespace lkc
