"""Wall time of `edgecnn convert --quant int8` against the stock TFLite path, side by side in one run.

    .venv/bin/python benchmarks/convert_speed.py [--samples 100] [--rounds 2]

Model: MobileNetV2 1.0 224x224x3 (keras.applications, weights=None, 1000 classes), saved as .keras once.
Stock: `tf.lite.TFLiteConverter.from_keras_model` + representative dataset + TFLITE_BUILTINS_INT8, int8 IO.
edgecnn: `convert_model(... ConversionRequest("int8"))` with the same samples (fast calibrator).
Both start from the Keras model file; rounds alternate. Quality checks: stock vs edgecnn outputs on the samples
(top-1 agreement, max |diff|); and, on edgecnn's own graph (whose tensor names differ from the stock front end's),
every tensor's scale/zero-point from the fast calibrator against TF's stock calibrator. Also the per-sample
calibration cost against one float inference, for each activation-range method (`--calibration-method`: the
histogram methods fill their histograms in the same pass). The options (`--calibration-method best`, `--equalize`,
`--bias-correction`, `--quality auto`) are costed in the same rounds, each beside the stock converter's time. The
table goes to benchmarks/results/convert_speed.{json,md} (docs/targets/cpu.md includes it).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from results import Column, publish  # noqa: E402

# the converter's options, each costed in the same rounds (ConversionRequest fields)
OPTIONS = {"--calibration-method best": {"method": "best"}, "--equalize": {"equalize": True},
           "--bias-correction": {"bias_correction": True}, "--quality auto": {"quality": "auto"}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    from edgecnn import _tf

    tf = _tf.tf()
    keras = _tf.keras()
    from edgecnn.convert.converter import convert_model
    from edgecnn.convert.frontend import converter_quiet
    from edgecnn.convert.request import ConversionRequest
    from edgecnn.data.spec import PreprocessSpec
    from edgecnn.modelfile import save_model

    tmp = Path(tempfile.mkdtemp(prefix="edgecnn-speed-"))
    spec = PreprocessSpec(224, 224, 3, 2 / 255, -1.0)
    model_path = tmp / "mnv2.keras"
    save_model(keras.applications.MobileNetV2(weights=None), model_path, spec)
    # the same calibration images for both: the shipped photo set, preprocessed by the spec
    from edgecnn.data.calibration import calibration_samples

    x, _ = calibration_samples("photos", spec, args.samples, seed=0)  # exactly what edgecnn draws below

    load_s = []

    def stock():
        t = time.perf_counter()
        m = keras.models.load_model(model_path, compile=False)
        load_s.append(time.perf_counter() - t)  # the Keras load both paths pay
        conv = tf.lite.TFLiteConverter.from_keras_model(m)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
        with converter_quiet():
            return conv.convert()

    def ours(calibrator="fast", method="minmax", **options):
        r = convert_model(model_path, tmp / "ours.tflite", ConversionRequest("int8", calibration="photos",
                                                                             num_calibration=args.samples, seed=0,
                                                                             calibrator=calibrator,
                                                                             calibration_method=method, **options))
        return (tmp / "ours.tflite").read_bytes(), r

    t_stock, t_ours, report = [], [], None
    t_options = {flag: [] for flag in OPTIONS}
    for _ in range(args.rounds):
        t = time.perf_counter()
        stock_bytes = stock()
        t_stock.append(time.perf_counter() - t)
        t = time.perf_counter()
        ours_bytes, report = ours()
        t_ours.append(time.perf_counter() - t)
        for flag, options in OPTIONS.items():  # the options' cost, in the same rounds
            t = time.perf_counter()
            ours(**options)
            t_options[flag].append(time.perf_counter() - t)
    # quantization parameters, tensor by tensor (matched by name)
    from tensorflow.lite.tools import flatbuffer_utils

    def qparams(b):
        m = flatbuffer_utils.convert_bytearray_to_object(bytearray(b))
        return {t.name: (np.asarray(t.quantization.scale), np.asarray(t.quantization.zeroPoint))
                for t in m.subgraphs[0].tensors if t.quantization is not None and t.quantization.scale is not None
                and len(t.quantization.scale)}

    ours_stockcal_bytes, _ = ours("stock")
    a, b = qparams(ours_stockcal_bytes), qparams(ours_bytes)
    common = sorted(k for k in set(a) & set(b) if a[k][0].shape == b[k][0].shape)
    max_scale_rel = max(float(np.max(np.abs(a[k][0] - b[k][0]) / np.maximum(np.abs(a[k][0]), 1e-30)))
                        for k in common)
    max_zp = max(int(np.max(np.abs(a[k][1].astype(int) - b[k][1].astype(int)))) for k in common)
    # the fast calibrator widens a dead activation's range on purpose (fast_calibrator.DEAD_WIDTH): compare the rest
    differ = [k for k in common if np.max(np.abs(a[k][0] - b[k][0]) / np.maximum(np.abs(a[k][0]), 1e-30)) > 1e-4]
    live = [k for k in common if np.min(np.abs(a[k][0])) > 1e-6]
    live_rel = max((float(np.max(np.abs(a[k][0] - b[k][0]) / np.abs(a[k][0]))) for k in live), default=0.0)
    live_zp = max((int(np.max(np.abs(a[k][1].astype(int) - b[k][1].astype(int)))) for k in live), default=0)
    from edgecnn.evaluate.predict import predict_tflite

    ps, po = predict_tflite(stock_bytes, x), predict_tflite(ours_bytes, x)
    # calibration cost per sample vs one float inference
    from edgecnn.tflite.interpreter import allocate, make_interpreter

    f32 = tf.lite.TFLiteConverter.from_keras_model(keras.models.load_model(model_path, compile=False))
    with converter_quiet():
        f32 = f32.convert()
    interp = make_interpreter(f32, threads=1)
    allocate(interp)
    inp = interp.get_input_details()[0]["index"]
    interp.set_tensor(inp, x[:1])
    interp.invoke()
    t = time.perf_counter()
    for i in range(20):
        interp.set_tensor(inp, x[i % len(x): i % len(x) + 1])
        interp.invoke()
    infer_s = (time.perf_counter() - t) / 20
    cal_per_sample = report["timings_s"]["calibrate_s"] / args.samples
    per_method = {"minmax": cal_per_sample}
    for method in ("percentile", "mse"):
        per_method[method] = ours(method=method)[1]["timings_s"]["calibrate_s"] / args.samples
    res = {
        "samples": args.samples, "rounds": args.rounds, "stock_s": t_stock, "edgecnn_s": t_ours,
        "ratio_median": statistics.median(t_ours) / statistics.median(t_stock),
        "keras_load_s_median": statistics.median(load_s),
        "ratio_median_excluding_keras_load": (statistics.median(t_ours) - statistics.median(load_s))
        / (statistics.median(t_stock) - statistics.median(load_s)),
        "edgecnn_timings_s": report["timings_s"], "tensors_compared_fast_vs_stock_calibrator": len(common),
        "tensors_in_model": len(b),
        "max_rel_scale_diff": max_scale_rel, "max_zero_point_diff": max_zp,
        "top1_agreement_stock_vs_edgecnn": float(np.mean(ps.argmax(1) == po.argmax(1))),
        "max_abs_output_diff": float(np.max(np.abs(ps - po))),
        "float_inference_ms": infer_s * 1000, "calibration_ms_per_sample": cal_per_sample * 1000,
        "calibration_cost_vs_inference": cal_per_sample / infer_s,
        "calibration_ms_per_sample_by_method": {m: v * 1000 for m, v in per_method.items()},
        "calibration_cost_vs_inference_by_method": {m: v / infer_s for m, v in per_method.items()},
    }
    print(json.dumps(res, indent=2))
    print(f"\nstock median {statistics.median(t_stock):.1f} s, edgecnn median {statistics.median(t_ours):.1f} s, "
          f"ratio {res['ratio_median']:.2f} ({res['ratio_median_excluding_keras_load']:.2f} without the "
          f"{res['keras_load_s_median']:.1f} s Keras load both pay); calibration {res['calibration_cost_vs_inference']:.2f}x a float "
          f"inference per sample; scales equal to {max_scale_rel:.1e} (rel), zero points within {max_zp}")
    res["options_s"] = t_options
    rows = [{"path": path, **{f"r{k + 1}": v for k, v in enumerate(times)}, "median": statistics.median(times),
             "ratio": statistics.median(times) / statistics.median(t_stock)}
            for path, times in (("stock `from_keras_model` + representative dataset", t_stock),
                                ("`edgecnn convert --quant int8`", t_ours),
                                *((f"`edgecnn convert --quant int8 {flag}`", t) for flag, t in t_options.items()))]
    timings = res["edgecnn_timings_s"]
    publish("convert_speed", [Column("path", "MobileNetV2 1.0 224, int8, int8 IO"),
                              *(Column(f"r{k + 1}", f"round {k + 1} s", "{:.1f}") for k in range(args.rounds)),
                              Column("median", "median", "{:.2f}"), Column("ratio", "/ stock", "{:.2f}")], rows,
            notes=[
        f"{args.samples} calibration images (the shipped photos), both from the same .keras file, rounds alternating",
        f"ratio {res['ratio_median']:.2f}, {res['ratio_median_excluding_keras_load']:.2f} without the "
        f"{res['keras_load_s_median']:.1f} s Keras load both pay",
        "edgecnn's time: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items() if isinstance(v, (int, float))),
        f"calibration {res['calibration_ms_per_sample']:.1f} ms per sample, {res['calibration_cost_vs_inference']:.2f}x "
        f"a float inference ({res['float_inference_ms']:.1f} ms); by range method: "
        + ", ".join(f"{m} {v:.2f}x" for m, v in res["calibration_cost_vs_inference_by_method"].items()),
        f"same result: stock and edgecnn outputs on the {args.samples} samples differ by at most "
        f"{res['max_abs_output_diff']:g} (top-1 agreement {res['top1_agreement_stock_vs_edgecnn']:.3f})",
        f"fast against TF's own calibrator on edgecnn's graph, {len(common)} tensors: the {len(live)} with a stock "
        f"scale above 1e-6 match to {live_rel:.1e} (relative), zero points within {live_zp}; {len(differ)} differ "
        f"by more than 1e-4, {sum(k in live for k in differ)} of them live (the others are dead activations, widened "
        f"on purpose, and biases whose scale follows one; all tensors: {max_scale_rel:.1e}, zero points within "
        f"{max_zp})"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
