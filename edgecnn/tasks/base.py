"""What a task is: the hooks every stage calls (see `edgecnn.tasks` for the table).

| hook                                  | called by                         | gives                                          |
|---------------------------------------|-----------------------------------|------------------------------------------------|
| `owns(ds)` / `accepts(ds)`            | data checks, every command        | the set carries this task's truth / can be scored |
| `truth(ds)`                           | the engine                        | per-sample truth, in sample order              |
| `class_names(ds)`                     | the engine, train                 | the names of the classes the truth is in       |
| `context(spec, head)`                 | the engine, quality tools         | what `postprocess` needs (picklable: Ray)      |
| `postprocess(outputs, ctx)`           | the engine (in Ray workers too)   | per-sample predictions from dequantized outputs |
| `join(parts)`                         | the engine                        | predictions of shards, back in order           |
| `score(preds, truth, names, ctx)`     | eval, bench --data, guided, mcu   | `{task, metric, value, ...details}`            |
| `examples(preds, truth, ctx, k)`      | eval (report pictures)            | what to draw of the first k samples, or None   |
| `compare(fp, qp, truth, names, ...)`  | compare                           | label-free agreement; with truth both metrics  |
| `pair_stats(f_outs, q_outs, ctx)`     | the engine (compare, per shard)   | per-sample sums of raw outputs, summed by `pair_summary` |
| `fidelity(f_outs, q_outs, ctx)`       | rewrite check, range choice       | label-free `agreement` (0..1) over every output |
| `trainer` (a module name)             | `edgecnn train`                   | its `edgecnn/train/` module (adopt, fit, measure) |

Metric values are "higher is better" in 0..1 (top-1, mAP): a drop is `100 * (float - quant)` points everywhere.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import numpy as np

from edgecnn.errors import EdgecnnError
from edgecnn.metrics import snr_db


class Task:
    name = "task"
    metric = "value"  # the headline metric's display name ("top-1", "mAP@.5")
    metric_key = "value"  # the key a result document holds it under ("top1", "map50")
    example_source = "digits"  # a data source of this task, for messages
    # the module of `edgecnn/train/` with this task's `adopt`, `fit` and `measure` (`edgecnn.train.trainer`); a name,
    # not an import, so tasks import no stage; None: `edgecnn train` cannot train this task's models
    trainer: str | None = None
    # `edgecnn train --qat` trains this task's models through the int8 simulation (edgecnn/train/qat.py): its fit
    # hook compiles the simulation as it would the model; False: refused in one line
    qat: bool = False
    # the numpy-only module shipped beside the board runner to decode this task's outputs there (`runner.py` loads
    # it with --postprocess; its DEFAULT_HEAD, decode, found, device_result and recognise are the contract); None:
    # the runner's own top-1 (and detection's file, which recognises foreign detectors)
    board_module: str | None = None

    # --- data -----------------------------------------------------------------------------------------------------
    def owns(self, ds) -> bool:
        """`ds` carries this task's own kind of truth (a detection set its boxes)."""
        return False

    def accepts(self, ds) -> bool:
        """A labeled `ds` can score this task's models (by default: only sets it owns)."""
        return self.owns(ds)

    def truth(self, ds):
        """Per-sample truth of `ds`, indexable by a slice of samples."""
        raise NotImplementedError

    def class_names(self, ds) -> tuple:
        """The names of the classes `ds`'s truth for this task is in (a model trained on it has that many)."""
        return tuple(ds.class_names)

    def classes_fit(self, data_classes: int, model_classes: int) -> bool:
        """A data set of `data_classes` classes can score a model of `model_classes` (by default: the same count)."""
        return data_classes == model_classes

    def sample_info(self, ds) -> dict:
        """Per-sample facts that are not labels but that scoring needs (a detector's raw image sizes); merged into
        the host's context, never shipped to workers."""
        return {}

    # --- predictions ----------------------------------------------------------------------------------------------
    @property
    def board_file(self) -> Path | None:
        """The file of `board_module`, shipped beside the board runner."""
        return Path(importlib.util.find_spec(self.board_module).origin) if self.board_module else None

    def context(self, spec, head: dict | None = None) -> dict:
        """What `postprocess` needs beyond the outputs: plain data, shipped to Ray workers; a task with a shipped
        module: its head (given, the spec's, else the module's DEFAULT_HEAD), the input size and the labels."""
        if not self.board_module:
            return {}
        default = importlib.import_module(self.board_module).DEFAULT_HEAD
        return {"head": dict(head or spec.head or default), "input_hw": (int(spec.height), int(spec.width)),
                "labels": list(spec.labels)}

    def recognise(self, outputs: list, ops: list, input_hw) -> dict | None:
        """A foreign model's head when its graph's outputs are this task's (`tasks.FOREIGN`; the shipped module's
        `recognise`, which the runner calls on the board too), else None."""
        module = importlib.import_module(self.board_module) if self.board_module else None
        return module.recognise(outputs, ops, input_hw) if hasattr(module, "recognise") else None

    def check_outputs(self, shapes: list, ctx: dict, model) -> None:
        """One line when a model's output shapes (without batch) cannot be this task's."""

    def same_outputs(self, fshapes: list, qshapes: list) -> bool:
        """Whether a float and a quantized model with these output shapes (without batch) can be the same model
        (`compare`): the same shapes, unless the task knows another form of the same prediction."""
        return fshapes == qshapes

    def postprocess(self, outputs: list[np.ndarray], ctx: dict):
        """Per-sample predictions of a batch of dequantized float outputs (each (N, ...))."""
        raise NotImplementedError

    def join(self, parts: list):
        """Predictions of consecutive shards as one run's."""
        return np.concatenate(parts) if len(parts) else parts

    def output_names(self, ctx: dict, n: int) -> list[str]:
        """Names of a model's `n` outputs in reports (a detector's heatmap, size, offset)."""
        return [f"output{i}" for i in range(n)]

    # --- results, as the pipeline, console and report show them -------------------------------------------------
    details = ("value",)  # keys of an eval result a pipeline row keeps (and, prefixed float_, the float model's)
    per_class_in_rows = False  # compare's per-class rows are what the report's per-class table shows

    def value(self, result: dict):
        """The metric's value of a result, also of one written before results carried `value` (its own key)."""
        return result.get("value", result.get(self.metric_key))

    def describe(self, result: dict) -> str:
        """An eval result in a few words (`top-1 0.9812`)."""
        return f"{self.metric} {self.value(result):.4f}"

    def cell(self, value) -> str:
        """The metric as a table cell."""
        return "-" if value is None else f"{value:.4f}"

    def compare_text(self, r: dict) -> tuple[list[str], tuple | None]:
        """`edgecnn compare`'s lines for this task's result `r`, and a (title, headers, rows) table or None."""
        seen = "labeled" if r["labeled"] else "unlabeled"
        lines = [f"{r['n']} {seen} images: agreement {number_text(r['agreement'])}"]
        if r["labeled"]:
            lines.append(f"float {self.metric} {r['float_value']:.4f}  quant {self.metric} {r['quant_value']:.4f}  "
                         f"drop {r['drop_points']:+.2f} pts")
        return lines, None

    def train_text(self, result: dict, output, data: str) -> str:
        """`edgecnn train`'s line on what the trained model measured on the test split."""
        return f"{result['test_samples']} {data} test images"

    def bench_text(self, acc: dict) -> str:
        """A bench document's `accuracy` in a few words (the device's predictions scored on the host)."""
        value = acc.get(self.metric_key)
        return f"{value:.4f} of {acc.get('n')}" if value is not None else f"- ({acc.get('note') or 'no labels'})"

    def eval_columns(self) -> list[tuple[str, str]]:
        """(header, result key) of `edgecnn eval`'s table for this task's models."""
        return [("N", "n"), (self.metric, "value")]

    # --- on a device (`bench --data`) ------------------------------------------------------------------------------
    def device_samples(self, ds, input_hw) -> tuple:
        """(labels for the runner or None, truth kept on the host or None, a few words on the samples) for a bench
        on `ds` (by default the runner scores the labels itself, as its top-1)."""
        n = len(ds)
        if not ds.labeled:
            return None, None, f"{n} unlabeled images"
        return np.asarray(ds.labels, dtype=np.int64), None, f"test split, {n} samples"

    def score_device(self, doc: dict, truth, data: str) -> None:
        """Turn what the runner returned into the document's `accuracy`, when the host scores it (a detector's
        boxes); by default the runner's own accuracy stands."""

    # --- measures -------------------------------------------------------------------------------------------------
    def score(self, preds, truth, class_names, ctx: dict) -> dict:
        """`{task, metric, value, ...details}` of `preds` against `truth`."""
        raise NotImplementedError

    def examples(self, preds, truth, ctx: dict, k: int) -> list | None:
        """What a report pictures of the first `k` samples (a detector's boxes), or None."""
        return None

    def compare(self, fpreds, qpreds, truth, class_names, fctx: dict, qctx: dict) -> dict:
        """Float vs quantized predictions: label-free `agreement` always; with `truth` (not None) both metrics,
        `float_value`, `quant_value` and `drop_points`."""
        out = {"task": self.name, "metric": self.metric, "agreement": self.agreement(fpreds, qpreds, fctx, qctx)}
        if truth is not None:
            f = self.score(fpreds, truth, class_names, fctx)["value"]
            q = self.score(qpreds, truth, class_names, qctx)["value"]
            out.update(float_value=f, quant_value=q, drop_points=100 * (f - q))
        return out

    def pair_stats(self, f_outputs: list[np.ndarray], q_outputs: list[np.ndarray], ctx: dict) -> dict:
        """Per-sample sums over the raw outputs of both models that `compare` needs beyond the predictions (a
        segmenter's per-pixel KL): {name: (N,) array}; the engine concatenates shards, `pair_summary` finishes."""
        return {}

    def pair_summary(self, stats: dict) -> dict:
        """`compare`'s keys from the concatenated `pair_stats` of every sample."""
        return {}

    def agreement(self, fpreds, qpreds, fctx: dict, qctx: dict) -> float | None:
        """How much of the float model's predictions the quantized ones keep, 0..1, no labels needed."""
        raise NotImplementedError

    def fidelity(self, f_outputs: list[np.ndarray], q_outputs: list[np.ndarray], ctx: dict) -> dict:
        """Label-free closeness of quantized to float outputs over every output: the task's `agreement` of their
        predictions and the pooled output SNR (dB) of all outputs at once."""
        if len(f_outputs) != len(q_outputs):
            raise EdgecnnError(f"{len(q_outputs)} outputs against the float model's {len(f_outputs)}")
        n = len(f_outputs[0]) if f_outputs else 0
        f_all = np.concatenate([np.asarray(f, np.float64).reshape(n, -1) for f in f_outputs], axis=1)
        q_all = np.concatenate([np.asarray(q, np.float64).reshape(n, -1) for q in q_outputs], axis=1)
        return {"agreement": self.agreement(self.postprocess(f_outputs, ctx), self.postprocess(q_outputs, ctx),
                                            ctx, ctx),
                "snr_db": snr_db(f_all, q_all)}


WORST_CLASSES = 5  # per-class deltas `compare` prints (worst first)


def worst_classes(per_class: list, title: str, key: str) -> tuple:
    """`compare_text`'s table of the classes whose metric (`float_KEY`, `quant_KEY`) changed worst, worst first
    (classes without a delta left out)."""
    worst = sorted((c for c in per_class if c["delta_points"] is not None),
                   key=lambda c: c["delta_points"])[:WORST_CLASSES]
    return (title, ["class", "float", "quant", "delta pts"],
            [[c["name"], number_text(c[f"float_{key}"]), number_text(c[f"quant_{key}"]), f"{c['delta_points']:+.2f}"]
             for c in worst])


def number_text(v, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)
