#include "runtime/reference_ops.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/op_inputs.h"
#include "runtime/reference_dwconv.h"

namespace lkc {
namespace ref {

namespace {

using Vec = std::vector<double>;
using Inputs = std::map<std::string, Tensor>;
using Outputs = std::map<std::string, Vec>;

// F32 tensor -> double, optionally |.|.
Vec get(const Inputs& in, const std::string& name, bool absolute) {
    const Tensor& t = in.at(name);
    Vec v(t.data<float>(), t.data<float>() + t.numel());
    if (absolute)
        for (double& e : v) e = std::fabs(e);
    return v;
}

// ---------------------------------------------------------------------------------------------
// dwconv2d_multi

Outputs multi_reference(const Workload& w, const Inputs& in, bool absolute) {
    const size_t nb = w.branches.size();
    auto wname = [](const char* p, size_t b) { return p + std::to_string(b); };
    Outputs r;
    switch (w.pass) {
        case Pass::Fwd: {
            const Vec x = get(in, "x", absolute);
            Vec y;
            for (size_t b = 0; b < nb; ++b) {
                const Branch& br = w.branches[b];
                const Vec yb = dwconv_fwd(x, get(in, wname("w", b), absolute), {}, w.n, w.c, w.h,
                                          w.w, br.kh, br.kw, w.stride, br.dilation);
                if (y.empty()) y.assign(yb.size(), 0.0);
                for (size_t i = 0; i < y.size(); ++i) y[i] += yb[i];
            }
            if (in.count("b")) {  // bias added once
                const Vec bias = get(in, "b", absolute);
                const size_t plane = size_t(w.out_h()) * size_t(w.out_w());
                for (size_t i = 0; i < y.size(); ++i) y[i] += bias[i / plane % size_t(w.c)];
            }
            r["y"] = std::move(y);
            break;
        }
        case Pass::BwdData: {
            const Vec dy = get(in, "dy", absolute);
            Vec dx(size_t(w.n) * w.c * w.h * w.w, 0.0);
            for (size_t b = 0; b < nb; ++b) {
                const Branch& br = w.branches[b];
                const Vec d = dwconv_bwd_data(dy, get(in, wname("w", b), absolute), w.n, w.c, w.h,
                                              w.w, br.kh, br.kw, w.stride, br.dilation);
                for (size_t i = 0; i < dx.size(); ++i) dx[i] += d[i];
            }
            r["dx"] = std::move(dx);
            break;
        }
        case Pass::BwdWeight: {
            const Vec x = get(in, "x", absolute), dy = get(in, "dy", absolute);
            for (size_t b = 0; b < nb; ++b) {
                const Branch& br = w.branches[b];
                dwconv_bwd_weight(x, dy, w.n, w.c, w.h, w.w, br.kh, br.kw, w.stride, br.dilation,
                                  &r[wname("dw", b)], b == 0 ? &r["db"] : nullptr);
            }
            break;
        }
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// dwconv2d_sparse

Outputs sparse_reference(const Workload& w, const Inputs& in, bool absolute) {
    const std::vector<uint8_t> mask = read_mask(w, in.at("mask"));
    Outputs r;
    auto masked_w = [&] {
        Vec k = get(in, "w", absolute);
        for (size_t i = 0; i < k.size(); ++i) k[i] *= mask[i];
        return k;
    };
    switch (w.pass) {
        case Pass::Fwd:
            r["y"] = dwconv_fwd(get(in, "x", absolute), masked_w(),
                                in.count("b") ? get(in, "b", absolute) : Vec{}, w.n, w.c, w.h, w.w,
                                w.kh, w.kw, w.stride, w.dilation);
            break;
        case Pass::BwdData:
            r["dx"] = dwconv_bwd_data(get(in, "dy", absolute), masked_w(), w.n, w.c, w.h, w.w, w.kh,
                                      w.kw, w.stride, w.dilation);
            break;
        case Pass::BwdWeight: {
            Vec& dw = r["dw"];
            dwconv_bwd_weight(get(in, "x", absolute), get(in, "dy", absolute), w.n, w.c, w.h, w.w,
                              w.kh, w.kw, w.stride, w.dilation, &dw, &r["db"]);
            for (size_t i = 0; i < dw.size(); ++i) dw[i] *= mask[i];
            break;
        }
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// shiftwise (section 4, literally)

struct SwGeometry {
    int64_t n, c, h, w, k, nk, g, e, mid, hz, wz;
    std::vector<int64_t> rp;  // rp[s] = mid - s*k - (k-1)
};

SwGeometry make_sw_geometry(const Workload& w) {
    SwGeometry s;
    s.n = w.n;
    s.c = w.c;
    s.h = w.h;
    s.w = w.w;
    s.k = w.small_k;
    s.nk = w.num_sub_kernels();
    s.g = w.groups;
    s.e = (s.k - 1) - s.k / 2;
    s.mid = w.big_k / 2;
    s.hz = s.h + 2 * s.e;
    s.wz = s.w + 2 * s.e;
    for (int64_t slot = 0; slot < s.nk; ++slot) s.rp.push_back(s.mid - slot * s.k - (s.k - 1));
    return s;
}

// Calls f(x_index, z_index, w_index) for every tap of the z conv that reads a pixel inside the
// image: z[n,c,j][p,q] += w[c,j,u,v] * x[n,c, p+u-(k-1), q+v-(k-1)]. Flat indices: x NCHW,
// z [N,C,nk,Hz,Wz], w [C,nk,k,k].
template <typename F>
void for_each_z_tap(const SwGeometry& s, F f) {
    for (int64_t n = 0; n < s.n; ++n)
        for (int64_t c = 0; c < s.c; ++c) {
            const int64_t x0 = (n * s.c + c) * s.h * s.w;
            for (int64_t j = 0; j < s.nk; ++j) {
                const int64_t z0 = ((n * s.c + c) * s.nk + j) * s.hz * s.wz;
                const int64_t w0 = (c * s.nk + j) * s.k * s.k;
                for (int64_t p = 0; p < s.hz; ++p)
                    for (int64_t q = 0; q < s.wz; ++q)
                        for (int64_t u = 0; u < s.k; ++u) {
                            const int64_t r = p + u - (s.k - 1);
                            if (r < 0 || r >= s.h) continue;
                            for (int64_t v = 0; v < s.k; ++v) {
                                const int64_t col = q + v - (s.k - 1);
                                if (col < 0 || col >= s.w) continue;
                                f(size_t(x0 + r * s.w + col), size_t(z0 + p * s.wz + q),
                                  size_t(w0 + u * s.k + v));
                            }
                        }
            }
        }
}

// Calls f(path, y_index, z_index) for every in-map term of the shift-add, path 0 = yh, 1 = yv,
// 2 = ys; y flat NCHW, z as above.
template <typename F>
void for_each_shift_term(const SwGeometry& s, const ShiftTables& t, F f) {
    for (int64_t n = 0; n < s.n; ++n)
        for (int64_t c = 0; c < s.c; ++c) {
            const int64_t y0 = (n * s.c + c) * s.h * s.w;
            auto z0 = [&](int64_t j) { return ((n * s.c + c) * s.nk + j) * s.hz * s.wz; };
            for (int64_t g = 0; g < s.g; ++g) {
                const size_t row = size_t((g * s.c + c) * s.nk);
                for (int64_t i = 0; i < s.h; ++i)
                    for (int64_t tt = 0; tt < s.w; ++tt) {
                        const size_t yi = size_t(y0 + i * s.w + tt);
                        for (int64_t j = 0; j < s.nk; ++j) {
                            // horizontal: z[c,j][i+e, t - rp[slot_h[g,c,j]]]
                            const int64_t q = tt - s.rp[size_t(t.slot_h[row + size_t(j)])];
                            if (q >= 0 && q < s.wz) f(0, yi, size_t(z0(j) + (i + s.e) * s.wz + q));
                            // vertical: z[c,j][i - rp[slot_v[g,c,j]], t+e]
                            const int64_t p = i - s.rp[size_t(t.slot_v[row + size_t(j)])];
                            if (p >= 0 && p < s.hz) f(1, yi, size_t(z0(j) + p * s.wz + tt + s.e));
                        }
                        // identity: z[c,ident[g,c]][i+e, t+e]
                        const int64_t j = t.ident[size_t(g * s.c + c)];
                        f(2, yi, size_t(z0(j) + (i + s.e) * s.wz + tt + s.e));
                    }
            }
        }
}

Outputs shiftwise_reference(const Workload& w, const Inputs& in, bool absolute) {
    const ShiftTables tables =
        read_shift_tables(w, in.at("slot_h"), in.at("slot_v"), in.at("ident"));
    const SwGeometry s = make_sw_geometry(w);
    const size_t zsize = size_t(s.n * s.c * s.nk * s.hz * s.wz);
    const size_t xsize = size_t(s.n * s.c * s.h * s.w);
    static const char* const kPaths[3] = {"yh", "yv", "ys"};

    Outputs r;
    if (w.pass == Pass::Fwd) {
        const Vec x = get(in, "x", absolute), wt = get(in, "w", absolute);
        Vec z(zsize, 0.0);
        for_each_z_tap(s, [&](size_t xi, size_t zi, size_t wi) { z[zi] += wt[wi] * x[xi]; });
        Vec y[3] = {Vec(xsize, 0.0), Vec(xsize, 0.0), Vec(xsize, 0.0)};
        for_each_shift_term(s, tables,
                            [&](int path, size_t yi, size_t zi) { y[path][yi] += z[zi]; });
        if (!in.count("ah")) {
            for (int p = 0; p < 3; ++p) r[kPaths[p]] = std::move(y[p]);
            return r;
        }
        const Vec ah = get(in, "ah", absolute), av = get(in, "av", absolute),
                  as = get(in, "as", absolute), b = get(in, "b", absolute);
        Vec out(xsize);
        const size_t plane = size_t(s.h * s.w);
        for (size_t i = 0; i < xsize; ++i) {
            const size_t c = i / plane % size_t(s.c);
            out[i] = ah[c] * y[0][i] + av[c] * y[1][i] + as[c] * y[2][i] + b[c] + x[i];
        }
        r["y"] = std::move(out);
        return r;
    }

    // Backward: scatter dyh, dyv, dys into dz (adjoint of the shift-add).
    const Vec dy[3] = {get(in, "dyh", absolute), get(in, "dyv", absolute),
                       get(in, "dys", absolute)};
    Vec dz(zsize, 0.0);
    for_each_shift_term(s, tables, [&](int path, size_t yi, size_t zi) { dz[zi] += dy[path][yi]; });
    if (w.pass == Pass::BwdData) {
        const Vec wt = get(in, "w", absolute);
        Vec dx(xsize, 0.0);
        for_each_z_tap(s, [&](size_t xi, size_t zi, size_t wi) { dx[xi] += wt[wi] * dz[zi]; });
        r["dx"] = std::move(dx);
    } else {
        const Vec x = get(in, "x", absolute);
        Vec dw(size_t(s.c * s.nk * s.k * s.k), 0.0);
        for_each_z_tap(s, [&](size_t xi, size_t zi, size_t wi) { dw[wi] += x[xi] * dz[zi]; });
        r["dw"] = std::move(dw);
    }
    return r;
}

}  // namespace

Outputs op_reference(const Workload& w, const Inputs& inputs, bool absolute) {
    check_op_inputs(w, inputs);
    switch (w.op) {
        case Op::DwConv2d:
            return dwconv2d_reference(w, inputs, absolute);
        case Op::DwConv2dMulti:
            return multi_reference(w, inputs, absolute);
        case Op::DwConv2dSparse:
            return sparse_reference(w, inputs, absolute);
        case Op::ShiftWise:
            return shiftwise_reference(w, inputs, absolute);
    }
    throw std::invalid_argument("op_reference: unknown op");
}

}  // namespace ref
}  // namespace lkc
