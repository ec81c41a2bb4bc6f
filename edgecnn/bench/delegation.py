"""Why a model does not run whole on the CPU delegate: the ops XNNPACK leaves out, with the reason and the fix.

The board runner measures delegation (`delegation` in its JSON: partitions, ops outside XNNPACK); this module
explains it: for each op left outside, why (what is known of LiteRT 2.3's XNNPACK delegate for that op in int8)
and whether `edgecnn convert` has a rewrite pass for it. `bench` prints it for int8 models with more than one
partition, `convert --target cpu` puts it in its report, and the run report uses it when int8 is slower than
float32. `place` marks each op of a `--precision` report with whether XNNPACK runs it (int16 ops never: XNNPACK
has no int16 kernel, so each int16 island costs a partition).
"""

from __future__ import annotations

REASONS = {
    "HARD_SWISH": "int8 HARD_SWISH is not taken by XNNPACK (LiteRT 2.3): reference kernel, graph split",
    "AVERAGE_POOL_2D": "int8 AVERAGE_POOL_2D is not taken by XNNPACK (LiteRT 2.3): reference kernel, graph split",
    "SOFTMAX": "int8 SOFTMAX is not taken by XNNPACK: as the classifier's last op it costs one trailing partition",
    "QUANTIZE": "a requantize: uint8<->int8 at the model's edge (--io int8 removes it), or int8<->int16 around an "
                "int16 region of a --precision plan (XNNPACK has no int16 kernel)",
    "DEQUANTIZE": "a float output of an int8 model: --io int8 removes it",
    "LEAKY_RELU": "LEAKY_RELU outside XNNPACK",
}


def explain(ops_outside: list[dict], target: str = "cpu") -> list[dict]:
    """`ops_outside` rows ({op, count}) with `reason` and `rewrite` (the convert pass that removes it, or None)."""
    from edgecnn.convert.rewrite import PASSES, passes_for

    fixes = {PASSES[name].REPLACES: name for name in passes_for(target)}
    return [{**row, "reason": REASONS.get(row["op"], "not supported by the delegate for these types/shapes"),
             "rewrite": fixes.get(row["op"])} for row in ops_outside]


def measure(model_path: str, threads: int = 1) -> dict:
    """Delegate partitions of `model_path` on this CPU (the board runner, one invoke), explained."""
    from edgecnn.bench.local import run_local
    from edgecnn.bench.protocol import BenchSettings

    doc = run_local(str(model_path), BenchSettings(threads=threads, warmup=0, runs=1))
    if doc.get("status") != "ok":
        return {"available": False, "reason": doc.get("error")}
    d = dict(doc.get("delegation") or {})
    d["ops_outside"] = explain(d.get("ops_outside", []))
    return d


def place(precision: dict, model_path: str, threads: int = 1) -> dict:
    """`precision` (the convert report's section) with `xnnpack` (bool) on each op row and `partitions`: the
    board runner's walk (`board.runner.delegated_ops`) on this CPU's LiteRT with XNNPACK, one allocate."""
    from edgecnn.board.runner import delegated_ops
    from edgecnn.tflite.interpreter import allocate, make_interpreter

    interp = make_interpreter(model_path, threads=threads)
    allocate(interp)
    delegates, _, covered = delegated_ops(interp._get_ops_details())  # noqa: SLF001 - see board.runner
    for row in precision["ops"]:
        row["xnnpack"] = row["index"] in covered
    precision["partitions"] = len(delegates)
    precision["ops_on_xnnpack"] = len(covered)
    return precision
