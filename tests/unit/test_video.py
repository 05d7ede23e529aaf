"""Video-text retrieval input: frame sampling from clips and video batches of the task pipeline."""

import io

import pytest
import torch
from PIL import Image

from soho.data import video


def _gif(colours: list[tuple[int, int, int]]) -> Image.Image:
    frames = [Image.new("RGB", (8, 8), c) for c in colours]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=40, loop=0)
    buffer.seek(0)
    return Image.open(buffer)


def test_segment_sampling_takes_each_segments_middle_frame():
    colours = [(i * 30, 0, 0) for i in range(8)]
    frames = video.sample_frames(_gif(colours), 4)
    assert [f.getpixel((0, 0))[0] for f in frames] == [30, 90, 150, 210]  # frames 1, 3, 5, 7
    assert all(f.mode == "RGB" for f in frames)


def test_short_clip_repeats_frames_and_a_still_image_is_one_frame():
    frames = video.sample_frames(_gif([(0, 0, 0), (200, 0, 0)]), 4)
    assert [f.getpixel((0, 0))[0] for f in frames] == [0, 0, 200, 200]
    still = video.sample_frames(Image.new("RGB", (8, 8), (5, 6, 7)), 3)
    assert len(still) == 3 and still[2].getpixel((0, 0)) == (5, 6, 7)


def test_video_task_batches_are_clips(tiny_shards):
    from soho.data.loaders import LoaderSpec
    from soho.models.fusion import load_tokenizer
    from soho.tasks import get

    spec = LoaderSpec(tiny_shards, load_tokenizer("minilm"), 32, 16, 4, 0, frames=5)
    batch = next(iter(get("retrieval_msrvtt").pipeline("train", spec)))
    assert batch["pixels"].shape[1:] == (5, 3, 32, 32)
    assert batch["input_ids"].shape[0] == batch["pixels"].shape[0] == len(batch["image_key"])
    assert torch.isfinite(batch["pixels"]).all()


def test_video_frames_take_their_own_size_and_images_keep_the_model_size(tiny_shards):
    from soho.data.loaders import LoaderSpec
    from soho.models.fusion import load_tokenizer
    from soho.tasks import get

    tokenizer = load_tokenizer("minilm")
    clips = next(
        iter(
            get("retrieval_msrvtt").pipeline(
                "train", LoaderSpec(tiny_shards, tokenizer, 32, 16, 2, 0, frames=2, video_size=24)
            )
        )
    )
    images = next(
        iter(get("retrieval_coco").pipeline("train", LoaderSpec(tiny_shards, tokenizer, 32, 16, 2, 0, video_size=24)))
    )
    assert clips["pixels"].shape[1:] == (2, 3, 24, 24)
    assert images["pixels"].shape[1:] == (3, 32, 32)


def test_clips_reach_frame_sampling_with_all_their_frames(tiny_shards):
    """WebDataset's "pil" decoder alone keeps a GIF's first frame: every sampled frame was the same."""
    from soho.data.loaders import LoaderSpec
    from soho.models.fusion import load_tokenizer
    from soho.tasks import get

    spec = LoaderSpec(tiny_shards, load_tokenizer("minilm"), 32, 16, 4, 0, frames=3)
    pixels = next(iter(get("retrieval_msrvtt").pipeline("train", spec)))["pixels"]  # (B, T, 3, H, W)
    moved = (pixels[:, 0] - pixels[:, -1]).abs().flatten(1).amax(1)  # (B,): first vs last frame
    assert (moved > 0.1).all()


# Issue 16 (h): MSR-VTT comes as H.264 MP4; PyAV decodes it, lazily, up to the last frame the sampling needs.


def _colours(count: int) -> list[Image.Image]:
    return [Image.new("RGB", (32, 32), (min(255, 20 + i * 40), 40, 200 - i * 20)) for i in range(count)]


def test_an_mp4_clip_is_counted_and_sampled_like_a_gif():
    data = video.encode_mp4(_colours(6))
    assert data[4:8] == b"ftyp"  # an MP4 container
    clip = video.VideoClip(data)
    assert clip.n_frames == 6
    frames = video.sample_frames(clip, 3)  # segments of 2: frames 1, 3, 5
    reds = [f.getpixel((16, 16))[0] for f in frames]
    assert all(abs(red - (20 + i * 40)) <= 6 for red, i in zip(reds, (1, 3, 5), strict=True)), reds  # lossy codec
    assert all(f.mode == "RGB" and f.size == (32, 32) for f in frames)
    again = clip.frames([5, 1, 5])  # any order, repeats allowed: one decoding pass
    assert [f.tobytes() for f in again] == [frames[2].tobytes(), frames[0].tobytes(), frames[2].tobytes()]


