# The AOT kernel variants (see lkc_kernels.cmake). Naming: <generator>_t<tile>c<chunk>[_px].
#
# Forward / backward-data: tile = output columns in registers, chunk = kernel columns unrolled per
# step; _ns = no staged input copy (masked loads at the borders; short kernels). The chunk that divides the kernel width best wastes fewest zero taps (8: 31 -> 32, 51 -> 56,
# 63 -> 64; 7: 7, 13 -> 14, 27 -> 28; 5: 5x5, 51x5, 29 -> 30; 3: 3x3; 1: 1x1). _px variants reduce
# over input pixels (kernels wider than the map). Backward-weight: tile = kernel columns in
# registers, chunk = output columns unrolled per step.
# The registry (runtime/registry.cpp) picks the variant with the least estimated work.
# GPU builds: one variant per generator (tile/chunk there only shape thread blocks).

foreach (pass IN ITEMS fwd bwd_data)
    lkc_add_kernel(NAME dwconv2d_${pass}_t14c8 GENERATOR dwconv2d_${pass} PARAMS tile=14 chunk=8)
    foreach (c IN ITEMS 7 5 3 1)
        lkc_add_kernel(NAME dwconv2d_${pass}_t14c${c} GENERATOR dwconv2d_${pass}
                       PARAMS tile=14 chunk=${c} FAMILIES cpu)
    endforeach ()
    # Unstaged (masked border loads) for short kernels.
    foreach (c IN ITEMS 7 5 3)
        lkc_add_kernel(NAME dwconv2d_${pass}_t14c${c}_ns GENERATOR dwconv2d_${pass}
                       PARAMS tile=14 chunk=${c} stage=false FAMILIES cpu)
    endforeach ()
    lkc_add_kernel(NAME dwconv2d_${pass}_t14c8_px GENERATOR dwconv2d_${pass}
                   PARAMS tile=14 chunk=8 pixels=true FAMILIES cpu)
    lkc_add_kernel(NAME dwconv2d_${pass}_t7c8_px GENERATOR dwconv2d_${pass}
                   PARAMS tile=7 chunk=8 pixels=true FAMILIES cpu)
endforeach ()
lkc_add_kernel(NAME dwconv2d_bwd_data_strided GENERATOR dwconv2d_bwd_data_strided)
lkc_add_kernel(NAME dwconv2d_bwd_weight_t12c8 GENERATOR dwconv2d_bwd_weight PARAMS tile=12 chunk=8)
foreach (t IN ITEMS 8 7 5 3 1)
    lkc_add_kernel(NAME dwconv2d_bwd_weight_t${t}c8 GENERATOR dwconv2d_bwd_weight
                   PARAMS tile=${t} chunk=8 FAMILIES cpu)
endforeach ()

# Row-mask variants (training, lane-block row sparsity: runtime/dw_train.h): the dense generators
# with row_mask=true and one more input. CPU only (the trainer runs on the host), built for
# AVX-512 and the baseline; the schedules the trainer measured fastest on the small-map layers
# of the Fashion-MNIST models (hand variants and tuned ones), named <pass>_rows_<schedule>.
set(lkc_rows_targets x86-64-linux-sse41-avx-f16c-fma-avx2-avx512-avx512_skylake x86-64-linux)
foreach (pass IN ITEMS fwd bwd_data)
    foreach (v IN ITEMS "t14c5_ns:tile=14 chunk=5 stage=false" "t14c5:tile=14 chunk=5"
                        "t14c8:tile=14 chunk=8" "t7c8_px:tile=7 chunk=8 pixels=true"
                        "t8c3r16:tile=8 chunk=3 rows_per_task=16"
                        "t8c8r16:tile=8 chunk=8 rows_per_task=16"
                        "t7c7_px_r4:tile=7 chunk=7 pixels=true rows_per_task=4"
                        "t7c3_px_ns_np:tile=7 chunk=3 pixels=true stage=false par_rows=false"
                        "t7c7_px_ns_r4:tile=7 chunk=7 pixels=true stage=false rows_per_task=4"
                        "t8c8_np:tile=8 chunk=8 par_rows=false" "t7c3_np:tile=7 chunk=3 par_rows=false")
        string(REPLACE ":" ";" parts "${v}")
        list(GET parts 0 vname)
        list(GET parts 1 vparams)
        separate_arguments(vparams)
        lkc_add_kernel(NAME dwconv2d_${pass}_rows_${vname} GENERATOR dwconv2d_${pass}_rows
                       PARAMS ${vparams} row_mask=true FAMILIES cpu
                       CPU_TARGETS ${lkc_rows_targets})
    endforeach ()
