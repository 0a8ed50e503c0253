// One differential harness for the dense depth-wise kernels: each case is a workload string
// (its stable name), inputs are generated per case, outputs are compared with the naive
// double-precision reference (tests/reference) or with another device's result.
//
// Tolerances:
//  - exact small-integer data (x in -3..3, w in -2..2, b in -4..4): every product and partial sum
//    is an integer below 2^24, so fp32 results must equal the reference exactly, whatever the
//    summation order;
//  - random floats in [-1, 1]: |out - ref| <= 1e-5 * sum of |terms| + 1e-6, the sum of |terms|
//    being the same reference run on |inputs| (bounds fp32 rounding of a sum of K*K products).
#pragma once

#include <cmath>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "runtime/dwconv2d.h"
#include "runtime/reference_dwconv.h"
#include "runtime/tensor.h"
#include "runtime/workload.h"

namespace lkc::test {

enum class Data { SmallInt, Float };

inline Tensor make_input(const Shape& s, Data data, int range, std::mt19937& g) {
    Tensor t(DType::F32, s);
    float* p = t.data<float>();
    if (data == Data::SmallInt) {
        std::uniform_int_distribution<int> u(-range, range);
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = float(u(g));
    } else {
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(g);
    }
    return t;
}

inline std::map<std::string, Tensor> make_inputs(const Workload& w, Data data, uint32_t seed) {
    std::mt19937 g(seed);
    std::map<std::string, Tensor> in;
    for (const auto& [name, shape] : dwconv2d_input_shapes(w)) {
        const int range = name == "w" ? 2 : (name == "b" ? 4 : 3);
        in[name] = make_input(shape, data, range, g);
    }
    return in;
}

inline std::vector<double> to_double(const Tensor& t, bool absolute = false) {
    std::vector<double> v(t.data<float>(), t.data<float>() + t.numel());
    if (absolute)
        for (double& x : v) x = std::fabs(x);
    return v;
}

// Reference outputs (and, with absolute=true, the sum of |terms| for each output element).
inline std::map<std::string, std::vector<double>> reference(const Workload& w,
                                                            const std::map<std::string, Tensor>& in,
                                                            bool absolute = false) {
    return ref::dwconv2d_reference(w, in, absolute);
}

struct Mismatch {
    size_t count = 0;
    double worst = 0;  // largest |out - ref| / allowed
    size_t worst_at = 0;
    double got = 0, want = 0;
};

// Compares out with ref elementwise; allowed[i] = 0 means exact.
inline Mismatch compare(const Tensor& out, const std::vector<double>& want,
                        const std::vector<double>* abs_sum, double rel) {
    Mismatch m;
    const float* p = out.data<float>();
    for (size_t i = 0; i < want.size(); ++i) {
        const double allowed = abs_sum ? rel * (*abs_sum)[i] + 1e-6 : 0.0;
        const double err = std::fabs(double(p[i]) - want[i]);
        if (err > allowed) {
            ++m.count;
            const double score = allowed > 0 ? err / allowed : err + 1;
            if (score > m.worst) {
                m.worst = score;
                m.worst_at = i;
                m.got = p[i];
                m.want = want[i];
            }
        }
    }
    return m;
}

}  // namespace lkc::test
