"""`lfr data get cifar10 | stl10 | tiny_imagenet`: the official archive downloaded (and resumed), its MD5
checked, then unpacked safely. An HTTP server started here on 127.0.0.1 serves archives the
tests make in the official layouts; ``LFR_DATA_MIRROR`` points at it, and each archive's MD5
is its own (the official constants stay as they are, checked once against torchvision's)."""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest
from helpers import write_cifar10, write_full_data, write_stl10, write_tiny_imagenet

from lfr_report import cli
from lfr_report.data import download, load_dataset
from lfr_report.data.datasets import class_names
from lfr_report.data.fetch import get
from lfr_report.errors import DataError
from lfr_report.experiment import describe_data
from lfr_report.registry import REPORTS, report
from lfr_report.running.preflight import check_data
from lfr_report.tracking.local_stack import free_port
from lfr_report.tracking.store import FileRunStore


class Server(http.server.ThreadingHTTPServer):
    """Serves ``files`` (name -> bytes) with Range support; records each request's Range
    header; ``cut_after`` bytes into the next full response it closes the connection."""

    def __init__(self, files: dict[str, bytes]):
        self.files, self.ranges, self.cut_after = files, [], None
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        server: Server = self.server
        body = server.files.get(self.path.lstrip("/"))
        wanted = self.headers.get("Range")
        server.ranges.append(wanted)
        if body is None:
            self.send_error(404)
            return
        start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted else 0
        self.send_response(206 if wanted else 200)
        if wanted:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if server.cut_after is not None and not wanted:
            self.wfile.write(body[: server.cut_after])
            server.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def folder_zip(root: Path) -> bytes:
    """A zip of every file under ``root``, named relative to it (as tiny-imagenet-200.zip is)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for path in sorted(root.rglob("*")):
            zipped.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def folder_tar_gz(root: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(root.iterdir()):
            tar.add(path, arcname=path.name)
    return buffer.getvalue()


def official_like(monkeypatch, name: str, body: bytes) -> download.Archive:
    """The archive of ``name`` with ``body``'s MD5 in place of the official one."""
    archive = download.ARCHIVES[name]
    changed = download.Archive(archive.name, archive.url, hashlib.md5(body).hexdigest(), archive.folder)
    monkeypatch.setitem(download.ARCHIVES, name, changed)
    return changed


@pytest.fixture(scope="module")
def cifar_archive(tmp_path_factory) -> bytes:
    made = tmp_path_factory.mktemp("cifar-made")
    write_cifar10(made, per_batch=4, test=6)
    return folder_tar_gz(made)


@pytest.fixture
def server(cifar_archive, monkeypatch):
    served = Server({"cifar-10-python.tar.gz": cifar_archive})
    monkeypatch.setenv("LFR_DATA_MIRROR", served.url + "/")
    official_like(monkeypatch, "cifar10", cifar_archive)
    yield served
    served.shutdown()
    served.server_close()


def test_the_official_constants_are_torchvisions():
    from torchvision import datasets

    assert download.ARCHIVES["cifar10"].md5 == datasets.CIFAR10.tgz_md5
    assert download.ARCHIVES["cifar10"].url == datasets.CIFAR10.url
    assert download.ARCHIVES["stl10"].md5 == datasets.STL10.tgz_md5
    assert download.ARCHIVES["stl10"].url == datasets.STL10.url
    assert download.ARCHIVES["tiny_imagenet"].md5 == "90528d7ca1a48142e341f4ef8d21d0de"


def test_a_clean_download_is_verified_unpacked_and_read(server, isolated):
    assert str(isolated / "data" / "cifar-10-batches-py") in get("cifar10")
    assert len(load_dataset("cifar10", "train")) == 20 and len(load_dataset("cifar10", "test")) == 6
    assert server.ranges == [None]
    data = isolated / "data"
    assert sorted(p.name for p in data.iterdir()) == ["cifar-10-batches-py"]  # no archive, part or staging left
    assert get("cifar10") and server.ranges == [None]  # present: nothing fetched again


def test_a_download_cut_mid_file_is_resumed_with_a_range_request(server, isolated, cifar_archive):
    server.cut_after = len(cifar_archive) // 3
    with pytest.raises(DataError, match=r"could not download cifar10 from http://127\.0\.0\.1:\d+/cifar-10-python"
                                         r"\.tar\.gz \(the connection ended after [\d,]+ of [\d,]+ bytes; run the same command "
                                         r"again to resume\)"):  # fmt: skip
        get("cifar10")
    part = isolated / "data" / "cifar-10-python.tar.gz.part"
    assert part.stat().st_size == len(cifar_archive) // 3
    assert not (isolated / "data" / "cifar-10-batches-py").exists()
    cli.main(["data", "list"])
    get("cifar10")
    assert server.ranges == [None, f"bytes={len(cifar_archive) // 3}-"]
    assert len(load_dataset("cifar10", "train")) == 20 and not part.exists()


