"""A prompt's images in the Label Studio task: inlined for the form's <Image> tags next to the prompt, blind,
refused over the limit, and never taken from text such as a model's answer (the browser side is in
test_annotator_browser.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_prompt_images import png

from platforms.label_studio.labeling_config import PROMPT_IMAGES, build_labeling_config
from platforms.label_studio.tasks import prompt_images, to_label_studio
from task_builder.render import RenderOptions, render_answer, render_conversation
from task_builder.template import AnnotationTemplate, DisplayOptions, resolve_template

SOURCES = ("vendor-north", "vendor-south")
MODELS = ("gpt-4o-2024-05-13", "claude-3-5-sonnet-20240620")


def _shell(run_dir: Path, images: list[bytes], web: list[str] = (), answers: tuple[str, str] = ("A.", "B.")) -> Any:
    """A two-answer shell whose user message carries ``images`` (kept in ``run_dir/images``) and ``web`` URLs."""
    attachments: list[dict[str, Any]] = []
    (run_dir / "images").mkdir(exist_ok=True)
    for index, data in enumerate(images):
        name = f"images/{hashlib.sha256(data).hexdigest()}.png"
        (run_dir / name).write_bytes(data)
        attachments.append(
            {"url": name, "mime_type": "image/png", "name": f"photo-{index}.png", "file_size_in_bytes": len(data)}
        )
    attachments += [{"url": url, "name": url.rsplit("/", 1)[-1]} for url in web]
    user = {"role": "user", "source_id": "user", "content": {"text": "What colour is it?", "attachments": attachments}}
    replies = [
        {"role": "assistant", "source_id": source, "content": {"text": text}, "annotations": []}
        for source, text in zip(SOURCES, answers, strict=True)
    ]
    return {
        "task_id": "t-0001",
        "threads": [{"turns": [{"messages": [user, *replies], "annotations": []}]}],
        "metadata": {"responses": {s: {"model": m} for s, m in zip(SOURCES, MODELS, strict=True)}},
    }


def _srcs(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\bsrc="([^"]*)"', html)


def test_the_prompts_images_go_into_the_task_for_the_forms_image_tags_and_name_no_model(tmp_path: Path) -> None:
    red, blue = png(6, 6, 1), png(7, 5, 2)
    shell = _shell(tmp_path, [red, blue], web=["https://example.com/cat.jpg?size=s&v=2"])
    template = resolve_template("default")
    task = to_label_studio(shell, template, prompt_images(shell, tmp_path, template))

    assert task["data"][PROMPT_IMAGES] == [
        {"url": "data:image/png;base64," + base64.b64encode(red).decode()},
        {"url": "data:image/png;base64," + base64.b64encode(blue).decode()},
        {"url": "https://example.com/cat.jpg?size=s&v=2"},
    ]
    everything = json.dumps(task)
    assert "photo-0.png" not in everything  # the prompt file's names are not shown (only the bytes are)
    for word in (*SOURCES, *MODELS):
        assert word not in everything
    for field in ("prompt", "response_a", "response_b"):
        assert not _srcs(task["data"][field])  # the images are the form's <Image> tags, not HTML

    form = build_labeling_config(template, 2, images=True).xml
    assert f'<Repeater on="${PROMPT_IMAGES}"' in form and f'value="${PROMPT_IMAGES}[{{{{idx}}}}].url"' in form
    assert form.index('name="prompt"') < form.index("<Repeater") < form.index('name="response_a"')  # by the prompt
    assert "Repeater" not in build_labeling_config(template, 2).xml  # a text-only form is unchanged


def test_an_image_over_the_inline_limit_stops_the_delivery_naming_task_image_and_setting(tmp_path: Path) -> None:
    big = png(40, 40, 3, stored=True)  # about 4.9 kB
    shell = _shell(tmp_path, [big])
    template = AnnotationTemplate(name="tiny", display=DisplayOptions(inline_image_max_bytes=1000))
    with pytest.raises(ValueError) as caught:
        prompt_images(shell, tmp_path, template)
    message = str(caught.value)
    assert "t-0001" in message and "photo-0.png" in message and "display.inline_image_max_bytes" in message
    assert "1,000" in message and f"{len(big):,}" in message
    raised = AnnotationTemplate(name="roomy", display=DisplayOptions(inline_image_max_bytes=len(big)))
    assert len(prompt_images(shell, tmp_path, raised)) == 1  # at the limit: inlined


def test_a_missing_run_directory_copy_stops_the_delivery(tmp_path: Path) -> None:
    shell = _shell(tmp_path, [png(4, 4, 5)])
    for copy in (tmp_path / "images").iterdir():
        copy.unlink()
    with pytest.raises(ValueError, match="t-0001: cannot show .*no copy of this image"):
        prompt_images(shell, tmp_path)


DATA_PNG = "data:image/png;base64," + base64.b64encode(png(2, 2, 9)).decode()
HOSTILE_IMAGES = [
    f"![look]({DATA_PNG})",
    f'<img src="{DATA_PNG}">',
    f'<p><img src="{DATA_PNG}" alt="x"></p>',
    f"[click]({DATA_PNG})",
]


@pytest.mark.parametrize("remote_images", [False, True])
@pytest.mark.parametrize("text", HOSTILE_IMAGES)
def test_a_data_image_in_a_models_answer_or_the_prompt_text_is_never_shown(text: str, remote_images: bool) -> None:
    options = RenderOptions(remote_images=remote_images)
    for html in (render_answer(text, options=options), render_conversation([("User", text)], options)):
        assert not _srcs(html)  # no image loads: an <img> keeps no src, raw HTML is shown as characters
        assert not re.search(r"<[^>]*\b(src|href)=\"data:", html)  # no tag points at the data either


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "data:image/svg+xml;base64,PHN2Zz4=",
        "https://example.com/x.png onerror=alert(1)",
        "data:image/png;base64,AAAA\" onload='x'",
    ],
)
def test_only_raster_data_urls_and_web_urls_reach_the_image_tags(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValueError, match="prompt image 1"):
        to_label_studio(_shell(tmp_path, []), None, [url])


def test_a_text_only_prompt_is_delivered_as_before(tmp_path: Path) -> None:
    shell = _shell(tmp_path, [])
    assert prompt_images(shell, tmp_path) == []
    task = to_label_studio(shell, None, [])
    assert PROMPT_IMAGES not in task["data"]
    assert task["data"]["prompt"] == render_conversation([("User", "What colour is it?")])
