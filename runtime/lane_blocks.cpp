#include "runtime/lane_blocks.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "HalideRuntime.h"
#include "runtime/device.h"

namespace lkc::train_ops {

namespace {

constexpr int kLanes = 16;

int blocks_of(int c) { return (c + kLanes - 1) / kLanes; }

// Buffers are refcounted handles: a const tensor's data may still be brought to the host.
template <typename B>
void host(const B& b) {
    B& m = const_cast<B&>(b);
    if (m.device_dirty()) check_halide(m.copy_to_host(), "copy to host", Device::Cpu);
}

void check_list(const char* op, const std::vector<int>& blocks, int total) {
    for (size_t j = 0; j < blocks.size(); ++j)
        if (blocks[j] < 0 || blocks[j] >= total || (j && blocks[j] <= blocks[j - 1]))
            throw std::invalid_argument(std::string("train_ops::") + op + ": block list entry " +
                                        std::to_string(j) + " = " + std::to_string(blocks[j]) +
                                        " is not an ascending block index below " +
                                        std::to_string(total));
}

// Floats of one (block, image) plane, after checking the dense blocked layout.
int64_t plane(const char* op, const char* role, const ops::BlockedTensor& t) {
    ops::check_blocked_layout(std::string("train_ops::") + op + ": ", role, t);
    const auto& b = t.buf;
    const int64_t p = int64_t(kLanes) * b.dim(1).extent() * b.dim(2).extent();
    if (b.dim(0).stride() != 1 || b.dim(1).stride() != kLanes ||
        b.dim(2).stride() != kLanes * b.dim(1).extent() || b.dim(3).stride() != p ||
        b.dim(4).stride() != p * b.dim(3).extent())
        throw std::invalid_argument(std::string("train_ops::") + op + ": tensor '" + role +
                                    "' is not densely blocked (a crop?)");
    return p;
}

void check_same_image(const char* op, const ops::BlockedTensor& a, const ops::BlockedTensor& b) {
    if (a.n() != b.n() || a.h() != b.h() || a.w() != b.w())
        throw std::invalid_argument(std::string("train_ops::") + op + ": tensors " +
                                    shape_to_string(a.shape()) + " and " +
                                    shape_to_string(b.shape()) + " differ in N, H or W");
}

// A full tensor and its compact form for the block list (same N, H, W; one compact block per
// listed block); returns the floats of one (block, image) plane.
int64_t check_compact_pair(const char* op, const char* full_role, const ops::BlockedTensor& full,
                           const char* compact_role, const ops::BlockedTensor& compact,
                           const std::vector<int>& blocks) {
    const int64_t p = plane(op, full_role, full);
    plane(op, compact_role, compact);
    check_same_image(op, full, compact);
    check_list(op, blocks, full.blocks());
    if (compact.blocks() != int(blocks.size()))
        throw std::invalid_argument(std::string("train_ops::") + op + ": '" + compact_role +
                                    "' has " + std::to_string(compact.blocks()) +
                                    " blocks, expected " + std::to_string(blocks.size()));
    return p;
}

void check_packed(const char* op, const char* role, const Halide::Runtime::Buffer<float, 3>& w,
                  int in_channels, int out_channels) {
    if (w.dim(0).extent() != kLanes || w.dim(0).stride() != 1 ||
        w.dim(1).extent() != kLanes * blocks_of(in_channels) ||
        w.dim(2).extent() != blocks_of(out_channels) || w.dim(1).stride() != kLanes ||
        w.dim(2).stride() != kLanes * w.dim(1).extent())
        throw std::invalid_argument(std::string("train_ops::") + op + ": '" + role +
                                    "' is not a dense PackedLinear (16, 16 ceil(Ci/16), "
                                    "ceil(Co/16)) of [" +
                                    std::to_string(out_channels) + ", " +
                                    std::to_string(in_channels) + "]");
}

// body(n) for n in [0, count) on Halide's thread pool (the kernels' workers): the copies are
// memory-bound and one core does not saturate the bandwidth (slak-fmnist 8x8 maps, 64 images:
// scatter of 112 -> 192 channels 0.08 ms on one thread).
template <typename F>
void par_images(int count, F body) {
    struct Closure {
        F* body;
    } c{&body};
    auto task = [](void*, int n, uint8_t* closure) -> int {
        (*reinterpret_cast<Closure*>(closure)->body)(n);
        return 0;
    };
    halide_do_par_for(nullptr, task, 0, count, reinterpret_cast<uint8_t*>(&c));
}

// Copies the kept blocks between a full packed weight buffer (16, 16 CIB, COB) and its compact
// form: output blocks (out_axis; (16, 16 CIB, kc)) or input blocks ((16, 16 kc, COB)), as
// whole 16 x 16 tiles. to_compact: compact = full's kept blocks; else full's kept blocks =
// compact (full's other blocks untouched).
void copy_packed_blocks(float* full, float* compact, int CIB, int COB,
                        const std::vector<int>& blocks, bool out_axis, bool to_compact) {
    const int64_t tile = int64_t(kLanes) * kLanes;
    const int kc = int(blocks.size());
    auto copy = [&](int64_t f, int64_t c, int64_t n) {
        if (to_compact) {
            std::memcpy(compact + c, full + f, size_t(n) * sizeof(float));
        } else {
            std::memcpy(full + f, compact + c, size_t(n) * sizeof(float));
        }
    };
    if (out_axis) {
        for (int j = 0; j < kc; ++j)
            copy(int64_t(blocks[j]) * CIB * tile, int64_t(j) * CIB * tile, CIB * tile);
    } else {
        for (int ob = 0; ob < COB; ++ob)
            for (int j = 0; j < kc; ++j)
                copy((int64_t(ob) * CIB + blocks[j]) * tile, (int64_t(ob) * kc + j) * tile, tile);
    }
}

// The whole buffer was just written on the host: no device copy is newer.
template <typename B>
void written_on_host(B& b) {
    b.set_device_dirty(false);
    b.set_host_dirty();
}
}  // namespace

std::vector<int> kept_blocks(const std::vector<uint8_t>& flags) {
    std::vector<int> k;
    for (size_t i = 0; i < flags.size(); ++i)
        if (flags[i]) k.push_back(int(i));
    return k;
}

ops::BlockedTensor make_compact(const ops::BlockedTensor& x, const std::vector<int>& blocks) {
    if (blocks.empty()) throw std::invalid_argument("train_ops::make_compact: no kept blocks");
    return ops::make_blocked_tensor(x.n(), kLanes * int(blocks.size()), x.h(), x.w());
}

void gather_blocks(const ops::BlockedTensor& x, const std::vector<int>& blocks,
                   ops::BlockedTensor& out) {
    const int64_t p = check_compact_pair("gather_blocks", "x", x, "out", out, blocks);
    host(x.buf);
    const float* src = x.buf.data();
    float* dst = out.buf.data();
    const int XB = x.blocks(), OB = out.blocks();
    par_images(x.n(), [&](int n) {
        for (int j = 0; j < OB; ++j)
            std::memcpy(dst + (int64_t(n) * OB + j) * p, src + (int64_t(n) * XB + blocks[j]) * p,
                        size_t(p) * sizeof(float));
    });
    written_on_host(out.buf);
}

void scatter_blocks(const ops::BlockedTensor& src, const std::vector<int>& blocks,
                    const ops::ChannelVector* fill, ops::BlockedTensor& dst) {
    const int64_t p = check_compact_pair("scatter_blocks", "dst", dst, "src", src, blocks);
    if (fill) ops::check_channel_vector("train_ops::scatter_blocks: ", "fill", *fill, dst.channels);
    host(src.buf);
    if (fill) host(fill->buf);
    // dst is overwritten whole: no need to read a device copy.
    const float* s = src.buf.data();
    float* d = dst.buf.data();
    const int DB = dst.blocks(), SB = src.blocks();
    std::vector<int> slot(size_t(DB), -1);
    for (int j = 0; j < SB; ++j) slot[size_t(blocks[j])] = j;
    par_images(dst.n(), [&](int n) {
        for (int b = 0; b < DB; ++b) {
            float* out = d + (int64_t(n) * DB + b) * p;
            const int j = slot[size_t(b)];
            if (j >= 0) {
                std::memcpy(out, s + (int64_t(n) * SB + j) * p, size_t(p) * sizeof(float));
            } else if (!fill) {
                std::memset(out, 0, size_t(p) * sizeof(float));
            } else {
                const float* f = fill->buf.data() + int64_t(b) * kLanes;
                for (int64_t i = 0; i < p; i += kLanes)
                    std::memcpy(out + i, f, sizeof(float) * kLanes);
            }
        }
    });
    written_on_host(dst.buf);
}

ops::PackedLinear make_linear_blocks(const ops::PackedLinear& w, const std::vector<int>& blocks,
                                     bool out_axis) {
    if (blocks.empty())
        throw std::invalid_argument("train_ops::make_linear_blocks: no kept blocks");
    check_list("make_linear_blocks", blocks, blocks_of(out_axis ? w.out_channels : w.in_channels));
    ops::PackedLinear c;
    c.in_channels = out_axis ? w.in_channels : kLanes * int(blocks.size());
    c.out_channels = out_axis ? kLanes * int(blocks.size()) : w.out_channels;
    c.weight = Halide::Runtime::Buffer<float, 3>(kLanes, kLanes * blocks_of(c.in_channels),
                                                 blocks_of(c.out_channels));
    c.weight.fill(0.0f);
    c.weight.set_host_dirty();
    if (out_axis) {
        c.bias = ops::constant_channels(c.out_channels, 0.0f);
        c.ones = ops::constant_channels(c.out_channels, 1.0f);
    } else {
        c.bias = w.bias;  // shares the optimizer's storage
        c.ones = w.ones;
    }
    gather_linear(w, blocks, out_axis, c);
    return c;
}

void gather_linear(const ops::PackedLinear& w, const std::vector<int>& blocks, bool out_axis,
                   ops::PackedLinear& wc) {
    const char* op = "gather_linear";
    check_packed(op, "w", w.weight, w.in_channels, w.out_channels);
    check_packed(op, "wc", wc.weight, wc.in_channels, wc.out_channels);
    check_list(op, blocks, blocks_of(out_axis ? w.out_channels : w.in_channels));
    const int kc = int(blocks.size());
    if ((out_axis ? blocks_of(wc.out_channels) : blocks_of(wc.in_channels)) != kc ||
        (out_axis ? wc.in_channels != w.in_channels : wc.out_channels != w.out_channels))
        throw std::invalid_argument("train_ops::gather_linear: 'wc' is [" +
                                    std::to_string(wc.out_channels) + ", " +
                                    std::to_string(wc.in_channels) +
                                    "], not the compact shape of the block list "
                                    "(make_linear_blocks)");
    host(w.weight);
    copy_packed_blocks(w.weight.data(), wc.weight.data(), blocks_of(w.in_channels),
                       blocks_of(w.out_channels), blocks, out_axis, true);
    if (out_axis) {
        host(w.bias.buf);
        for (int j = 0; j < kc; ++j)
            std::memcpy(wc.bias.buf.data() + j * kLanes,
                        w.bias.buf.data() + int64_t(blocks[j]) * kLanes, sizeof(float) * kLanes);
        written_on_host(wc.bias.buf);
    }
    written_on_host(wc.weight);
}

void copy_linear_grad(Halide::Runtime::Buffer<float, 3>& dw, const std::vector<int>& blocks,
                      bool out_axis, Halide::Runtime::Buffer<float, 3>& dwc, bool to_compact) {
    const char* op = "copy_linear_grad";
    const int CIB = dw.dim(1).extent() / kLanes, COB = dw.dim(2).extent();
    check_packed(op, "dw", dw, kLanes * CIB, kLanes * COB);
    check_list(op, blocks, out_axis ? COB : CIB);
    const int kc = int(blocks.size());
    check_packed(op, "dwc", dwc, out_axis ? kLanes * CIB : kLanes * kc,
                 out_axis ? kLanes * kc : kLanes * COB);
    host(dwc);
    host(dw);
    copy_packed_blocks(dw.data(), dwc.data(), CIB, COB, blocks, out_axis, to_compact);
    if (to_compact) {
        written_on_host(dwc);
    } else {
        dw.set_host_dirty();
    }
}

}  // namespace lkc::train_ops
