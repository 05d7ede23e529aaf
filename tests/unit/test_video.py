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
