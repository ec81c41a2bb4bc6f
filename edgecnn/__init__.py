"""edgecnn: compact CNNs from Keras to edge devices.

Stages, left to right (a stage never imports one to its right):
zoo -> data -> train -> convert -> evaluate -> board/bench -> deploy -> store -> report.
"""

__version__ = "0.1.0"