def test_data_list_shows_a_partial_download(server, isolated, cifar_archive, capsys):
    server.cut_after = 1000
    with pytest.raises(DataError):
        get("cifar10")
    cli.main(["data", "list"])
    [line] = [line for line in capsys.readouterr().out.splitlines() if line.startswith("cifar10 ")]
    assert "partial download: 0.0 MB of cifar-10-python.tar.gz in" in line and "lfr data get cifar10 resumes it" in line


def test_a_corrupt_archive_is_one_line_removed_and_nothing_unpacked(server, isolated, cifar_archive):
    server.files["cifar-10-python.tar.gz"] = cifar_archive[:-10] + b"0123456789"
    with pytest.raises(DataError) as error:
        get("cifar10")
    message = str(error.value)
    assert "\n" not in message and "cifar10: the file from http://127.0.0.1:" in message
    assert f"not the official {download.ARCHIVES['cifar10'].md5}" in message and "removed, nothing unpacked" in message
    assert list((isolated / "data").iterdir()) == []


@pytest.mark.parametrize("member", ["../escaped.txt", "/etc/escaped.txt", "cifar-10-batches-py/../../escaped.txt"])
def test_an_archive_with_a_member_outside_its_folder_is_refused(server, isolated, monkeypatch, member):
    evil = tar_gz({"cifar-10-batches-py/batches.meta": b"x", member: b"gotcha"})
    server.files["cifar-10-python.tar.gz"] = evil
    official_like(monkeypatch, "cifar10", evil)
    with pytest.raises(DataError, match=r"outside the folder it unpacks into: refused, nothing unpacked"):
        get("cifar10")
    assert list((isolated / "data").iterdir()) == [] and not (isolated / "escaped.txt").exists()


