"""The `relu` rewrite pass (edgecnn/convert/rewrite/relu.py): a standalone int8 RELU, which ai-edge-quantizer keeps
from a float graph that has one (MediaPipe's models do) and XNNPACK does not take, is fused into its producer; and
the reader keeps constants stored after the flatbuffer (ai-edge-quantizer writes them so) when a pass rewrites the
model."""

from __future__ import annotations

import numpy as np

import pytest

from conftest import require
from edgecnn.tflite import reader


def _unfused_float(tmp_path, relu: str = "RELU", also_output: bool = False):
    """test_precision's `_wide` net as a float .tflite whose residual ADD's fused ReLU is split off into a standalone
    `relu` op, as MediaPipe's float models have it (`also_output`: the ADD's own output a graph output too)."""
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.convert.rewrite.graph import Graph
    from test_precision import _wide

    fused = tmp_path / "fused.tflite"
    convert_model(_wide(tmp_path / "wide.keras"), fused, ConversionRequest("float32"))
    g = Graph(reader.parse(fused.read_bytes()))
    add, = g.ops("ADD")
    assert add.builtinOptions.fusedActivationFunction == 1 and not g.ops("RELU")
    out = int(add.outputs[0])
    pre = g.add_tensor("res_add_before_relu", g.shape(out), "float32")
    add.builtinOptions.fusedActivationFunction = 0
    add.outputs = np.asarray([pre], np.int32)
    g.replace(add, [add, g.make_op(relu, 1, [pre], [out])])
    if also_output:
        g.sg.outputs = np.asarray([*map(int, g.sg.outputs), pre], np.int32)
    path = tmp_path / "unfused.tflite"
    path.write_bytes(g.serialize())
    return path


@pytest.mark.parametrize("relu, code", [("RELU", 1)])  # ai-edge-quantizer leaves RELU6 in float: no int8 case
def test_a_standalone_int8_relu_is_fused_and_the_graph_runs_whole_on_xnnpack(tmp_path, relu, code):
    from edgecnn.bench.delegation import measure
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.mixed import available
    from edgecnn.convert.precision import load_plan
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.tflite.interpreter import allocate, make_interpreter
    from edgecnn.tflite.quant import quantize

    require(available(), "ai-edge-quantizer is not installed (pip install 'edgecnn[precision]')")
    src = _unfused_float(tmp_path, relu)
    plan = load_plan("FULLY_CONNECTED=int8")  # every op int8, through ai-edge-quantizer (the --precision path)
    reports = {}
    for rewrite in (False, True):
        out = tmp_path / f"m_{rewrite}.tflite"
        reports[rewrite] = (out, convert_model(src, out, ConversionRequest(
            "int8", calibration="photos", num_calibration=16, precision=plan, rewrite=rewrite, scale=1 / 255)))
    (plain, before), (fused, after) = reports[False], reports[True]
    assert before["op_histogram"].get(relu) == 1  # ai-edge-quantizer kept it: the case the pass is for
    row = next(r for r in after["rewrites"] if r["pass"] == "relu")
    assert row["count"] == 1 and row["applied"], row
    assert relu not in after["op_histogram"]
    parts = [measure(str(path)) for path in (plain, fused)]
    assert [d["partitions"] for d in parts] == [2, 1], parts
    outside = [{o["op"] for o in d["ops_outside"]} for d in parts]  # (the int8 SOFTMAX at the end: both)
    assert relu in outside[0] and relu not in outside[1] and outside[0] - {relu} == outside[1]
    # the fused ADD requantizes once, straight to the RELU's output scale: within a step of the two-op model
    m = reader.read_model(fused)
    add = next(op for op in m.subgraphs[0].operators if reader.op_name(m, op) == "ADD")
    assert add.builtinOptions.fusedActivationFunction == code
    out = int(add.outputs[0])
    x = np.random.default_rng(0).uniform(0, 1, (8, 16, 16, 3)).astype(np.float32)
    got = []
    for path in (plain, fused):
        it = make_interpreter(path.read_bytes(), preserve_all=True)
        allocate(it)
        inp = it.get_input_details()[0]
        vals = []
        for i in range(len(x)):
            it.set_tensor(inp["index"], quantize(x[i:i + 1], inp))
            it.invoke()
            vals.append(it.get_tensor(out).astype(np.int32))
        got.append(np.concatenate(vals))
    assert got[0].size and np.ptp(got[0]) > 0 and np.abs(got[0] - got[1]).max() <= 1


