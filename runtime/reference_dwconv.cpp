#include "runtime/reference_dwconv.h"

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace lkc {
namespace ref {

namespace {

struct Geometry {
    int64_t n, c, h, w, kh, kw, s, d, ph, pw, oh, ow;
};

Geometry make_geometry(const char* fn, int N, int C, int H, int W, int Kh, int Kw, int s, int d) {
    if (N < 1 || C < 1 || H < 1 || W < 1 || Kh < 1 || Kw < 1 || s < 1 || d < 1) {
        throw std::invalid_argument(
            std::string(fn) + ": sizes must be >= 1, got N=" + std::to_string(N) +
            " C=" + std::to_string(C) + " H=" + std::to_string(H) + " W=" + std::to_string(W) +
            " Kh=" + std::to_string(Kh) + " Kw=" + std::to_string(Kw) + " s=" + std::to_string(s) +
            " d=" + std::to_string(d));
    }
    Geometry g;
    g.n = N;
    g.c = C;
    g.h = H;
    g.w = W;
    g.kh = Kh;
    g.kw = Kw;
    g.s = s;
    g.d = d;
    g.ph = g.d * (g.kh - 1) / 2;
    g.pw = g.d * (g.kw - 1) / 2;
    g.oh = (g.h + g.s - 1) / g.s;
    g.ow = (g.w + g.s - 1) / g.s;
    return g;
}

void check_len(const char* fn, const char* name, const std::vector<double>& v, int64_t expected) {
    if (static_cast<int64_t>(v.size()) != expected) {
        throw std::invalid_argument(std::string(fn) + ": " + name + " has " +
                                    std::to_string(v.size()) + " elements, expected " +
                                    std::to_string(expected));
    }
}

}  // namespace

std::vector<double> dwconv_fwd(const std::vector<double>& x, const std::vector<double>& w,
                               const std::vector<double>& b, int N, int C, int H, int W, int Kh,
                               int Kw, int s, int d) {
    const Geometry g = make_geometry("dwconv_fwd", N, C, H, W, Kh, Kw, s, d);
    check_len("dwconv_fwd", "x", x, g.n * g.c * g.h * g.w);
    check_len("dwconv_fwd", "w", w, g.c * g.kh * g.kw);
    if (!b.empty()) check_len("dwconv_fwd", "b", b, g.c);

    std::vector<double> y(static_cast<size_t>(g.n * g.c * g.oh * g.ow));
    for (int64_t n = 0; n < g.n; ++n) {
        for (int64_t c = 0; c < g.c; ++c) {
            const double* xc = &x[static_cast<size_t>((n * g.c + c) * g.h * g.w)];
            const double* wc = &w[static_cast<size_t>(c * g.kh * g.kw)];
            double* yc = &y[static_cast<size_t>((n * g.c + c) * g.oh * g.ow)];
            for (int64_t i = 0; i < g.oh; ++i) {
                for (int64_t j = 0; j < g.ow; ++j) {
                    double acc = b.empty() ? 0.0 : b[static_cast<size_t>(c)];
                    for (int64_t u = 0; u < g.kh; ++u) {
                        const int64_t r = i * g.s + u * g.d - g.ph;
                        if (r < 0 || r >= g.h) continue;
                        for (int64_t v = 0; v < g.kw; ++v) {
                            const int64_t q = j * g.s + v * g.d - g.pw;
                            if (q < 0 || q >= g.w) continue;
                            acc += wc[u * g.kw + v] * xc[r * g.w + q];
                        }
                    }
                    yc[i * g.ow + j] = acc;
                }
            }
        }
    }
    return y;
}

std::vector<double> dwconv_bwd_data(const std::vector<double>& dy, const std::vector<double>& w,
                                    int N, int C, int H, int W, int Kh, int Kw, int s, int d) {
    const Geometry g = make_geometry("dwconv_bwd_data", N, C, H, W, Kh, Kw, s, d);
    check_len("dwconv_bwd_data", "dy", dy, g.n * g.c * g.oh * g.ow);
    check_len("dwconv_bwd_data", "w", w, g.c * g.kh * g.kw);

    // Scatter: each output's gradient flows back through every tap that read an input.
    std::vector<double> dx(static_cast<size_t>(g.n * g.c * g.h * g.w), 0.0);
    for (int64_t n = 0; n < g.n; ++n) {
        for (int64_t c = 0; c < g.c; ++c) {
            const double* dyc = &dy[static_cast<size_t>((n * g.c + c) * g.oh * g.ow)];
            const double* wc = &w[static_cast<size_t>(c * g.kh * g.kw)];
            double* dxc = &dx[static_cast<size_t>((n * g.c + c) * g.h * g.w)];
            for (int64_t i = 0; i < g.oh; ++i) {
                for (int64_t j = 0; j < g.ow; ++j) {
                    const double g_out = dyc[i * g.ow + j];
                    for (int64_t u = 0; u < g.kh; ++u) {
                        const int64_t r = i * g.s + u * g.d - g.ph;
                        if (r < 0 || r >= g.h) continue;
                        for (int64_t v = 0; v < g.kw; ++v) {
                            const int64_t q = j * g.s + v * g.d - g.pw;
                            if (q < 0 || q >= g.w) continue;
                            dxc[r * g.w + q] += wc[u * g.kw + v] * g_out;
                        }
                    }
                }
            }
        }
    }
    return dx;
}

void dwconv_bwd_weight(const std::vector<double>& x, const std::vector<double>& dy, int N, int C,
                       int H, int W, int Kh, int Kw, int s, int d, std::vector<double>* dw,
                       std::vector<double>* db) {
    const Geometry g = make_geometry("dwconv_bwd_weight", N, C, H, W, Kh, Kw, s, d);
    check_len("dwconv_bwd_weight", "x", x, g.n * g.c * g.h * g.w);
    check_len("dwconv_bwd_weight", "dy", dy, g.n * g.c * g.oh * g.ow);

    if (dw != nullptr) dw->assign(static_cast<size_t>(g.c * g.kh * g.kw), 0.0);
    if (db != nullptr) db->assign(static_cast<size_t>(g.c), 0.0);
    for (int64_t n = 0; n < g.n; ++n) {
        for (int64_t c = 0; c < g.c; ++c) {
            const double* xc = &x[static_cast<size_t>((n * g.c + c) * g.h * g.w)];
            const double* dyc = &dy[static_cast<size_t>((n * g.c + c) * g.oh * g.ow)];
            for (int64_t i = 0; i < g.oh; ++i) {
                for (int64_t j = 0; j < g.ow; ++j) {
                    const double g_out = dyc[i * g.ow + j];
                    if (db != nullptr) (*db)[static_cast<size_t>(c)] += g_out;
                    if (dw == nullptr) continue;
                    double* dwc = &(*dw)[static_cast<size_t>(c * g.kh * g.kw)];
                    for (int64_t u = 0; u < g.kh; ++u) {
                        const int64_t r = i * g.s + u * g.d - g.ph;
                        if (r < 0 || r >= g.h) continue;
                        for (int64_t v = 0; v < g.kw; ++v) {
                            const int64_t q = j * g.s + v * g.d - g.pw;
                            if (q < 0 || q >= g.w) continue;
                            dwc[u * g.kw + v] += xc[r * g.w + q] * g_out;
                        }
                    }
                }
            }
        }
    }
}

std::map<std::string, std::vector<double>> dwconv2d_reference(
    const Workload& w, const std::map<std::string, Tensor>& in, bool absolute) {
    auto get = [&](const char* name) {
        const Tensor& t = in.at(name);
        std::vector<double> v(t.data<float>(), t.data<float>() + t.numel());
        if (absolute)
            for (double& x : v) x = x < 0 ? -x : x;
        return v;
    };
    std::map<std::string, std::vector<double>> r;
    switch (w.pass) {
        case Pass::Fwd:
            r["y"] =
                dwconv_fwd(get("x"), get("w"), in.count("b") ? get("b") : std::vector<double>{},
                           w.n, w.c, w.h, w.w, w.kh, w.kw, w.stride, w.dilation);
            break;
        case Pass::BwdData:
            r["dx"] = dwconv_bwd_data(get("dy"), get("w"), w.n, w.c, w.h, w.w, w.kh, w.kw, w.stride,
                                      w.dilation);
            break;
        case Pass::BwdWeight:
            dwconv_bwd_weight(get("x"), get("dy"), w.n, w.c, w.h, w.w, w.kh, w.kw, w.stride,
                              w.dilation, &r["dw"], &r["db"]);
            break;
    }
    return r;
}

}  // namespace ref
}  // namespace lkc
