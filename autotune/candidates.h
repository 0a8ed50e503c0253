// The tuner's search space for one workload on one device: every schedule of every generator
// that can run the workload (schedules/space.h), filtered by validity rules so no candidate is
// nonsense for the shape, with an analytic cost model that ranks candidates before any is
// compiled or measured.
#pragma once

#include <string>
#include <vector>

#include "runtime/device.h"
#include "runtime/registry.h"
#include "runtime/workload.h"
#include "schedules/space.h"

namespace lkc::tune {

struct Candidate {
    std::string generator;
    space::Params params;  // canonical (every parameter of the space)
    std::string name;      // function / library name: schedule_name + "_" + device
    // The workload the generator runs: w itself, or for dwconv2d_multi on a dense generator the
    // merged dense kernel (reparam::merge_branches).
    Workload runs;
    const KernelInfo* builtin = nullptr;  // a compiled-in variant with this schedule, if any
    double model_cost = 0;                // estimated time, arbitrary units (lower is faster)
};

// Generators that can run w: dwconv2d fwd -> dwconv2d_fwd; bwd_data -> dwconv2d_bwd_data
// (stride 1) and dwconv2d_bwd_data_strided; bwd_weight -> dwconv2d_bwd_weight; dwconv2d_multi ->
// the taps generator of its pass and the dense generator on the merged kernel (when it is at most
// 63 x 63); shiftwise -> taps; dwconv2d_sparse -> the sparse generator of its pass.
std::vector<std::string> generators_for(const Workload& w);

// The dense workload a multi-branch op merges into (largest dilated extent per dimension).
Workload merged_dense_workload(const Workload& w);

// Why (gen, p) cannot run w on d, or "" if it can. Rules: the registry's kernel_supports (pass,
// stride, pixels needs dilation 1); no register tile wider than the output row or the kernel
// (bwd_weight: kernel columns), no column chunk wider than the kernel (tap form) or the input
// (pixel form), rows_per_task only varies with par_rows, sparse register tiles within the 28
// vector accumulators of AVX-512 (12 with AVX2) and column-skip segments within the tile.
std::string invalid_reason(const Workload& w, Device d, const std::string& gen,
                           const space::Params& p);

// The analytic cost of running w with (gen, p) on d: the registry's estimated work of a variant
// with those parameters (runtime/registry.cpp, runtime/dwconv2d_sparse.cpp,
// runtime/dwconv2d_taps.cpp) times the whole map, divided by the parallel efficiency of its task
// split over `threads` threads (idle threads in the last wave, ~2 us per task).
double model_cost(const Workload& w, Device d, const std::string& gen, const space::Params& p,
                  int threads = 2);

// Every valid candidate for w on d, sorted by model cost (ties: generator, then name).
std::vector<Candidate> enumerate_candidates(const Workload& w, Device d, int threads = 2);

// The candidate for the variant select_kernel picks with no tuned records (the hand default);
// for dwconv2d_multi the taps or merged path TapsRunner would take.
Candidate default_candidate(const Workload& w, Device d);

// The candidate of a given schedule (canonicalised), with its model cost; throws
// std::invalid_argument if it is not valid for w (unless `check` is false: hand variants may
// break the search's rules, e.g. a chunk of 8 on a 3x3 kernel).
Candidate make_candidate(const Workload& w, Device d, const std::string& gen,
                         const space::Params& p, int threads = 2, bool check = true);

}  // namespace lkc::tune
