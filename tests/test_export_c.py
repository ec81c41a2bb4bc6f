"""export-c: the C array compiles with the system compiler and holds the model's exact bytes."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import require
from helpers import assert_one_line_error, run_cli_in_process

import tflite_models
from edgecnn.deploy.export_c import export_c, fnv1a32, parse_c_array

MAIN_C = r"""
#include <stdint.h>
#include <stdio.h>
#include "model_data.h"

int main(int argc, char **argv) {
  uint32_t h = 0x811c9dc5u;
  unsigned int i;
  FILE *f;
  if (model_data_len != EXPECTED_LEN || sizeof(model_data) != EXPECTED_LEN) {
    printf("length %u != %u\n", model_data_len, (unsigned)EXPECTED_LEN);
    return 2;
  }
  for (i = 0; i < model_data_len; ++i) h = (h ^ model_data[i]) * 0x01000193u;
  if (h != EXPECTED_FNV || h != MODEL_DATA_FNV1A32) { printf("fnv %08x\n", (unsigned)h); return 3; }
  if (((uintptr_t)model_data) % MODEL_DATA_ALIGN != 0) { printf("misaligned\n"); return 4; }
  if (argc > 1) {
    f = fopen(argv[1], "wb");
    if (!f || fwrite(model_data, 1, model_data_len, f) != model_data_len) return 5;
    fclose(f);
  }
  printf("ok %u %08x\n", model_data_len, (unsigned)h);
  return 0;
}
"""


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("exportc")
    return tflite_models.write(d, "int8.tflite", tflite_models.quantized_model("int8"))


@pytest.mark.parametrize("std", ["c11", "c99"])
def test_export_c_compiles_and_round_trips(int8_model, tmp_path, std):
    require(shutil.which("gcc") is not None, "gcc not installed")
    data = int8_model.read_bytes()
    info = export_c(int8_model, tmp_path / "model_data")
    src, hdr = tmp_path / "model_data.c", tmp_path / "model_data.h"
    assert info["bytes"] == len(data) and src.is_file() and hdr.is_file()
    assert parse_c_array(src.read_text()) == data
    text = hdr.read_text()
    assert info["sha256"] in text and "int8 [1x8x8x1]" in text and "zero point -128" in text
    (tmp_path / "main.c").write_text(MAIN_C)
    exe = tmp_path / "check"
    subprocess.run(["gcc", f"-std={std}", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{tmp_path}",
                    f"-DEXPECTED_LEN={len(data)}u", f"-DEXPECTED_FNV=0x{fnv1a32(data):08x}u",
                    str(tmp_path / "main.c"), str(src), "-o", str(exe)], check=True, capture_output=True, text=True)
    out = tmp_path / "roundtrip.tflite"
    proc = subprocess.run([str(exe), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert out.read_bytes() == data


def test_fnv1a32_known_values():
    assert fnv1a32(b"") == 0x811C9DC5
    assert fnv1a32(b"a") == 0xE40C292C


def test_export_c_cli(int8_model, tmp_path):
    proc = run_cli_in_process("export-c", int8_model, "-o", tmp_path / "net", "--name", "g_model", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "g_model[" in (tmp_path / "net.c").read_text()
    assert '#include "net.h"' in (tmp_path / "net.c").read_text()


def test_export_c_bad_input(int8_model, tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model at all")
    assert_one_line_error(run_cli_in_process("export-c", bad, "-o", tmp_path / "m"), "bad.tflite", "TFL3")
    assert_one_line_error(run_cli_in_process("export-c", tmp_path / "none.tflite", "-o", tmp_path / "m"),
                          "does not exist")
    assert_one_line_error(run_cli_in_process("export-c", int8_model, "-o", tmp_path / "nodir" / "m"), "does not exist")
    assert not list(tmp_path.glob("m.*"))