def test_a_relu_whose_input_is_read_elsewhere_stays(tmp_path):
    """The ADD's own output also a graph output: fusing would change what that output holds, so nothing is fused."""
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.mixed import available
    from edgecnn.convert.precision import load_plan
    from edgecnn.convert.request import ConversionRequest

    require(available(), "ai-edge-quantizer is not installed (pip install 'edgecnn[precision]')")
    out = tmp_path / "m.tflite"
    report = convert_model(_unfused_float(tmp_path, also_output=True), out, ConversionRequest(
        "int8", calibration="photos", num_calibration=16, precision=load_plan("FULLY_CONNECTED=int8"), scale=1 / 255))
    row = next(r for r in report["rewrites"] if r["pass"] == "relu")
    assert row["count"] == 0 and report["op_histogram"].get("RELU") == 1 and len(report["outputs"]) == 2
    assert row["note"].startswith("no standalone int8 RELU that its producer")  # there is a RELU: not "no RELU"


def _external(src) -> tuple[bytes, int, int]:
    """`src`'s .tflite with its largest constant stored after the flatbuffer, by offset and size (as ai-edge-quantizer
    writes them): the bytes, that buffer's index and its length."""
    m = reader.parse(src.read_bytes())
    big = max(range(len(m.buffers)), key=lambda b: len(m.buffers[b].data) if m.buffers[b].data is not None else 0)
    data = bytes(bytearray(m.buffers[big].data))
    assert len(data) > 64
    m.buffers[big].data, m.buffers[big].offset, m.buffers[big].size = None, 1 << 40, len(data)  # placeholder
    head = reader.serialize(m)
    at = (len(head) + 15) // 16 * 16
    m.buffers[big].offset = at  # the same field width: the flatbuffer keeps its length
    head = reader.serialize(m)
    assert len(head) <= at
    return head + b"\0" * (at - len(head)) + data, big, len(data)


def test_constants_stored_after_the_flatbuffer_survive_a_rewrite(tmp_path):
    """A buffer given by offset and size past the flatbuffer is read into the model object, so that serializing it
    again (every rewrite pass does) keeps the data: the round trip loads in LiteRT and holds the same constants."""
    from edgecnn.tflite.interpreter import allocate, make_interpreter

    src = _unfused_float(tmp_path)
    external, big, _ = _external(src)
    it = make_interpreter(external)
    allocate(it)  # LiteRT reads the data where the offset points
    again = reader.serialize(reader.parse(external))
    it = make_interpreter(again)
    allocate(it)
    want = reader.parse(src.read_bytes())
    got = reader.parse(again)
    tensors = [t for t in want.subgraphs[0].tensors if reader.is_constant(want, t)]
    assert len(tensors) >= 4 and any(t.buffer == big for t in tensors)
    for a, b in zip(want.subgraphs[0].tensors, got.subgraphs[0].tensors):
        va, vb = reader.constant_array(want, a), reader.constant_array(got, b)
        assert (va is None) == (vb is None) and (va is None or np.array_equal(va, vb)), reader.tensor_name(a)


def test_a_constant_past_the_end_of_the_file_is_one_line(tmp_path):
    """The same file cut short (its stored constant lost): one line naming the file, nothing written."""
    from helpers import assert_one_line_error, run_cli_in_process

    external, _, size = _external(_unfused_float(tmp_path))
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(external[:-size // 2])
    out = tmp_path / "out.tflite"
    r = run_cli_in_process("convert", cut, "-o", out, "--quant", "float16")
    assert_one_line_error(r, str(cut), "points past the end of the file")
    assert not out.exists()
