"""Segmentation: a class per pixel; predictions are class maps (the arg-max of the logits); the metric is mIoU.

| module            | what                                                                                   |
|-------------------|----------------------------------------------------------------------------------------|
| `postprocess.py`  | logits -> class maps, nearest resize, the confusion matrix; numpy only, shipped to boards beside the runner |
| `metrics.py`      | mIoU / per-class IoU / pixel and mean accuracy from one confusion matrix; pixel agreement; per-pixel KL |

A model's output 0 (logits (N, H, W, C) at its input size) is dequantized and arg-maxed in numpy (no ARG_MAX in
the graph: neither XNNPACK nor the Edge TPU runs it); each class map is brought to its raw image's mask size
(nearest) and counted into one confusion matrix, the same in eval, compare, guided mode, `bench --data` (the board
returns its matrix) and on Ray shards (matrices add), so each gives the same mIoU on the same model and images.
A set carries the truth as `Dataset.masks` (uint8 class indices in raw-image pixels, 255 = ignore) and the names
of those classes as `Dataset.mask_names` (background first for `scenes:`).
"""

from __future__ import annotations

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.tasks.base import Task, number_text, worst_classes



class Segmentation(Task):
    name = "segmentation"
    metric = "mIoU"
    metric_key = "miou"
    example_source = "scenes:digits"
    trainer = "edgecnn.train.segmentation"
    qat = True  # its fit hook compiles the simulation (one `logits` output) with the pixel-wise loss as the model
    board_module = "edgecnn.tasks.segmentation.postprocess"
    details = ("miou", "pixel_accuracy", "mean_accuracy", "examples")
    per_class_in_rows = True  # the report's per-class IoU change (classes scored in both models; n: true pixels)

    # --- data -------------------------------------------------------------------------------------------------
    def owns(self, ds) -> bool:
        return getattr(ds, "masks", None) is not None

    def truth(self, ds):
        return list(ds.masks)

    def class_names(self, ds) -> tuple:
        return tuple(getattr(ds, "mask_names", ()) or ())

    def classes_fit(self, data_classes: int, model_classes: int) -> bool:
        """A mask folder without classes.txt names only the classes up to the largest it holds: fewer is fine (a
        mask class above the model's is one line when scored, `metrics.classes_of`)."""
        return data_classes <= model_classes

    # --- predictions ------------------------------------------------------------------------------------------
    def check_outputs(self, shapes, ctx, model) -> None:
        first = list(shapes[0]) if shapes else []
        if len(first) == 2 and min(first) > 1:  # class ids (H, W) of a foreign graph's ARG_MAX: no class count
            return
        if len(first) != 3 or first[-1] < 2:
            raise EdgecnnError(f"{model}: expected a segmenter's logits (H, W, classes) or class ids (H, W) as "
                               f"output 0, got {[list(s) for s in shapes]}")
        labels = ctx.get("labels") or []
        if labels and first[-1] != len(labels):
            raise EdgecnnError(f"{model}: {first[-1]} output classes, its spec names {len(labels)}")

    def same_outputs(self, fshapes, qshapes) -> bool:
        """The same shapes, or one side's class ids (H, W) where the other has scores (H, W, C): a foreign graph's
        ARG_MAX, cut off by convert (`edgecnn.convert.arg_max_head`)."""
        if fshapes == qshapes:
            return True
        if len(fshapes) != 1 or len(qshapes) != 1:
            return False
        f, q = list(fshapes[0]), list(qshapes[0])
        return sorted((len(f), len(q))) == [2, 3] and f[:2] == q[:2]

    def postprocess(self, outputs, ctx):
        from edgecnn.tasks.segmentation.postprocess import decode

        return decode(outputs, ctx.get("head"), ctx.get("input_hw"))

    def output_names(self, ctx, n: int) -> list[str]:
        return ["logits"] + [f"output{i}" for i in range(1, n)]

    # --- results ----------------------------------------------------------------------------------------------
    def describe(self, result: dict) -> str:
        return (f"mIoU {number_text(result['miou'], '.4f')}, pixel accuracy "
                f"{number_text(result['pixel_accuracy'], '.4f')}")

    def eval_columns(self):
        return [("images", "n"), ("mIoU", "miou"), ("pixel acc", "pixel_accuracy"), ("mean acc", "mean_accuracy")]

    def compare_text(self, r: dict):
        seen = "labeled" if r["labeled"] else "unlabeled"
        lines = [f"{r['n']} {seen} images: pixel agreement {number_text(r['agreement'], '.4f')}  KL(float||quant) "
                 f"{number_text(r.get('kl_per_pixel'), '.4g')} nats per pixel"]
        if not r["labeled"]:
            return lines, None
        lines.append(f"float mIoU {r['float_miou']:.4f}  quant mIoU {r['quant_miou']:.4f}  drop "
                     f"{r['drop_points']:+.2f} pts;  pixel accuracy {r['float_pixel_accuracy']:.4f} -> "
                     f"{r['quant_pixel_accuracy']:.4f}")
        return lines, worst_classes(r["per_class"], "per-class IoU delta (worst first)", "iou")

    def train_text(self, result, output, data) -> str:
        return (f"test mIoU {number_text(result['test_miou'], '.4f')}, pixel accuracy "
                f"{number_text(result['test_pixel_accuracy'], '.4f')} on {result['test_samples']} {data} images")

    def bench_text(self, acc: dict) -> str:
        if acc.get("miou") is None:
            return f"- ({acc.get('note') or 'no masks'})"
        return (f"{acc['miou']:.4f} (pixel accuracy {acc['pixel_accuracy']:.4f}; {acc['n']} images, scored from the "
                "device's confusion matrix)")

    # --- on a device ------------------------------------------------------------------------------------------
    def device_samples(self, ds, input_hw):
        """The masks go to the runner (packed, raw sizes): it returns one confusion matrix, not the class maps."""
        from edgecnn.tasks.segmentation.postprocess import pack_masks

        n = len(ds)
        if not self.owns(ds):
            return None, None, f"{n} images without masks"
        return pack_masks(ds.masks), {"names": self.class_names(ds)}, f"test split, {n} images with masks"

    def score_device(self, doc, truth, data) -> None:
        from edgecnn.tasks.segmentation.metrics import scores

        packed = doc.pop("confusion", None)
        if packed is None or doc.get("status") != "ok":
            return
        acc = {"n": packed.get("images"), "task": self.name, "metric": self.metric, "top1": None, "miou": None}
        matrix = packed.get("matrix")
        if truth is None or matrix is None:
            acc["note"] = f"no mIoU: {data} has no masks (a segmenter's accuracy needs a set with masks)"
        else:
            cm = np.asarray(matrix, np.int64)
            if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
                raise EdgecnnError(f"{data}: the runner's confusion matrix has shape {cm.shape}")
            acc.update(scores(cm, truth["names"]))
        doc["accuracy"] = acc

    # --- measures ---------------------------------------------------------------------------------------------
    def score(self, preds, truth, class_names, ctx) -> dict:
        from edgecnn.tasks.segmentation.metrics import score_maps

        r = score_maps(preds, truth, class_names, ctx.get("labels") or [])
        if not r["pixels"]:
            raise EdgecnnError(f"{ctx.get('model', 'the model')}: every mask pixel is the ignore label: nothing to score")
        return {"task": self.name, "metric": self.metric, "value": r["miou"], "n": len(truth), **r}

    def examples(self, preds, truth, ctx, k: int) -> list:
        """The class maps of the first `k` images (the report draws them beside the truth)."""
        from edgecnn.tasks.segmentation.metrics import example

        return [example(p) for p in preds[:k]]

    def agreement(self, fpreds, qpreds, fctx, qctx):
        from edgecnn.tasks.segmentation.metrics import pixel_agreement

        return pixel_agreement(fpreds, qpreds)

    def pair_stats(self, f_outputs, q_outputs, ctx) -> dict:
        from edgecnn.tasks.segmentation.metrics import kl_sums

        kl, pixels = kl_sums(f_outputs[0], q_outputs[0])
        return {"kl": kl, "pixels": pixels}

    def pair_summary(self, stats) -> dict:
        if "kl" not in stats:
            return {}
        pixels = float(np.sum(stats["pixels"]))
        return {"kl_per_pixel": float(max(np.sum(stats["kl"]) / pixels, 0.0)) if pixels else None}

    def compare(self, fpreds, qpreds, truth, class_names, fctx, qctx) -> dict:
        """Pixel agreement (label-free); with masks both mIoUs, the drop (points), pixel accuracies and per-class
        IoU deltas."""
        out = {"task": self.name, "metric": self.metric, "agreement": self.agreement(fpreds, qpreds, fctx, qctx)}
        out["pixel_agreement"] = out["agreement"]
        if truth is not None:
            f = self.score(fpreds, truth, class_names, fctx)
            q = self.score(qpreds, truth, class_names, qctx)
            out.update({"float_miou": f["miou"], "quant_miou": q["miou"], "float_value": f["miou"],
                        "quant_value": q["miou"], "drop_points": 100 * (f["miou"] - q["miou"]),
                        "float_pixel_accuracy": f["pixel_accuracy"], "quant_pixel_accuracy": q["pixel_accuracy"],
                        "per_class": [{"class": a["class"], "name": a["name"], "n": a["pixels"],
                                       "float_iou": a["iou"], "quant_iou": b["iou"],
                                       "delta_points": 100 * (b["iou"] - a["iou"])}
                                      for a, b in zip(f["per_class"], q["per_class"])
                                      if a["iou"] is not None and b["iou"] is not None]})
        return out


TASK = Segmentation()
