"""Precision plans as data (`edgecnn convert --quant int8 --precision PLAN`): which ops compute in int8, int16 or float.

A plan is an ordered list of rules. A rule matches an op by its type (`CONV_2D`, UPPER_CASE) or by a regular
expression that must match the op's output tensor name in full (`.*depthwise_conv2d_9.*`), and sets `int8`,
`int16` (16-bit activations, 8-bit weights, 64-bit bias: TFLite's "16x8") or `float` (left unquantized). The last
matching rule wins; an op no rule matches is int8. Written inline or as a YAML file:

    --precision 'CONV_2D=int8,.*depthwise_conv2d_9.*=int16,.*classificators.*=float'

    # plan.yaml
    rules:
      - {match: .*depthwise_conv2d_9.*, precision: int16}
      - {match: HARD_SWISH, precision: float}

Why per op: one precision for the whole model is too coarse. MediaPipe BlazeFace in int8 keeps 0.036 box agreement
with float; whole-model int16x8 keeps 1.000 but runs ~30x slower (no int16 kernel in XNNPACK). The error enters at
one tensor whose range is 10x its neighbours', so int16 is needed there only. The int16 must cover the tensor end
to end, its producer AND every consumer: on a small model with one activation 40x its neighbours', int16 on the
producer alone gave 24.2 dB (all int8: 24.3), on the consumer alone 24.5, on both 35.6, whole int16 36.8
(docs/design/precision-plans-research.md, §3). An int16 op whose input or output is requantized to int8 gains
nothing.

Where it runs (the target table in `edgecnn.targets`, its `precisions` and `no_int16`;
docs/design/precision-plans-research.md §4: each runtime's kernel sources and a single-op run):
| op                                   | LiteRT CPU (builtin) | TFLite Micro | XNNPACK | Edge TPU |
|--------------------------------------|----------------------|--------------|---------|----------|
| CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, MUL, MEAN, pools, RESHAPE, CONCATENATION, PAD, SOFTMAX, LOGISTIC | int16 | int16 | no int16 op at all: each int16 island is its own partition on reference kernels | int8 only |
| HARD_SWISH                           | no int16             | no int16     |         |          |
| RESIZE_BILINEAR                      | int16                | no int16     |         |          |
| QUANTIZE int8 -> int16               | LiteRT >= 2.1.3/2.2  | yes          |         |          |
`--target edgetpu` refuses any int16 or float op; `--target tflm` refuses float ops and int16 where TFLM has no
kernel; `--target cpu` refuses int16 where LiteRT has none (other ops are left to the load check, which names the
op LiteRT refuses). Each refusal is one line naming the op.

The model itself is built by ai-edge-quantizer from edgecnn's own ranges (`mixed.py`); this module is the data:
the plan, matching it to a model's ops, the target check, and reading the precision back from the written model
(each op's output dtype: the plan is a request, the model is the fact).
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from edgecnn.errors import EdgecnnError
from edgecnn.schema import Strict, load_yaml, validate

PRECISIONS = ("int8", "int16", "float")
OP_TYPE = re.compile(r"[A-Z][A-Z0-9_]*")
CONVERSIONS = {"QUANTIZE", "DEQUANTIZE"}  # the requantizes ai-edge-quantizer inserts between precisions
# ops that move a tensor's values on unchanged: int16 "end to end" follows a tensor through them to the op that
# computes with it (BlazeFace's score heads are reshaped, then concatenated under one scale, before any reader)
FUSED = {"RELU", "RELU6", "RELU_N1_TO_1"}  # activations int8 fuses into the op before them (ADD, CONV_2D, ...)
CARRIERS = {"RESHAPE", "SQUEEZE", "EXPAND_DIMS", "CONCATENATION", "PAD", "TRANSPOSE"}


def _op_types() -> set[str]:
    from edgecnn.tflite.reader import enum_names, schema

    return set(enum_names(schema().BuiltinOperator).values())


class Rule(Strict):
    """One rule: `match` (an op type, or a regex on the op's output tensor name, matched in full) -> `precision`."""

    match: str
    precision: Literal["int8", "int16", "float"]

    @field_validator("match")
    @classmethod
    def _known(cls, v: str) -> str:
        if not v:
            raise ValueError("must be an op type or a regex, got ''")
        if OP_TYPE.fullmatch(v):
            known = _op_types()
            if v not in known:
                close = difflib.get_close_matches(v, sorted(known), n=1)
                raise ValueError("is no TFLite op type" + (f" (did you mean {close[0]}?)" if close else ""))
            return v
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"is not a valid regex ({exc})") from None
        return v

    @property
    def is_op_type(self) -> bool:
        return bool(OP_TYPE.fullmatch(self.match))

    def matches(self, op: str, output_name: str) -> bool:
        return op == self.match if self.is_op_type else re.fullmatch(self.match, output_name) is not None

    def __str__(self) -> str:
        return f"{self.match}={self.precision}"


