"""Detection: boxes per image; predictions are decoded boxes; the metric is COCO mAP@.5.

| module            | what                                                                                  |
|-------------------|---------------------------------------------------------------------------------------|
| `postprocess.py`  | outputs -> boxes (CenterNet, SSD, BlazeFace, TFLite_Detection_PostProcess), NMS; numpy only, shipped to boards beside the runner |
| `metrics.py`      | COCO mAP (pycocotools), the one box-scoring path, label-free box agreement            |

A model's outputs are dequantized and decoded in float (`postprocess.decode`, the head from the spec, or a foreign
model's recognised head); boxes are scaled back to each raw image's pixels and scored against the source's exact
boxes, so eval, compare, bench --data and the guided mode give the same mAP on the same model and images.
"""

from __future__ import annotations

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.tasks.base import Task

from edgecnn.tasks.detection.postprocess import DEFAULT_HEAD  # a spec without a head: an early CenterNet


class Detection(Task):
    name = "detection"
    metric = "mAP@.5"
    metric_key = "map50"
    example_source = "scenes:digits"
    trainer = "edgecnn.train.detection"
    qat = True  # its fit hook compiles the simulation (outputs keyed by the model's names) as it would the model
    board_module = "edgecnn.tasks.detection.postprocess"
    details = ("map50", "map", "objects", "detections", "examples")

    def describe(self, result: dict) -> str:
        return f"mAP@.5 {result['map50']:.4f}, mAP@[.5:.95] {result['map']:.4f}"

    def cell(self, value) -> str:
        return "-" if value is None else f"{value:.3f}"

    def eval_columns(self):
        return [("images", "n"), ("objects", "objects"), ("mAP@[.5:.95]", "map"), ("mAP@.5", "map50")]

    def compare_text(self, r: dict):
        from edgecnn.tasks.base import number_text, worst_classes

        snr = "  ".join(f"{k} {v:.1f} dB" for k, v in r["output_snr_db"].items())
        seen = "labeled" if r["labeled"] else "unlabeled"
        lines = [f"{r['n']} {seen} images: box agreement {number_text(r['matched'])} "
                 f"of {r['float_boxes']} float boxes (score >= {r['score_threshold']}, IoU >= {r['iou']}), extra "
                 f"{number_text(r['extra'])}, mean IoU {number_text(r['mean_iou'])}; quant mAP@.5 vs float boxes "
                 f"{number_text(r.get('map50_vs_float'))}; output SNR {snr}"]
        if not r["labeled"]:
            return lines, None
        lines.append(f"float mAP@.5 {r['float_map50']:.4f}  quant mAP@.5 {r['quant_map50']:.4f}  drop "
                     f"{r['drop50_points']:+.2f} pts;  mAP@[.5:.95] {r['float_map']:.4f} -> {r['quant_map']:.4f} "
                     f"({r['drop_map_points']:+.2f} pts)")
        return lines, worst_classes(r["per_class"], "per-class AP@.5 delta (worst first)", "ap50")

    def train_text(self, result, output, data) -> str:
        """A detector's training measures its loss; `edgecnn eval` gives the mAP."""
        return (f"test loss {result['test_loss']:.3f} on {result['test_samples']} {data} images "
                f"(mAP: edgecnn eval {output} --data {data})")

    def bench_text(self, acc: dict) -> str:
        if acc.get("map50") is None:
            return f"- ({acc.get('note') or 'no true boxes'})"
        return (f"{acc['map50']:.4f} (mAP@[.5:.95] {acc['map']:.4f}; {acc['images']} images, "
                f"{acc['objects']} objects, {acc['detections']} boxes found on the device)")

    def device_samples(self, ds, input_hw):
        """No labels go to the runner (it returns boxes); the true boxes stay here for `score_device`."""
        from edgecnn.tasks.detection.device import truth_from_dataset

        n = len(ds)
        truth = truth_from_dataset(ds, tuple(input_hw)) if self.owns(ds) else None
        return None, truth, (f"test split, {n} images, {truth.objects} objects" if truth else
                             f"test split, {n} images without boxes")

    def score_device(self, doc, truth, data) -> None:
        from edgecnn.tasks.detection.device import score

        score(doc, truth, data)

    def owns(self, ds) -> bool:
        return getattr(ds, "boxes", None) is not None

    def truth(self, ds):
        return list(ds.boxes)

    def sample_info(self, ds) -> dict:
        from edgecnn.tasks.detection.metrics import image_sizes

        return {"sizes": image_sizes(ds)}

    def check_outputs(self, shapes, ctx, model) -> None:
        from edgecnn.tasks.detection.postprocess import FOREIGN_HEADS, output_problem

        head = ctx["head"]
        if head.get("kind") in FOREIGN_HEADS:  # recognised from these very outputs (or given): decode checks them
            return
        try:
            expected = output_problem([tuple(s) for s in shapes], head, ctx["input_hw"], len(ctx["labels"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgecnnError(f"{model}: its spec's detection head {head} is malformed ({exc!r})") from None
        if expected:
            raise EdgecnnError(f"{model}: expected a {head.get('kind')} detector's {expected}, got "
                               f"{[list(s) for s in shapes]}")

    def postprocess(self, outputs, ctx, **decode_args):
        from edgecnn.tasks.detection.postprocess import decode

        head = ctx["head"]
        try:
            return decode(outputs, head, tuple(ctx["input_hw"]), **decode_args)
        except KeyError as exc:  # a head description without a key its kind needs (an SSD's anchors, variances)
            raise EdgecnnError(f"{ctx.get('model', 'the model')}: its {head.get('kind')} detection head lacks "
                               f"{exc.args[0]!r} ({head})") from None
        except (ValueError, IndexError, TypeError) as exc:
            raise EdgecnnError(f"{ctx.get('model', 'the model')}: cannot decode its outputs as a {head.get('kind')} "
                               f"head: {exc}") from None

    def join(self, parts):
        return [d for part in parts for d in part]

    def score(self, preds, truth, class_names, ctx) -> dict:
        from edgecnn.tasks.detection.metrics import score_boxes

        r = score_boxes(truth, preds, ctx["sizes"], tuple(ctx["input_hw"]), class_names)
        return {"task": self.name, "metric": self.metric, "value": r["map50"], "n": len(truth), **r}

    def examples(self, preds, truth, ctx, k: int) -> list:
        """The boxes (raw-image pixels, score >= EXAMPLE_SCORE) and the true ones of the first `k` images."""
        from edgecnn.tasks.detection.metrics import EXAMPLE_SCORE, to_image_pixels

        dets = to_image_pixels(preds[:k], ctx["sizes"][:k], tuple(ctx["input_hw"]))
        return [{"truth": np.round(np.asarray(t, np.float64), 2).tolist(),
                 "boxes": np.round(b[s >= EXAMPLE_SCORE].astype(np.float64), 2).tolist(),
                 "scores": np.round(s[s >= EXAMPLE_SCORE].astype(np.float64), 3).tolist(),
                 "classes": c[s >= EXAMPLE_SCORE].tolist()} for t, (b, s, c) in zip(truth[:k], dets)]

    def agreement(self, fpreds, qpreds, fctx, qctx):
        from edgecnn.tasks.detection.metrics import box_agreement

        return box_agreement(fpreds, qpreds)["matched"]

    def output_names(self, ctx, n: int) -> list[str]:
        from edgecnn.tasks.detection.metrics import output_names

        return output_names(ctx["head"], n)

    def compare(self, fpreds, qpreds, truth, class_names, fctx, qctx) -> dict:
        """Box agreement (label-free), the quantized model's mAP against the float model's confident boxes
        (`map_vs_float`), and with true boxes both mAPs, the drops (`drop_points`: mAP@.5, the metric;
        `drop_map_points`: mAP@[.5:.95]) and per-class AP@.5 deltas."""
        from edgecnn.tasks.detection.metrics import AGREEMENT_SCORE, as_ground_truth, box_agreement, num_classes, \
            score_boxes

        sizes, fhw, qhw = fctx["sizes"], tuple(fctx["input_hw"]), tuple(qctx["input_hw"])
        out = {"task": self.name, "metric": self.metric, **box_agreement(fpreds, qpreds)}
        out["agreement"] = out["matched"]
        out["head"] = fctx["head"].get("kind")
        reference = as_ground_truth(fpreds, sizes, fhw, AGREEMENT_SCORE)
        if sum(len(r) for r in reference):
            names = fctx["labels"] or [str(i) for i in range(num_classes(fpreds, qpreds))]
            vs = score_boxes(reference, qpreds, sizes, qhw, names)
            out["map_vs_float"], out["map50_vs_float"] = vs["map"], vs["map50"]
        if truth is not None:
            fm = score_boxes(truth, fpreds, sizes, fhw, class_names)
            qm = score_boxes(truth, qpreds, sizes, qhw, class_names)
            out.update({"float_map": fm["map"], "quant_map": qm["map"], "float_map50": fm["map50"],
                        "quant_map50": qm["map50"], "float_value": fm["map50"], "quant_value": qm["map50"],
                        "drop_points": 100 * (fm["map50"] - qm["map50"]),
                        "drop50_points": 100 * (fm["map50"] - qm["map50"]),
                        "drop_map_points": 100 * (fm["map"] - qm["map"]),
                        "per_class": [{"name": f["name"], "float_ap50": f["ap50"], "quant_ap50": q["ap50"],
                                       "delta_points": None if f["ap50"] is None else 100 * (q["ap50"] - f["ap50"])}
                                      for f, q in zip(fm["per_class"], qm["per_class"])]})
        return out


TASK = Detection()
