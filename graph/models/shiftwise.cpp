// ShiftwiseConv, ShiftWise_v2 (lidc54/shift-wiseConv backbones/SW_v2_unirep.py), train form:
// the UniRepLKNet macro design with every depth-wise layer replaced by ShifthWiseConv2dImplicit:
//   y = concat(bn_lora1(yh) + bn_lora2(yv) + bn_small(ys) + x[:, rep], x[:, ghost])
// where (yh, yv, ys) is the shift-add of the sub-kernel maps of LoRAs.0 + LoRAs.1 (section 4 of
// large_kernel_ops.md). The channel order stays permuted (rep first, ghost last), as in the
// official model. The index tables are rebuilt (graph/shiftwise_tables.h) and stored as graph
// constants under the official attribute paths, plus lkc's slot_h / slot_v / ident. With
// ModelOptions::deploy: the form after Block.reparameterize() (LoRA.weight = LoRAs.0 + LoRAs.1).
#include <algorithm>
#include <string>

#include "graph/builder.h"
#include "graph/models/models.h"
#include "graph/models/unireplknet_parts.h"
#include "graph/shiftwise_tables.h"

namespace lkc {
namespace graph {

namespace {

Tensor int_table(const std::vector<int32_t>& v, Shape shape) {
    Tensor t(DType::I32, std::move(shape));
    if (static_cast<size_t>(t.numel()) != v.size()) {
        throw GraphError("internal: table of " + std::to_string(v.size()) + " values for shape " +
                         shape_to_string(t.shape()));
    }
    std::copy(v.begin(), v.end(), t.data<int32_t>());
    return t;
}

int shiftwise_layer(GraphBuilder& b, const std::string& lk, int x, const ShiftWiseConfig& c, int K,
                    bool deploy) {
    const int64_t C = b.channels(x);
    const ShiftwiseTables t =
        make_shiftwise_tables(static_cast<int>(C), K, c.small_kernel, c.ghost_ratio, c.n_rep);
    const int64_t R = t.rep_n, G = t.ghost_n, nk = t.nk, Q = t.groups, k = c.small_kernel;
    const std::string ghost = b.constant(lk + ".ghost", int_table(t.ghost, {G}));
    const std::string rep = b.constant(lk + ".rep", int_table(t.rep, {R}));
    b.constant(lk + ".loras.pad_hv", int_table(t.pad_hv, {R * nk, 2 * Q}));
    b.constant(lk + ".loras.idx_identit", int_table(t.idx_identit, {R, Q}));
    b.constant(lk + ".loras.idx_out", int_table(t.idx_out, {R * nk}));

    int xg = b.channel_select(lk + ".ghost_select", x, ghost);
    int xr = b.channel_select(lk + ".rep_select", x, rep);
    Node sw;
    sw.op = OpKind::ShiftWise;
    sw.name = lk + ".loras";
    sw.inputs = {xr};
    sw.attrs.big_k = K;
    sw.attrs.small_k = c.small_kernel;
    // Block.reparameterize() merges the paths into one LoRA.weight (their sum).
    const int paths = deploy ? 1 : c.n_path;
    for (int p = 0; p < paths; ++p) {
        const std::string key =
            deploy ? lk + ".LoRA.weight" : lk + ".LoRAs." + std::to_string(p) + ".weight";
        b.param(key, {R * nk, 1, k, k}, ParamInit::Weight);
        // Each output sums k*k taps of nk sub-kernels, Q groups and every path.
        b.set_fan_in(key, static_cast<double>(k * k * nk * Q * paths));
        sw.params["weight" + std::to_string(p)] = key;
    }
    sw.consts["slot_h"] = b.constant(lk + ".loras.slot_h", int_table(t.slot_h, {Q, R, nk}));
    sw.consts["slot_v"] = b.constant(lk + ".loras.slot_v", int_table(t.slot_v, {Q, R, nk}));
    sw.consts["ident"] = b.constant(lk + ".loras.ident", int_table(t.ident, {Q, R}));
    std::vector<int> y = b.add(std::move(sw), {"yh", "yv", "ys"});
    int h = b.batch_norm(lk + ".bn_lora1", y[0]);
    int v = b.batch_norm(lk + ".bn_lora2", y[1]);
    int s = b.batch_norm(lk + ".bn_small", y[2]);
    int sum = b.binary(OpKind::Add, lk + ".add_hv", h, v);
    sum = b.binary(OpKind::Add, lk + ".add_small", sum, s);
    sum = b.binary(OpKind::Add, lk + ".add_identity", sum, xr);
    return b.concat(lk + ".concat", {sum, xg});
}

}  // namespace

Graph build_shiftwise(const std::string& name, const ShiftWiseConfig& c, const ModelOptions& o) {
    GraphBuilder b(name);
    std::vector<int64_t> dims;
    for (int d : c.dims) dims.push_back(static_cast<int64_t>(d * c.width_factor));
    int x = b.input("x", {o.batch, o.in_chans, o.image_size, o.image_size});
    for (size_t s = 0; s < c.depths.size(); ++s) {
        x = unireplknet_downsample(b, s, x, dims[s]);
        for (int j = 0; j < c.depths[s]; ++j) {
            const std::string m = "stages." + std::to_string(s) + "." + std::to_string(j);
            int y = shiftwise_layer(b, m + ".large_kernel", x, c, c.kernels.at(s), o.deploy);
            x = unireplknet_block_tail(b, m, x, y, 4.0, false);  // BNs stay in SW's reparam form
        }
    }
    b.output(unireplknet_head(b, x, o.num_classes));
    return b.finish();
}

}  // namespace graph
}  // namespace lkc
