"""edgecnn.deploy: put a converted model where it runs.

| command                                        | module       | what it does                                        |
|------------------------------------------------|--------------|-----------------------------------------------------|
| `edgecnn flash MODEL --device D [--smoke]`     | `flash.py`   | atomic install on an SSH board, previous kept       |
| `edgecnn flash --rollback --device D --name N` | `flash.py`   | put the previous version back                       |
| `edgecnn deployed --device D`                  | `flash.py`   | what is installed, hashes computed on the board     |
| `edgecnn export-c MODEL -o model_data`         | `export_c.py`| aligned C array + header for TFLM / ESP-IDF / Zephyr|
| `edgecnn mcu-check MODEL --device cortex-m4-256k` | `mcu.py`  | TFLM on the host: arena, flash, missing ops, top-1  |
"""
