import hashlib
import io
import os
import tarfile
import zipfile

import pytest

from soho.data import archives, download
from soho.data.archives import ArchiveError
from soho.data.download import DownloadError, RetryPolicy

from ..support.http_server import FixtureServer
from ..support.paper_archives import tar_gz_bytes

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
    verified = download.download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, len(BODY), FAST, progress=False)
    assert (tmp_path / "data.bin").read_bytes() == BODY and verified.verified_by == "sha256 pin"
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
    with pytest.raises(ArchiveError, match=message):
        archives.extract(archive, tmp_path / "out")
    assert not (tmp_path / "out" / "ok" / "fine.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_safe_archives_extract_and_members_are_placed(tmp_path):
    archive = make_tar(tmp_path, tar_entry("ok/fine.txt"), tar_entry("ok/link", tarfile.SYMTYPE, "fine.txt"))
    archives.extract(archive, tmp_path / "out")
    assert (tmp_path / "out" / "ok" / "fine.txt").read_bytes() == b"x"
    zipped = tmp_path / "c.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("dataset_coco.json", "{}")
        z.writestr("dataset_flickr8k.json", "{}")
    archives.extract(zipped, tmp_path / "raw", {"dataset_coco.json": "coco/dataset_coco.json"})
    assert (tmp_path / "raw" / "coco" / "dataset_coco.json").read_text() == "{}"
    assert not (tmp_path / "raw" / "dataset_flickr8k.json").exists()


def test_zip_traversal_is_refused(tmp_path):
    zipped = tmp_path / "evil.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("../../evil.txt", "x")
    with pytest.raises(ArchiveError, match=r"evil\.zip: refusing path '\.\./\.\./evil\.txt'"):
        archives.extract(zipped, tmp_path / "out")


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


def test_nlvr2_per_split_image_archives_unpack_where_the_reader_finds_every_image(tmp_path):
    """NLVR2's images come as train_img.zip (images/train/<directory>/), dev_img.zip (dev/) and
    test1_img.zip (test1/) (issue 16 i): the paper manifest's three manual sources, placed by hand."""
    import json

    from soho.data import catalog

    from ..conftest import REPO

    layouts = {
        "train_img.zip": ("images/train/7/", "train", {"directory": 7}),
        "dev_img.zip": ("dev/", "dev", {}),
        "test1_img.zip": ("test1/", "test1", {}),
    }
    raw = tmp_path / "raw"
    (raw / "_downloads").mkdir(parents=True)
    for filename, (prefix, split, extra) in layouts.items():
        with zipfile.ZipFile(raw / "_downloads" / filename, "w") as z:
            for side in (0, 1):
                z.writestr(f"{prefix}{split}-1-0-img{side}.png", b"png")
        row = {"identifier": f"{split}-1-0-0", "sentence": "two dogs", "label": "True"} | extra
        (raw / "nlvr2").mkdir(exist_ok=True)
        (raw / "nlvr2" / f"{split}.json").write_text(json.dumps(row) + "\n")
    sources = [
        s for s in download.load_manifest(REPO / "soho/data/manifests/paper.yaml") if s.name.startswith("nlvr2-images")
    ]
    assert sorted(s.filename for s in sources) == sorted(layouts)
    download.fetch_all(sources, raw, FAST, progress=False)
    splits = catalog.nlvr2(raw)
    for split in ("train", "dev", "test1"):
        [sample] = splits[split]
        assert all(path.is_file() for path in sample.media.values()), (split, sample.media)


def test_paper_manifest_parses():
    from ..conftest import REPO

    sources = download.load_manifest(REPO / "soho/data/manifests/paper.yaml")
    assert {"coco-train2014", "karpathy-splits", "vqa-annotations-val", "msrvtt"} <= {s.name for s in sources}


# Issue 15, failure 8: a file is trusted only once verified complete; resume only from the right offset.


def fetch(server, tmp_path, path="/data.bin", **pins):
    return download.download(f"{server.url}{path}", tmp_path / "data.bin", policy=FAST, progress=False, **pins)


def test_cut_without_content_length_is_refused_when_nothing_else_can_tell(server, tmp_path):
    server.no_length.add("/data.bin")
    server.cut_after["/data.bin"] = 20_000
    with pytest.raises(DownloadError, match=r"/data\.bin: cannot tell whether the 20000-byte download is complete"):
        fetch(server, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cut_without_content_length_resumes_to_the_pinned_size(server, tmp_path):
    server.no_length.add("/data.bin")
    server.cut_after["/data.bin"] = 20_000
    fetch(server, tmp_path, size=len(BODY))
    assert (tmp_path / "data.bin").read_bytes() == BODY
    assert [r for _, r in server.requests] == [None, "bytes=20000-"]


def test_206_from_the_wrong_offset_restarts_from_zero(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(BODY[:30_000])
    server.wrong_offset["/data.bin"] = 20_000
    fetch(server, tmp_path)
    assert (tmp_path / "data.bin").read_bytes() == BODY
    assert [r for _, r in server.requests] == ["bytes=30000-", None]


def test_range_ignored_restarts_from_zero(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(b"\0" * 30_000)
    server.ignore_range.add("/data.bin")
    fetch(server, tmp_path)
    assert (tmp_path / "data.bin").read_bytes() == BODY
    assert [r for _, r in server.requests] == ["bytes=30000-"]


def test_416_for_a_part_longer_than_the_file_restarts_from_zero(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(BODY + b"stale tail")  # the file changed on the server
    fetch(server, tmp_path)
    assert (tmp_path / "data.bin").read_bytes() == BODY
    assert [r for _, r in server.requests] == [f"bytes={len(BODY) + 10}-", None]


def test_existing_unverified_file_is_completed_not_trusted(server, tmp_path):
    (tmp_path / "data.bin").write_bytes(BODY[:20_000])  # left by a run that could not tell it was short
    fetch(server, tmp_path)
    assert (tmp_path / "data.bin").read_bytes() == BODY
    assert [r for _, r in server.requests] == ["bytes=20000-"]


def test_verified_file_is_trusted_without_a_request(server, tmp_path):
    fetch(server, tmp_path)
    fetch(server, tmp_path)
    assert len(server.requests) == 1
    (tmp_path / "data.bin").write_bytes(BODY[:10])  # changed behind our back: checked again
    fetch(server, tmp_path)
    assert (tmp_path / "data.bin").read_bytes() == BODY and len(server.requests) == 2
    verified = fetch(server, tmp_path)
    assert (verified.sha256, verified.size, verified.verified_by) == (SHA, len(BODY), "content-length")
    assert len(server.requests) == 2


def test_server_size_against_the_pin_fails_before_the_transfer(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/data\.bin: the server reports 50000 bytes, the manifest pins 49999"):
        fetch(server, tmp_path, size=len(BODY) - 1)
    assert list(tmp_path.iterdir()) == []


ARCHIVE = tar_gz_bytes((f"imgs/{i}.bin", os.urandom(4_000)) for i in range(10))


def archive_manifest(tmp_path, url, manual: str | None = None):
    manifest = tmp_path / "manifest.yaml"
    extra = f", manual: '{manual}'" if manual else ""
    manifest.write_text(f"sources:\n  - {{name: imgs, url: '{url}', filename: imgs.tar.gz, extract_to: imgs{extra}}}\n")
    return download.load_manifest(manifest)


def test_truncated_archive_left_by_an_earlier_run_is_fetched_again(server, tmp_path):
    server.files["/imgs.tar.gz"] = ARCHIVE
    raw = tmp_path / "raw"
    (raw / "_downloads").mkdir(parents=True)
    (raw / "_downloads" / "imgs.tar.gz").write_bytes(ARCHIVE[: len(ARCHIVE) // 2])
    record = download.fetch_all(archive_manifest(tmp_path, f"{server.url}/imgs.tar.gz"), raw, FAST, progress=False)
    assert len(list((raw / "imgs" / "imgs").iterdir())) == 10
    assert record["imgs"]["sha256"] == hashlib.sha256(ARCHIVE).hexdigest()


def test_archive_cut_without_length_is_fetched_once_more(server, tmp_path):
    server.files["/imgs.tar.gz"] = ARCHIVE
    server.no_length.add("/imgs.tar.gz")
    server.cut_after["/imgs.tar.gz"] = len(ARCHIVE) // 2
    raw = tmp_path / "raw"
    record = download.fetch_all(archive_manifest(tmp_path, f"{server.url}/imgs.tar.gz"), raw, FAST, progress=False)
    assert len(list((raw / "imgs" / "imgs").iterdir())) == 10
    assert record["imgs"]["verified_by"] == "archive index"
    assert [r for _, r in server.requests] == [None, None]


@pytest.mark.parametrize("fault", ["cut without length", "garbage with length"])
def test_archive_bad_twice_is_one_line_naming_the_file(server, tmp_path, fault):
    if fault == "cut without length":
        server.files["/imgs.tar.gz"] = ARCHIVE
        server.no_length.add("/imgs.tar.gz")
        server.cut_after["/imgs.tar.gz"] = [len(ARCHIVE) // 2] * 5
    else:
        server.files["/imgs.tar.gz"] = b"<html>not here</html>"
    raw = tmp_path / "raw"
    with pytest.raises(DownloadError) as err:
        download.fetch_all(archive_manifest(tmp_path, f"{server.url}/imgs.tar.gz"), raw, FAST, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"imgs: {raw / '_downloads' / 'imgs.tar.gz'}: truncated or corrupt archive")
    assert "after 2 downloads" in message
    assert len(server.requests) == 2
    assert not (raw / "_downloads" / "imgs.tar.gz").exists()


def test_truncated_manual_archive_is_one_line_with_the_instructions(tmp_path):
    raw = tmp_path / "raw"
    (raw / "_downloads").mkdir(parents=True)
    (raw / "_downloads" / "imgs.tar.gz").write_bytes(ARCHIVE[:-100])
    sources = archive_manifest(tmp_path, "https://example.org/form", manual="fill in the form")
    with pytest.raises(
        DownloadError, match=r"^imgs: .*imgs\.tar\.gz: truncated or corrupt archive \(.*\); .*fill in the form$"
    ):
        download.fetch_all(sources, raw, FAST, progress=False)


def test_stage_reports_a_bad_archive_in_one_line_exit_2(server, tmp_path, monkeypatch, capsys):
    from soho import stage

    from ..conftest import REPO

    server.files["/imgs.tar.gz"] = ARCHIVE[: len(ARCHIVE) // 2]  # the server's own copy is damaged
    sources = archive_manifest(tmp_path, f"{server.url}/imgs.tar.gz")
    monkeypatch.setattr("sys.argv", ["stages/download.py", "--params", str(REPO / "params.yaml")])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")  # the kit probes the store
    monkeypatch.chdir(tmp_path)
    for name in ("SOHO_PROFILE", "SOHO_PIPELINE_ID"):
        monkeypatch.delenv(name, raising=False)

    def body(params, args):
        download.fetch_all(sources, tmp_path / "raw", FAST, progress=False)

    assert stage.run("download", body, own_runs=True) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # MLflow may log before it
    assert errors == [err.strip().splitlines()[-1]], err
    assert errors[0].startswith("error: download: imgs: ") and "imgs.tar.gz" in errors[0]


PUBLISHED = {"coco-train2014", "coco-val2014", "vg-images-1", "vg-images-2", "nlvr2-dev", "nlvr2-test1"}


def test_paper_manifest_pins_the_published_checksums():
    from ..conftest import REPO

    sources = {s.name: s for s in download.load_manifest(REPO / "soho/data/manifests/paper.yaml")}
    for name in PUBLISHED:
        source = sources[name]
        assert len(source.sha256 or "") == 64 and source.size > 0 and source.pinned_from, name
    assert sources["coco-train2014"].size == 13510573713


# Issue 15: an interrupted or corrupt archive is one line naming it (archives.CorruptArchiveError), not an EOFError traceback.


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
        ("gz", cut_in_half, r"truncated or corrupt archive \(EOFError: Compressed file ended"),
        ("bz2", cut_in_half, r"truncated or corrupt archive \(neither a zip nor a tar archive\)"),  # one 900 kB block
        ("xz", cut_in_half, r"truncated or corrupt archive \(EOFError"),
        ("zip", flip_member_bytes, r"truncated or corrupt archive \((BadZipFile: Bad CRC-32|error: Error -3)"),
        ("zip", cut_in_half, r"truncated or corrupt archive \(neither a zip nor a tar archive\)"),
    ],
    ids=["tar.gz-cut", "tar.bz2-cut", "tar.xz-cut", "zip-corrupt", "zip-cut"],
)
def test_a_cut_or_corrupt_archive_is_one_line_naming_it(tmp_path, kind, damage, reason):
    archive = archive_of(tmp_path, kind)
    archives.extract(archive, tmp_path / "whole")
    damage(archive)
    with pytest.raises(archives.CorruptArchiveError, match=reason) as err:
        archives.extract(archive, tmp_path / "out")
    message = str(err.value)
    assert message.startswith(f"{archive}: ")
    assert "\n" not in message
