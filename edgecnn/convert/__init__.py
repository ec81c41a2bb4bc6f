"""edgecnn.convert: Keras (or a float .tflite) -> .tflite.

| mode (`--quant`) | what the output holds                              | runs on                               |
|------------------|----------------------------------------------------|---------------------------------------|
| float32          | float weights and activations                      | every CPU delegate, GPU               |
| float16          | float16 weights, float compute                     | GPU delegates; CPUs dequantize        |
| dynamic          | int8 weights, float activations                    | CPUs                                  |
| int8             | int8 weights (per channel) and activations          | CPUs (XNNPACK), Edge TPU, NPUs, MCUs  |
| int16x8          | int16 activations, int8 weights                    | CPUs (reference kernels), some NPUs   |

Modules: `frontend.py` (Keras -> float flatbuffer, batch 1), `tflite_source.py` (a float .tflite as the source:
checks, batch 1), `float16_weights.py` (float16 weights on a flatbuffer, both ways), `calibrate.py` /
`fast_calibrator.py` (ranges), `converter.py` (modes, integer-only check, load check, atomic write, report),
`edgetpu.py` (Edge TPU preflight and compiler), `request.py` (the conversion request as data).
"""
