#include "runtime/reparam.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/op_inputs.h"
#include "runtime/workload.h"

namespace lkc {
namespace reparam {

namespace {

[[noreturn]] void fail(const std::string& fn, const std::string& what) {
    throw std::invalid_argument(fn + ": " + what);
}

void require_f32(const std::string& fn, const std::string& name, const Tensor& t) {
    if (t.empty()) fail(fn, "tensor '" + name + "' is empty");
    if (t.dtype() != DType::F32) {
        fail(fn, "tensor '" + name + "' has dtype " + dtype_name(t.dtype()) + ", expected F32");
    }
}

void require_shape(const std::string& fn, const std::string& name, const Tensor& t,
                   const Shape& want) {
    require_f32(fn, name, t);
    if (t.shape() != want) {
        fail(fn, "tensor '" + name + "' has shape " + shape_to_string(t.shape()) + ", expected " +
                     shape_to_string(want));
    }
}

// A DW kernel [C,1,a,b], F32.
void require_dw(const std::string& fn, const std::string& name, const Tensor& t) {
    require_f32(fn, name, t);
    if (t.ndim() != 4 || t.dim(1) != 1 || t.dim(0) < 1 || t.dim(2) < 1 || t.dim(3) < 1) {
        fail(fn, "tensor '" + name + "' has shape " + shape_to_string(t.shape()) +
                     ", expected a depth-wise kernel [C, 1, Kh, Kw]");
    }
}

Tensor from_double(const Shape& shape, const std::vector<double>& v) {
    Tensor t(DType::F32, shape);
    float* p = t.data<float>();
    for (size_t i = 0; i < v.size(); ++i) p[i] = static_cast<float>(v[i]);
    return t;
}

std::vector<double> to_double(const Tensor& t) {
    return std::vector<double>(t.data<float>(), t.data<float>() + t.numel());
}

// Adds the centred [C,1,a,b] kernel (dilated by r) scaled per channel into acc [C,S_h,S_w].
void add_centred(std::vector<double>& acc, int64_t sh, int64_t sw, const Tensor& w, int r,
                 const std::vector<double>& scale) {
    const int64_t C = w.dim(0), a = w.dim(2), b = w.dim(3);
    const int64_t oh = (sh - ((a - 1) * r + 1)) / 2, ow = (sw - ((b - 1) * r + 1)) / 2;
    const float* p = w.data<float>();
    for (int64_t c = 0; c < C; ++c)
        for (int64_t u = 0; u < a; ++u)
            for (int64_t v = 0; v < b; ++v) {
                acc[size_t((c * sh + oh + u * r) * sw + ow + v * r)] +=
                    scale[size_t(c)] * p[(c * a + u) * b + v];
            }
}

// Validates a shiftwise weight + tables, returning the tables and (C, nk, k).
struct SwInfo {
    ShiftTables t;
    int64_t c, nk, k, mid;
};

SwInfo read_shiftwise(const std::string& fn, const Tensor& w, const Tensor& slot_h,
                      const Tensor& slot_v, const Tensor& ident, int big_k) {
    require_f32(fn, "w", w);
    if (w.ndim() != 4 || w.dim(2) != w.dim(3) || w.dim(0) < 1 || w.dim(2) < 1) {
        fail(fn, "tensor 'w' has shape " + shape_to_string(w.shape()) +
                     ", expected [C, nk, k, k] (square sub-kernels)");
    }
    if (slot_h.ndim() != 3 || slot_h.dim(0) < 1) {
        fail(fn, "tensor 'slot_h' has shape " + shape_to_string(slot_h.shape()) +
                     ", expected [G, C, nk]");
    }
    if (w.dim(2) > 63 || slot_h.dim(0) > INT32_MAX || w.dim(0) > INT32_MAX) {
        fail(fn, "tensor 'w' or 'slot_h' has out-of-range extents");
    }
    Workload wl;
    wl.op = Op::ShiftWise;
    wl.n = wl.h = wl.w = 1;
    wl.c = static_cast<int>(w.dim(0));
    wl.big_k = big_k;
    wl.small_k = static_cast<int>(w.dim(2));
    wl.groups = static_cast<int>(slot_h.dim(0));
    try {
        to_string(wl);  // K, k odd in 1..63, k <= K
    } catch (const WorkloadError& e) {
        fail(fn, "big_k=" + std::to_string(big_k) + " with sub-kernel size k=" +
                     std::to_string(wl.small_k) + " from 'w' is invalid: " + e.what());
    }
    const int64_t nk = wl.num_sub_kernels();
    if (w.dim(1) != nk) {
        fail(fn, "tensor 'w' has shape " + shape_to_string(w.shape()) + ", expected [" +
                     std::to_string(wl.c) + ", " + std::to_string(nk) + ", " +
                     std::to_string(wl.small_k) + ", " + std::to_string(wl.small_k) +
                     "] (nk = ceil(K/k) = ceil(" + std::to_string(big_k) + "/" +
                     std::to_string(wl.small_k) + "))");
    }
    return SwInfo{read_shift_tables(wl, slot_h, slot_v, ident), wl.c, nk, wl.small_k, big_k / 2};
}

// The three equivalent kernels in double: wh [C,k,nk*k], wv [C,nk*k,k], ws [C,k,k].
void shiftwise_kernels(const SwInfo& s, const Tensor& w, std::vector<double>* wh,
                       std::vector<double>* wv, std::vector<double>* ws) {
    const int64_t C = s.c, nk = s.nk, k = s.k, L = nk * k, G = s.t.groups;
    const float* p = w.data<float>();
    wh->assign(size_t(C * k * L), 0.0);
    wv->assign(size_t(C * L * k), 0.0);
    ws->assign(size_t(C * k * k), 0.0);
    auto wt = [&](int64_t c, int64_t j, int64_t u, int64_t v) {
        return double(p[((c * nk + j) * k + u) * k + v]);
    };
    for (int64_t g = 0; g < G; ++g)
        for (int64_t c = 0; c < C; ++c) {
            const size_t row = size_t((g * C + c) * nk);
            for (int64_t j = 0; j < nk; ++j) {
                const int64_t sh = s.t.slot_h[row + size_t(j)], sv = s.t.slot_v[row + size_t(j)];
                for (int64_t u = 0; u < k; ++u)
                    for (int64_t v = 0; v < k; ++v) {
                        (*wh)[size_t((c * k + u) * L + sh * k + v)] += wt(c, j, u, v);
                        (*wv)[size_t((c * L + sv * k + u) * k + v)] += wt(c, j, u, v);
                    }
            }
            const int64_t j = s.t.ident[size_t(g * C + c)];
            for (int64_t u = 0; u < k; ++u)
                for (int64_t v = 0; v < k; ++v)
                    (*ws)[size_t((c * k + u) * k + v)] += wt(c, j, u, v);
        }
}

}  // namespace

ConvParams fold_bn(const Tensor& w, const Tensor& b, const BatchNorm& bn) {
    const std::string fn = "fold_bn";
    require_f32(fn, "w", w);
    if (w.ndim() < 1 || w.dim(0) < 1) {
        fail(fn, "tensor 'w' has shape " + shape_to_string(w.shape()) +
                     ", expected rank >= 1 with C = dim 0 >= 1");
    }
    const int64_t C = w.dim(0);
    if (!b.empty()) require_shape(fn, "b", b, {C});
    require_shape(fn, "bn.gamma", bn.gamma, {C});
    require_shape(fn, "bn.beta", bn.beta, {C});
    require_shape(fn, "bn.mean", bn.mean, {C});
    require_shape(fn, "bn.var", bn.var, {C});
    const std::vector<double> gamma = to_double(bn.gamma), beta = to_double(bn.beta),
                              mean = to_double(bn.mean), var = to_double(bn.var);
    std::vector<double> t(static_cast<size_t>(C)), bias(static_cast<size_t>(C));
    for (size_t c = 0; c < size_t(C); ++c) {
        const double den = var[c] + bn.eps;
        if (!(den > 0.0) || !std::isfinite(den)) {
            fail(fn, "bn.var[" + std::to_string(c) + "] + eps = " + std::to_string(den) +
                         " must be positive and finite");
        }
        t[c] = gamma[c] / std::sqrt(den);
        const double bc = b.empty() ? 0.0 : double(b.data<float>()[c]);
        bias[c] = beta[c] + (bc - mean[c]) * t[c];
    }
    std::vector<double> wf = to_double(w);
    const size_t per = wf.size() / size_t(C);
    for (size_t i = 0; i < wf.size(); ++i) wf[i] *= t[i / per];
    return ConvParams{from_double(w.shape(), wf), from_double({C}, bias)};
}

Tensor pad_centered(const Tensor& w, int kh, int kw) {
    const std::string fn = "pad_centered";
    require_dw(fn, "w", w);
    const int64_t a = w.dim(2), b = w.dim(3);
    if (a % 2 == 0 || b % 2 == 0) {
        fail(fn, "tensor 'w' has shape " + shape_to_string(w.shape()) +
                     ": kernel sizes must be odd to have a centre");
    }
    if (kh < 1 || kw < 1 || kh % 2 == 0 || kw % 2 == 0) {
        fail(fn, "target size " + std::to_string(kh) + "x" + std::to_string(kw) +
                     " must be odd and >= 1");
    }
    if (kh < a || kw < b) {
        fail(fn, "target size " + std::to_string(kh) + "x" + std::to_string(kw) +
                     " is smaller than the kernel " + std::to_string(a) + "x" + std::to_string(b));
    }
    const int64_t C = w.dim(0);
    std::vector<double> acc(size_t(C * kh * kw), 0.0);
    add_centred(acc, kh, kw, w, 1, std::vector<double>(size_t(C), 1.0));
    return from_double({C, 1, kh, kw}, acc);
}

Tensor dilate(const Tensor& w, int r) {
    const std::string fn = "dilate";
    require_dw(fn, "w", w);
    if (r < 1) fail(fn, "dilation " + std::to_string(r) + " must be >= 1");
    const int64_t C = w.dim(0), kh = (w.dim(2) - 1) * r + 1, kw = (w.dim(3) - 1) * r + 1;
    std::vector<double> acc(size_t(C * kh * kw), 0.0);
    add_centred(acc, kh, kw, w, r, std::vector<double>(size_t(C), 1.0));
    return from_double({C, 1, kh, kw}, acc);
}

ConvParams merge_branches(const std::vector<Branch>& branches) {
    const std::string fn = "merge_branches";
    if (branches.empty()) fail(fn, "no branches given");
    int64_t C = 0, kh = 1, kw = 1;
    for (size_t i = 0; i < branches.size(); ++i) {
        const Branch& br = branches[i];
        const std::string name = "branches[" + std::to_string(i) + "]";
        require_dw(fn, name + ".w", br.w);
        if (i == 0) C = br.w.dim(0);
        if (br.w.dim(0) != C) {
            fail(fn, "tensor '" + name + ".w' has shape " + shape_to_string(br.w.shape()) +
                         ", expected " + std::to_string(C) + " channels like branches[0]");
        }
        if (br.w.dim(2) % 2 == 0 || br.w.dim(3) % 2 == 0) {
            fail(fn, "tensor '" + name + ".w' has shape " + shape_to_string(br.w.shape()) +
                         ": kernel sizes must be odd");
        }
        if (br.dilation < 1) {
            fail(fn, name + ".dilation = " + std::to_string(br.dilation) + " must be >= 1");
        }
        if (!br.b.empty()) require_shape(fn, name + ".b", br.b, {C});
        kh = std::max<int64_t>(kh, (br.w.dim(2) - 1) * br.dilation + 1);
        kw = std::max<int64_t>(kw, (br.w.dim(3) - 1) * br.dilation + 1);
    }
    std::vector<double> acc(size_t(C * kh * kw), 0.0), bias(size_t(C), 0.0);
    const std::vector<double> ones(size_t(C), 1.0);
    for (const Branch& br : branches) {
        add_centred(acc, kh, kw, br.w, br.dilation, ones);
        if (!br.b.empty())
            for (int64_t c = 0; c < C; ++c) bias[size_t(c)] += br.b.data<float>()[c];
    }
    return ConvParams{from_double({C, 1, kh, kw}, acc), from_double({C}, bias)};
}

ShiftwiseKernels shiftwise_equivalent(const Tensor& w, const Tensor& slot_h, const Tensor& slot_v,
                                      const Tensor& ident, int big_k) {
    const SwInfo s = read_shiftwise("shiftwise_equivalent", w, slot_h, slot_v, ident, big_k);
    std::vector<double> wh, wv, ws;
    shiftwise_kernels(s, w, &wh, &wv, &ws);
    const int64_t L = s.nk * s.k;
    const int h = static_cast<int>((s.k - 1) / 2), mid = static_cast<int>(s.mid);
    ShiftwiseKernels r;
    r.wh = from_double({s.c, 1, s.k, L}, wh);
    r.wv = from_double({s.c, 1, L, s.k}, wv);
    r.ws = from_double({s.c, 1, s.k, s.k}, ws);
    r.wh_row0 = -h;
    r.wh_col0 = -mid;
    r.wv_row0 = -mid;
    r.wv_col0 = -h;
    r.ws_row0 = -h;
    r.ws_col0 = -h;
    return r;
}

ConvParams shiftwise_to_cross(const Tensor& w, const Tensor& slot_h, const Tensor& slot_v,
                              const Tensor& ident, int big_k, const Tensor& ah, const Tensor& av,
                              const Tensor& as, const Tensor& b) {
    const std::string fn = "shiftwise_to_cross";
    const SwInfo s = read_shiftwise(fn, w, slot_h, slot_v, ident, big_k);
    const int64_t C = s.c, k = s.k, L = s.nk * s.k, h = (k - 1) / 2;
    require_shape(fn, "ah", ah, {C});
    require_shape(fn, "av", av, {C});
    require_shape(fn, "as", as, {C});
    require_shape(fn, "b", b, {C});
    std::vector<double> wh, wv, ws;
    shiftwise_kernels(s, w, &wh, &wv, &ws);
    const std::vector<double> sh = to_double(ah), sv = to_double(av), ss = to_double(as);

    // Offsets span [-mid, L-1-mid] along the strips, [-h, h] across them; h <= mid as k <= K.
    const int64_t half = std::max(s.mid, L - 1 - s.mid), S = 2 * half + 1;
    std::vector<double> acc(size_t(C * S * S), 0.0);
    auto at = [&](int64_t c, int64_t dr, int64_t dc) -> double& {
        return acc[size_t((c * S + half + dr) * S + half + dc)];
    };
    for (int64_t c = 0; c < C; ++c) {
        const size_t ci = size_t(c);
        for (int64_t u = 0; u < k; ++u)
            for (int64_t v = 0; v < L; ++v) {
                at(c, u - h, v - s.mid) += sh[ci] * wh[size_t((c * k + u) * L + v)];
                at(c, v - s.mid, u - h) += sv[ci] * wv[size_t((c * L + v) * k + u)];
            }
        for (int64_t u = 0; u < k; ++u)
            for (int64_t v = 0; v < k; ++v)
                at(c, u - h, v - h) += ss[ci] * ws[size_t((c * k + u) * k + v)];
        at(c, 0, 0) += 1.0;  // + x
    }
    return ConvParams{from_double({C, 1, S, S}, acc), from_double({C}, to_double(b))};
}

}  // namespace reparam
}  // namespace lkc