class PrecisionPlan(Strict):
    """An ordered list of rules; the last match wins, unmatched ops are int8."""

    rules: tuple[Rule, ...] = Field(strict=False, min_length=1)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump({"rules": [r.model_dump() for r in self.rules]}, sort_keys=False)

    def to_dict(self) -> dict:
        return {"rules": [str(r) for r in self.rules]}


_INLINE = re.compile(r"\s*(.+?)=(\w*)\s*(?:,|$)")


def parse_inline(text: str) -> PrecisionPlan:
    """`'CONV_2D=int8,.*dw_9.*=int16'` -> a plan (a regex may hold commas: a rule ends at `=WORD,` or the end)."""
    rules, pos = [], 0
    while pos < len(text):
        m = _INLINE.match(text, pos)
        if not m or not m.group(2):
            raise EdgecnnError(f"--precision {text!r}: expected rules MATCH=int8|int16|float separated by commas "
                               "(MATCH an op type like CONV_2D or a regex on the output tensor name), or a YAML file")
        rules.append({"match": m.group(1), "precision": m.group(2)})
        pos = m.end()
    return validate(PrecisionPlan, {"rules": rules}, f"--precision {text!r}")


def load_plan(arg: str) -> PrecisionPlan:
    """A plan from a YAML file (a path that exists, or ends in .yaml/.yml) or inline rules; one error line if bad."""
    path = Path(arg)
    try:
        is_file = "=" not in arg and path.is_file()  # inline rules always hold '='; a long one is no file name
    except OSError:
        is_file = False
    if path.suffix.lower() in (".yaml", ".yml") or is_file:
        if not path.is_file():
            raise EdgecnnError(f"{path}: precision plan file does not exist")
        doc = load_yaml(path)
        if doc is None:
            raise EdgecnnError(f"{path}: empty precision plan (expected 'rules: [{{match: ..., precision: ...}}]')")
        return validate(PrecisionPlan, doc, str(path))
    return parse_inline(arg)


def assign(plan: PrecisionPlan, info) -> tuple[dict[str, tuple[str, str]], list[dict], list[str]]:
    """Match `plan` to the ops of `info` (a `TfliteInfo` of the float model).

    Returns ({first output tensor name: (op type, precision)} for every op the plan moves off int8, one row per rule with the
    ops it matched (`matched`: how many; an op several rules match counts for each), warnings: one per rule that
    matches nothing)."""
    planned, rows = {}, [{"rule": str(r), "match": r.match, "precision": r.precision, "matched": 0}
                         for r in plan.rules]
    for op in info.ops:
        name = op.output_names[0] if op.output_names else ""
        chosen = "int8"
        for row, rule in zip(rows, plan.rules):
            if rule.matches(op.op, name):
                row["matched"] += 1
                chosen = rule.precision
        if chosen != "int8" and name:
            planned[name] = (op.op, chosen)
    warnings = [f"precision plan rule {k + 1} {row['rule']!r} matches no op of the model (a regex must match an "
                "output tensor name in full)" for k, row in enumerate(rows) if not row["matched"]]
    return planned, rows, warnings


def check_target(ops: list[tuple[str, str, str]], target: str, what: str = "plan") -> None:
    """Refuse (one line naming the op) a precision `target` cannot run: `ops` are (op type, output name,
    precision); QUANTIZE/DEQUANTIZE are the conversions between precisions and are not checked here. What each
    target runs is its entry in the target table (`edgecnn.targets`: precisions, no_int16)."""
    from edgecnn.targets import get

    t = get(target)
    for op, name, prec in ops:
        if op in CONVERSIONS or prec == "int8":
            continue
        where = f"{op}({name})"
        if prec not in t.precisions:
            raise EdgecnnError(f"--target {target} {t.precision_rule}: the {what} puts {where} in {prec}")
        if prec == "int16" and op in t.no_int16:
            raise EdgecnnError(f"--target {target}: the {what} puts {where} in int16, but {t.no_int16[op]}")


