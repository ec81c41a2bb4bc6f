"""The one .tflite reader (`edgecnn.tflite.reader`): TensorFlow-free, and what it reads matches LiteRT's view."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgecnn.errors import EdgecnnError
from edgecnn.tflite import reader
from edgecnn.tflite.quant import dequantize, quantize
from tflite_models import custom_op_model, float32_model, quantized_model, write


def test_reader_and_mcu_check_never_import_tensorflow(tmp_path):
    """A board-side or MCU user has no TensorFlow: reading a model, the Edge TPU preflight, export-c and
    mcu-check must work without it (checked in a fresh interpreter that counts what got imported)."""
    path = write(tmp_path, "q.tflite", quantized_model("int8"))
    code = (
        "import sys\n"
        "from edgecnn.tflite.reader import TfliteInfo, read_model, read_tflite\n"
        "from edgecnn.convert.edgetpu import preflight\n"
        "from edgecnn.deploy.export_c import io_summary\n"
        "from edgecnn.deploy.mcu import mcu_check\n"
        f"p = {str(path)!r}\n"
        "info = TfliteInfo(read_tflite(p)); read_model(p); preflight(p); io_summary(read_tflite(p))\n"
        "r = mcu_check(p)\n"
        "assert r['runs_in_tflm'], r\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_info_matches_litert():
    from ai_edge_litert.interpreter import Interpreter

    data = quantized_model("uint8")
    info = reader.TfliteInfo(data)
    it = Interpreter(model_content=data)
    for mine, theirs in ((info.inputs[0], it.get_input_details()[0]), (info.outputs[0], it.get_output_details()[0])):
        assert mine.shape == list(theirs["shape"]) and mine.dtype == np.dtype(theirs["dtype"]).name == "uint8"
        assert mine.scale == pytest.approx(theirs["quantization"][0]) and mine.zero_point == theirs["quantization"][1]
    assert "CONV_2D" in info.op_histogram() and not info.float_ops()
    assert reader.describe_io(info.inputs[0].to_dict()).endswith(f"zero point {info.inputs[0].zero_point}")


def test_parse_serialize_round_trip_keeps_the_model():
    data = float32_model()
    again = reader.serialize(reader.parse(data))
    assert again[4:8] == b"TFL3"
    a, b = reader.TfliteInfo(data), reader.TfliteInfo(again)
    assert [o.op for o in a.ops] == [o.op for o in b.ops] and a.weight_dtypes() == b.weight_dtypes()


def test_custom_ops_are_named():
    info = reader.TfliteInfo(custom_op_model("EdgecnnMissingOp"))
    assert "CUSTOM:EdgecnnMissingOp" in info.op_histogram()


@pytest.mark.parametrize("cut,needle", [(0, "no TFL3 identifier"), (200, "cannot parse|no subgraph"),
                                        (None, "no subgraph")])
def test_bad_files_are_one_line(tmp_path, cut, needle):
    good = float32_model()
    blob = good[:cut] if cut is not None else b"\0\0\0\0TFL3" + b"\xff" * 40
    p = tmp_path / "bad.tflite"
    p.write_bytes(blob)
    with pytest.raises(EdgecnnError, match=needle) as exc:
        reader.TfliteInfo(reader.read_tflite(p), str(p))
    assert "\n" not in str(exc.value)


def test_quantize_reads_litert_and_tflm_details():
    x = np.array([[-1.0, 0.0, 0.5, 2.0]], np.float32)
    litert = {"name": "in", "dtype": np.int8, "quantization": (0.5, 3)}
    tflm = {"name": "in", "dtype": np.int8, "quantization_parameters": {"scales": [0.5], "zero_points": [3]}}
    q1, q2 = quantize(x, litert), quantize(x, tflm)
    assert q1.tolist() == q2.tolist() == [[1, 3, 4, 7]]
    assert dequantize(q1, litert).tolist() == [[-1.0, 0.0, 0.5, 2.0]]
    with pytest.raises(EdgecnnError, match="without quantization parameters"):
        quantize(x, {"name": "in", "dtype": np.int8, "quantization": (0.0, 0)})
