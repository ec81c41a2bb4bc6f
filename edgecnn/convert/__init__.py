"""Keras -> .tflite conversion (filled in by the convert stage)."""
