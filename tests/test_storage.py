"""Object storage by URL (``common/storage.py``): ``file://`` URLs on their own, ``s3://`` URLs against a
real S3-compatible server (moto's, ``tests/s3_server.py``): round trips, uploads that appear whole or not at
all (a failed and a killed multipart upload), another process's writes seen, and one-line errors without
secrets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import closed_port_url
from s3_server import SECRET_ACCESS_KEY, S3Server

from common import storage
from common.storage import (
    StorageError,
    download_tree,
    exists,
    is_url,
    join,
    listdir,
    local_copy,
    read_bytes,
    upload_file,
    upload_tree,
)

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20


def _one_line_without_secret(error: StorageError, url: str) -> str:
    text = str(error)
    assert text.startswith(url + ": "), text
    assert "\n" not in text
    assert SECRET_ACCESS_KEY not in text and SECRET_ACCESS_KEY[:12] not in text
    return text


def _payload(size: int) -> bytes:
    """``size`` bytes that differ from part to part (a part uploaded twice or out of order would show)."""
    block = bytes(range(256)) * 4096  # 1 MiB
    return b"".join(i.to_bytes(4, "big") + block[4:] for i in range(size // MiB + 1))[:size]


def _run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


# --- URLs and file:// (no server) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("s3://bucket/key.csv", True),
        ("gs://bucket", True),
        ("az://container/dir/", True),
        ("file:///tmp/x.jsonl", True),
        ("s3a://b/k", True),
        ("C:\\data\\prompts.csv", False),
        ("C://data/prompts.csv", False),
        ("prompts/examples.jsonl", False),
        ("/abs/path.jsonl", False),
        ("postgres", False),
        (Path("s3://bucket/key"), False),
    ],
)
def test_is_url(location: str | Path, expected: bool) -> None:
    assert is_url(location) is expected


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("s3://b", ("out", "b1"), "s3://b/out/b1"),
        ("s3://b/runs/", ("/x/", "y.csv"), "s3://b/runs/x/y.csv"),
        ("s3://b//a", ("b//c",), "s3://b/a/b/c"),
        ("file:///tmp/", ("a", "", "b.txt"), "file:///tmp/a/b.txt"),
        ("gs://b/prefix", (), "gs://b/prefix"),
    ],
)
def test_join(base: str, parts: tuple[str, ...], expected: str) -> None:
    assert join(base, *parts) == expected


def test_file_urls_round_trip_without_any_server(tmp_path: Path) -> None:
    base = (tmp_path / "store").as_uri()
    source = tmp_path / "prompts.jsonl"
    source.write_bytes(b'{"prompt": "hi"}\n')

    assert listdir(base) == [] and not exists(join(base, "in", "prompts.jsonl"))
    upload_file(source, join(base, "in", "prompts.jsonl"))
    assert read_bytes(join(base, "in", "prompts.jsonl")) == source.read_bytes()
    assert exists(join(base, "in", "prompts.jsonl")) and exists(join(base, "in"))
    umask = os.umask(0o022)
    os.umask(umask)
    assert (tmp_path / "store" / "in" / "prompts.jsonl").stat().st_mode & 0o777 == 0o666 & ~umask
    assert listdir(base) == ["in"] and listdir(join(base, "in")) == ["prompts.jsonl"]

    copy = local_copy(join(base, "in", "prompts.jsonl"))
    assert copy.name == "prompts.jsonl" and copy.read_bytes() == source.read_bytes()
    assert local_copy(join(base, "in", "prompts.jsonl")) == copy

    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "top.csv").write_text("id,prompt\n1,x\n")
    (tree / "a" / "b" / "deep.jsonl").write_text("{}\n")
    assert upload_tree(tree, join(base, "out")) == [join(base, "out", "a/b/deep.jsonl"), join(base, "out", "top.csv")]
    (tmp_path / "store" / "out-2").mkdir()
    (tmp_path / "store" / "out-2" / "other.csv").write_text("not under out/")
    back = download_tree(join(base, "out"), tmp_path / "back")
    assert back == [tmp_path / "back" / "a" / "b" / "deep.jsonl", tmp_path / "back" / "top.csv"]
    assert [p.read_bytes() for p in back] == [b"{}\n", b"id,prompt\n1,x\n"]
    assert download_tree(join(base, "nothing"), tmp_path / "none") == []
    assert not list((tmp_path / "store").rglob("*.partial")) and not list(tmp_path.rglob(".*"))

    missing = join(base, "in", "missing.csv")
    with pytest.raises(StorageError) as raised:
        read_bytes(missing)
    assert str(raised.value).startswith(missing + ": not found")


def test_a_failed_file_upload_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "store" / "answers.jsonl"
    target.parent.mkdir()
    target.write_bytes(b"old\n")
    source = tmp_path / "answers.jsonl"
    source.write_bytes(b"new\n" * 1000)

    def copy_half_then_fail(src: str, dst: str) -> None:
        Path(dst).write_bytes(Path(src).read_bytes()[:2000])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.shutil, "copyfile", copy_half_then_fail)
    with pytest.raises(StorageError, match="No space left on device"):
        upload_file(source, target.as_uri())
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["answers.jsonl"]


@pytest.mark.parametrize(
    ("url", "package", "extra"), [("gs://b/p.csv", "gcsfs", "gcs"), ("az://c/p.csv", "adlfs", "azure")]
)
def test_a_missing_protocol_package_says_what_to_install(
    url: str, package: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fsspec import registry  # the protocols whose package is loaded

    if url.split(":")[0] in registry:
        pytest.skip(f"{package} is installed and loaded")
    monkeypatch.setitem(sys.modules, package, None)  # importing it fails, installed or not
    with pytest.raises(StorageError) as raised:
        read_bytes(url)
    scheme = url.split("/")[0]
    assert (
        str(raised.value) == f"{url}: reading {scheme}// URLs needs {package}: pip install 'rlhf-orchestrator[{extra}]'"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ftp://host/x.csv", "ftp://host/x.csv: ftp:// is not supported: use s3://, gs://, az:// or file://"),
        ("prompts.csv", "prompts.csv: not a URL: use s3://, gs://, az:// or file://"),
        ("s3://bucket/dir/", "s3://bucket/dir/: not an object URL"),
    ],
)
def test_what_is_not_a_storage_url(url: str, expected: str) -> None:
    with pytest.raises(StorageError) as raised:
        local_copy(url) if url.endswith("/") else read_bytes(url)
    assert str(raised.value).startswith(expected)


@pytest.mark.slow
def test_importing_the_module_imports_no_fsspec() -> None:
    done = _run_python("import sys, common.storage; print(sorted(m for m in ('fsspec', 's3fs') if m in sys.modules))")
    assert done.stdout.strip() == "[]"


# --- s3:// against moto's server --------------------------------------------------------------------------


@pytest.mark.slow
def test_every_function_round_trips_through_s3(s3_bucket: str, tmp_path: Path) -> None:
    source = tmp_path / "prompts.csv"
    source.write_text("id,prompt\np-1,why?\n")
    url = join(s3_bucket, "in", "prompts.csv")

    assert not exists(url) and listdir(s3_bucket) == [] and listdir(join(s3_bucket, "in")) == []
    upload_file(source, url)
    assert exists(url) and exists(join(s3_bucket, "in")) and read_bytes(url) == source.read_bytes()
    assert listdir(s3_bucket) == ["in"] and listdir(join(s3_bucket, "in") + "/") == ["prompts.csv"]
    assert listdir(url) == []  # an object has nothing under it

    source.write_text("id,prompt\np-2,how?\n")
    upload_file(source, url)  # replaces
    assert read_bytes(url) == b"id,prompt\np-2,how?\n"

    tree = tmp_path / "run"
    (tree / "tasks").mkdir(parents=True)
    (tree / "manifest.json").write_text("{}")
    (tree / "tasks" / "t-1.json").write_text('{"id": 1}')
    (tree / "tasks" / "t-2.json").write_text('{"id": 2}')
    upload_file(tree / "manifest.json", join(s3_bucket, "out", "b10", "manifest.json"))  # a longer name
    out = join(s3_bucket, "out", "b1")
    assert upload_tree(tree, out) == [
        join(out, "manifest.json"),
        join(out, "tasks/t-1.json"),
        join(out, "tasks/t-2.json"),
    ]
    assert listdir(out) == ["manifest.json", "tasks"] and listdir(join(out, "tasks")) == ["t-1.json", "t-2.json"]
    back = download_tree(out, tmp_path / "back")
    assert [p.relative_to(tmp_path / "back").as_posix() for p in back] == [
        "manifest.json",
        "tasks/t-1.json",
        "tasks/t-2.json",
    ]
    assert [p.read_text() for p in back] == ["{}", '{"id": 1}', '{"id": 2}']
    assert download_tree(join(s3_bucket, "nothing"), tmp_path / "none") == []
    assert download_tree(url, tmp_path / "one") == [tmp_path / "one" / "prompts.csv"]  # an object: itself


@pytest.mark.slow
def test_local_copy_downloads_once_and_keeps_the_file_name(s3_bucket: str, tmp_path: Path) -> None:
    for name, text in [("a/prompts.csv", "id\n1\n"), ("b/prompts.csv", "id\n2\n"), ("b/prompts.jsonl", "{}\n")]:
        (tmp_path / "f").write_text(text)
        upload_file(tmp_path / "f", join(s3_bucket, name))

    first = local_copy(join(s3_bucket, "a/prompts.csv"))
    other = local_copy(join(s3_bucket, "b/prompts.csv"))
    jsonl = local_copy(join(s3_bucket, "b/prompts.jsonl"))
    assert (first.name, other.name, jsonl.name) == ("prompts.csv", "prompts.csv", "prompts.jsonl")
    assert first != other and first.read_text() == "id\n1\n" and other.read_text() == "id\n2\n"
    assert not first.is_relative_to(tmp_path)

    (tmp_path / "f").write_text("id\nchanged\n")
    upload_file(tmp_path / "f", join(s3_bucket, "a/prompts.csv"))
    assert local_copy(join(s3_bucket, "a/prompts.csv")) == first  # memoised: not downloaded again
    assert first.read_text() == "id\n1\n"


@pytest.mark.slow
def test_a_multipart_upload_goes_whole(s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage, "S3_PART_BYTES", 5 * MiB)  # S3's smallest part: 12 MiB is 3 parts
    big = tmp_path / "answers.jsonl"
    big.write_bytes(_payload(12 * MiB + 17))
    upload_file(big, join(s3_bucket, "answers.jsonl"))
    assert read_bytes(join(s3_bucket, "answers.jsonl")) == big.read_bytes()


@pytest.mark.slow
def test_a_multipart_upload_failing_after_its_first_part_leaves_no_object(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    monkeypatch.setattr(storage, "S3_PART_BYTES", 5 * MiB)
    bucket = s3_bucket.removeprefix("s3://")
    (tmp_path / "old").write_bytes(b"old answers\n")
    upload_file(tmp_path / "old", join(s3_bucket, "existing.jsonl"))
    big = tmp_path / "answers.jsonl"
    big.write_bytes(_payload(12 * MiB))

    calls: list[str] = []
    real_call = s3fs.S3FileSystem._call_s3

    async def failing_second_part(self: Any, method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(method if method != "upload_part" else f"upload_part {kwargs['PartNumber']}")
        if method == "upload_part" and kwargs["PartNumber"] > 1:
            while "part 1 stored" not in calls:  # the parts go concurrently: fail only once part 1 is stored
                await asyncio.sleep(0.01)
            raise ConnectionResetError(104, "Connection reset by peer")
        result = await real_call(self, method, *args, **kwargs)
        if method == "upload_part":
            calls.append("part 1 stored")
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(s3fs.S3FileSystem, "_call_s3", failing_second_part)
        for key in ("fresh.jsonl", "existing.jsonl"):
            calls.clear()
            url = join(s3_bucket, key)
            with pytest.raises(StorageError) as raised:
                upload_file(big, url)
            assert "Connection reset by peer" in _one_line_without_secret(raised.value, url)
            assert calls[0] == "create_multipart_upload" and "part 1 stored" in calls
            assert "complete_multipart_upload" not in calls and "abort_multipart_upload" in calls

    assert not exists(join(s3_bucket, "fresh.jsonl"))
    assert read_bytes(join(s3_bucket, "existing.jsonl")) == b"old answers\n"
    assert s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.slow
def test_an_upload_killed_midway_leaves_no_object(s3_server: S3Server, s3_bucket: str, tmp_path: Path) -> None:
    bucket = s3_bucket.removeprefix("s3://")
    (tmp_path / "old").write_bytes(b"old answers\n")
    upload_file(tmp_path / "old", join(s3_bucket, "existing.jsonl"))
    big = tmp_path / "answers.jsonl"
    big.write_bytes(_payload(16 * MiB))

    for key in ("fresh.jsonl", "existing.jsonl"):
        url = join(s3_bucket, key)
        # A process uploading 5 MiB parts that stalls once its first part is stored (the others wait).
        code = f"""
            import asyncio, sys
            import s3fs
            from pathlib import Path
            from common import storage

            storage.S3_PART_BYTES = 5 * 2**20
            real_call = s3fs.S3FileSystem._call_s3

            async def call(self, method, *args, **kwargs):
                if method == "upload_part" and kwargs["PartNumber"] > 1:
                    await asyncio.sleep(600)
                result = await real_call(self, method, *args, **kwargs)
                if method == "upload_part":
                    print("part 1 stored", flush=True)
                return result

            s3fs.S3FileSystem._call_s3 = call
            storage.upload_file(Path({str(big)!r}), {url!r})
            print("uploaded", flush=True)
        """
        uploader = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        try:
            assert uploader.stdout is not None
            assert uploader.stdout.readline().strip() == "part 1 stored"
            uploader.send_signal(signal.SIGKILL)
            assert uploader.wait(timeout=30) == -signal.SIGKILL
        finally:
            if uploader.poll() is None:
                uploader.kill()
                uploader.wait()

        uploads = s3_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        assert [u["Key"] for u in uploads] == [key]  # it died mid-way: an upload begun, never completed
        parts = s3_server.client().list_parts(Bucket=bucket, Key=key, UploadId=uploads[0]["UploadId"])["Parts"]
        assert [p["PartNumber"] for p in parts] == [1]
        s3_server.client().abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uploads[0]["UploadId"])

    assert not exists(join(s3_bucket, "fresh.jsonl"))
    assert read_bytes(join(s3_bucket, "existing.jsonl")) == b"old answers\n"
    assert listdir(s3_bucket) == ["existing.jsonl"]


@pytest.mark.slow
def test_what_another_process_writes_is_seen(s3_bucket: str, tmp_path: Path) -> None:
    (tmp_path / "v1").write_text("version 1\n")
    upload_file(tmp_path / "v1", join(s3_bucket, "runs/b1/state.json"))
    # Look first, so that a cached listing or object would show up below.
    assert read_bytes(join(s3_bucket, "runs/b1/state.json")) == b"version 1\n"
    assert listdir(join(s3_bucket, "runs/b1")) == ["state.json"]
    assert not exists(join(s3_bucket, "runs/b1/done.json"))
    assert listdir(join(s3_bucket, "runs/b2")) == []

    (tmp_path / "v2").write_text("version 2\n")
    _run_python(
        f"""
        from pathlib import Path
        from common.storage import upload_file
        upload_file(Path({str(tmp_path / "v2")!r}), {join(s3_bucket, "runs/b1/state.json")!r})
        upload_file(Path({str(tmp_path / "v2")!r}), {join(s3_bucket, "runs/b1/done.json")!r})
        upload_file(Path({str(tmp_path / "v2")!r}), {join(s3_bucket, "runs/b2/state.json")!r})
        """
    )
    assert read_bytes(join(s3_bucket, "runs/b1/state.json")) == b"version 2\n"
    assert exists(join(s3_bucket, "runs/b1/done.json"))
    assert listdir(join(s3_bucket, "runs/b1")) == ["done.json", "state.json"]
    assert listdir(join(s3_bucket, "runs/b2")) == ["state.json"]
    assert listdir(join(s3_bucket, "runs")) == ["b1", "b2"]


@pytest.mark.slow
def test_a_missing_bucket_or_object_is_a_storage_error_naming_the_url(s3_bucket: str, tmp_path: Path) -> None:
    missing_object = join(s3_bucket, "in", "nope.jsonl")
    missing_bucket = "s3://rlhf-no-such-bucket/in/prompts.jsonl"
    calls = [
        (read_bytes, missing_object),
        (read_bytes, missing_bucket),
        (local_copy, missing_object),
        (local_copy, missing_bucket),
        (listdir, "s3://rlhf-no-such-bucket/in"),
        (lambda url: download_tree(url, tmp_path / "d"), "s3://rlhf-no-such-bucket/in"),
        (lambda url: upload_file(tmp_path / "f", url), missing_bucket),
    ]
    (tmp_path / "f").write_text("x")
    for call, url in calls:
        with pytest.raises(StorageError) as raised:
            call(url)
        assert ": not found (" in _one_line_without_secret(raised.value, url)
    assert not exists(missing_object) and not exists(missing_bucket)
    assert not (tmp_path / "d").exists() or not list((tmp_path / "d").iterdir())


@pytest.mark.slow
def test_an_unreachable_endpoint_is_a_storage_error_naming_the_url(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint = closed_port_url()
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    url = join(s3_bucket, "in", "prompts.jsonl")
    with pytest.raises(StorageError) as raised:
        exists(url)
    text = _one_line_without_secret(raised.value, url)
    assert f"cannot reach the storage service (AWS_ENDPOINT_URL={endpoint})" in text
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == SECRET_ACCESS_KEY


@pytest.mark.slow
def test_missing_credentials_say_which_variables_to_set(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    url = join(s3_bucket, "in", "prompts.jsonl")
    with pytest.raises(StorageError) as raised:
        read_bytes(url)
    assert "no credentials" in str(raised.value) and "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in str(raised.value)
