"""Training and fine-tuning: `train(TrainConfig, out)` (`trainer.py`), one run for every task; each task's fit is
the module its `Task.trainer` names (`classification.py`, `detection.py`)."""
