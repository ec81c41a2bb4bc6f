"""edgecnn.bench: run a model and measure it; it never converts or compiles.

| module        | what it does                                                                          |
|---------------|---------------------------------------------------------------------------------------|
| `run.py`      | `bench_model`: inputs from --data, dispatch by device kind, one document ok or failed  |
| `local.py`    | the board runner in a subprocess on this machine                                      |
| `remote.py`   | the board runner over SSH (copies cached by hash, cancellable)                        |
| `edgetpu.py`  | Edge TPU hosts: compile once (convert's `edgetpu.compile_model`), run with the delegate |
| `multi.py`    | several devices at once, every result recorded as it arrives                          |
| `protocol.py` | the runner's command line and how its output is read                                  |
| `detection.py` | a detector's accuracy: the device's boxes scored on the host (COCO mAP, as eval)     |
"""
