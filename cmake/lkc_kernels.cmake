# One list of AOT kernel variants drives the libraries, the registry table and the tests.
#
# Every variant is built for three target families from one generator:
#   cpu    : AVX-512 (skylake set) + AVX2/FMA + baseline x86-64, one multi-target library that
#            dispatches on the running CPU's ISA;
#   opencl : host + OpenCL (runs on PoCL here);
#   cuda   : host + CUDA, PTX for sm_80 (the PTX is also emitted as a file for ptxas checks).
# All libraries share one Halide runtime (lkc_halide_runtime) that carries OpenCL and CUDA.

set(LKC_CPU_TARGETS
    x86-64-linux-sse41-avx-f16c-fma-avx2-avx512-avx512_skylake
    x86-64-linux-sse41-avx-f16c-fma-avx2
    x86-64-linux)
set(LKC_OPENCL_TARGET x86-64-linux-sse41-avx-f16c-fma-avx2-opencl-cl_doubles)
set(LKC_CUDA_TARGET x86-64-linux-sse41-avx-f16c-fma-avx2-cuda-cuda_capability_80)

set(LKC_KERNEL_LIBS "" CACHE INTERNAL "")  # reset on every configure
set(LKC_KERNEL_ENTRIES "" CACHE INTERNAL "")
set(LKC_PTX_FILES "" CACHE INTERNAL "")

# lkc_add_kernel(NAME <variant> GENERATOR <gen> [PARAMS k=v ...] [FAMILIES cpu opencl cuda]
#                [CPU_TARGETS t1 t2 ...])
# Defines libraries <variant>_cpu, <variant>_opencl, <variant>_cuda (function names the same).
# CPU_TARGETS replaces the multi-target list (the last one must be a baseline fallback).
function(lkc_add_kernel)
    cmake_parse_arguments(ARG "" "NAME;GENERATOR" "PARAMS;FAMILIES;CPU_TARGETS" ${ARGN})
    if (NOT ARG_FAMILIES)
        set(ARG_FAMILIES cpu opencl cuda)
    endif ()
    foreach (fam IN LISTS ARG_FAMILIES)
        set(lib ${ARG_NAME}_${fam})
        set(extra "")
        if (fam STREQUAL "cpu" AND ARG_CPU_TARGETS)
            set(targets ${ARG_CPU_TARGETS})
        elseif (fam STREQUAL "cpu")
            set(targets ${LKC_CPU_TARGETS})
        elseif (fam STREQUAL "opencl")
            set(targets ${LKC_OPENCL_TARGET})
        elseif (fam STREQUAL "cuda")
            set(targets ${LKC_CUDA_TARGET})
            set(extra DEVICE_CODE ${lib}_ptx)
        else ()
            message(FATAL_ERROR "lkc_add_kernel: unknown family '${fam}'")
        endif ()
        add_halide_library(${lib} FROM lkc_generators
                           GENERATOR ${ARG_GENERATOR}
                           FUNCTION_NAME ${lib}
                           TARGETS ${targets}
                           USE_RUNTIME lkc_halide_runtime
                           PARAMS ${ARG_PARAMS}
                           ${extra})
        if (fam STREQUAL "cuda")
            set(LKC_PTX_FILES "${LKC_PTX_FILES};${lib}:${${lib}_ptx}" CACHE INTERNAL "")
        endif ()
        set(LKC_KERNEL_LIBS "${LKC_KERNEL_LIBS};${lib}" CACHE INTERNAL "")
        # Registry row: generator, library, family, tile, chunk (0 = not a parameter), pixels, stage,
        # params.
        set(tile 0)
        set(chunk 0)
        set(pixels 0)
        set(stage 1)
        foreach (kv IN LISTS ARG_PARAMS)
            if (kv MATCHES "^tile=([0-9]+)$")
                set(tile ${CMAKE_MATCH_1})
            elseif (kv MATCHES "^chunk=([0-9]+)$")
                set(chunk ${CMAKE_MATCH_1})
            elseif (kv MATCHES "^pixels=true$")
                set(pixels 1)
            elseif (kv MATCHES "^stage=false$")
                set(stage 0)
            endif ()
        endforeach ()
        # The whole PARAMS list too (space-separated), for the canonical schedule of the variant.
        string(REPLACE ";" " " param_str "${ARG_PARAMS}")
        set(LKC_KERNEL_ENTRIES
            "${LKC_KERNEL_ENTRIES};LKC_KERNEL(${ARG_GENERATOR}, ${lib}, ${fam}, ${tile}, ${chunk}, ${pixels}, ${stage}, \"${param_str}\")"
            CACHE INTERNAL "")
    endforeach ()
endfunction()
