"""edgecnn.tflite (shared): the `.tflite` file itself, without TensorFlow.

| module        | what it holds                                                                         |
|---------------|---------------------------------------------------------------------------------------|
| `reader.py`   | the one flatbuffer reader (ai_edge_litert's schema): ops, tensors, IO, parse/serialize |
| `metadata.py` | the preprocessing spec and labels appended to a model as a zip                         |
| `quant.py`    | quantize inputs / dequantize outputs with a tensor's own parameters                    |
| `private.py`  | every private TensorFlow Lite converter API edgecnn uses (imports TensorFlow lazily)   |
"""
