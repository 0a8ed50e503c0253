# The AOT kernel variants (see lkc_kernels.cmake). Naming: <generator>_t<tile>c<chunk>.
# Tile/chunk choices: chunk = kernel columns unrolled per step, so the chunk that divides the
# kernel width best wastes fewest zero taps (5 for 51x5 / 5x5, 7 for 7x7 and 13x13 -> 14, 8 for
# 31 -> 32 and 51 -> 56). Tile 7 serves maps of width 7, 14 and 28 with fewer padding columns.
lkc_add_kernel(NAME dwconv2d_fwd_t14c8 GENERATOR dwconv2d_fwd PARAMS tile=14 chunk=8)
lkc_add_kernel(NAME dwconv2d_bwd_data_t14c8 GENERATOR dwconv2d_bwd_data PARAMS tile=14 chunk=8)
lkc_add_kernel(NAME dwconv2d_bwd_data_strided GENERATOR dwconv2d_bwd_data_strided)
lkc_add_kernel(NAME dwconv2d_bwd_weight_t12c8 GENERATOR dwconv2d_bwd_weight PARAMS tile=12 chunk=8)
