"""RGB <-> Y'CbCr in integer arithmetic, so that a clip's pixels are the same on every CPU.

Why not FFmpeg's swscale (``VideoFrame.from_image``, ``to_image``): it picks SIMD code paths by
CPU and they round differently. Measured with PyAV 18 on one Xeon, forcing FFmpeg's CPU flags to 0
changed the YUV of ``from_image`` and the RGB of ``to_image`` of the same decoded frames, while
H.264 decoding itself (bit-exact by the standard) gave the same planes. A short CPU training run
amplifies such a difference like a new seed, so the embedded MSR-VTT clips differed between an
AVX-512 and an AVX2 machine. Here the colour matrix is fixed point and the chroma is subsampled by
2x2 means and upsampled by repetition: integers only, the same bytes everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHIFT = 16  # fixed-point fraction bits of the matrix coefficients
HALF = 1 << (SHIFT - 1)


@dataclass(frozen=True)
class Matrix:
    """Y'CbCr coefficients (ITU-R BT.601 or BT.709) and the code range (limited 16-235/240 or full 0-255)."""

    kr: float
    kb: float
    full_range: bool

    @property
    def luma_scale(self) -> float:
        return 255.0 if self.full_range else 219.0

    @property
    def chroma_scale(self) -> float:
        return 255.0 if self.full_range else 224.0

    @property
    def luma_offset(self) -> int:
        return 0 if self.full_range else 16


BT601 = Matrix(0.299, 0.114, full_range=False)  # FFmpeg's default for an untagged SD stream
BT709 = Matrix(0.2126, 0.0722, full_range=False)


def _fixed(value: float) -> int:
    return round(value * (1 << SHIFT))


def rgb_to_yuv420(rgb: np.ndarray, matrix: Matrix = BT601) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB (H, W even) -> ``(H * 3 // 2, W)`` uint8 planar Y, Cb, Cr as PyAV's ``yuv420p``."""
    height, width, _ = rgb.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
    kr, kb = matrix.kr, matrix.kb
    kg = 1.0 - kr - kb
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))  # (H, W) each
    luma_gain = matrix.luma_scale / 255.0
    y = (_fixed(kr * luma_gain) * r + _fixed(kg * luma_gain) * g + _fixed(kb * luma_gain) * b + HALF) >> SHIFT
    y = y + matrix.luma_offset
    cb_gain = matrix.chroma_scale / 255.0 / (2.0 * (1.0 - kb))
    cr_gain = matrix.chroma_scale / 255.0 / (2.0 * (1.0 - kr))
    # Cb, Cr before rounding (fixed point), at full resolution: (H, W)
    cb = _fixed(-kr * cb_gain) * r + _fixed(-kg * cb_gain) * g + _fixed((1.0 - kb) * cb_gain) * b
    cr = _fixed((1.0 - kr) * cr_gain) * r + _fixed(-kg * cr_gain) * g + _fixed(-kb * cr_gain) * b

    def subsample(plane: np.ndarray) -> np.ndarray:  # (H, W) -> (H/2, W/2): the mean of each 2x2 block
        blocks = plane.reshape(height // 2, 2, width // 2, 2).sum(axis=(1, 3))
        return ((blocks + 2 * (1 << SHIFT)) >> (SHIFT + 2)) + 128

    planes = [np.clip(p, 0, 255).astype(np.uint8) for p in (y, subsample(cb), subsample(cr))]
    chroma = np.concatenate([planes[1].reshape(-1), planes[2].reshape(-1)]).reshape(height // 2, width)
    return np.concatenate([planes[0], chroma])  # (H * 3 // 2, W)


def yuv_to_rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray, matrix: Matrix = BT601) -> np.ndarray:
    """uint8 planes (luma ``(H, W)``, chroma subsampled by any whole factor) -> ``(H, W, 3)`` uint8 RGB."""
    height, width = y.shape
    step_y, step_x = -(-height // cb.shape[0]), -(-width // cb.shape[1])  # 2, 2 for 4:2:0; 1, 2 for 4:2:2

    def upsample(plane: np.ndarray) -> np.ndarray:  # (h, w) -> (H, W), each chroma sample repeated
        return plane.repeat(step_y, axis=0).repeat(step_x, axis=1)[:height, :width].astype(np.int64) - 128

    luma = y.astype(np.int64) - matrix.luma_offset  # (H, W)
    pb, pr = upsample(cb), upsample(cr)
    kr, kb = matrix.kr, matrix.kb
    kg = 1.0 - kr - kb
    gain_y = 255.0 / matrix.luma_scale
    gain_c = 255.0 / matrix.chroma_scale
    r = _fixed(gain_y) * luma + _fixed(2.0 * (1.0 - kr) * gain_c) * pr
    b = _fixed(gain_y) * luma + _fixed(2.0 * (1.0 - kb) * gain_c) * pb
    g = (
        _fixed(gain_y) * luma
        - _fixed(2.0 * (1.0 - kb) * kb / kg * gain_c) * pb
        - _fixed(2.0 * (1.0 - kr) * kr / kg * gain_c) * pr
    )
    rgb = np.stack([r, g, b], axis=-1)  # (H, W, 3), fixed point
    return np.clip((rgb + HALF) >> SHIFT, 0, 255).astype(np.uint8)
