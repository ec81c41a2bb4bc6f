"""Pipeline recipes: a small YAML file in `models/` that says what `edgecnn run` does.

```yaml
name: quick
data: digits                 # any data source (see edgecnn.data.sources)
models:
  - {name: lenet5, input_size: 32, epochs: 20}
  - {name: mobilenet_v2, input_size: 32, epochs: 10, options: {alpha: 0.35}}
quant: [float32, int8]       # precisions to convert to (later stages)
devices: [local-cpu]         # device profiles to bench on (later stages)
seed: 0
```
Unknown keys are rejected with their name, so a typo never silently runs the default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.errors import EdgecnnError

REPO_ROOT = Path(__file__).resolve().parent.parent
RECIPES_DIR = REPO_ROOT / "models"
QUICK = {"name": "quick", "data": "digits", "models": [{"name": "lenet5", "input_size": 32, "epochs": 20}],
         "quant": ["float32", "int8"], "devices": ["local-cpu"], "seed": 0}


@dataclass(frozen=True)
class ModelRecipe:
    name: str
    input_size: int | None = None
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-3
    options: dict = field(default_factory=dict)
    label: str = ""  # unique label in reports (default: name, plus options)

    @property
    def key(self) -> str:
        if self.label:
            return self.label
        opts = "_".join(f"{k}{v}" for k, v in sorted(self.options.items()))
        return self.name + (f"_{opts}" if opts else "")


@dataclass(frozen=True)
class Recipe:
    name: str
    data: str
    models: tuple[ModelRecipe, ...]
    quant: tuple[str, ...] = ("float32", "int8")
    devices: tuple[str, ...] = ("local-cpu",)
    seed: int = 0
    calibration: str | None = None  # default: the recipe's data set (its train split)
    calibration_samples: int = 200
    eval_samples: int | None = None
    max_train_samples: int | None = None
    bench_runs: int = 50


def _check_keys(d: dict, allowed: set, where: str) -> None:
    unknown = sorted(set(d) - allowed)
    if unknown:
        raise EdgecnnError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def recipe_from_dict(d: dict, source: str) -> Recipe:
    if not isinstance(d, dict):
        raise EdgecnnError(f"{source}: a recipe must be a YAML mapping")
    top = {f for f in Recipe.__dataclass_fields__}
    _check_keys(d, top, source)
    for req in ("name", "data", "models"):
        if req not in d:
            raise EdgecnnError(f"{source}: missing required key {req!r}")
    if not isinstance(d["models"], list) or not d["models"]:
        raise EdgecnnError(f"{source}: 'models' must be a non-empty list")
    from edgecnn.zoo import get_entry

    models = []
    for i, m in enumerate(d["models"]):
        m = {"name": m} if isinstance(m, str) else m
        if not isinstance(m, dict):
            raise EdgecnnError(f"{source}: models[{i}] must be a name or a mapping")
        _check_keys(m, set(ModelRecipe.__dataclass_fields__), f"{source}: models[{i}]")
        try:
            get_entry(m.get("name", ""))
        except EdgecnnError as exc:
            raise EdgecnnError(f"{source}: models[{i}]: {exc}") from None
        models.append(ModelRecipe(**m))
    keys = [m.key for m in models]
    if len(set(keys)) != len(keys):
        raise EdgecnnError(f"{source}: two models share the label {keys}; give them distinct 'label's")
    rest = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k != "models"}
    return Recipe(models=tuple(models), **rest)


def load_recipe(name_or_path: str | None) -> Recipe:
    """A recipe from a YAML path, or a bare name looked up in `models/` (`quick` is built in)."""
    import yaml

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
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise EdgecnnError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return recipe_from_dict(data, str(path))
