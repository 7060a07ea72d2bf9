"""Prompts with images (issue 33): the prompt file's images checked by their bytes, sent on both wires
(online, in batch mode, to judges), identified by their content, kept once per image, and carried in the
shell's ``content.attachments``.

The simulator derives each answer from the prompt text and the hash of each image it received
(``[image:<sha256[:12]>]``), so a test can tell which image bytes reached which model.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import provider_config, provider_entry, write_config
from scale_check import assert_scale_compatible
from scaleapi.api_client.v2.models.detailed_file import DetailedFile
from scaleapi.api_client.v2.models.image_file import ImageFile
from sim_clients import ANTHROPIC_HEADERS

from common.images import dimensions, identity_view, media_type
from prompts.config import PromptsConfig
from prompts.reader import PromptRecord, content_id, iter_prompts, iter_records
from providers.factory import open_provider
from providers.fingerprint import request_fingerprint
from providers.images import anthropic_image_tokens, image_tokens, openai_image_tokens
from simulator import RunningSimulator
from simulator.answers import answer_marker

REPO = Path(__file__).resolve().parent.parent


def png(width: int, height: int, seed: int, stored: bool = False) -> bytes:
    """An RGB PNG whose pixels depend on ``seed`` (``stored``: uncompressed, so its size is about 3 x w x h)."""
    rows = b"".join(
        b"\x00" + bytes((x * 7 + y * 13 + seed * 31 + c * 17) % 256 for x in range(width) for c in range(3))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(rows, 0 if stored else 6)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def seen_text(text: str, *images: bytes) -> str:
    """The prompt text the simulator answers: the text, then a line per image."""
    return text + "".join(f"\n[image:{tag(image)}]" for image in images)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def records_of(path: Path, **extra: Any) -> list[PromptRecord | Any]:
    return list(iter_records(PromptsConfig(path=str(path), **extra)))


# --------------------------------------------------------------------------------------------------
# Reading and checking


def test_image_bytes_tell_the_format_and_size() -> None:
    assert media_type(png(3, 2, 0)) == "image/png" and dimensions(png(3, 2, 0)) == (3, 2)
    gif = b"GIF89a" + struct.pack("<HH", 7, 5) + b"\x00" * 8
    assert media_type(gif) == "image/gif" and dimensions(gif) == (7, 5)
    jpeg = b"\xff\xd8\xff\xe0\x00\x04ab" + b"\xff\xc0\x00\x0b\x08" + struct.pack(">HH", 20, 30) + b"\x01\x01\x11\x00"
    assert media_type(jpeg) == "image/jpeg" and dimensions(jpeg) == (30, 20)
    webp = b"RIFF" + b"\x00" * 4 + b"WEBPVP8X" + b"\x00" * 8 + (9).to_bytes(3, "little") + (4).to_bytes(3, "little")
    assert media_type(webp) == "image/webp" and dimensions(webp) == (10, 5)
    assert media_type(b"%PDF-1.4") is None and media_type(b"") is None


def test_images_in_a_jsonl_file_short_form_and_content_parts(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png(4, 3, 1))
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": "short", "prompt": "What is this?", "images": ["img/a.png"]},
            {
                "id": "parts",
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "Look:"}, {"type": "image", "path": "img/a.png"}],
                    }
                ],
            },
            {"id": "only-image", "prompt": "", "images": ["img/a.png"]},
        ],
    )
    short, parts, only = records_of(path, image_detail="high")
    assert isinstance(short, PromptRecord) and isinstance(parts, PromptRecord) and isinstance(only, PromptRecord)
    ref = short.images[0]
    assert ref["sha256"] == hashlib.sha256(png(4, 3, 1)).hexdigest() and ref["media_type"] == "image/png"
    assert (ref["width"], ref["height"], ref["detail"], ref["name"]) == (4, 3, "high", "a.png")
    assert Path(ref["file"]) == tmp_path / "img" / "a.png"
    assert parts.messages[-1]["content"] == "Look:" and parts.images == [ref]
    assert only.images == [ref]  # an image alone is a prompt


def test_images_in_a_csv_column(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png(2, 2, 1))
    (tmp_path / "b.png").write_bytes(png(2, 2, 2))
    path = tmp_path / "p.csv"
    path.write_text('id,prompt,images\none,What?,a.png\ntwo,Compare,"[""a.png"", ""b.png""]"\nthree,No image,\n')
    one, two, three = records_of(path)
    assert [r["name"] for r in one.images] == ["a.png"]
    assert [r["name"] for r in two.images] == ["a.png", "b.png"]
    assert three.images == [] and "images" not in three.metadata


def test_bad_images_are_refused_with_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "fake.png").write_text("this is text named like an image")
    (tmp_path / "big.png").write_bytes(png(40, 40, 3, stored=True))
    (tmp_path / "ok.png").write_bytes(png(2, 2, 4))
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": "1", "prompt": "x", "images": ["missing.png"]},
            {"id": "2", "prompt": "x", "images": ["fake.png"]},
            {"id": "3", "prompt": "x", "images": ["big.png"]},
            {"id": "4", "messages": [{"role": "user", "content": [{"type": "image", "path": "ok.png", "url": "x"}]}]},
            {"id": "5", "prompt": "x", "images": "ok.png"},
            {"id": "6", "prompt": "x", "images": ["ok.png"]},
            {"id": "7", "prompt": "x", "images": ["data:image/png;base64,iVBORw0KGgo="]},
        ],
    )
    items = records_of(path, max_image_bytes=2000)
    problems = [str(item) for item in items if not isinstance(item, PromptRecord)]
    assert len(problems) == 6 and isinstance(items[5], PromptRecord)
    assert problems[0].startswith(f"{path}:1: images[0]: image not found: {tmp_path / 'missing.png'}")
    assert problems[1].startswith(f"{path}:2: images[0]: fake.png is not a PNG, JPEG, GIF or WebP image")
    assert f"{path}:3: images[0]: image big.png is " in problems[2] and "prompts.max_image_bytes" in problems[2]
    assert problems[3].startswith(f"{path}:4: messages: [0].content[0]: an image part gives one of 'path' or 'url'")
    assert problems[4].startswith(f"{path}:5: images: must be a list of image paths or URLs")
    assert problems[5].startswith(f"{path}:7: images[0]: a data: URL is not taken here")


def test_validate_refuses_a_prompt_file_with_a_bad_image_and_exits_non_zero(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli.app import app

    (tmp_path / "fake.png").write_text("not an image")
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": "1", "prompt": "x", "images": ["fake.png"]}])
    config = write_config(tmp_path, [{"source_id": "a", "kind": "openai", "model": "m"}], prompts)
    result = CliRunner().invoke(app, ["validate", str(config), "--no-check-keys"])
    assert result.exit_code != 0
    assert f"{prompts}:1: images[0]: fake.png is not a PNG, JPEG, GIF or WebP image" in result.output


# --------------------------------------------------------------------------------------------------
# Identity and token estimates


def test_the_same_bytes_under_two_paths_are_the_same_request(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(png(3, 3, 5))
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "b.png").write_bytes(png(3, 3, 5))
    (tmp_path / "c.png").write_bytes(png(3, 3, 6))
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [{"id": n, "prompt": "Same?", "images": [n]} for n in ("a.png", "copy/b.png", "c.png")],
    )
    a, b, c = records_of(path)
    fingerprints = [request_fingerprint("id", r.messages, None) for r in (a, b, c)]
    assert fingerprints[0] == fingerprints[1] != fingerprints[2]
    ids = [content_id(r.messages, None) for r in (a, b, c)]
    assert ids[0] == ids[1] != ids[2]  # a record without an id is named by its content, images by their bytes
    assert "file" not in identity_view(a.messages)[0]["images"][0]


def test_image_tokens_follow_the_vendors_documented_formulas() -> None:
    assert openai_image_tokens(1024, 1024, "high") == 765  # OpenAI's worked example
    assert openai_image_tokens(2048, 4096, "high") == 1105
    assert openai_image_tokens(4000, 4000, "low") == 85
    assert anthropic_image_tokens(1000, 1000) == 1334  # Anthropic's table: 1000x1000 ~ 1334 tokens
    assert anthropic_image_tokens(3000, 3000) == anthropic_image_tokens(1568, 1568)  # resized first
    messages = [{"role": "user", "content": "x", "images": [{"width": 1000, "height": 1000, "detail": "auto"}]}]
    assert image_tokens(messages) == 1334


# --------------------------------------------------------------------------------------------------
# Both wires over HTTP


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_both_wires_send_the_images_and_the_answer_follows_their_bytes(
    sim: RunningSimulator, tmp_path: Path, fake_keys: dict[str, str], kind: str
) -> None:
    red, blue = png(8, 8, 1), png(8, 8, 2)
    (tmp_path / "red.png").write_bytes(red)
    (tmp_path / "blue.png").write_bytes(blue)
    (tmp_path / "red-again.png").write_bytes(red)
    path = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": "r", "prompt": "Colour?", "images": ["red.png"]},
            {"id": "b", "prompt": "Colour?", "images": ["blue.png"]},
            {"id": "r2", "prompt": "Colour?", "images": ["red-again.png"]},
            {"id": "both", "prompt": "Compare", "images": ["red.png", "blue.png"]},
        ],
    )
    records = list(iter_prompts(PromptsConfig(path=str(path))))

    async def call_all() -> list[str]:
        provider = await open_provider(provider_config(sim, kind, "vision-model"))
        try:
            texts = []
            for record in records:
                result = await provider.call(record.messages, None)
                assert result.ok, result.error
                texts.append(result.text or "")
            return texts
        finally:
            await provider.aclose()

    texts = asyncio.run(call_all())
    assert texts[0].startswith(answer_marker("vision-model", seen_text("Colour?", red)))
    assert texts[1].startswith(answer_marker("vision-model", seen_text("Colour?", blue)))
    assert texts[2] == texts[0] and texts[0] != texts[1]
    assert texts[3].startswith(answer_marker("vision-model", seen_text("Compare", red, blue)))
    assert sim.stats()["by_model"]["vision-model"]["images"] == {tag(red): 3, tag(blue): 2}


def _openai(sim: RunningSimulator, part: dict[str, Any]) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]}
    return httpx.post(f"{sim.openai_base_url}/chat/completions", json=body, timeout=10, trust_env=False)


def _anthropic(sim: RunningSimulator, source: dict[str, Any]) -> httpx.Response:
    body = {
        "model": "m",
        "max_tokens": 10,
        "messages": [{"role": "user", "content": [{"type": "image", "source": source}, {"type": "text", "text": "x"}]}],
    }
    return httpx.post(f"{sim.url}/v1/messages", json=body, headers=ANTHROPIC_HEADERS, timeout=10, trust_env=False)


def _message(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    return str(response.json()["error"]["message"])


def test_the_simulator_refuses_malformed_image_parts_as_the_apis_do(sim: RunningSimulator) -> None:
    image = base64.b64encode(png(2, 2, 1)).decode()
    text = base64.b64encode(b"plain text").decode()
    ok = _openai(sim, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}", "detail": "low"}})
    assert ok.status_code == 200
    assert "unsupported MIME type 'text/plain'" in _message(
        _openai(sim, {"type": "image_url", "image_url": {"url": f"data:text/plain;base64,{text}"}})
    )
    assert "unsupported image" in _message(
        _openai(sim, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{text}"}})
    )
    assert "Supported values are: 'low', 'high', and 'auto'" in _message(
        _openai(sim, {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}", "detail": "max"}})
    )
    assert "image_url.url" in _message(_openai(sim, {"type": "image_url", "image_url": {}}))

    assert _anthropic(sim, {"type": "base64", "media_type": "image/png", "data": image}).status_code == 200
    assert _anthropic(sim, {"type": "url", "url": "https://example.com/a.png"}).status_code == 200
    assert "does not match the provided media type image/jpeg" in _message(
        _anthropic(sim, {"type": "base64", "media_type": "image/jpeg", "data": image})
    )
    assert "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'" in _message(
        _anthropic(sim, {"type": "base64", "media_type": "image/bmp", "data": image})
    )
    assert "Invalid base64 data" in _message(
        _anthropic(sim, {"type": "base64", "media_type": "image/png", "data": "not base64!"})
    )
    big = base64.b64encode(png(1400, 1300, 1, stored=True)).decode()  # about 5.5 MB
    assert "image exceeds 5 MB maximum" in _message(
        _anthropic(sim, {"type": "base64", "media_type": "image/png", "data": big})
    )


# --------------------------------------------------------------------------------------------------
# Runs: online with a judge, in batch mode, the example config


def _run(config: Path) -> dict[str, Any]:
    from flows.generation.generate import generate_tasks

    return asyncio.run(generate_tasks(str(config)))


def _tasks(summary: dict[str, Any]) -> list[dict[str, Any]]:
    with open(summary["files"]["tasks"], encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def _user_message(task: dict[str, Any]) -> dict[str, Any]:
    return next(m for m in task["threads"][0]["turns"][-1]["messages"] if m["role"] == "user")


def assert_scale_accepts(shell: dict[str, Any]) -> None:
    """The shell parses with the ``scaleapi`` SDK: every attachment as its ``ImageFile`` (no key lost), the
    rest with ``Task.from_dict``. (The SDK's ``DetailedFile`` one-of cannot parse any attachment: every one
    of its three schemas has only optional fields and ignores the others' keys, so any object matches all
    three: ``test_the_scale_sdks_detailed_file_matches_every_object_thrice`` pins that.)"""
    stripped = json.loads(json.dumps(shell))
    for turn in stripped["threads"][0]["turns"]:
        for message in turn["messages"]:
            for attachment in message["content"].pop("attachments", []):
                parsed = ImageFile.from_dict(attachment)
                assert parsed is not None and parsed.to_dict() == attachment
    assert_scale_compatible(stripped)


def test_the_scale_sdks_detailed_file_matches_every_object_thrice() -> None:
    for attachment in ({"url": "images/x.png", "mime_type": "image/png"}, {"content": "QQ==", "name": "a"}, {}):
        with pytest.raises(ValueError, match="Multiple matches"):
            DetailedFile.from_dict(attachment)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_a_run_with_images_on_both_wires_and_a_judge_keeps_one_copy_per_image(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    red, blue = png(6, 6, 11), png(6, 6, 12)
    (tmp_path / "red.png").write_bytes(red)
    (tmp_path / "blue.png").write_bytes(blue)
    (tmp_path / "moved").mkdir()
    prompts = write_jsonl(
        tmp_path / "p.jsonl",
        [
            {"id": "a", "prompt": "Which colour?", "images": ["red.png"]},
            {"id": "b", "prompt": "Which colour?", "images": ["blue.png"]},
            {"id": "c", "prompt": "And now?", "images": ["red.png", "https://example.com/cat.jpg"]},
        ],
    )
    providers = [provider_entry(sim, "gpt", "openai", "gpt-v"), provider_entry(sim, "claude", "anthropic", "claude-v")]
    judges = [provider_entry(sim, "judge", "openai", "judge-v", params={"temperature": 0.0})]
    config = write_config(tmp_path, providers, prompts, judges=judges)
    summary = _run(config)

    assert summary["tasks_written"] == 3
    by_model = sim.stats()["by_model"]
    for model in ("gpt-v", "claude-v"):
        assert by_model[model]["requests"] == 3 and by_model[model]["images"][tag(red)] == 2
    url_tag = tag(b"https://example.com/cat.jpg")
    assert by_model["gpt-v"]["images"]["url-" + url_tag] == 1
    judge_images = by_model["judge-v"]["images"]  # the judge saw each prompt's images with every answer
    assert judge_images[tag(red)] == by_model["judge-v"]["requests"] * 2 // 3 and judge_images[tag(blue)] > 0

    run_dir = Path(summary["files"]["tasks"]).parent
    kept = sorted(p.name for p in (run_dir / "images").iterdir())
    assert kept == sorted(f"{hashlib.sha256(i).hexdigest()}.png" for i in (red, blue))  # one copy each
    tasks = {t["metadata"]["prompt_id"]: t for t in _tasks(summary)}
    attachments = _user_message(tasks["c"])["content"]["attachments"]
    assert attachments == [
        {
            "url": f"images/{hashlib.sha256(red).hexdigest()}.png",
            "mime_type": "image/png",
            "name": "red.png",
            "file_size_in_bytes": len(red),
        },
        {"url": "https://example.com/cat.jpg", "name": "cat.jpg"},
    ]
    assert (run_dir / attachments[0]["url"]).read_bytes() == red
    answers = {m["source_id"]: m["content"]["text"] for m in tasks["a"]["threads"][0]["turns"][-1]["messages"]}
    assert answers["gpt"].startswith(answer_marker("gpt-v", seen_text("Which colour?", red)))
    for task in tasks.values():
        assert_scale_accepts(task)

    # The same bytes under another path: the same requests, answered from the store (no call).
    shutil.move(tmp_path / "red.png", tmp_path / "moved" / "renamed.png")
    write_jsonl(
        prompts,
        [
            {"id": "a", "prompt": "Which colour?", "images": ["moved/renamed.png"]},
            {"id": "b", "prompt": "Which colour?", "images": ["blue.png"]},
            {"id": "c", "prompt": "And now?", "images": ["moved/renamed.png", "https://example.com/cat.jpg"]},
        ],
    )
    sim.reset()
    again = _run(config)
    assert again["tasks_written"] == 3 and sim.stats()["requests_total"] == 0
    assert sorted(p.name for p in (run_dir / "images").iterdir()) == kept


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_batch_mode_sends_the_images_and_the_splitter_counts_their_bytes(sim: RunningSimulator, tmp_path: Path) -> None:
    images = [png(24, 24, seed, stored=True) for seed in range(4)]  # about 1.8 kB each, 2.4 kB in base64
    for index, data in enumerate(images):
        (tmp_path / f"{index}.png").write_bytes(data)
    prompts = write_jsonl(
        tmp_path / "p.jsonl", [{"id": f"p{i}", "prompt": "Describe.", "images": [f"{i}.png"]} for i in range(4)]
    )
    providers = [
        provider_entry(sim, kind, kind, f"{kind}-batch", mode="batch", batch_poll_s=0.1, batch_max_bytes=6000)
        for kind in ("openai", "anthropic")
    ]
    summary = _run(write_config(tmp_path, providers, prompts))

    assert summary["tasks_written"] == 4
    for task in _tasks(summary):
        index = int(task["metadata"]["prompt_id"][1:])
        answers = {m["source_id"]: m["content"]["text"] for m in task["threads"][0]["turns"][-1]["messages"][1:]}
        for kind in ("openai", "anthropic"):
            assert answers[kind].startswith(answer_marker(f"{kind}-batch", seen_text("Describe.", images[index])))
    for api in ("openai", "anthropic"):
        sizes = [b["total"] for b in sim.batches() if b["api"] == api]
        assert len(sizes) >= 2 and sum(sizes) == 4  # 4 x 2.4 kB of images do not fit in one 6 kB batch


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api")
def test_the_example_config_with_images_runs(
    sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copytree(REPO / "examples" / "images", tmp_path / "images")
    config = yaml.safe_load((REPO / "examples" / "images.yaml").read_text())
    config["output"] = {"dir": str(tmp_path / "out")}
    path = tmp_path / "images.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("SIM_URL", sim.url)
    monkeypatch.setenv("SIM_OPENAI_KEY", "sk-sim")
    monkeypatch.setenv("SIM_ANTHROPIC_KEY", "sk-ant-sim")
    summary = _run(path)
    assert summary["tasks_written"] == 4 and summary["incomplete"] == 0
    tasks = {t["metadata"]["prompt_id"]: t for t in _tasks(summary)}
    assert [a["name"] for a in _user_message(tasks["img-4"])["content"]["attachments"]] == [
        "red_circle.png",
        "blue_circle.png",
    ]
    assert len(list((tmp_path / "out" / "images-demo" / "images").iterdir())) == 3


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_images_next_to_a_prompt_file_in_s3_are_read_and_the_run_uploads_one_copy_each(
    sim: RunningSimulator, tmp_path: Path, s3_bucket: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pg_server import PASSWORD, PASSWORD_ENV

    from common.storage import join, listdir, read_bytes, upload_file

    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    red = png(5, 5, 21)
    (tmp_path / "red.png").write_bytes(red)
    upload_file(tmp_path / "red.png", join(s3_bucket, "in", "pics", "red.png"))
    prompts = write_jsonl(
        tmp_path / "p.jsonl",
        [{"id": f"p{i}", "prompt": f"Question {i}", "images": ["pics/red.png"]} for i in range(3)],
    )
    upload_file(prompts, join(s3_bucket, "in", "p.jsonl"))
    config = {
        "project": "test-project",
        "batch": "b1",
        "prompts": {"path": join(s3_bucket, "in", "p.jsonl")},
        "providers": [provider_entry(sim, "gpt", "openai", "gpt-v"), provider_entry(sim, "claude", "anthropic", "c")],
        "annotation": {"template": "default", "seed": 3},
        "output": {"dir": join(s3_bucket, "out"), "store": postgres_url, "store_password_env": PASSWORD_ENV},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    summary = _run(path)

    assert summary["tasks_written"] == 3
    assert sim.stats()["by_model"]["gpt-v"]["images"] == {tag(red): 3}
    run_url = join(s3_bucket, "out", "b1")
    name = f"{hashlib.sha256(red).hexdigest()}.png"
    assert listdir(join(run_url, "images")) == [name] and read_bytes(join(run_url, "images", name)) == red
    task = json.loads(read_bytes(join(run_url, "tasks.jsonl")).splitlines()[0])
    assert _user_message(task)["content"]["attachments"][0]["url"] == f"images/{name}"


def test_a_shells_images_become_urls_a_browser_loads(tmp_path: Path) -> None:
    from task_builder.attachments import ImageNotShowable, shown_images

    red = png(3, 3, 31)
    name = f"{hashlib.sha256(red).hexdigest()}.png"
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / name).write_bytes(red)
    attachments = [
        {"url": f"images/{name}", "mime_type": "image/png", "name": "red.png", "file_size_in_bytes": len(red)},
        {"url": "https://example.com/cat.jpg", "name": "cat.jpg"},
    ]
    user = {"role": "user", "content": {"text": "What?", "attachments": attachments}, "source_id": "user"}
    shell = {"threads": [{"turns": [{"messages": [user]}]}]}
    inline, web = shown_images(shell, tmp_path)
    assert inline == "data:image/png;base64," + base64.b64encode(red).decode() and web == attachments[1]["url"]
    assert shown_images(shell, tmp_path, inline_max_bytes=10, serve=lambda p: f"/files/{p.name}")[0] == f"/files/{name}"
    with pytest.raises(ImageNotShowable, match="over 10 to inline"):
        shown_images(shell, tmp_path, inline_max_bytes=10)


@pytest.mark.usefixtures("fake_keys")
def test_plan_counts_the_images_tokens(tmp_path: Path) -> None:
    from flows.reporting.plan import plan_run

    (tmp_path / "big.png").write_bytes(png(1000, 1000, 41))
    with_image = write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "prompt": "Describe.", "images": ["big.png"]}])
    without = write_jsonl(tmp_path / "b.jsonl", [{"id": "1", "prompt": "Describe."}])
    provider = [{"source_id": "c", "kind": "anthropic", "model": "m", "base_url": "http://127.0.0.1:9"}]
    tokens = []
    for prompts in (with_image, without):
        (tmp_path / "out").mkdir(exist_ok=True)
        config = write_config(tmp_path, provider, prompts)
        tokens.append(plan_run(config)["providers"]["c"]["input_tokens"])
    assert tokens[0] - tokens[1] == 1334  # 1000 x 1000 / 750: the larger of the two vendors' counts
