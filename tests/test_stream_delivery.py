"""Tasks that arrive while the batch runs (issue 28, part 4): ``rlhf run --deliver label-studio`` and the
config's ``delivery:`` block deliver each chunk's tasks to a real Label Studio as the run writes them.

Real Prefect flow runs against the provider simulator, a real Label Studio (fixture ``label_studio``);
a Label Studio that stops is a real TCP forwarder in front of it whose listening port the test closes
(connections refused, as from a stopped server) and opens again.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import closed_port_url, provider_entry, write_config, write_prompts
from pydantic import SecretStr

from common.errors import InputError
from flows.config import load_config
from flows.delivery.deliver import deliver_label_studio
from flows.generation.generate import generate_tasks
from platforms.label_studio.client import LabelStudioClient
from platforms.label_studio.local_server import LabelStudioServer
from simulator import FaultRule, RunningSimulator

RLHF = str(Path(sys.executable).with_name("rlhf"))


class Forwarder:
    """A TCP forwarder from a fixed loopback port to ``target``; :meth:`stop` closes the port (connections
    are refused, as by a stopped server) and cuts open connections, :meth:`start` listens again."""

    def __init__(self, target: str) -> None:
        host, port = target.removeprefix("http://").split(":")
        self._target = (host, int(port))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (a close alone would not)
            except OSError:
                pass
            listener.close()
        with self._lock:
            for sock in self._open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _providers(sim: RunningSimulator, timeout_s: float = 5) -> list[dict[str, Any]]:
    return [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", timeout_s=timeout_s),
        provider_entry(sim, "claude", "anthropic", "claude-x", timeout_s=timeout_s),
    ]


def _project_tasks(url: str, token: str, title: str) -> list[str]:
    """Our task ids of every task in the project titled ``title`` (duplicates kept), [] if none."""
    with LabelStudioClient(url, SecretStr(token)) as client:
        project = client.find_project(title)
        if project is None:
            return []
        tasks = client._pages("/api/tasks", {"project": project["id"], "fields": "all"}, "tasks")
        return [str(task["data"]["task_id"]) for task in tasks]


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_tasks_reach_label_studio_while_the_run_goes_and_a_stopped_server_is_completed_by_deliver(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk 0's tasks are in Label Studio while chunk 1's first call still hangs; Label Studio then stops:
    the run still writes every task, ends Completed and lists the undelivered chunks; ``rlhf deliver``
    afterwards imports exactly those; a rerun delivers nothing new. No task is ever in the project twice."""
    sim.configure(mode="auto", faults=[FaultRule(kind="hang", prompt_contains="number 2:", times=1, hang_s=3600)])
    monkeypatch.setenv("LS_STREAM_TOKEN", label_studio.token)
    forwarder = Forwarder(label_studio.url)
    forwarder.start()
    title = f"stream {tmp_path.name}"
    delivery = {"url": forwarder.url, "token_env": "LS_STREAM_TOKEN", "project_title": title}
    config = write_config(
        tmp_path,
        _providers(sim, timeout_s=30),  # the hanging call is given up after 30 s, then answered on retry
        write_prompts(tmp_path / "p.jsonl", 6),
        chunk_size=2,
        delivery={**delivery, "retries": 2, "retry_wait_s": 0.1},
    )
    seen: dict[str, Any] = {}
    done = threading.Event()

    def watch() -> None:  # polls Label Studio directly (not through the forwarder) while the run goes
        while not done.is_set():
            ids = _project_tasks(label_studio.url, label_studio.token, title)
            if ids:
                seen.update(at=time.monotonic(), ids=ids)
                forwarder.stop()  # Label Studio "stops" for the rest of the run
                return
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        summary = asyncio.run(generate_tasks(str(config)))  # Completed: a failed delivery fails no run
    finally:
        ended = time.monotonic()
        done.set()
        watcher.join()
    assert seen, "no task reached Label Studio before the run ended"
    assert seen["at"] < ended - 5, "the first chunk's tasks arrived only as the run ended"
    run_dir = Path(summary["files"]["tasks"]).parent
    shells = [json.loads(line)["task_id"] for line in (run_dir / "tasks.jsonl").read_text().splitlines()]
    assert summary["tasks_written"] == len(shells) == 6  # generation went on without Label Studio
    assert sorted(seen["ids"]) == sorted(shells[:2])  # chunk 0, and only chunk 0, while chunk 1 hung

    report = summary["delivery"]
    assert (report["chunks_delivered"], report["imported"]) == (1, 2)
    assert [entry["chunk"] for entry in report["undelivered"]] == [1, 2]
    assert report["undelivered_tasks"] == 4
    assert "cannot reach Label Studio" in report["undelivered"][0]["error"]
    assert label_studio.token not in json.dumps(summary)
    assert report["complete_with"].startswith(f"rlhf deliver {run_dir} --url {forwarder.url}")
    assert json.loads((run_dir / "summary.json").read_text())["delivery"] == report

    forwarder.start()  # Label Studio is back: the command the run printed completes the delivery
    env = {**os.environ, "LS_STREAM_TOKEN": label_studio.token}
    args = report["complete_with"].split(" ", 1)[1]
    result = subprocess.run(
        [RLHF, *_split(args), "--json"], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    completed = json.loads(result.stdout)
    assert (completed["imported"], completed["already_delivered"]) == (4, 2)
    in_project = _project_tasks(label_studio.url, label_studio.token, title)
    assert Counter(in_project) == Counter(shells)  # every task once

    rerun = asyncio.run(generate_tasks(str(config)))  # resumes from the store: every chunk already there
    assert (rerun["delivery"]["imported"], rerun["delivery"]["already_delivered"]) == (0, 6)
    assert rerun["delivery"]["undelivered"] == []
    assert Counter(_project_tasks(label_studio.url, label_studio.token, title)) == Counter(shells)
    kept = (run_dir / "delivered" / "tasks.jsonl").read_text().splitlines()
    assert Counter(json.loads(line)["task_id"] for line in kept) == Counter(shells)  # each version kept once
    forwarder.stop()


def _split(command: str) -> list[str]:
    import shlex

    return shlex.split(command)


@pytest.mark.slow
@pytest.mark.usefixtures("fake_keys")
def test_rlhf_run_against_a_closed_port_writes_every_task_and_exits_7_naming_rlhf_deliver(
    sim: RunningSimulator, tmp_path: Path, prefect_api: str
) -> None:
    config = write_config(tmp_path, _providers(sim), write_prompts(tmp_path / "p.jsonl", 4), chunk_size=2)
    url = closed_port_url()
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "LS_CLOSED_TOKEN": "a-secret-token-0123456789"}
    result = subprocess.run(
        [RLHF, "run", str(config), "--deliver", "label-studio", "--url", url, "--token-env", "LS_CLOSED_TOKEN", "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert result.returncode == 7, result.stdout + result.stderr
    run_dir = tmp_path / "out" / "b1"
    assert len((run_dir / "tasks.jsonl").read_text().splitlines()) == 4  # every task written
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [entry["chunk"] for entry in summary["delivery"]["undelivered"]] == [0, 1]
    text = " ".join((result.stdout + result.stderr).split())
    assert "4 task(s) of chunk(s) 0, 1 were not delivered" in text
    assert f"rlhf deliver {run_dir} --url {url}" in text and "--token-env LS_CLOSED_TOKEN" in text
    assert "a-secret-token-0123456789" not in result.stdout + result.stderr + json.dumps(summary)


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_streamed_pairwise_tasks_are_what_rlhf_deliver_makes_of_the_finished_run(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same batch, two output directories: one delivered as it ran, one by ``rlhf deliver`` afterwards; the
    Label Studio tasks (blind answer positions, the pairs, hashes, forms) are the same."""
    sim.configure(mode="auto")
    monkeypatch.setenv("LS_STREAM_TOKEN", label_studio.token)
    providers = [*_providers(sim), provider_entry(sim, "llama", "openai", "llama-3")]
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    annotation = {"template": "default", "seed": 3, "layout": "pairwise"}
    streamed_title, delivered_title = f"pairs streamed {tmp_path.name}", f"pairs delivered {tmp_path.name}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    streamed_config = write_config(
        tmp_path / "a",
        providers,
        prompts,
        chunk_size=2,
        annotation=annotation,
        delivery={"url": label_studio.url, "token_env": "LS_STREAM_TOKEN", "project_title": streamed_title},
    )
    plain_config = write_config(tmp_path / "b", providers, prompts, chunk_size=2, annotation=annotation)
    streamed = asyncio.run(generate_tasks(str(streamed_config)))
    plain = asyncio.run(generate_tasks(str(plain_config)))
    delivered = deliver_label_studio(
        Path(plain["files"]["tasks"]).parent, label_studio.url, SecretStr(label_studio.token), delivered_title
    )
    assert streamed["delivery"]["imported"] == delivered["imported"] == 9  # 3 prompts x 3 pairs
    assert [p["answers"] for p in delivered["projects"]] == [2]

    def tasks(title: str) -> tuple[str, dict[str, dict[str, Any]]]:
        with LabelStudioClient(label_studio.url, SecretStr(label_studio.token)) as client:
            project = client.find_project(title)
            assert project is not None
            found = client._pages("/api/tasks", {"project": project["id"], "fields": "all"}, "tasks")
            return project["label_config"], {task["data"]["task_id"]: task["data"] for task in found}

    assert tasks(streamed_title) == tasks(delivered_title)
    for data in tasks(streamed_title)[1].values():
        assert not {"gpt-4o", "claude", "llama"} & set(json.dumps(data).split('"'))  # positions, not models


def test_delivery_block_errors_name_file_line_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.delenv("LS_UNSET_TOKEN", raising=False)
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    entry = {"source_id": "a", "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    cases = [
        ({"url": "ftp://ls.example"}, "delivery.url", "http:// or https://"),
        ({"url": "http://user:pw@ls.example"}, "delivery.url", "without credentials"),
        ({"url": "http://ls.example", "retries": 0}, "delivery.retries", "greater than or equal to 1"),
        ({"url": "http://ls.example", "predictions": "most"}, "delivery.predictions", "'none', 'all' or 'half'"),
        ({"url": "http://ls.example", "projcet_title": "x"}, "delivery.projcet_title", "did you mean 'project_title'"),
        (
            {"url": "http://ls.example", "token_env": "LS_UNSET_TOKEN"},
            "delivery.token_env",
            "LS_UNSET_TOKEN is not set",
        ),
        ({"url": "http://ls.example", "judge": "nobody"}, "delivery.judge", "not one of the run's judges"),
        ({"token_env": "LS_UNSET_TOKEN"}, "delivery.url", "required"),
    ]
    for block, field, words in cases:
        monkeypatch.setenv("LABEL_STUDIO_TOKEN", "t")
        config = write_config(tmp_path, [entry], prompts, delivery=block)
        lines = config.read_text().splitlines()
        with pytest.raises(InputError) as raised:
            load_config(config)
        problems = [p for p in raised.value.problems if p.field == field]
        assert problems, (field, [str(p) for p in raised.value.problems])
        problem = problems[0]
        assert problem.file == str(config) and words in problem.message, str(problem)
        assert problem.line is not None, str(problem)
        named = lines[problem.line - 1].strip()
        assert named.startswith((field.split(".")[-1] + ":", "delivery:")), (field, named)
        assert "pw" not in str(problem)


def test_delivery_block_leaves_the_config_hash_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Delivering as the run goes changes nothing the run produces: the same hash, so the same run id."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("LABEL_STUDIO_TOKEN", "t")
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    entry = {"source_id": "a", "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    plain = load_config(write_config(tmp_path, [entry], prompts)).config_hash()
    streamed = load_config(write_config(tmp_path, [entry], prompts, delivery={"url": "http://ls:8080"}))
    assert streamed.config_hash() == plain and streamed.delivery is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--url", "http://ls:8080"], "--url only with --deliver label-studio"),
        (["--deliver", "argilla"], "unknown --deliver target 'argilla'"),
        (["--deliver", "label-studio"], "url"),
        (["--deliver", "label-studio", "--url", "http://ls:8080", "--token-env", "LS_UNSET_TOKEN"], "LS_UNSET_TOKEN"),
    ],
)
def test_rlhf_run_deliver_options_are_checked_before_anything_runs(tmp_path: Path, args: list[str], words: str) -> None:
    prompts = write_prompts(tmp_path / "p.jsonl", 1)
    entry = {"source_id": "a", "kind": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1"}
    config = write_config(tmp_path, [entry], prompts)
    env = {k: v for k, v in os.environ.items() if k != "LS_UNSET_TOKEN"}
    env["OPENAI_API_KEY"] = "sk-test"
    result = subprocess.run(
        [RLHF, "run", str(config), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert words in " ".join(result.stderr.split()) + " ".join(result.stdout.split())
    assert not (tmp_path / "out").exists()  # nothing ran


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_two_deliveries_of_one_run_at_once_import_every_task_once(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path
) -> None:
    """A run delivering as it goes and an ``rlhf deliver`` of the same run directory (here: two deliveries
    started together) take turns: one project of the title, every task once."""
    sim.configure(mode="auto")
    config = write_config(tmp_path, _providers(sim), write_prompts(tmp_path / "p.jsonl", 8))
    run_dir = Path(asyncio.run(generate_tasks(str(config)))["files"]["tasks"]).parent
    title = f"together {tmp_path.name}"
    start = threading.Barrier(2)
    reports: list[dict[str, Any]] = []

    def deliver() -> None:
        start.wait()
        reports.append(deliver_label_studio(run_dir, label_studio.url, SecretStr(label_studio.token), title))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(report["imported"] for report in reports) == [0, 8]
    with LabelStudioClient(label_studio.url, SecretStr(label_studio.token)) as client:
        projects = [p for p in client._pages("/api/projects", {"title": title}, "results") if p["title"] == title]
    assert len(projects) == 1
    assert sorted(Counter(_project_tasks(label_studio.url, label_studio.token, title)).values()) == [1] * 8


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_streamed_chunks_all_prefill_the_judge_the_first_chunk_chose(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Judges' values go as predictions, one judge per project: a later chunk never picks another judge
    (which the project rules would refuse), so every chunk is delivered."""
    from test_judges import answer_providers, judge_entries

    monkeypatch.setenv("LS_STREAM_TOKEN", label_studio.token)
    title = f"judged stream {tmp_path.name}"
    config = write_config(
        tmp_path,
        answer_providers(sim),
        write_prompts(tmp_path / "p.jsonl", 6),
        judges=judge_entries(sim),
        chunk_size=2,
        delivery={"url": label_studio.url, "token_env": "LS_STREAM_TOKEN", "project_title": title},
    )
    report = asyncio.run(generate_tasks(str(config)))["delivery"]
    assert (report["undelivered"], report["imported"]) == ([], 6)
    with LabelStudioClient(label_studio.url, SecretStr(label_studio.token)) as client:
        project = client.find_project(title)
        assert project is not None
        tasks = list(client._pages("/api/tasks", {"project": project["id"], "fields": "all"}, "tasks"))
        versions = {
            p["model_version"]
            for task in tasks
            for p in client.request("GET", f"/api/tasks/{task['id']}")["predictions"]
        }
    assert len(tasks) == 6 and len(versions) == 1 and project["model_version"] in versions


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_streamed_delivery_carries_the_prompts_images_and_keeps_the_image_form_for_later_chunks(
    label_studio: LabelStudioServer, sim: RunningSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk 0's prompts have images, chunk 1's have none: every task reaches Label Studio as the run goes,
    the first two with their images inlined, and the project keeps the form that shows them (the later
    text-only tasks carry an empty list)."""
    import base64

    from test_prompt_images import png

    sim.configure(mode="auto")
    monkeypatch.setenv("LS_STREAM_TOKEN", label_studio.token)
    red, blue = png(6, 6, 61), png(6, 6, 62)
    (tmp_path / "red.png").write_bytes(red)
    (tmp_path / "blue.png").write_bytes(blue)
    prompts = tmp_path / "p.jsonl"
    records = [
        {"id": "a", "prompt": "Which colour?", "images": ["red.png"]},
        {"id": "b", "prompt": "Compare them.", "images": ["red.png", "blue.png"]},
        {"id": "c", "prompt": "Name a colour."},
        {"id": "d", "prompt": "Name a shape."},
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    title = f"images streamed {tmp_path.name}"
    config = write_config(
        tmp_path,
        _providers(sim),
        prompts,
        chunk_size=2,
        delivery={"url": label_studio.url, "token_env": "LS_STREAM_TOKEN", "project_title": title},
    )
    summary = asyncio.run(generate_tasks(str(config)))
    assert summary["delivery"]["imported"] == 4 and not summary["delivery"]["undelivered"]
    by_task = {
        shell["task_id"]: shell["metadata"]["prompt_id"]
        for shell in map(json.loads, Path(summary["files"]["tasks"]).read_text().splitlines())
    }
    with LabelStudioClient(label_studio.url, SecretStr(label_studio.token)) as client:
        project = client.find_project(title)
        assert project is not None and '<Repeater on="$prompt_images"' in project["label_config"]
        found = client._pages("/api/tasks", {"project": project["id"], "fields": "all"}, "tasks")
        shown = {by_task[t["data"]["task_id"]]: [i["url"] for i in t["data"]["prompt_images"]] for t in found}

    def inlined(data: bytes) -> str:
        return "data:image/png;base64," + base64.b64encode(data).decode()

    assert shown == {"a": [inlined(red)], "b": [inlined(red), inlined(blue)], "c": [], "d": []}
