"""Fetching a data set's official archive: resumed, verified, then unpacked safely.

    fetch(ARCHIVES["cifar10"], data_dir())   # what `lfr data get cifar10` does

1. **Download** ``URL`` into ``<data dir>/<file>.part`` with a progress bar. A ``.part`` left
   by an interrupted download is resumed with an HTTP ``Range`` request (a server that
   ignores it sends the whole file again, which then replaces the part). torchvision's
   ``download_url`` cannot resume, which matters for STL-10's 2.6 GB.
2. **Verify** the whole file's MD5 against the official value (torchvision's
   ``check_integrity``) before anything is unpacked; a mismatch removes the file and says so.
3. **Unpack** into a hidden folder beside the data, refusing what tarfile's ``data`` filter
   refuses (members outside the folder, links out of it, device files: checked here, since
   Debian's Python 3.11.2 has no filter; the filter too where there is one; a zip's names
   the same way), then move the data set's folder into place in one rename: a
   reader never sees a half-unpacked folder. The archive is then deleted. (torchvision's
   ``extract_archive`` applies no tar filter and unpacks in place, hence this step.)

``LFR_DATA_MIRROR`` (a base URL, or a folder) replaces the official host for clusters
without internet: it must serve the same file names. Any failure is one ``DataError`` line
naming the data set, what was tried and the folder to unpack into by hand.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from lfr_report.errors import DataError

TIMEOUT_S = 60  # a server silent this long (connecting, or between two chunks) fails the download
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Archive:
    """An official archive: where it is, its MD5, and the folder it unpacks to."""

    name: str  # the data set
    url: str
    md5: str
    folder: str  # the top-level folder the archive holds, which the reader looks for

    @property
    def file(self) -> str:
        return self.url.rsplit("/", 1)[1]


# CIFAR-10 and STL-10: torchvision's own constants (datasets.CIFAR10, datasets.STL10); Tiny
# ImageNet has no torchvision class: the MD5 community loaders check.
_OFFICIAL = [
    ("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
     "cifar-10-batches-py"),
    ("stl10", "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb",
     "stl10_binary"),
    ("tiny_imagenet", "http://cs231n.stanford.edu/tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de",
     "tiny-imagenet-200"),
]  # fmt: skip
ARCHIVES = {name: Archive(name, url, md5, folder) for name, url, md5, folder in _OFFICIAL}


def source(archive: Archive) -> str:
    """Where the archive is fetched from: ``$LFR_DATA_MIRROR/<file>`` when a mirror is set, else the official URL."""
    mirror = os.environ.get("LFR_DATA_MIRROR", "").strip()
    if not mirror:
        return archive.url
    if "://" not in mirror:
        return str(Path(mirror) / archive.file)
    return mirror.rstrip("/") + "/" + archive.file


def fetch(archive: Archive, root: Path) -> Path:
    """Download (or resume), verify and unpack ``archive`` into ``root``; returns the data set's folder."""
    from torchvision.datasets.utils import calculate_md5, check_integrity

    root.mkdir(parents=True, exist_ok=True)
    where = source(archive)
    by_hand = (f"on a machine without internet, download {archive.url}, check its MD5 ({archive.md5}) and unpack it "
               f"into {root}/ (or set LFR_DATA_MIRROR to a server or folder that has {archive.file})")  # fmt: skip
    target = root / archive.file
    if not check_integrity(str(target), archive.md5):
        part = root / (archive.file + ".part")
        try:
            _download(where, part, archive.name)
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError; IncompleteRead is not
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise DataError(f"could not download {archive.name} from {where} ({reason}); {by_hand}") from None
        md5 = calculate_md5(str(part))
        if md5 != archive.md5:
            part.unlink()
            raise DataError(f"{archive.name}: the file from {where} has MD5 {md5}, not the official {archive.md5} "
                            f"(a damaged or different file; removed, nothing unpacked): fetch it again, or {by_hand}")  # fmt: skip
        part.replace(target)
    try:
        folder = _unpack(target, root, archive)
    except DataError:
        target.unlink()  # an archive we will not unpack: nothing of it stays
        raise
    target.unlink()
    return folder


def partial_size(archive: Archive, root: Path) -> int | None:
    """Bytes of an interrupted download of ``archive`` waiting in ``root`` to be resumed, or None."""
    part = root / (archive.file + ".part")
    return part.stat().st_size if part.is_file() else None


def _download(where: str, part: Path, name: str) -> None:
    """``where`` (a URL or a file) into ``part``, resuming what ``part`` already holds."""
    from tqdm.auto import tqdm

    if "://" not in where:  # a mirror folder
        if not Path(where).is_file():
            raise FileNotFoundError(2, f"no such file {where}")
        shutil.copyfile(where, part)
        return
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(where, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part already holds the whole file
            return
        raise
    with response:
        resumed = have and response.status == 206
        total = response.length + (have if resumed else 0) if response.length is not None else None
        with part.open("ab" if resumed else "wb") as out, tqdm(total=total, initial=have if resumed else 0,
                                                                unit="B", unit_scale=True,
                                                                desc=f"{name} ({'resumed' if resumed else 'download'})") as bar:  # fmt: skip
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    if total is not None and part.stat().st_size != total:
        raise OSError(0, f"the connection ended after {part.stat().st_size:,} of {total:,} bytes; run the same "
                         "command again to resume")  # fmt: skip


def _refuse_outside(member: str, archive: Archive, archive_file: Path) -> None:
    path = PurePosixPath(member)
    if path.is_absolute() or ".." in path.parts:
        raise DataError(f"{archive.name}: {archive_file} holds {member!r}, outside the folder it unpacks into: "
                        "refused, nothing unpacked")  # fmt: skip


def _unpack(archive_file: Path, root: Path, archive: Archive) -> Path:
    """Unpack into a hidden folder in ``root``, then rename its data set folder into place."""
    staging = root / f".{archive.name}-unpacking"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        if archive_file.name.endswith(".zip"):
            with zipfile.ZipFile(archive_file) as zipped:
                for member in zipped.namelist():
                    _refuse_outside(member, archive, archive_file)
                zipped.extractall(staging)
        else:
            with tarfile.open(archive_file) as tar:
                for member in tar.getmembers():  # what tarfile's `data` filter refuses, on every Python 3.11
                    _refuse_outside(member.name, archive, archive_file)
                    if member.islnk() or member.issym():
                        _refuse_outside(str(PurePosixPath(member.name).parent / member.linkname), archive, archive_file)
                    elif not (member.isfile() or member.isdir()):
                        raise DataError(f"{archive.name}: {archive_file} holds {member.name!r}, neither a file nor a "
                                        "folder: refused, nothing unpacked")  # fmt: skip
                safety = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # 3.11.4+, not Debian's 3.11.2
                tar.extractall(staging, **safety)
        unpacked = staging / archive.folder
        if not unpacked.is_dir():
            raise DataError(f"{archive.name}: {archive_file} has no folder {archive.folder}/: not the official archive")
        final = root / archive.folder
        if final.exists():  # an earlier, incomplete copy: the reader did not accept it, or we would not be here
            shutil.rmtree(final)
        unpacked.rename(final)
        return final
    finally:
        shutil.rmtree(staging, ignore_errors=True)