endforeach ()
foreach (t IN ITEMS 7 5 3)
    foreach (c IN ITEMS 8 4)
        lkc_add_kernel(NAME dwconv2d_bwd_weight_rows_t${t}c${c} GENERATOR dwconv2d_bwd_weight_rows
                       PARAMS tile=${t} chunk=${c} row_mask=true FAMILIES cpu
                       CPU_TARGETS ${lkc_rows_targets})
    endforeach ()
endforeach ()

# Row-table kernels for dwconv2d_multi and shiftwise (generators/dwconv2d_taps_generators.cpp):
# entry width classes 8/5/3/1 are GeneratorParams (chunk0..3) that runtime/dwconv2d_taps.h mirrors.
lkc_add_kernel(NAME dwconv2d_taps_fwd GENERATOR dwconv2d_taps_fwd PARAMS tile=14)
lkc_add_kernel(NAME dwconv2d_taps_wgrad GENERATOR dwconv2d_taps_wgrad)

# Sparse (per-channel tap list) kernels, generators/dwconv2d_sparse_generators.cpp. Forward /
# backward-data: tile = output columns x chunk = output rows of the register tile (28 ymm
# accumulators), one variant per map-width class (56, 28, 14, 7 columns); m<M> = column-skip
# segments per side (runtime/dwconv2d_sparse.cpp reads M from the name; 0 for kernels up to 15
# columns, 1 up to 31, 3 beyond). Backward-weight: tile = output columns per row step, chunk =
# taps per block. GPU: one variant each, one staged copy (stage=false).
foreach (m IN ITEMS 0 1 3)
    lkc_add_kernel(NAME dwconv2d_sparse_fwd_t56c4m${m} GENERATOR dwconv2d_sparse_fwd
                   PARAMS tile=56 chunk=4 segments=${m} FAMILIES cpu)
endforeach ()
lkc_add_kernel(NAME dwconv2d_sparse_fwd_t32c7 GENERATOR dwconv2d_sparse_fwd
               PARAMS tile=32 chunk=7 FAMILIES cpu)
lkc_add_kernel(NAME dwconv2d_sparse_fwd_t16c7 GENERATOR dwconv2d_sparse_fwd
               PARAMS tile=16 chunk=7 FAMILIES cpu)
lkc_add_kernel(NAME dwconv2d_sparse_fwd_t8c7 GENERATOR dwconv2d_sparse_fwd
               PARAMS tile=8 chunk=7 FAMILIES cpu)
lkc_add_kernel(NAME dwconv2d_sparse_fwd_gpu GENERATOR dwconv2d_sparse_fwd
               PARAMS tile=8 chunk=32 stage=false FAMILIES opencl cuda)
foreach (t IN ITEMS 56 16 8)
    lkc_add_kernel(NAME dwconv2d_sparse_wgrad_t${t}c12 GENERATOR dwconv2d_sparse_wgrad
                   PARAMS tile=${t} chunk=12 FAMILIES cpu)
endforeach ()
lkc_add_kernel(NAME dwconv2d_sparse_wgrad_gpu GENERATOR dwconv2d_sparse_wgrad
               PARAMS tile=32 chunk=32 stage=false FAMILIES opencl cuda)

# Whole-network ops on blocked activations (generators/ops_*_generators.cpp, runtime/ops.h).
# GEMM (1x1 conv / Linear): t7c2 = 7 output pixels x 2 output blocks in registers (map widths
# are multiples of 7; 14 accumulators measured faster than 21 or 24, docs/ops.md); _ci = the
# output-block tiles loop inside the pixel tiles (large maps with small weights, e.g. 56x56
# 512 -> 128); t1c8 = one pixel x 8 blocks for [N, F] tensors and W < 4, where a 7-pixel tile
# would recompute its clamped pixels. runtime/ops.cpp picks. Dense conv: 7 x 3 tile; _l4 reduces
# 4 input lanes instead of 16 (stems on the 3-channel image).
lkc_add_kernel(NAME ops_gemm_t7c2 GENERATOR ops_gemm PARAMS tile=7 cob=2)
lkc_add_kernel(NAME ops_gemm_t7c2_ci GENERATOR ops_gemm
               PARAMS tile=7 cob=2 rows_per_task=2 co_inner=true FAMILIES cpu)
lkc_add_kernel(NAME ops_gemm_t1c8 GENERATOR ops_gemm PARAMS tile=1 cob=8 FAMILIES cpu)
lkc_add_kernel(NAME ops_conv2d GENERATOR ops_conv2d PARAMS tile=7 cob=3)
lkc_add_kernel(NAME ops_conv2d_l4 GENERATOR ops_conv2d PARAMS tile=7 cob=2 lanes=4 FAMILIES cpu)
foreach (op IN ITEMS affine unary binary select concat layernorm softmax grn avgpool)
    lkc_add_kernel(NAME ops_${op} GENERATOR ops_${op})
