"""Pipeline recipes: a small YAML file in `models/` that says what `edgecnn run` does.

```yaml
name: quick
data: digits                 # any data source (see edgecnn.data.sources)
models:
  - lenet5                   # short form: a zoo name with the defaults below
  - {name: mobilenet_v2, input_size: 32, epochs: 10, options: {alpha: 0.35}}
quant: [float32, int8]       # precisions to convert to: float32, float16, dynamic, int8, int16x8
devices: [local-cpu]         # device profiles to bench on
seed: 0
```
Per model: `input_size` (int >= 1, default: the model's own), `epochs` (10), `batch_size` (64), `learning_rate`
(1e-3), `options` (zoo builder options), `label` (name in reports). Transfer learning (edgecnn/train/transfer.py):
`start_from` (a saved classifier, .keras/.h5, whose backbone gets a head of the data's classes; `name` is then only
the model's name in reports), `freeze`, `fine_tune_blocks`, `fine_tune_lr`, `fine_tune_epochs`, `cut_at`, and
`mean`/`std` for a file without a saved spec, as `edgecnn train`'s flags. `qat: true` (or `{epochs: 2,
learning_rate: 1e-4}`, the defaults): fine-tune the trained model through the int8 simulation (`edgecnn train --qat`)
and add its int8 rows (model `KEY-qat`) beside the post-training ones. Top level: `calibration` (default: the data's
train split), `calibration_samples` (200), `eval_samples`, `max_train_samples` (default: all), `bench_runs` (50).
The schema is strict (`edgecnn.schema`): a wrong type, a bad value or an unknown key is one error line naming the
file and the field, e.g. `models[0].epochs`, so a typo never silently runs the default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator

from edgecnn.convert.request import MODES
from edgecnn.errors import EdgecnnError
from edgecnn.schema import Strict, load_yaml, validate

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPES_DIR = REPO_ROOT / "models"
QUICK = {"name": "quick", "data": "digits", "models": [{"name": "lenet5", "input_size": 32, "epochs": 20}],
         "quant": ["float32", "int8"], "devices": ["local-cpu"], "seed": 0}
# PyYAML (YAML 1.1) reads `1e-3` as the string "1e-3"; such strings, and only they, are taken as numbers
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class QatRecipe(Strict):
    """`qat:` of a model: after its float training, fine-tune it through the int8 simulation (`edgecnn train --qat`);
    its int8 rows (model `KEY-qat`) sit beside the post-training ones, measured against the same float model."""

    epochs: int = Field(2, ge=1)
    learning_rate: float = Field(1e-4, gt=0, allow_inf_nan=False)

    @field_validator("learning_rate", mode="before")
    @classmethod
    def _yaml_float(cls, v):
        return float(v) if isinstance(v, str) and _NUMBER.fullmatch(v.strip()) else v


class ModelRecipe(Strict):
    """One model to train: a zoo name and its training settings."""

    name: str
    input_size: Optional[int] = Field(None, ge=1)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0, allow_inf_nan=False)
    options: dict = Field(default_factory=dict)
    label: str = ""  # unique label in reports (default: name, plus options)
    start_from: Optional[str] = None  # a saved classifier to start from (its backbone, a new head)
    freeze: Optional[bool] = None
    fine_tune_blocks: int = Field(0, ge=0)
    fine_tune_lr: Optional[float] = Field(None, gt=0, allow_inf_nan=False)
    fine_tune_epochs: Optional[int] = Field(None, ge=1)
    cut_at: Optional[str] = None
    mean: Optional[float] = None
    std: Optional[float] = Field(None, gt=0)
    qat: Optional[QatRecipe] = None  # `qat: true` or `qat: {epochs: 2, learning_rate: 1e-4}`

    @field_validator("qat", mode="before")
    @classmethod
    def _qat_flag(cls, v):
        return {} if v is True else (None if v is False else v)

    @field_validator("learning_rate", "fine_tune_lr", mode="before")
    @classmethod
    def _yaml_float(cls, v):
        return float(v) if isinstance(v, str) and _NUMBER.fullmatch(v.strip()) else v

    @property
    def key(self) -> str:
        if self.label:
            return self.label
        opts = "_".join(f"{k}{v}" for k, v in sorted(self.options.items()))
        return self.name + (f"_{opts}" if opts else "")


class Recipe(Strict):
    """A whole `edgecnn run`: data, models, precisions, devices. YAML lists are kept as tuples (immutable)."""

    name: str
    data: str
    models: tuple[ModelRecipe, ...] = Field(strict=False, min_length=1)
    quant: tuple[Literal[MODES], ...] = Field(("float32", "int8"), strict=False, min_length=1)
    devices: tuple[str, ...] = Field(("local-cpu",), strict=False, min_length=1)
    seed: int = 0
    calibration: Optional[str] = None  # default: the recipe's data set (its train split)
    calibration_samples: int = Field(200, ge=1)
    eval_samples: Optional[int] = Field(None, ge=1)
    max_train_samples: Optional[int] = Field(None, ge=1)
    bench_runs: int = Field(50, ge=1)

    @field_validator("models", mode="before")
    @classmethod
    def _short_form(cls, v):
        """`- lenet5` means `- {name: lenet5}`."""
        return [{"name": m} if isinstance(m, str) else m for m in v] if isinstance(v, list) else v


def recipe_from_dict(d: dict, source: str) -> Recipe:
    """The validated recipe, or one EdgecnnError line naming `source` and the field (or the model) at fault."""
    recipe = validate(Recipe, d, source)
    from edgecnn.zoo.registry import check_knobs

    for i, m in enumerate(recipe.models):
        try:
            if m.start_from is None:
                check_knobs(m.name, m.options)  # the name, and each option's type: a typo fails before anything runs
            elif not Path(m.start_from).is_file():
                raise EdgecnnError(f"start_from {m.start_from}: no such model file")
        except EdgecnnError as exc:
            raise EdgecnnError(f"{source}: models[{i}]: {exc}") from None
    for i, m in enumerate(recipe.models):
        if m.qat is not None and "int8" not in recipe.quant:
            raise EdgecnnError(f"{source}: models[{i}].qat: quantization-aware training is for int8; add int8 to "
                               f"quant (it has {', '.join(recipe.quant)})")
    keys = [m.key for m in recipe.models] + [f"{m.key}-qat" for m in recipe.models if m.qat is not None]
    if len(set(keys)) != len(keys):
        raise EdgecnnError(f"{source}: two models share the label {keys}; give them distinct 'label's")
    return recipe


def load_recipe(name_or_path: str | None) -> Recipe:
    """A recipe from a YAML path, or a bare name looked up in `models/` (`quick` is built in)."""
    if not name_or_path:
        name_or_path = "quick"
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = RECIPES_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            if name_or_path == "quick":
                return recipe_from_dict(QUICK, "built-in quick recipe")
            raise EdgecnnError(f"{name_or_path}: no such recipe (looked in {RECIPES_DIR})")
    if not path.is_file():
        raise EdgecnnError(f"{path}: recipe file does not exist")
    return recipe_from_dict(load_yaml(path), str(path))
