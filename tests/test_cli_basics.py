"""The CLI front door: instant help without TensorFlow, version, one-line errors."""

import subprocess
import sys

from helpers import assert_one_line_error, run_cli


def test_help_does_not_import_tensorflow():
    code = ("import sys; from edgecnn.cli import main\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'ai_edge_litert', 'numpy', 'pydantic', 'ray') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the CLI pulled in: {out}"


def test_help_lists_commands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("models", "build", "train", "run"):
        assert cmd in proc.stdout


def test_help_runs_without_heavy_imports():
    """`edgecnn --help` stays instant: running it (not only importing the CLI) loads no heavy module. Checked by
    what is imported, not by a stopwatch, so a loaded machine cannot fail it (the timing: benchmarks/cli_startup.py)."""
    code = ("import sys\nfrom edgecnn.cli import main\nsys.argv = ['edgecnn', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('tensorflow', 'keras', 'ai_edge_litert', 'numpy', 'pydantic', 'ray') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Usage:" in out and out.strip().endswith("HEAVY="), out[-500:]


def test_unknown_model_suggests_close_names():
    assert_one_line_error(run_cli("build", "lenett5", "-o", "x.keras"), "unknown model 'lenett5'", "lenet5")


def test_bad_builder_option():
    assert_one_line_error(run_cli("build", "resnet8", "-o", "x.keras", "-O", "alpha=2"), "unknown option(s) alpha")


def test_input_too_small(tmp_path):
    out = tmp_path / "m.keras"
    assert_one_line_error(run_cli("build", "mobilenet_v2", "--input-shape", "16x16x3", "-o", out), "too small")
    assert not out.exists()


def test_output_dir_missing(tmp_path):
    assert_one_line_error(run_cli("build", "lenet5", "-o", tmp_path / "nope" / "m.keras"), "does not exist")