def test_a_zip_with_a_member_outside_its_folder_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr("tiny-imagenet-200/wnids.txt", "n01443537\n")
        zipped.writestr("../escaped.txt", "gotcha")
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "tiny-imagenet-200.zip").write_bytes(buffer.getvalue())
    archive = download.Archive("tiny_imagenet", "http://x/tiny-imagenet-200.zip", hashlib.md5(buffer.getvalue()).hexdigest(),
                               "tiny-imagenet-200")  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LFR_DATA_MIRROR", str(tmp_path / "mirror"))
        with pytest.raises(DataError, match=r"'\.\./escaped\.txt', outside the folder"):
            download.fetch(archive, tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == [] and not (tmp_path / "escaped.txt").exists()


def test_a_404_and_no_server_are_one_line_naming_the_url_and_the_folder(server, isolated, monkeypatch):
    monkeypatch.setenv("LFR_DATA_MIRROR", server.url + "/elsewhere")
    with pytest.raises(DataError) as error:
        get("cifar10")
    assert f"from {server.url}/elsewhere/cifar-10-python.tar.gz (Not Found)" in str(error.value)
    assert f"unpack it into {isolated / 'data'}/" in str(error.value) and "\n" not in str(error.value)
    monkeypatch.setenv("LFR_DATA_MIRROR", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.raises(
        DataError, match=r"could not download cifar10 from http://127\.0\.0\.1:\d+/cifar-10-python\.tar\.gz \(.*refused"
    ):
        get("cifar10")  # fmt: skip
    assert list((isolated / "data").iterdir()) == []


def test_a_mirror_folder_serves_stl10(isolated, monkeypatch, tmp_path):
    made = tmp_path / "made"
    write_stl10(made, train=5, test=4, unlabeled=3)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    body = folder_tar_gz(made)
    (mirror / "stl10_binary.tar.gz").write_bytes(body)
    monkeypatch.setenv("LFR_DATA_MIRROR", str(mirror))
    official_like(monkeypatch, "stl10", body)
    get("stl10")
    assert len(load_dataset("stl10", "train")) == 5 and len(load_dataset("stl10", "test")) == 4
    assert (mirror / "stl10_binary.tar.gz").exists()  # the mirror's copy is not consumed


def serve_missing(isolated: Path, tmp_path: Path, monkeypatch, names: tuple[str, ...]) -> Server:
    """Every data set of ``full`` written to the data folder, then ``names`` moved out of it
    into archives that a loopback server serves as their mirror."""
    write_full_data(isolated / "data")
    archives = {}
    for name in names:
        archive = download.ARCHIVES[name]
        made = tmp_path / name
        made.mkdir()
        shutil.move(isolated / "data" / archive.folder, made)
        archives[archive.file] = folder_zip(made) if archive.file.endswith(".zip") else folder_tar_gz(made)
        official_like(monkeypatch, name, archives[archive.file])
    served = Server(archives)
    monkeypatch.setenv("LFR_DATA_MIRROR", served.url)
    return served


def test_the_data_check_of_every_full_report_fetches_what_is_missing(isolated, monkeypatch, tmp_path, capsys):
    served = serve_missing(isolated, tmp_path, monkeypatch, ("cifar10", "stl10"))
    try:
        check_data([need for name in REPORTS for need in report(name).needed("full", rehearse=True)], download=True)
    finally:
        served.shutdown()
        served.server_close()
    assert served.ranges == [None, None]  # one request each
    out = capsys.readouterr().out
    assert "cifar10 is missing: fetching its official archive" in out and "stl10 is missing" in out
    assert len(load_dataset("cifar10", "test")) == 100 and len(load_dataset("stl10", "unlabeled")) == 150
    assert FileRunStore(isolated / "runs").runs() == []


@pytest.mark.rehearsal
def test_a_full_rehearsal_fetches_its_two_sets_before_its_first_run_and_builds_from_them(isolated, monkeypatch,
                                                                                          tmp_path, capsys):  # fmt: skip
    """``lfr report simclr --scale full --rehearse`` with Tiny ImageNet and CIFAR-10 missing:
    both fetched from the mirror before the first run, then the report built from them."""
    served = serve_missing(isolated, tmp_path, monkeypatch, ("tiny_imagenet", "cifar10"))
    out = isolated / "reports" / "simclr.pdf"
    try:
        assert cli.main(["report", "simclr", "--scale", "full", "--rehearse", "--out", str(out)]) == 0
    finally:
        served.shutdown()
        served.server_close()
    printed = capsys.readouterr().out
    fetched = [printed.index(f"{name} is missing: fetching") for name in ("tiny_imagenet", "cifar10")]
    assert max(fetched) < printed.index("started  simclr/")  # both before the first run starts
    assert served.ranges == [None, None] and out.stat().st_size > 10_000
    runs = FileRunStore(isolated / "runs").runs()
    assert len(runs) == 6 and {r.status for r in runs} == {"COMPLETED"}
    pretraining = [r for r in runs if r.experiment == "simclr"]
    assert {r.config["data"]["name"] for r in pretraining} == {"tiny_imagenet"}
    assert all("tiny-imagenet-200" in r.info["data_source"] for r in pretraining)


# --- Tiny ImageNet -----------------------------------------------------------------------


def test_tiny_imagenet_is_fetched_from_its_zip_and_read_with_its_class_names(isolated, monkeypatch, tmp_path):
    made = tmp_path / "made"
    val_labels = write_tiny_imagenet(made, per_class=2, val=30)
    body = folder_zip(made)
    served = Server({"tiny-imagenet-200.zip": body})
    monkeypatch.setenv("LFR_DATA_MIRROR", served.url)
    official_like(monkeypatch, "tiny_imagenet", body)
    try:
        assert str(isolated / "data" / "tiny-imagenet-200") in get("tiny_imagenet")
    finally:
        served.shutdown()
        served.server_close()
    train, test = load_dataset("tiny_imagenet", "train"), load_dataset("tiny_imagenet", "test")
    assert tuple(train.images.shape) == (400, 3, 64, 64) and tuple(test.images.shape) == (30, 3, 64, 64)
    assert train.labels.tolist() == [k for k in range(200) for _ in range(2)]  # wnids.txt's order
    assert test.labels.tolist() == val_labels.tolist() and "val, as the test split" in test.source
    assert train.fingerprint == test.fingerprint  # one folder: one data set
    spec = train.spec
    assert class_names(spec)[:2] == ("thing 0", "thing 1") and len(class_names(spec)) == 200
    assert describe_data(spec)["classes"][199] == "thing 199"  # what runs record, from words.txt
    assert sorted(p.name for p in (isolated / "data").iterdir()) == ["tiny-imagenet-200"]


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "wnids.txt").write_text("n00000000\n"), "wnids.txt: lists 1 distinct classes, not the official 200"),
        (lambda d: (d / "val" / "images" / "val_3.JPEG").write_bytes(b"not a jpeg"), "val_3.JPEG: not a readable image"),
        (lambda d: shutil.rmtree(d / "train" / "n00000007"), "train/n00000007/images: holds no JPEG images"),
        (lambda d: (d / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn99999999\t0\t0\t1\t1\n"),
         "val_annotations.txt: 'val_0.JPEG' is labelled 'n99999999', not one of wnids.txt's"),
    ],
)  # fmt: skip
def test_a_damaged_tiny_imagenet_is_one_line_naming_the_file(isolated, damage, message):
    write_tiny_imagenet(isolated / "data", val=10)
    damage(isolated / "data" / "tiny-imagenet-200")
    with pytest.raises(DataError, match=rf"dataset 'tiny_imagenet' is corrupt: .*{re.escape(message)}"):
        load_dataset("tiny_imagenet", "train" if "train/" in message else "test")
