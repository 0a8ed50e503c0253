// RepLKNet (DingXiaoH/RepLKNet-pytorch replknet.py), train form (small_kernel_merged=False) or
// deploy form (small_kernel_merged=True: one lkb_reparam DW conv with bias per large kernel).
#include <string>

#include "graph/builder.h"
#include "graph/models/models.h"

namespace lkc {
namespace graph {

namespace {

// conv_bn / conv_bn_relu: Sequential(conv, bn[, nonlinear]); depth-wise convs (groups == C_in ==
// C_out) become DwConv2d nodes with "same" padding, the others Conv2d.
int conv_bn(GraphBuilder& b, const std::string& m, int x, int64_t out, int k, int stride,
            int groups, bool relu) {
    const int64_t in = b.channels(x);
    int y;
    if (groups > 1 && groups == in && out == in) {
        y = b.dwconv(m + ".conv", x, k, k, stride, 1, false);
    } else {
        y = b.conv2d(m + ".conv", x, out, k, k, stride, k / 2, k / 2, groups, false);
    }
    y = b.batch_norm(m + ".bn", y);
    if (relu) y = b.unary(OpKind::Relu, m + ".nonlinear", y);
    return y;
}

}  // namespace

Graph build_replknet(const std::string& name, const RepLKNetConfig& c, const ModelOptions& o) {
    GraphBuilder b(name);
    int x = b.input("x", {o.batch, o.in_chans, o.image_size, o.image_size});
    const int64_t c0 = c.channels.at(0);
    x = conv_bn(b, "stem.0", x, c0, 3, 2, 1, true);
    x = conv_bn(b, "stem.1", x, c0, 3, 1, static_cast<int>(c0), true);
    x = conv_bn(b, "stem.2", x, c0, 1, 1, 1, true);
    x = conv_bn(b, "stem.3", x, c0, 3, 2, static_cast<int>(c0), true);
    const size_t stages = c.depths.size();
    for (size_t s = 0; s < stages; ++s) {
        const int64_t ch = c.channels.at(s);
        const int64_t cdw = static_cast<int64_t>(ch * c.dw_ratio);
        const int K = c.kernels.at(s);
        const std::string st = "stages." + std::to_string(s) + ".blocks.";
        for (int j = 0; j < c.depths[s]; ++j) {
            // RepLKBlock: x + pw2(ReLU(large_kernel(pw1(prelkb_bn(x)))))
            const std::string m = st + std::to_string(2 * j);
            int y = b.batch_norm(m + ".prelkb_bn", x);
            y = conv_bn(b, m + ".pw1", y, cdw, 1, 1, 1, true);
            const std::string lk = m + ".large_kernel";
            int big;
            if (o.deploy) {
                big = b.dwconv(lk + ".lkb_reparam", y, K, K, 1, 1, true);
            } else {
                big = b.dwconv(lk + ".lkb_origin.conv", y, K, K, 1, 1, false);
                big = b.batch_norm(lk + ".lkb_origin.bn", big);
            }
            if (c.small_kernel > 0 && !o.deploy) {
                int sm = b.dwconv(lk + ".small_conv.conv", y, c.small_kernel, c.small_kernel, 1, 1,
                                  false);
                sm = b.batch_norm(lk + ".small_conv.bn", sm);
                big = b.binary(OpKind::Add, lk + ".add", big, sm);
            }
            y = b.unary(OpKind::Relu, m + ".lk_nonlinear", big);
            y = conv_bn(b, m + ".pw2", y, ch, 1, 1, 1, false);
            x = b.binary(OpKind::Add, m + ".residual", x, y);
            // ConvFFN: x + pw2(GELU(pw1(preffn_bn(x))))
            const std::string f = st + std::to_string(2 * j + 1);
            y = b.batch_norm(f + ".preffn_bn", x);
            y = conv_bn(b, f + ".pw1", y, static_cast<int64_t>(ch * c.ffn_ratio), 1, 1, 1, false);
            y = b.unary(OpKind::Gelu, f + ".nonlinear", y);
            y = conv_bn(b, f + ".pw2", y, ch, 1, 1, 1, false);
            x = b.binary(OpKind::Add, f + ".residual", x, y);
        }
        if (s + 1 < stages) {
            const std::string t = "transitions." + std::to_string(s);
            const int64_t next = c.channels.at(s + 1);
            x = conv_bn(b, t + ".0", x, next, 1, 1, 1, true);
            x = conv_bn(b, t + ".1", x, next, 3, 2, static_cast<int>(next), true);
        }
    }
    x = b.batch_norm("norm", x);
    x = b.avg_pool("avgpool", x, true);
    x = b.flatten("flatten", x);
    x = b.linear("head", x, o.num_classes, true);
    b.output(x);
    return b.finish();
}

}  // namespace graph
}  // namespace lkc
