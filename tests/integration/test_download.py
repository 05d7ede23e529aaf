import hashlib
import io
import os
import tarfile
import zipfile

import pytest

from soho.data import download
from soho.data.download import DownloadError, RetryPolicy

from ..support.http_server import FixtureServer

pytestmark = pytest.mark.network
FAST = RetryPolicy(retries=3, backoff_s=0.01, max_backoff_s=0.05, timeout_s=5, chunk_bytes=1024)
BODY = os.urandom(50_000)
SHA = hashlib.sha256(BODY).hexdigest()


@pytest.fixture
def server():
    with FixtureServer({"/data.bin": BODY}) as srv:
        yield srv


def test_interrupted_transfer_resumes_with_range(server, tmp_path):
    server.cut_after["/data.bin"] = 20_000
    dest = download.download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, len(BODY), FAST, progress=False)
    assert dest.read_bytes() == BODY
    ranges = [r for p, r in server.requests if p == "/data.bin"]
    assert ranges[0] is None and ranges[1] is not None and int(ranges[1][6:-1]) > 10_000
    assert not (tmp_path / "data.bin.part").exists()


def test_part_left_by_an_earlier_run_is_resumed(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(BODY[:30_000])
    download.download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, None, FAST, progress=False)
    assert (tmp_path / "data.bin").read_bytes() == BODY
    assert server.requests == [("/data.bin", "bytes=30000-")]


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/data\.bin: sha256 mismatch: expected 0{64}"):
        download.download(f"{server.url}/data.bin", tmp_path / "data.bin", "0" * 64, None, FAST, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_404_fails_at_once_and_500_is_retried(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/nothing: HTTP 404"):
        download.download(f"{server.url}/nothing", tmp_path / "x", policy=FAST, progress=False)
    assert len(server.requests) == 1
    server.fail["/data.bin"] = [500, 503]
    download.download(f"{server.url}/data.bin", tmp_path / "ok.bin", SHA, policy=FAST, progress=False)
    assert (tmp_path / "ok.bin").read_bytes() == BODY
    server.fail["/data.bin"] = [500] * 10
    with pytest.raises(DownloadError, match=r"giving up after 4 attempts: HTTP 500"):
        download.download(f"{server.url}/data.bin", tmp_path / "bad.bin", policy=FAST, progress=False)


def test_backoff_is_bounded():
    policy = RetryPolicy(backoff_s=1, max_backoff_s=5)
    assert [policy.delay(a) for a in range(5)] == [1, 2, 4, 5, 5]


def make_tar(tmp_path, *members: tarfile.TarInfo, data: bytes = b"x"):
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for member in members:
            tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def tar_entry(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, 1 if kind == tarfile.REGTYPE else 0
    return info


@pytest.mark.parametrize(
    "member, message",
    [
        (tar_entry("../evil.txt"), "leaves"),
        (tar_entry("/etc/evil.txt"), "absolute path"),
        (tar_entry("ok/link", tarfile.SYMTYPE, "../../outside"), "refusing link"),
        (tar_entry("ok/abs", tarfile.SYMTYPE, "/etc/passwd"), "refusing link"),
    ],
)
def test_unsafe_tar_is_refused(tmp_path, member, message):
    archive = make_tar(tmp_path, tar_entry("ok/fine.txt"), member)
    with pytest.raises(DownloadError, match=message):
        download.extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "ok" / "fine.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_safe_archives_extract_and_members_are_placed(tmp_path):
    archive = make_tar(tmp_path, tar_entry("ok/fine.txt"), tar_entry("ok/link", tarfile.SYMTYPE, "fine.txt"))
    download.extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "ok" / "fine.txt").read_bytes() == b"x"
    zipped = tmp_path / "c.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("dataset_coco.json", "{}")
        z.writestr("dataset_flickr8k.json", "{}")
    download.extract(zipped, tmp_path / "raw", {"dataset_coco.json": "coco/dataset_coco.json"})
    assert (tmp_path / "raw" / "coco" / "dataset_coco.json").read_text() == "{}"
    assert not (tmp_path / "raw" / "dataset_flickr8k.json").exists()


def test_zip_traversal_is_refused(tmp_path):
    zipped = tmp_path / "evil.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("../../evil.txt", "x")
    with pytest.raises(DownloadError, match=r"evil\.zip: refusing path '\.\./\.\./evil\.txt'"):
        download.extract(zipped, tmp_path / "out")


def test_fetch_all_from_manifest_with_manual_source(server, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("v2_Questions_Val_mscoco.json", "{}")
    server.files["/q.zip"] = buffer.getvalue()
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        f"sources:\n  - {{name: q, url: '{server.url}/q.zip', filename: q.zip, extract_to: vqa}}\n"
        f"  - {{name: plain, url: '{server.url}/data.bin', filename: data.bin, sha256: '{SHA}', place_as: nlvr2/train.json}}\n"
    )
    raw = tmp_path / "raw"
    record = download.fetch_all(download.load_manifest(manifest), raw, FAST, progress=False)
    assert (raw / "vqa" / "v2_Questions_Val_mscoco.json").exists()
    assert (raw / "nlvr2" / "train.json").read_bytes() == BODY and record["plain"]["sha256"] == SHA
    manifest.write_text("sources:\n  - {name: imgs, url: x, filename: imgs.tar.gz, manual: 'fill in the form'}\n")
    with pytest.raises(DownloadError, match=r"imgs: .*imgs\.tar\.gz is missing .*fill in the form"):
        download.fetch_all(download.load_manifest(manifest), raw, FAST, progress=False)
    manifest.write_text("sources:\n  - {name: x, link: y}\n")
    with pytest.raises(DownloadError, match=r"sources\[0\]"):
        download.load_manifest(manifest)


def test_paper_manifest_parses():
    from ..conftest import REPO

    sources = download.load_manifest(REPO / "soho/data/manifests/paper.yaml")
    assert {"coco-train2014", "karpathy-splits", "vqa-annotations-val", "msrvtt"} <= {s.name for s in sources}


# Issue 15: an interrupted or corrupt archive is one line naming it, not an EOFError traceback.


def archive_of(tmp_path, kind: str):
    """An archive of 200 KB of random bytes (so that half of it is cut mid-member)."""
    payload = os.urandom(200_000)
    if kind == "zip":
        path = tmp_path / "images.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("images/a.bin", payload)
        return path
    path = tmp_path / f"images.tar.{kind}"
    with tarfile.open(path, f"w:{kind}") as tar:
        info = tarfile.TarInfo("images/a.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return path


def cut_in_half(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_member_bytes(path):
    data = bytearray(path.read_bytes())
    data[1000:1100] = bytes(255 - b for b in data[1000:1100])  # inside the member: its CRC no longer matches
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    ("kind", "damage", "reason"),
    [
        ("gz", cut_in_half, r"cut short or corrupt archive \(EOFError: Compressed file ended"),
        ("bz2", cut_in_half, r"neither a zip nor a tar archive \(or cut short\)"),  # one 900 kB block, all lost
        ("xz", cut_in_half, r"cut short or corrupt archive \(EOFError"),
        ("zip", flip_member_bytes, r"cut short or corrupt archive \((BadZipFile: Bad CRC-32|error: Error -3)"),
        ("zip", cut_in_half, r"neither a zip nor a tar archive \(or cut short\)"),
    ],
    ids=["tar.gz-cut", "tar.bz2-cut", "tar.xz-cut", "zip-corrupt", "zip-cut"],
)
def test_a_cut_or_corrupt_archive_is_one_line_naming_it(tmp_path, kind, damage, reason):
    archive = archive_of(tmp_path, kind)
    download.extract(archive, tmp_path / "whole")
    damage(archive)
    with pytest.raises(DownloadError, match=reason) as err:
        download.extract(archive, tmp_path / "out")
    message = str(err.value)
    assert message.startswith(f"{archive}: ") and message.endswith("delete it and run the stage again")
    assert "\n" not in message
