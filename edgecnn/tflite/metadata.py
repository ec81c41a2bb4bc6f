"""What a device needs to use a .tflite without side files: the preprocessing spec and the labels.

They ride in an associated-file zip appended to the flatbuffer — the way TFLite's own published models carry
`labels.txt`. The interpreter ignores bytes after the flatbuffer; `zipfile` finds the zip from its end.
This module imports only the standard library and numpy-free edgecnn code, so readers on the host stay light.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

from edgecnn.data.spec import PreprocessSpec

SPEC_ENTRY = "edgecnn_preprocessing.json"
LABELS_ENTRY = "labels.txt"


def embed(tflite: bytes, spec: PreprocessSpec) -> bytes:
    """Return `tflite` with a zip holding the spec (JSON) and labels (one per line) appended."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(SPEC_ENTRY, spec.to_json())
        if spec.labels:
            zf.writestr(LABELS_ENTRY, "\n".join(spec.labels) + "\n")
    return strip(tflite) + buf.getvalue()


def _zip(data: bytes) -> zipfile.ZipFile | None:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        return None


def strip(tflite: bytes) -> bytes:
    """The flatbuffer alone, without any appended edgecnn zip (so embedding twice does not stack zips)."""
    zf = _zip(tflite)
    if zf is None or SPEC_ENTRY not in zf.namelist():
        return tflite
    zip_start = _find_zip_start(tflite)
    return tflite[:zip_start] if zip_start is not None else tflite


def _find_zip_start(data: bytes) -> int | None:
    sig = b"PK\x03\x04"
    idx = data.rfind(b"PK\x05\x06")  # end of central directory
    if idx < 0:
        return None
    cd_size = int.from_bytes(data[idx + 12 : idx + 16], "little")
    cd_offset = int.from_bytes(data[idx + 16 : idx + 20], "little")
    cd_start = idx - cd_size
    zip_start = cd_start - cd_offset
    if zip_start < 0 or data[zip_start : zip_start + 4] != sig:
        return None
    return zip_start


def read_spec(model: str | Path | bytes) -> PreprocessSpec | None:
    """The spec embedded in a .tflite (path or bytes), or None for a foreign model without one."""
    data = Path(model).read_bytes() if not isinstance(model, (bytes, bytearray)) else bytes(model)
    zf = _zip(data)
    if zf is None or SPEC_ENTRY not in zf.namelist():
        return None
    return PreprocessSpec.from_json(zf.read(SPEC_ENTRY).decode("utf-8"), source=str(model)[:200])
