"""Object storage by URL (``s3://``, ``gs://``, ``az://``, ``file://``) through fsspec: the one module that knows.

Everything here takes a URL; local paths stay with :mod:`pathlib`. :func:`is_url` tells the two apart.

- Credentials are the cloud SDK's own: for S3 ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` (or a profile),
  and ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) for an S3-compatible server, which botocore reads by
  itself; for GCS ``GOOGLE_APPLICATION_CREDENTIALS``; for Azure ``AZURE_STORAGE_ACCOUNT_NAME`` with
  ``AZURE_STORAGE_CONNECTION_STRING``/``AZURE_STORAGE_ACCOUNT_KEY`` or an identity. Nothing here passes them
  on: they are read here only to hide secrets from messages and to name the endpoint in one.
- Every failure is a :class:`StorageError`: one line naming the URL, what went wrong and what to do, never a
  secret.
- Nothing is cached between calls except the connection: listings are never cached, so an object another
  process wrote is seen by the next call. :func:`local_copy` is the exception on purpose (one download per
  URL per process).
- An upload makes the object appear whole or not at all (see :func:`upload_file`); a download makes the
  local file appear whole or not at all.

fsspec and the protocol packages (``s3fs``, ``gcsfs``, ``adlfs``) are imported on first use, so importing
this module costs nothing.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from common.secrets import scrub

# The protocols we support, with the package each needs and the extra that installs it.
_PACKAGES: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "az": ("adlfs", "azure"),
    "abfs": ("adlfs", "azure"),
    "abfss": ("adlfs", "azure"),
}
_LOCAL = ("file", "local")
_SUPPORTED = "s3://, gs://, az:// or file://"

# Where each protocol's credentials come from, for the hint on an access error.
_CREDENTIALS = {
    "s3fs": "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE",
    "gcsfs": "GOOGLE_APPLICATION_CREDENTIALS",
    "adlfs": "AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_ACCOUNT_KEY",
}
# Environment variables the cloud SDKs read: a change in any of them gets a new connection.
_ENV_PREFIXES = ("AWS_", "GOOGLE_", "GCLOUD_", "CLOUDSDK_", "GCSFS_", "AZURE_", "FSSPEC_")
# Their values that are secrets, hidden from every message (not a ..._FILE: a path to one).
_SECRET_NAME = re.compile(r"SECRET|TOKEN|PASSWORD|CONNECTION_STRING|SAS|KEY$")

# S3 multipart part size (S3 needs 5 MiB or more for every part but the last). s3fs sends a file smaller
# than two parts in one PUT. Tests make it small to exercise multipart uploads.
S3_PART_BYTES = 50 * 2**20

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+://)[^/@]*@")

_lock = threading.RLock()
_filesystems: dict[str, tuple[int, str, Any]] = {}  # protocol: (pid, environment fingerprint, filesystem)
_copies: dict[str, Path] = {}
_copies_dir: tuple[int, Path] | None = None  # (pid that made it, directory)


class StorageError(Exception):
    """Reading, listing or writing a URL failed; the message is one line naming the URL and what to do."""


def is_url(location: str | Path) -> bool:
    """Whether ``location`` is a URL (``scheme://…`` with a scheme of two or more characters).

    ``file://…`` is one; a Windows drive (``C:\\…``) and every :class:`~pathlib.Path` are not.
    """
    return isinstance(location, str) and _SCHEME.match(location) is not None


def join(base: str, *parts: str) -> str:
    """``base`` and ``parts`` joined with single ``/`` (``join("s3://b/runs/", "/x", "y.csv")`` is
    ``s3://b/runs/x/y.csv``); empty parts and trailing slashes are dropped, ``file:///`` keeps its root."""
    match = _SCHEME.match(base)
    scheme = match.group(0) if match else ""
    rest = base[len(scheme) :]
    root = "/" if rest.startswith("/") else ""
    segments = [s for piece in (rest, *parts) for s in piece.split("/") if s]
    return scheme + root + "/".join(segments)


def read_bytes(url: str) -> bytes:
    """The whole object at ``url``."""
    fs, path = _filesystem(url, "reading")
    with _translated(url, "reading"):
        return bytes(fs.cat_file(path))


def exists(url: str) -> bool:
    """Whether an object (or a prefix with objects under it) is at ``url``; ``False`` also for a missing bucket."""
    fs, path = _filesystem(url, "reading")
    with _translated(url, "reading"):
        try:
            fs.info(path)
        except FileNotFoundError:
            return False
        return True


def listdir(url: str) -> list[str]:
    """The names directly under the prefix ``url`` (objects and sub-prefixes), sorted; ``[]`` if none.

    A missing bucket is a :class:`StorageError`, a missing prefix in an existing bucket is ``[]``.
    """
    fs, path = _filesystem(url, "listing")
    base = path.rstrip("/")
    with _translated(url, "listing"):
        try:
            entries = fs.ls(base, detail=False)
        except FileNotFoundError:
            root = _root(fs, base)
            if not fs.exists(root):
                raise StorageError(f"{_shown(url)}: not found (no bucket {root!r}): check the bucket name") from None
            return []
    names = {str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in entries if str(entry).rstrip("/") != base}
    return sorted(name for name in names if name)


def local_copy(url: str) -> Path:
    """A local copy of the object at ``url``, downloaded once per process and kept under its own file name.

    The copy lives in a private temporary directory removed when the process exits; later calls for the
    same URL return the same path without looking at the storage again (a later change to the object is
    not seen: take the copy when its content should stay put for the run).
    """
    name = PurePosixPath(url.rstrip("/")).name if not url.endswith("/") else ""
    if not name or not is_url(url):
        raise StorageError(f"{_shown(url)}: not an object URL: name an object, e.g. s3://bucket/prompts.jsonl")
    with _lock:
        _reset_after_fork()
        known = _copies.get(url)
        if known is not None and known.is_file():
            return known
        fs, path = _filesystem(url, "reading")
        if not _is_local(fs) and "/" not in path.strip("/"):
            raise StorageError(
                f"{_shown(url)}: a bucket, not an object: name an object, e.g. s3://bucket/prompts.jsonl"
            )
        target = _private_dir() / str(len(_copies) + 1) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with _translated(url, "reading"):
            _download(fs, path, target)
        _copies[url] = target
        return target


def upload_file(local: Path, url: str) -> None:
    """Upload the file ``local`` to ``url``, replacing any object there; it appears whole or not at all.

    S3 (s3fs ``put_file``): a file smaller than two parts (:data:`S3_PART_BYTES`) goes in one PUT, which S3
    stores whole or not at all; a larger one is a multipart upload, which S3 shows only once it is
    completed, and s3fs completes it only after every part is uploaded (and aborts it on an error). GCS
    (gcsfs): one request, or a resumable upload finalised with its last chunk. Azure (adlfs): a block blob,
    visible when its block list is committed. ``file://``: copied beside the target under a temporary name,
    then renamed over it. The local file must not change during the upload.
    """
    local = Path(local)
    if not local.is_file():
        raise StorageError(f"{_shown(url)}: cannot upload {local}: no such local file")
    fs, path = _filesystem(url, "writing")
    with _translated(url, "writing"):
        _put(fs, local, path)


def upload_tree(local_dir: Path, url: str) -> list[str]:
    """Upload every file under ``local_dir`` to ``url``, keeping relative names; the URLs written, sorted.

    Each object appears whole or not at all (:func:`upload_file`); if one fails, those before it stay.
    """
    local_dir = Path(local_dir)
    if not local_dir.is_dir():
        raise StorageError(f"{_shown(url)}: cannot upload {local_dir}: no such local directory")
    files = sorted(
        Path(folder, name).relative_to(local_dir).as_posix()
        for folder, _, names in os.walk(local_dir)
        for name in names
        if Path(folder, name).is_file()
    )
    fs, path = _filesystem(url, "writing")
    written: list[str] = []
    for relative in files:
        target = join(url, relative)
        with _translated(target, "writing"):
            _put(fs, local_dir / relative, join(path, relative))
        written.append(target)
    return written


def download_tree(url: str, local_dir: Path) -> list[Path]:
    """Download every object under the prefix ``url`` into ``local_dir``, keeping relative names; the local
    paths written, sorted (``[]`` if the prefix is empty). Each file appears whole or not at all."""
    local_dir = Path(local_dir)
    fs, path = _filesystem(url, "reading")
    base = path.rstrip("/")
    with _translated(url, "reading"):
        found = sorted(str(key) for key in fs.find(base))
    written: list[Path] = []
    for key in found:
        if key != base and not key.startswith(base + "/"):
            continue  # under a longer name (``runs/b10`` for ``runs/b1``)
        relative = key[len(base) + 1 :] if key != base else PurePosixPath(key).name
        parts = PurePosixPath(relative).parts
        if not parts or any(part in ("..", ".") for part in parts):
            raise StorageError(f"{_shown(url)}: object {key!r} has no safe local name: rename it in the storage")
        target = local_dir.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        with _translated(join(url, relative), "reading"):
            _download(fs, key, target)
        written.append(target)
    return written


# ---------------------------------------------------------------------------------------------------------


def _protocol(url: str) -> str:
    match = _SCHEME.match(url)
    if match is None:
        raise StorageError(f"{_shown(url)}: not a URL: use {_SUPPORTED}")
    return match.group(1).lower()


def _filesystem(url: str, action: str) -> tuple[Any, str]:
    """The (cached) fsspec filesystem for ``url``'s protocol and the path in it."""
    protocol = _protocol(url)
    if protocol not in _PACKAGES and protocol not in _LOCAL:
        raise StorageError(f"{_shown(url)}: {protocol}:// is not supported: use {_SUPPORTED}")
    try:
        import fsspec
    except ImportError:
        raise StorageError(f"{_shown(url)}: {action} URLs needs fsspec: pip install 'rlhf-orchestrator'") from None
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ImportError:
        package, extra = _PACKAGES.get(protocol, ("fsspec", ""))
        where = f"'rlhf-orchestrator[{extra}]'" if extra else package
        raise StorageError(f"{_shown(url)}: {action} {protocol}:// URLs needs {package}: pip install {where}") from None
    with _lock:
        # One filesystem per protocol, made anew in a forked child or when the SDK's environment changed
        # (fsspec's own instance cache ignores the environment); no listing cache, so what another process
        # wrote is seen.
        pid, fingerprint = os.getpid(), _environment_fingerprint()
        cached = _filesystems.get(protocol)
        if cached is not None and cached[:2] == (pid, fingerprint):
            fs = cached[2]
        else:
            options: dict[str, Any] = {} if protocol in _LOCAL else {"use_listings_cache": False}
            with _translated(url, action):
                fs = cls(skip_instance_cache=True, **options)
            _filesystems[protocol] = (pid, fingerprint, fs)
    return fs, str(cls._strip_protocol(url))


def _environment_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in sorted(os.environ):
        if name.startswith(_ENV_PREFIXES):
            digest.update(f"{name}={os.environ[name]}\0".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _secrets() -> tuple[str, ...]:
    return tuple(
        value
        for name, value in os.environ.items()
        if name.startswith(_ENV_PREFIXES) and _SECRET_NAME.search(name) and not name.endswith("_FILE") and value
    )


def _shown(url: str) -> str:
    """``url`` without any ``user:password@``."""
    return _USERINFO.sub(r"\1", url)


def _root(fs: Any, path: str) -> str:
    """The bucket (container) of an object-store path, the root of a local one."""
    return "/" if _is_local(fs) else path.lstrip("/").split("/", 1)[0]


def _as_tuple(value: Any) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _is_local(fs: Any) -> bool:
    return bool(set(_LOCAL) & set(_as_tuple(getattr(fs, "protocol", ()))))


@contextmanager
def _translated(url: str, action: str) -> Iterator[None]:
    """Turn whatever the storage raises into a one-line :class:`StorageError` naming ``url``."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(_message(url, action, exc)) from exc


def _message(url: str, action: str, exc: Exception) -> str:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    package = _PACKAGES.get(_protocol(url), ("", ""))[0]
    name = type(exc).__name__
    if isinstance(exc, ImportError):
        protocol = _protocol(url)
        package, extra = _PACKAGES.get(protocol, (exc.name or "a package", ""))
        where = f"'rlhf-orchestrator[{extra}]'" if extra else package
        text = f"{action} {protocol}:// URLs needs {package}: pip install {where} ({detail})"
    elif isinstance(exc, FileNotFoundError):
        text = f"not found ({detail}): check the bucket and the object name"
    elif isinstance(exc, PermissionError):
        credentials = _CREDENTIALS.get(package, "the storage credentials")
        text = f"access denied ({detail}): check the credentials ({credentials}) and their permissions"
    elif "Credentials" in name:
        credentials = _CREDENTIALS.get(package, "the storage credentials")
        text = f"no credentials ({name}: {detail}): set {credentials}"
    elif isinstance(exc, ConnectionError | TimeoutError) or "Connect" in name or "Timeout" in name:
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        where = f" (AWS_ENDPOINT_URL={_shown(endpoint)})" if package == "s3fs" and endpoint else ""
        text = f"cannot reach the storage service{where} ({name}: {detail}): check the network and the endpoint"
    else:
        text = f"{action} failed ({name}: {detail})"
    return scrub(f"{_shown(url)}: {text}", _secrets())


def _put(fs: Any, local: Path, path: str) -> None:
    if _is_local(fs):
        _copy_atomically(local, Path(path))
        return
    protocol = set(_as_tuple(fs.protocol))
    if protocol & {"s3", "s3a"}:
        fs.put_file(str(local), path, chunksize=S3_PART_BYTES)
    elif protocol & {"az", "abfs", "abfss"}:
        fs.put_file(str(local), path, overwrite=True)
    else:
        fs.put_file(str(local), path)


def _partial(target: Path) -> Path:
    """A fresh name beside ``target`` for writing it (a file made there gets the usual permissions)."""
    return target.with_name(f".{target.name}.{os.urandom(6).hex()}.partial")


def _copy_atomically(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial(target)
    try:
        shutil.copyfile(source, partial)
        with open(partial, "rb") as copied:
            os.fsync(copied.fileno())
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _download(fs: Any, path: str, target: Path) -> None:
    """``path`` to ``target`` through a temporary file beside it: ``target`` is whole or untouched."""
    partial = _partial(target)
    try:
        fs.get_file(path, str(partial))
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _private_dir() -> Path:
    """This process's directory of :func:`local_copy` files, made on first use and removed at exit."""
    global _copies_dir
    if _copies_dir is None:
        directory = Path(tempfile.mkdtemp(prefix="rlhf-storage-"))
        _copies_dir = (os.getpid(), directory)
        atexit.register(_remove_private_dir, os.getpid(), directory)
    return _copies_dir[1]


def _remove_private_dir(owner: int, directory: Path) -> None:
    if os.getpid() == owner:  # a forked child must not remove its parent's copies
        shutil.rmtree(directory, ignore_errors=True)


def _reset_after_fork() -> None:
    """In a forked child, forget the parent's copies (the parent owns them and removes them at its exit)."""
    global _copies_dir
    if _copies_dir is not None and _copies_dir[0] != os.getpid():
        _copies_dir = None
        _copies.clear()
