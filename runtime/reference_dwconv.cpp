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

// Calls f(x_index, y_index, w_index) for every tap (n, c, i, j, u, v) that reads a pixel inside
// the image; indices are flat NCHW / [C, Kh, Kw] offsets. Padding taps read zero and are skipped.
template <typename F>
void for_each_tap(const Geometry& g, F f) {
    for (int64_t n = 0; n < g.n; ++n)
        for (int64_t c = 0; c < g.c; ++c) {
            const int64_t x0 = (n * g.c + c) * g.h * g.w, y0 = (n * g.c + c) * g.oh * g.ow;
            const int64_t w0 = c * g.kh * g.kw;
            for (int64_t i = 0; i < g.oh; ++i)
                for (int64_t j = 0; j < g.ow; ++j)
                    for (int64_t u = 0; u < g.kh; ++u) {
                        const int64_t r = i * g.s + u * g.d - g.ph;
                        if (r < 0 || r >= g.h) continue;
                        for (int64_t v = 0; v < g.kw; ++v) {
                            const int64_t q = j * g.s + v * g.d - g.pw;
                            if (q < 0 || q >= g.w) continue;
                            f(size_t(x0 + r * g.w + q), size_t(y0 + i * g.ow + j),
                              size_t(w0 + u * g.kw + v));
                        }
                    }
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

    std::vector<double> y(static_cast<size_t>(g.n * g.c * g.oh * g.ow), 0.0);
    if (!b.empty()) {
        for (size_t k = 0; k < y.size(); ++k) y[k] = b[k / size_t(g.oh * g.ow) % size_t(g.c)];
    }
    for_each_tap(g, [&](size_t xi, size_t yi, size_t wi) { y[yi] += w[wi] * x[xi]; });
    return y;
}

std::vector<double> dwconv_bwd_data(const std::vector<double>& dy, const std::vector<double>& w,
                                    int N, int C, int H, int W, int Kh, int Kw, int s, int d) {
    const Geometry g = make_geometry("dwconv_bwd_data", N, C, H, W, Kh, Kw, s, d);
    check_len("dwconv_bwd_data", "dy", dy, g.n * g.c * g.oh * g.ow);
    check_len("dwconv_bwd_data", "w", w, g.c * g.kh * g.kw);

    // Scatter: each output's gradient flows back through every tap that read an input.
    std::vector<double> dx(static_cast<size_t>(g.n * g.c * g.h * g.w), 0.0);
    for_each_tap(g, [&](size_t xi, size_t yi, size_t wi) { dx[xi] += w[wi] * dy[yi]; });
    return dx;
}

void dwconv_bwd_weight(const std::vector<double>& x, const std::vector<double>& dy, int N, int C,
                       int H, int W, int Kh, int Kw, int s, int d, std::vector<double>* dw,
                       std::vector<double>* db) {
    const Geometry g = make_geometry("dwconv_bwd_weight", N, C, H, W, Kh, Kw, s, d);
    check_len("dwconv_bwd_weight", "x", x, g.n * g.c * g.h * g.w);
    check_len("dwconv_bwd_weight", "dy", dy, g.n * g.c * g.oh * g.ow);

    if (db != nullptr) {
        db->assign(static_cast<size_t>(g.c), 0.0);
        for (size_t k = 0; k < dy.size(); ++k)
            (*db)[k / size_t(g.oh * g.ow) % size_t(g.c)] += dy[k];
    }
    if (dw != nullptr) {
        dw->assign(static_cast<size_t>(g.c * g.kh * g.kw), 0.0);
        for_each_tap(g, [&](size_t xi, size_t yi, size_t wi) { (*dw)[wi] += x[xi] * dy[yi]; });
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
