#!/usr/bin/env python3
"""Checks an lkc ONNX export and runs it with ONNX Runtime (tests/graph/test_onnx_export.cpp).

    onnx_check.py MODEL.onnx INPUT.npy OUTPUT.npy

Loads MODEL.onnx, runs onnx.checker.check_model (full check: strict shape inference), checks the
export contract (IR version 8, opset 17 of the default domain, one input "x", float32 everywhere,
every initializer in raw_data), runs ONNX Runtime on the CPU (all graph optimisations, one thread)
on INPUT.npy (float32, fed to the model's only input) and writes the model's only output to
OUTPUT.npy (float32). Prints the package versions and a one-line summary to stdout.

Exit codes: 0 ok, 1 a check failed (the reason on stderr), 2 usage, 77 numpy / onnx / onnxruntime
not importable (the C++ test skips).
"""
import sys

SKIP = 77


def main(argv):
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import numpy as np
        import onnx
        import onnxruntime as ort
    except ImportError as e:  # ModuleNotFoundError included
        print(f"onnx_check: cannot import {e.name or e}: pip install onnx onnxruntime numpy",
              file=sys.stderr)
        return SKIP

    model_path, input_path, output_path = argv[1:]
    model = onnx.load(model_path)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # onnx.checker.ValidationError, shape inference errors
        print(f"onnx_check: check_model failed: {e}", file=sys.stderr)
        return 1

    problems = []
    if model.ir_version != 8:
        problems.append(f"ir_version {model.ir_version}, expected 8")
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets != {"": 17}:
        problems.append(f"opset_import {opsets}, expected {{'': 17}}")
    g = model.graph
    if [i.name for i in g.input] != ["x"]:
        problems.append(f"inputs {[i.name for i in g.input]}, expected ['x']")
    if len(g.output) != 1:
        problems.append(f"{len(g.output)} outputs, expected 1")
    for v in list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            problems.append(f"value '{v.name}' is not float32")
    names = [n.name for n in g.node]
    if len(set(names)) != len(names):
        problems.append("node names are not unique")
    for t in g.initializer:
        want = int(np.prod(t.dims, dtype=np.int64)) * (8 if t.data_type == onnx.TensorProto.INT64
                                                         else 4)
        if t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.INT64):
            problems.append(f"initializer '{t.name}' has data_type {t.data_type}")
        elif len(t.raw_data) != want:
            problems.append(f"initializer '{t.name}' has {len(t.raw_data)} raw bytes, "
                            f"expected {want}")
    if problems:
        print("onnx_check: " + "; ".join(problems), file=sys.stderr)
        return 1

    x = np.load(input_path)
    if x.dtype != np.float32:
        print(f"onnx_check: {input_path} has dtype {x.dtype}, expected float32", file=sys.stderr)
        return 1
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    np.save(output_path, np.ascontiguousarray(y, dtype=np.float32))

    ops = {}
    for n in g.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    summary = " ".join(f"{k}:{v}" for k, v in sorted(ops.items()))
    print(f"onnx {onnx.__version__} onnxruntime {ort.__version__} numpy {np.__version__}")
    print(f"{g.name}: {len(g.node)} nodes ({summary}), {len(g.initializer)} initializers, "
          f"output '{g.output[0].name}' {list(y.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
