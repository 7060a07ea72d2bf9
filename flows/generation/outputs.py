"""Outputs in object storage (``output.dir: s3://…``): staged locally, uploaded whole when the run ends.

A run writes its files in a local staging directory (``RunConfig.batch_dir``) exactly as it writes a
local run directory (every file complete under its final name, or not there), then uploads each file as
one object (``common.storage.upload_file``: an object appears complete or not at all). A sharded
batch's parent downloads the shards' files from the bucket, merges them as it merges local ones and
uploads the result.
"""

from __future__ import annotations

from pathlib import Path

from common.images import IMAGES_DIR
from common.storage import download_tree, exists, join, upload_file
from flows.config import RunConfig

SUMMARY = "summary.json"


def publish(config: RunConfig) -> list[str]:
    """Upload the run's own files (not a batch's ``shards/``) to where they belong, ``summary.json`` last;
    their URLs. Nothing to do for a local output directory.
    """
    if not config.output_is_url:
        return []
    target = str(config.run_location)
    files = [p for p in config.run_dir.iterdir() if p.is_file() and not p.name.endswith(".partial")]
    # summary.json last: a run directory in the bucket whose summary.json is there has every other file
    files.sort(key=lambda p: (p.name == SUMMARY, p.name))
    uploaded = []
    images = config.run_dir / IMAGES_DIR  # the shells' images, one object each (content-addressed: an object
    for path in sorted(images.iterdir()) if images.is_dir() else ():  # already there holds the same bytes)
        url = join(target, IMAGES_DIR, path.name)
        if path.is_file() and not path.name.startswith(".") and not exists(url):
            upload_file(path, url)
            uploaded.append(url)
    for path in files:
        url = join(target, path.name)
        upload_file(path, url)
        uploaded.append(url)
    return uploaded


def fetch_shards(config: RunConfig, count: int) -> None:
    """Download each shard's files from the bucket into the local staging directory, for the merge."""
    if not config.output_is_url:
        return
    for index in range(count):
        download_tree(join(str(config.run_location), "shards", str(index)), config.batch_dir / "shards" / str(index))


def file_location(config: RunConfig, name: str) -> str:
    """Where the run's file ``name`` ends up: a path in the run directory, or its URL."""
    location = config.run_location
    return join(location, name) if isinstance(location, str) else str(Path(location) / name)
