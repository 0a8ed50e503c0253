// UniRepLKNet (AILab-CVC/UniRepLKNet unireplknet.py), train form (deploy=False) or deploy form
// (deploy=True: merged DW conv with bias, no BNs, GRN without beta, pwconv2.0 with bias).
#include <string>

#include "graph/builder.h"
#include "graph/models/models.h"
#include "graph/models/unireplknet_parts.h"

namespace lkc {
namespace graph {

void drb_branches(int K, std::vector<int>* kernels, std::vector<int>* dilations) {
    switch (K) {
        case 17:
            *kernels = {5, 9, 3, 3, 3};
            *dilations = {1, 2, 4, 5, 7};
            return;
        case 15:
            *kernels = {5, 7, 3, 3, 3};
            *dilations = {1, 2, 3, 5, 7};
            return;
        case 13:
            *kernels = {5, 7, 3, 3, 3};
            *dilations = {1, 2, 3, 4, 5};
            return;
        case 11:
            *kernels = {5, 5, 3, 3, 3};
            *dilations = {1, 2, 3, 4, 5};
            return;
        case 9:
            *kernels = {5, 5, 3, 3};
            *dilations = {1, 2, 3, 4};
            return;
        case 7:
            *kernels = {5, 3, 3};
            *dilations = {1, 2, 3};
            return;
        case 5:
            *kernels = {3, 3};
            *dilations = {1, 2};
            return;
        default:
            throw GraphError("Dilated Reparam Block: no branch set for kernel " +
                             std::to_string(K) + " (known: 5, 7, 9, 11, 13, 15, 17)");
    }
}

namespace {

// SEBlock: x * sigmoid(up(ReLU(down(avgpool(x))))), down/up 1x1 convs with bias, C -> C/4 -> C.
int se_block(GraphBuilder& b, const std::string& m, int x) {
    const int64_t c = b.channels(x);
    int y = b.avg_pool(m + ".pool", x, true);
    y = b.conv2d(m + ".down", y, c / 4, 1, 1, 1, 0, 0, 1, true);
    y = b.unary(OpKind::Relu, m + ".nonlinear", y);
    y = b.conv2d(m + ".up", y, c, 1, 1, 1, 0, 0, 1, true);
    y = b.unary(OpKind::Sigmoid, m + ".sigmoid", y);
    return b.binary(OpKind::Mul, m + ".mul", x, y);
}

}  // namespace

// The block shared with ShiftWise_v2 after its depth-wise part `y` (= dwconv(x) for UniRepLKNet):
//   x + gamma * BN(pwconv2(GRN(GELU(pwconv1(SE(BN(y)))))))
int unireplknet_block_tail(GraphBuilder& b, const std::string& m, int x, int y, double ffn_factor,
                           bool deploy) {
    const int64_t c = b.channels(x);
    if (!deploy) y = b.batch_norm(m + ".norm", y);
    y = se_block(b, m + ".se", y);
    // pwconv1 = (NCHWtoNHWC, Linear); act = (GELU, GRN); pwconv2 = (Linear, NHWCtoNCHW, BN).
    y = b.linear(m + ".pwconv1.1", y, static_cast<int64_t>(ffn_factor * c), true);
    y = b.unary(OpKind::Gelu, m + ".act.0", y);
    y = b.grn(m + ".act.1", y, 1e-6, !deploy);
    if (deploy) {
        // Deploy: GRN beta, the BN and the layer scale are folded into pwconv2.0 (with bias).
        return b.binary(OpKind::Add, m + ".residual", x, b.linear(m + ".pwconv2.0", y, c, true));
    }
    y = b.linear(m + ".pwconv2.0", y, c, false);
    y = b.batch_norm(m + ".pwconv2.2", y);
    y = b.scale(m + ".gamma", m + ".gamma", y);
    return b.binary(OpKind::Add, m + ".residual", x, y);
}

// Stem and downsample layers shared with ShiftWise_v2.
int unireplknet_downsample(GraphBuilder& b, size_t s, int x, int64_t dim) {
    const std::string ds = "downsample_layers." + std::to_string(s);
    if (s == 0) {
        x = b.conv2d(ds + ".0", x, dim / 2, 3, 3, 2, 1, 1, 1, true);
        x = b.layer_norm(ds + ".1", x);
        x = b.unary(OpKind::Gelu, ds + ".2", x);
        x = b.conv2d(ds + ".3", x, dim, 3, 3, 2, 1, 1, 1, true);
        return b.layer_norm(ds + ".4", x);
    }
    x = b.conv2d(ds + ".0", x, dim, 3, 3, 2, 1, 1, 1, true);
    return b.layer_norm(ds + ".1", x);
}

// Head shared with ShiftWise_v2: mean over H, W -> LayerNorm -> Linear.
int unireplknet_head(GraphBuilder& b, int x, int num_classes) {
    x = b.avg_pool("avgpool", x, false);
    x = b.layer_norm("norm", x);
    return b.linear("head", x, num_classes, true);
}

Graph build_unireplknet(const std::string& name, const UniRepLKNetConfig& c,
                        const ModelOptions& o) {
    GraphBuilder b(name);
    int x = b.input("x", {o.batch, o.in_chans, o.image_size, o.image_size});
    for (size_t s = 0; s < c.dims.size(); ++s) {
        const int64_t dim = c.dims[s];
        x = unireplknet_downsample(b, s, x, dim);
        for (size_t j = 0; j < c.kernels.at(s).size(); ++j) {
            const int K = c.kernels[s][j];
            const std::string m = "stages." + std::to_string(s) + "." + std::to_string(j);
            int y;
            if (K >= 7 && o.deploy) {
                y = b.dwconv(m + ".dwconv.lk_origin", x, K, K, 1, 1, true);
            } else if (K >= 7) {
                // DRB: origin_bn(lk_origin(x)) + sum_b dil_bn_b(dil_conv_b(x))
                const std::string d = m + ".dwconv";
                y = b.dwconv(d + ".lk_origin", x, K, K, 1, 1, false);
                y = b.batch_norm(d + ".origin_bn", y);
                std::vector<int> ks, rs;
                drb_branches(K, &ks, &rs);
                for (size_t i = 0; i < ks.size(); ++i) {
                    const std::string kr = std::to_string(ks[i]) + "_" + std::to_string(rs[i]);
                    int z = b.dwconv(d + ".dil_conv_k" + kr, x, ks[i], ks[i], 1, rs[i], false);
                    z = b.batch_norm(d + ".dil_bn_k" + kr, z);
                    y = b.binary(OpKind::Add, d + ".add_k" + kr, y, z);
                }
            } else if (K == 3 || K == 5) {
                y = b.dwconv(m + ".dwconv", x, K, K, 1, 1, o.deploy);
            } else {
                throw GraphError("UniRepLKNet block " + m + ": kernel " + std::to_string(K) +
                                 " is not 3, 5 or >= 7");
            }
            x = unireplknet_block_tail(b, m, x, y, c.ffn_factor, o.deploy);
        }
    }
    b.output(unireplknet_head(b, x, o.num_classes));
    return b.finish();
}

}  // namespace graph
}  // namespace lkc