endforeach ()

# Training kernels (generators/train_*_generators.cpp, runtime/train_ops.h, docs/training.md).
# GEMM weight gradient dW[co, k] = sum_p dy[co, p] x[k, p] (1x1 conv / Linear, and the dense conv
# on im2col columns): t<tile>c<cob> = tile input channels x cob output blocks of 16 in registers,
# pixels reduced in blocks of ~128 (whole rows). runtime/train_ops.cpp picks the variant. The
# other training kernels have one schedule each.
lkc_add_kernel(NAME train_gemm_wgrad_t8c2 GENERATOR train_gemm_wgrad PARAMS tile=8 cob=2)
lkc_add_kernel(NAME train_gemm_wgrad_t4c4 GENERATOR train_gemm_wgrad PARAMS tile=4 cob=4
               FAMILIES cpu)
foreach (op IN ITEMS linear_transpose im2col col2im conv_wgrad_unpack unary_bwd binary_bwd
                     channel_reduce avgpool_bwd select_bwd channel_slice bn_fwd bn_bwd
                     layernorm_bwd grn_bwd xent adamw sgd ema axpby mask_mul)
    lkc_add_kernel(NAME train_${op} GENERATOR train_${op})
endforeach ()

# Tuned variants: every schedule a distilled table in schedules/tuned/ names (written by
# `lkc tune distill`) that is not one of the variants above is built for that table's family, so
# the registry can run it (runtime/schedule_selection.cpp matches tables to variants by schedule).
# The tables themselves are compiled into the runtime (lkc_tuned_tables.inc). They are data, not
# sources: globbed with CONFIGURE_DEPENDS so a new table is picked up by the next build.
file(GLOB LKC_TUNED_TABLES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/schedules/tuned/*.json)
set(LKC_TUNED_TABLES_INC "")
set(lkc_tuned_names "")
foreach (table IN LISTS LKC_TUNED_TABLES)
    file(READ ${table} json)
    get_filename_component(table_name ${table} NAME)
    string(APPEND LKC_TUNED_TABLES_INC "{\"${table_name}\", R\"lkc(${json})lkc\"},\n")
    string(JSON kind ERROR_VARIABLE err GET "${json}" device kind)
    if (err)
        message(FATAL_ERROR "${table}: no device.kind (${err})")
    endif ()
    # A CPU table is for one ISA: its tuned variants are built for that ISA and the baseline
    # fallback only (not the whole multi-target list), which keeps the extra build time small.
    set(cpu_targets "")
    if (kind STREQUAL "cpu")
        string(JSON isa ERROR_VARIABLE err GET "${json}" device isa)
        if (isa STREQUAL "avx512")
            set(cpu_targets x86-64-linux-sse41-avx-f16c-fma-avx2-avx512-avx512_skylake x86-64-linux)
        elseif (isa STREQUAL "avx2")
            set(cpu_targets x86-64-linux-sse41-avx-f16c-fma-avx2 x86-64-linux)
        endif ()
    endif ()
    string(JSON n LENGTH "${json}" entries)
    if (n EQUAL 0)
        continue()
    endif ()
    math(EXPR last "${n} - 1")
    foreach (i RANGE ${last})
        string(JSON kernel GET "${json}" entries ${i} kernel)
        string(JSON gen GET "${json}" entries ${i} generator)
        string(REGEX REPLACE "_${kind}$" "" variant "${kernel}")
        if (TARGET ${variant}_${kind} OR variant IN_LIST lkc_tuned_names)
            continue()  # a hand variant above, or already added for another entry
        endif ()
        list(APPEND lkc_tuned_names ${variant})
        string(JSON np LENGTH "${json}" entries ${i} params)
        set(params "")
        if (np GREATER 0)
            math(EXPR plast "${np} - 1")
            foreach (j RANGE ${plast})
                string(JSON key MEMBER "${json}" entries ${i} params ${j})
                string(JSON value GET "${json}" entries ${i} params ${key})
                list(APPEND params "${key}=${value}")
            endforeach ()
        endif ()
        if (cpu_targets)
            lkc_add_kernel(NAME ${variant} GENERATOR ${gen} PARAMS ${params} FAMILIES ${kind}
                           CPU_TARGETS ${cpu_targets})
        else ()
            lkc_add_kernel(NAME ${variant} GENERATOR ${gen} PARAMS ${params} FAMILIES ${kind})
        endif ()
    endforeach ()
endforeach ()
set(LKC_TUNED_TABLES_INC "${LKC_TUNED_TABLES_INC}" CACHE INTERNAL "")
