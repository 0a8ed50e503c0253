// ShiftwiseConv (ShiftWise_v2) index tables. They are not in any state_dict: the official
// constructor regenerates them from fixed seeds (numpy legacy seed 123 for the ghost/rep split,
// torch.manual_seed(123) for the shift tables), so they depend only on (C, K, k, ghost ratio, Q).
// This rebuilds them from the raw MT19937 stream (std::mt19937(123)) as official_param_names.md
// section 4.3 describes, and converts them to lkc's shiftwise op tables (runtime/op_inputs.h).
#pragma once

#include <cstdint>
#include <vector>

namespace lkc {
namespace graph {

struct ShiftwiseTables {
    int channels = 0;  // C
    int rep_n = 0;     // R = int(C * (1 - ghost_ratio)) // 2 * 2
    int ghost_n = 0;   // C - R
    int big_k = 0, small_k = 0;
    int nk = 0;                 // ceil(K / k)
    int groups = 0;             // Q (N_rep)
    std::vector<int> real_pad;  // [nk]: K/2 - s*k - (k-1)

    // Official tables (int32, row-major), under the attribute names of the official modules.
    std::vector<int32_t> ghost;        // [G] sorted
    std::vector<int32_t> rep;          // [R] sorted
    std::vector<int32_t> pad_hv;       // [R*nk, 2Q]
    std::vector<int32_t> idx_identit;  // [R, Q], conv-output channel indices
    std::vector<int32_t> idx_out;      // [R*nk], j / nk

    // lkc shiftwise op tables: slot_h[q, r, t] = s with real_pad[s] = pad_hv[r*nk + t, q]
    // (each a permutation of 0..nk-1 per (q, r)), slot_v likewise from column Q + q,
    // ident[q, r] = idx_identit[r, q] - r*nk.
    std::vector<int32_t> slot_h, slot_v;  // [Q, R, nk]
    std::vector<int32_t> ident;           // [Q, R]
};

// Throws std::invalid_argument for C < 2, k < 1, K < k or Q < 1.
ShiftwiseTables make_shiftwise_tables(int channels, int big_k, int small_k = 3,
                                      double ghost_ratio = 0.23, int groups = 4);

}  // namespace graph
}  // namespace lkc
