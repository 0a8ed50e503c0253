#include "runtime/op_runner.h"

#include <stdexcept>

#include "runtime/dwconv2d.h"
#include "runtime/dwconv2d_sparse.h"
#include "runtime/dwconv2d_taps.h"

namespace lkc {

std::unique_ptr<OpRunner> make_runner(const Workload& w, Device d, const std::string& kernel) {
    switch (w.op) {
        case Op::DwConv2d:
            return std::make_unique<DwConv2dRunner>(w, d, kernel);
        case Op::DwConv2dMulti:
        case Op::ShiftWise:
            return std::make_unique<TapsRunner>(w, d, kernel);
        case Op::DwConv2dSparse:
            return make_sparse_runner(w, d, kernel);
    }
    throw std::invalid_argument("op '" + std::string(op_name(w.op)) + "' of workload '" +
                                to_string(w) + "' has no kernels in this build");
}

}  // namespace lkc
