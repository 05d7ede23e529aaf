"""Video clips in shards: an MP4 (WebM, AVI, MKV) member decoded with PyAV (FFmpeg), a GIF with Pillow.

Why PyAV: the public MSR-VTT archive holds H.264 MP4 files, which Pillow cannot read; PyAV's
wheels bundle FFmpeg, so no system library is needed. Why lazily: a 30 s clip is hundreds of
frames, while the model samples a handful, so :class:`VideoClip` keeps the compressed bytes,
counts the frames by demuxing (no decoding) and decodes only up to the last frame it needs.
Colour conversion is ours (:mod:`soho.data.yuv`), not FFmpeg's: its SIMD paths differ by CPU.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence

import av
import numpy as np
from PIL import Image

from soho.data import yuv

CONTAINERS = ("mp4", "webm", "avi", "mkv")  # members decoded by PyAV
CLIP_MEMBERS = (*CONTAINERS, "gif")  # every member that holds a clip
PLANAR_YUV = ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p")  # 8-bit: converted by us
ITU709, ITU601, LIMITED_RANGE, FULL_RANGE = 1, 5, 1, 2  # FFmpeg's AVColorSpace / AVColorRange codes


class DecodeError(ValueError):
    """A clip FFmpeg could not read. Why a ``ValueError``: shard checks and loaders treat every bad
    media file alike (one error naming the file), whichever library decoded it."""


@contextlib.contextmanager
def ffmpeg_errors(name: str) -> Iterator[None]:
    """PyAV's ``FFmpegError`` (not a ``ValueError``/``OSError``) as a :class:`DecodeError` naming the clip."""
    try:
        yield
    except av.error.FFmpegError as err:
        raise DecodeError(f"{name}: FFmpeg cannot decode it ({err})") from err


class VideoClip:
    """One encoded clip: its frame count and the frames at given indices (RGB PIL images)."""

    def __init__(self, data: bytes, name: str = "clip") -> None:
        self.data, self.name = data, name
        with ffmpeg_errors(name), av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise ValueError(f"{name}: no video stream")
            stream = container.streams.video[0]
            # the container's count can be missing (0) or approximate: count the packets instead
            self.n_frames = sum(1 for packet in container.demux(stream) if packet.size)
        if self.n_frames < 1:
            raise ValueError(f"{name}: no frames")

    def frames(self, indices: Sequence[int]) -> list[Image.Image]:
        """The frames at ``indices`` (any order, repeats allowed), decoded in one pass from the start."""
        wanted = sorted(set(indices))
        found: dict[int, Image.Image] = {}
        with ffmpeg_errors(self.name), av.open(io.BytesIO(self.data)) as container:
            for index, frame in enumerate(container.decode(video=0)):
                if index in wanted:
                    found[index] = frame_to_image(frame)
                if index >= wanted[-1]:
                    break
        if not found:
            raise ValueError(f"{self.name}: none of frames {wanted} of {self.n_frames} could be decoded")
        last = found[max(found)]  # a stream that decodes fewer frames than it has packets: the last stands in
        return [found.get(i, last) for i in indices]


def frame_to_image(frame: av.VideoFrame) -> Image.Image:
    """A decoded frame as RGB, converted in integers for 8-bit planar YUV (the same pixels on every CPU).

    The matrix follows the frame's tags as FFmpeg would: BT.709 when tagged so, else BT.601; full
    range for ``yuvj*`` or a full-range tag. Other formats (10-bit, RGB codecs) go through FFmpeg.
    """
    name = frame.format.name
    if name not in PLANAR_YUV:
        return frame.to_image().convert("RGB")
    planes = [  # each (rows, width): the plane's buffer less its line padding
        np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: plane.height, : plane.width]
        for plane in frame.planes
    ]
    full_range = name.startswith("yuvj") or frame.color_range == FULL_RANGE
    coefficients = yuv.BT709 if frame.colorspace == ITU709 else yuv.BT601
    matrix = yuv.Matrix(coefficients.kr, coefficients.kb, full_range)
    return Image.fromarray(yuv.yuv_to_rgb(*planes, matrix=matrix), "RGB")


def decode_member(key: str, data: bytes) -> VideoClip | Image.Image | None:
    """WebDataset decoder for clip members: a :class:`VideoClip`, a GIF's multi-frame PIL image, else None.

    Why the GIF branch: WebDataset's ``"pil"`` decoder converts every image to RGB, which keeps
    only a GIF's first frame, so a clip would reach frame sampling as one still image.
    """
    extension = key.rsplit(".", 1)[-1].lower()
    if extension in CONTAINERS:
        return VideoClip(data, key)
    if extension == "gif":
        clip = Image.open(io.BytesIO(data))
        clip.load()
        return clip
    return None


def segment_indices(total: int, count: int) -> list[int]:
    """TSN segment sampling: the middle frame of each of ``count`` equal segments of ``total`` frames."""
    return [min(total - 1, int((i + 0.5) * total / count)) for i in range(count)]


def sample_frames(clip: VideoClip | Image.Image, count: int) -> list[Image.Image]:
    """``count`` RGB frames spanning the whole clip (a short clip repeats frames)."""
    if isinstance(clip, VideoClip):
        return clip.frames(segment_indices(clip.n_frames, count))
    frames = []
    for index in segment_indices(getattr(clip, "n_frames", 1), count):
        clip.seek(index)
        frames.append(clip.convert("RGB"))
    return frames


# Measured on 100 generated clips (64x64, 8 frames, crf 18): with x264's defaults the same clips gave
# 5 different bitstreams in 20 encodings in one process (mb-tree), and its C/SSE2 code paths gave
# other bytes than its SSSE3-and-up ones for 49 clips and other decoded pixels for 26. One thread,
# ``mbtree=0`` and ``asm=0``: one bitstream in 40 encodings, in each process; ~1.4x the encoding time.
X264_REPRODUCIBLE = "mbtree=0:asm=0"


def encode_mp4(frames: Sequence[Image.Image], fps: int = 10) -> bytes:
    """H.264 MP4 bytes of RGB frames (yuv420p, as the public MSR-VTT files): the embedded generator's and the tests'.

    The YUV planes come from :func:`soho.data.yuv.rgb_to_yuv420` (BT.601, limited range, tagged so),
    not from FFmpeg's CPU-dependent conversion. x264 runs its plain C code with macroblock-tree rate
    control off (:data:`X264_REPRODUCIBLE`), so the bytes are the same on every CPU and in every run.
    """
    buffer = io.BytesIO()
    width, height = frames[0].size
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.colorspace, stream.codec_context.color_range = ITU601, LIMITED_RANGE  # tagged as made
        stream.options = {"crf": "18", "preset": "fast", "threads": "1", "x264-params": X264_REPRODUCIBLE}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(yuv.rgb_to_yuv420(np.asarray(image.convert("RGB"))), format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
