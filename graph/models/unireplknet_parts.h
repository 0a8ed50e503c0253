// UniRepLKNet macro-design pieces that ShiftWise_v2 reuses (graph/models/unireplknet.cpp).
#pragma once

#include <string>

#include "graph/builder.h"

namespace lkc {
namespace graph {

// downsample_layers.{s}: stem (s = 0: conv3x3 s2 -> LN -> GELU -> conv3x3 s2 -> LN) or
// conv3x3 s2 (bias) -> LN channels_first.
int unireplknet_downsample(GraphBuilder& b, size_t s, int x, int64_t dim);

// Everything of a block after its depth-wise part y:
//   x + gamma * BN(pwconv2(GRN(GELU(pwconv1(SE(BN(y)))))))
// deploy (UniRepLKNet deploy=True): x + pwconv2(GRN_nobeta(GELU(pwconv1(SE(y))))), pwconv2 biased.
int unireplknet_block_tail(GraphBuilder& b, const std::string& m, int x, int y, double ffn_factor,
                           bool deploy);

// mean over H, W -> LayerNorm "norm" -> Linear "head".
int unireplknet_head(GraphBuilder& b, int x, int num_classes);

}  // namespace graph
}  // namespace lkc
