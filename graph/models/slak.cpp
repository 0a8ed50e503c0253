// SLaK (VITA-Group/SLaK models/SLaK.py) with Decom=True, bn=True: the large kernel is a K x N strip
// (LoRA1), an N x K strip (LoRA2) and an N x N conv (small_conv), each conv -> BN, summed. The
// official iGEMM conv pads "same" per axis, which is what DwConv2d does.
#include <string>

#include "graph/builder.h"
#include "graph/models/models.h"

namespace lkc {
namespace graph {

Graph build_slak(const std::string& name, const SLaKConfig& c, const ModelOptions& o) {
    if (o.deploy) {
        throw GraphError("model '" + name +
                         "': SLaK has no official deploy form (Decom=True models are not "
                         "re-parameterised, official_param_names.md section 2)");
    }
    GraphBuilder b(name);
    std::vector<int64_t> dims;
    for (int d : c.dims) dims.push_back(static_cast<int64_t>(d * c.width_factor));
    int x = b.input("x", {o.batch, o.in_chans, o.image_size, o.image_size});
    for (size_t s = 0; s < c.depths.size(); ++s) {
        const std::string ds = "downsample_layers." + std::to_string(s);
        if (s == 0) {
            // stem: conv 4x4 stride 4 (bias) -> LayerNorm channels_first
            x = b.conv2d(ds + ".0", x, dims[0], 4, 4, 4, 0, 0, 1, true);
            x = b.layer_norm(ds + ".1", x);
        } else {
            // LayerNorm channels_first -> conv 2x2 stride 2 (bias)
            x = b.layer_norm(ds + ".0", x);
            x = b.conv2d(ds + ".1", x, dims[s], 2, 2, 2, 0, 0, 1, true);
        }
        const int K = c.kernels.at(s), N = c.small_kernel;
        for (int j = 0; j < c.depths[s]; ++j) {
            // x + gamma * pwconv2(GELU(pwconv1(LN(LoRA1(x) + LoRA2(x) + small(x)))))
            const std::string m = "stages." + std::to_string(s) + "." + std::to_string(j);
            const std::string lk = m + ".large_kernel";
            int y = b.dwconv(lk + ".LoRA1.conv", x, K, N, 1, 1, false);
            y = b.batch_norm(lk + ".LoRA1.bn", y);
            int v = b.dwconv(lk + ".LoRA2.conv", x, N, K, 1, 1, false);
            v = b.batch_norm(lk + ".LoRA2.bn", v);
            y = b.binary(OpKind::Add, lk + ".add", y, v);
            if (N > 0 && N < K) {
                int sm = b.dwconv(lk + ".small_conv.conv", x, N, N, 1, 1, false);
                sm = b.batch_norm(lk + ".small_conv.bn", sm);
                y = b.binary(OpKind::Add, lk + ".add_small", y, sm);
            }
            // The official block permutes to channels-last here; the ops below act on channels.
            y = b.layer_norm(m + ".norm", y);
            y = b.linear(m + ".pwconv1", y, 4 * dims[s], true);
            y = b.unary(OpKind::Gelu, m + ".act", y);
            y = b.linear(m + ".pwconv2", y, dims[s], true);
            y = b.scale(m + ".gamma", m + ".gamma", y);
            x = b.binary(OpKind::Add, m + ".residual", x, y);
        }
    }
    // head: mean over H, W -> LayerNorm -> Linear
    x = b.avg_pool("avgpool", x, false);
    x = b.layer_norm("norm", x);
    x = b.linear("head", x, o.num_classes, true);
    b.output(x);
    return b.finish();
}

}  // namespace graph
}  // namespace lkc