def test_an_mp4_member_of_a_shard_decodes_to_a_clip_and_a_broken_one_is_a_bad_file():
    from soho.data import shards

    data = video.encode_mp4(_colours(4))
    assert isinstance(video.decode_member("video7.mp4", data), video.VideoClip)
    assert video.decode_member("video7.jpg", b"x") is None  # left to the image decoder
    shards.check_media("mp4", data)
    for broken in (data[: len(data) // 3], b"\x00\x00\x00\x18ftypmp42" + bytes(200), b"not a video at all"):
        with pytest.raises(ValueError, match=r"a \.mp4 file"):  # a bad file shard reports, naming it
            shards.check_media("mp4", broken)


# The same pixels on every CPU: colour conversion in integers, not in FFmpeg's SIMD-dependent swscale.

CPU_PROBE = """
import ctypes, glob, hashlib, os, sys
import av, numpy as np
from PIL import Image
if sys.argv[1] == "plain":  # FFmpeg without SIMD, as on a CPU it has no fast path for
    avutil = glob.glob(os.path.join(os.path.dirname(av.__file__), "..", "av.libs", "libavutil-*.so*"))
    ctypes.CDLL(avutil[0]).av_force_cpu_flags(ctypes.c_int(0))
from soho.data import video
yy, xx = np.mgrid[0:48, 0:64]
frames = [Image.fromarray(np.stack([(xx * 4 + k * 9) % 256, (yy * 5 + k) % 256, (xx + 3 * yy) % 256], -1).astype(np.uint8))
          for k in range(5)]
data = video.encode_mp4(frames)
decoded = video.VideoClip(data).frames(range(5))
print(hashlib.sha256(data).hexdigest(), hashlib.sha256(b"".join(f.tobytes() for f in decoded)).hexdigest())
"""


def test_clips_encode_and_decode_to_the_same_bytes_and_pixels_whatever_simd_ffmpeg_uses():
    """Bytes and pixels: x264 runs without SIMD and without mb-tree (``video.X264_REPRODUCIBLE``),
    so FFmpeg's SIMD is the one thing left that a CPU could change."""
    import subprocess
    import sys

    def probe(mode: str) -> str:
        return subprocess.run(
            [sys.executable, "-c", CPU_PROBE, mode], check=True, capture_output=True, text=True
        ).stdout

    assert probe("plain") == probe("simd")


def test_the_same_clips_encode_to_the_same_bytes_every_time():
    """With x264's default mb-tree, 20 encodings of the same 30 generated clips gave 5 bitstreams."""
    import random

    from soho.config import load_params
    from soho.data.embedded import clips

    data = load_params().data.model_copy(update={"clip_format": "mp4"})

    def encode_all() -> bytes:
        rng = random.Random(7)
        return b"".join(clips.render_clip(rng, data)[0] for _ in range(30))

    assert len({encode_all() for _ in range(16)}) == 1


def test_the_integer_matrix_gives_bt601_and_bt709_codes():
    import numpy as np

    from soho.data import yuv

    def codes(rgb: tuple[int, int, int], matrix: yuv.Matrix) -> list[int]:
        planes = yuv.rgb_to_yuv420(np.full((2, 2, 3), rgb, np.uint8), matrix)  # (3, 2): Y Y / Y Y / Cb Cr
        return [int(planes[0, 0]), int(planes[2, 0]), int(planes[2, 1])]

    assert codes((255, 255, 255), yuv.BT601) == [235, 128, 128]
    assert codes((0, 0, 0), yuv.BT601) == [16, 128, 128]
    assert codes((255, 0, 0), yuv.BT601) == [81, 90, 240]  # BT.601's red
    assert codes((255, 0, 0), yuv.BT709) == [63, 102, 240]  # BT.709's red
    full = yuv.Matrix(yuv.BT601.kr, yuv.BT601.kb, full_range=True)
    assert codes((255, 0, 0), full) == [76, 85, 255]
    red = [np.array([[y]], np.uint8) for y in (81, 90, 240)]
    back = yuv.yuv_to_rgb(*red).ravel().astype(int)
    assert np.abs(back - [255, 0, 0]).max() <= 1, back  # the codes are rounded: within one level
    other = yuv.yuv_to_rgb(*red, matrix=yuv.BT709).ravel().astype(int)
    assert np.abs(other - [255, 0, 0]).max() > 10, other  # read with the wrong matrix: another colour


def test_a_padded_odd_sized_frame_converts_as_closely_as_ffmpeg_does():
    import av
    import numpy as np

    yy, xx = np.mgrid[0:21, 0:30]
    rgb = np.stack([xx * 2, 40 + yy * 3, 250 - xx - yy * 2], -1).astype(np.uint8)  # (21, 30, 3), smooth as video is
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")  # odd height, padded lines
    assert frame.planes[1].line_size > frame.planes[1].width and frame.height % 2
    ours = np.asarray(video.frame_to_image(frame), np.int64)
    theirs = np.asarray(frame.to_image(), np.int64)
    assert ours.shape == theirs.shape == rgb.shape
    error, ffmpeg_error = np.abs(ours - rgb).mean(), np.abs(theirs - rgb).mean()
    assert error < 2 and error <= ffmpeg_error + 0.5, (error, ffmpeg_error)
