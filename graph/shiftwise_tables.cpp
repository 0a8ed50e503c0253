#include "graph/shiftwise_tables.h"

#include <algorithm>
#include <random>
#include <stdexcept>
#include <string>

namespace lkc {
namespace graph {

namespace {

// numpy legacy RandomState.random_interval(max): masked rejection on 32-bit outputs.
uint32_t numpy_interval(std::mt19937& mt, uint32_t max) {
    if (max == 0) return 0;
    uint32_t mask = max;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    uint32_t v;
    do {
        v = static_cast<uint32_t>(mt()) & mask;
    } while (v > max);
    return v;
}

// torch CPU randperm(n) for small n: for i < n-1, z = next32 % (n - i), swap(i, i + z).
std::vector<int> torch_randperm(std::mt19937& mt, int n) {
    std::vector<int> p(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) p[static_cast<size_t>(i)] = i;
    for (int i = 0; i + 1 < n; ++i) {
        uint32_t z = static_cast<uint32_t>(mt()) % static_cast<uint32_t>(n - i);
        std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(i) + z]);
    }
    return p;
}

}  // namespace

ShiftwiseTables make_shiftwise_tables(int channels, int big_k, int small_k, double ghost_ratio,
                                      int groups) {
    if (channels < 2 || small_k < 1 || big_k < small_k || groups < 1 || ghost_ratio < 0 ||
        ghost_ratio >= 1) {
        throw std::invalid_argument(
            "make_shiftwise_tables: C=" + std::to_string(channels) + " K=" + std::to_string(big_k) +
            " k=" + std::to_string(small_k) + " Q=" + std::to_string(groups) +
            " ghost_ratio=" + std::to_string(ghost_ratio) +
            ": expected C >= 2, K >= k >= 1, Q >= 1, 0 <= ghost_ratio < 1");
    }
    ShiftwiseTables t;
    t.channels = channels;
    t.big_k = big_k;
    t.small_k = small_k;
    t.groups = groups;
    // Python: int(C * (1 - g)) // 2 * 2 in the same double arithmetic.
    t.rep_n = static_cast<int>(channels * (1.0 - ghost_ratio)) / 2 * 2;
    t.ghost_n = channels - t.rep_n;
    t.nk = (big_k + small_k - 1) / small_k;
    const int R = t.rep_n, G = t.ghost_n, nk = t.nk, Q = groups, k = small_k;
    if (R < 1) {
        throw std::invalid_argument("make_shiftwise_tables: C=" + std::to_string(channels) +
                                    " leaves no rep channels");
    }
    for (int s = 0; s < nk; ++s) t.real_pad.push_back(big_k / 2 - s * k - (k - 1));

    // 1. ghost / rep: numpy legacy choice(C, G, replace=False) = permutation(C)[:G].
    {
        std::mt19937 mt(123);
        std::vector<int32_t> perm(static_cast<size_t>(channels));
        for (int i = 0; i < channels; ++i) perm[static_cast<size_t>(i)] = i;
        for (int i = channels - 1; i >= 1; --i) {
            uint32_t j = numpy_interval(mt, static_cast<uint32_t>(i));
            std::swap(perm[static_cast<size_t>(i)], perm[j]);
        }
        t.ghost.assign(perm.begin(), perm.begin() + G);
        std::sort(t.ghost.begin(), t.ghost.end());
        std::vector<bool> is_ghost(static_cast<size_t>(channels), false);
        for (int32_t gch : t.ghost) is_ghost[static_cast<size_t>(gch)] = true;
        for (int c = 0; c < channels; ++c) {
            if (!is_ghost[static_cast<size_t>(c)]) t.rep.push_back(c);
        }
    }

    // 2. Shift tables: torch.manual_seed(123); horizontal perms, vertical perms, identity draws.
    std::mt19937 mt(123);
    // inv[q][r*nk + t] = perm_{q,r}^{-1}(t), i.e. the slot of sub-kernel t.
    auto draw_inverse = [&]() {
        std::vector<std::vector<int32_t>> inv(static_cast<size_t>(Q));
        for (int q = 0; q < Q; ++q) {
            inv[static_cast<size_t>(q)].resize(static_cast<size_t>(R) * nk);
            for (int r = 0; r < R; ++r) {
                std::vector<int> p = torch_randperm(mt, nk);
                for (int pos = 0; pos < nk; ++pos) {
                    inv[static_cast<size_t>(q)][static_cast<size_t>(r) * nk + p[pos]] = pos;
                }
            }
        }
        return inv;
    };
    std::vector<std::vector<int32_t>> inv_h = draw_inverse();
    std::vector<std::vector<int32_t>> inv_v = draw_inverse();
    std::vector<std::vector<int32_t>> id_draw(static_cast<size_t>(Q));
    for (int q = 0; q < Q; ++q) {
        for (int r = 0; r < R; ++r) {
            id_draw[static_cast<size_t>(q)].push_back(
                static_cast<int32_t>(static_cast<uint32_t>(mt()) % static_cast<uint32_t>(nk)));
        }
    }

    // 3. Official layouts and the lkc op tables.
    const size_t J = static_cast<size_t>(R) * nk;
    t.pad_hv.resize(J * 2 * Q);
    t.idx_out.resize(J);
    t.slot_h.resize(static_cast<size_t>(Q) * J);
    t.slot_v.resize(static_cast<size_t>(Q) * J);
    for (size_t j = 0; j < J; ++j) {
        t.idx_out[j] = static_cast<int32_t>(j / nk);
        for (int q = 0; q < Q; ++q) {
            int32_t sh = inv_h[static_cast<size_t>(q)][j], sv = inv_v[static_cast<size_t>(q)][j];
            t.pad_hv[j * 2 * Q + q] = t.real_pad[static_cast<size_t>(sh)];
            t.pad_hv[j * 2 * Q + Q + q] = t.real_pad[static_cast<size_t>(sv)];
            t.slot_h[q * J + j] = sh;  // [Q, R, nk] with j = r*nk + t
            t.slot_v[q * J + j] = sv;
        }
    }
    t.idx_identit.resize(static_cast<size_t>(R) * Q);
    t.ident.resize(static_cast<size_t>(Q) * R);
    for (int r = 0; r < R; ++r) {
        for (int q = 0; q < Q; ++q) {
            int32_t u = id_draw[static_cast<size_t>(q)][static_cast<size_t>(r)];
            t.idx_identit[static_cast<size_t>(r) * Q + q] = u + r * nk;
            t.ident[static_cast<size_t>(q) * R + r] = u;
        }
    }
    return t;
}

}  // namespace graph
}  // namespace lkc
