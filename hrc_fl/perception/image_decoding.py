"""Validation and decoding of raw images as they arrive in ``sensor_msgs/Image`` (ROS-free).

Every way a frame can be malformed raises a specific :class:`ImageError` subclass with a message that
names the problem, so a node can log one clear line and move on to the next frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: encoding -> (channels, bytes per channel); the encodings MediaPipe input can be made from.
ENCODINGS: dict[str, tuple[int, int]] = {
    "rgb8": (3, 1), "bgr8": (3, 1), "rgba8": (4, 1), "bgra8": (4, 1), "mono8": (1, 1),
}


class ImageError(ValueError):
    """A frame that cannot be used; ``key`` names the kind of problem (for diagnostics counters)."""

    key = "bad_image"


class UnsupportedEncodingError(ImageError):
    key = "unsupported_encoding"


class EmptyImageError(ImageError):
    key = "empty_image"


class ImageTooLargeError(ImageError):
    key = "image_too_large"


class BadStepError(ImageError):
    key = "bad_step"


class ImageDataSizeError(ImageError):
    key = "bad_image_data"


@dataclass(frozen=True)
class ImageLimits:
    """Bounds on accepted frames: a 4K frame is the largest a workstation camera should send."""

    max_width_px: int = 4096
    max_height_px: int = 4096

    def __post_init__(self) -> None:
        if self.max_width_px < 1 or self.max_height_px < 1:
            raise ValueError("image limits must be positive")


#: depth encoding -> (dtype of one pixel little-endian, metres per unit): 32FC1 metres, 16UC1/mono16 millimetres.
DEPTH_ENCODINGS: dict[str, tuple[str, float]] = {
    "32FC1": ("<f4", 1.0), "16UC1": ("<u2", 0.001), "mono16": ("<u2", 0.001),
}


def _checked_rows(*, height: int, width: int, encoding: str, step: int, data: bytes | bytearray | memoryview
                  | np.ndarray, pixel_bytes: int, limits: ImageLimits) -> np.ndarray:
    """The (height, width * pixel_bytes) uint8 rows of a raw image after the checks every frame gets:
    zero size, size beyond ``limits``, a ``step`` shorter than a row, data not ``step * height`` bytes."""
    if height <= 0 or width <= 0:
        raise EmptyImageError(f"zero-size image {width}x{height}")
    if width > limits.max_width_px or height > limits.max_height_px:
        raise ImageTooLargeError(
            f"image {width}x{height} exceeds the limit {limits.max_width_px}x{limits.max_height_px}")
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise BadStepError(
            f"step {step} is smaller than one {encoding} row of {width} px ({row_bytes} bytes)")
    buffer = np.frombuffer(memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data,
                           dtype=np.uint8)
    expected = step * height
    if buffer.size != expected:
        raise ImageDataSizeError(
            f"image data has {buffer.size} bytes, expected step*height = {step}*{height} = {expected}")
    return buffer.reshape(height, step)[:, :row_bytes]


def decode_raw_image(*, height: int, width: int, encoding: str, step: int, data: bytes | bytearray
                     | memoryview | np.ndarray, is_bigendian: int = 0,
                     limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Check a raw image and return it as a contiguous RGB ``uint8`` array of shape (height, width, 3).

    Raises an :class:`ImageError` subclass for an unsupported encoding, zero size, a size beyond
    ``limits``, a ``step`` smaller than one row, or a data buffer whose
    length does not match ``step * height`` (truncated or garbage payload).
    """
    del is_bigendian  # 8-bit encodings only: byte order does not matter
    if encoding not in ENCODINGS:
        raise UnsupportedEncodingError(
            f"unsupported image encoding {encoding!r} (supported: {', '.join(ENCODINGS)})")
    channels, depth = ENCODINGS[encoding]
    rows = _checked_rows(height=height, width=width, encoding=encoding, step=step, data=data,
                         pixel_bytes=channels * depth, limits=limits)
    pixels = rows.reshape(height, width, channels) if channels > 1 else rows.reshape(height, width)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    code = {"bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB, "bgra8": cv2.COLOR_BGRA2RGB,
            "mono8": cv2.COLOR_GRAY2RGB}[encoding]
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def decode_depth_image(*, height: int, width: int, encoding: str, step: int, data: bytes | bytearray
                       | memoryview | np.ndarray, is_bigendian: int = 0,
                       limits: ImageLimits = ImageLimits()) -> np.ndarray:
    """Check a raw depth image (registered to the colour image) and return it as float32 metres,
    shape (height, width); 0 and non-finite values are kept (they mean "no depth" to the readers).

    The same checks and :class:`ImageError` subclasses as :func:`decode_raw_image`, for the depth
    encodings of :data:`DEPTH_ENCODINGS`.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise UnsupportedEncodingError(
            f"unsupported depth encoding {encoding!r} (supported: {', '.join(DEPTH_ENCODINGS)})")
    dtype_name, metres_per_unit = DEPTH_ENCODINGS[encoding]
    dtype = np.dtype(dtype_name).newbyteorder(">" if is_bigendian else "<")
    rows = _checked_rows(height=height, width=width, encoding=encoding, step=step, data=data,
                         pixel_bytes=dtype.itemsize, limits=limits)
    return np.ascontiguousarray(rows).view(dtype).reshape(height, width).astype(np.float32) * metres_per_unit