_KINDS = {"int8": "int8", "uint8": "int8", "int16": "int16", "float32": "float", "float16": "float"}


def precision_of(info, op) -> str:
    """What an op of a written model computes in, read from its tensors: the output's dtype (int8, int16, float);
    for an op whose output is an index or a shape (int32/int64/bool), its first non-constant input's. A conversion
    (QUANTIZE, DEQUANTIZE) reads `from->to`, e.g. `int8->int16`."""
    def kind(tensors):
        return next((_KINDS[info.dtype(t)] for t in tensors if t >= 0 and info.dtype(t) in _KINDS), None)

    inputs = [i for i in op.inputs if not info._is_constant(i)]
    out = kind(op.outputs) or kind(inputs) or (info.dtype(op.outputs[0]) if op.outputs else "none")
    return f"{kind(inputs)}->{out}" if op.op in CONVERSIONS else out


def read_back(info, planned: dict[str, tuple[str, str]], rules: list[dict], warnings: list[str]) -> dict:
    """The report's `precision` section for a written model (`TfliteInfo`): per op its index, type, output tensor,
    precision (read from the model) and what the plan asked (None for a conversion ai-edge-quantizer inserted);
    counts per precision; the plan's rules with how many ops each matched; warnings (an unmatched rule, an op
    whose precision is not what the plan asked); notes (an int8 -> int16 QUANTIZE, which older runtimes refuse)."""
    rows, warnings = [], list(warnings)
    for op in info.ops:
        name = op.output_names[0] if op.output_names else ""
        rows.append({"index": op.index, "op": op.op, "output": name, "precision": precision_of(info, op),
                     "planned": None if op.op in CONVERSIONS else planned.get(name, ("", "int8"))[1]})
    for row in rows:
        if row["planned"] is not None and row["planned"] != row["precision"]:
            warnings.append(f"{row['op']}({row['output']}): the plan asks {row['planned']} but the quantizer left "
                            f"it {row['precision']} (ai-edge-quantizer has no {row['planned']} for it)")
    notes = []
    if any(r["precision"] == "int8->int16" for r in rows):
        notes.append("int8 -> int16 QUANTIZE: needs LiteRT >= 2.1.3 (or 2.2) or TFLite Micro; older runtimes "
                        "(TF's tf.lite.Interpreter 2.21, tflite-runtime) refuse the model at load")
    counts = Counter(r["precision"] for r in rows if r["op"] not in CONVERSIONS)
    return {"rules": rules, "counts": dict(sorted(counts.items())),
            "conversions": sum(r["op"] in CONVERSIONS for r in rows), "ops": rows, "warnings": warnings,
            "notes": notes}


def covering(info, tensors: list[str], target: str) -> PrecisionPlan | None:
    """A plan putting each of `tensors` (output names of the float model `info`) in int16 end to end: its producer
    and every op that reads it, through CARRIERS (an int16 op whose input or output is requantized to int8 gains
    nothing: the module docstring's measurement), leaving int8 the ops `target` has no int16 kernel for. None if
    nothing is left."""
    from edgecnn.targets import get

    no_int16 = get(target).no_int16
    wanted = set(tensors)
    index = {name: t for op in info.ops for t, name in zip(op.outputs, op.output_names)}
    made_by = {t: op for op in info.ops for t in op.outputs}
    for n in list(wanted):  # an activation the int8 graph fuses into its producer: the producer is the layer
        op = made_by.get(index.get(n))
        if op is not None and op.op in FUSED and op.inputs and op.inputs[0] in made_by:
            wanted.update(made_by[op.inputs[0]].output_names)
    reads = {index[n] for n in wanted if n in index}
    for op in info.ops:  # in graph order: a tensor reshaped or concatenated is read on through the result
        if op.op in CARRIERS and reads & set(op.inputs):
            reads |= set(op.outputs)
    names = [op.output_names[0] for op in info.ops if op.output_names and op.output_names[0] and op.op not in no_int16
             and op.op not in CONVERSIONS and (wanted & set(op.output_names) or reads & set(op.inputs))]
    if not names:
        return None
    # (?:...): a name in capitals (ONNX's `Y`) must not read as an op type
    return PrecisionPlan(rules=[Rule(match=f"(?:{re.escape(n)})", precision="int16") for n in dict.fromkeys(names)])
