"""Quantizes one ONNX model to int8 with NNCF, in a process of its own (`int8.quantized`).

Usage: python -m streamdiar.core.int8_worker MODEL.onnx CALIBRATION.npy OUT.xml

NNCF's post-training quantization: each quantized layer's input range is the min-max over the
calibration input, weights per output channel (symmetric), and a bias correction for the
shift rounding causes. It writes OUT.xml and OUT.bin (OpenVINO's format).
"""

from __future__ import annotations

import logging
import sys

import nncf
import numpy as np
import openvino


def main(onnx_path: str, calibration_path: str, output_path: str) -> None:
    nncf.set_log_level(logging.ERROR)
    model = openvino.Core().read_model(onnx_path)
    calibration = np.load(calibration_path)  # the model's input
    quantized = nncf.quantize(model, nncf.Dataset([calibration]), subset_size=1)
    openvino.save_model(quantized, output_path)


if __name__ == "__main__":
    main(*sys.argv[1:])
