"""Delivery as the run goes: each chunk's task shells go to Label Studio as soon as they are written.

``rlhf run --deliver label-studio`` or a ``delivery:`` block in the run config. The task writer process
(``flows/generation/writer_process.py``) hands every chunk's shells, as the JSON lines it wrote, to a
:class:`StreamDelivery`: a thread of that process that delivers them with the very function ``rlhf
deliver`` uses (:func:`flows.delivery.deliver.deliver_shells`: same projects, titles, forms, predictions
rules, kept versions and ``deliveries.jsonl`` records; tasks already in the projects are not imported
again), under the run directory's delivery lock. The provider calls' event loop never waits for it: the
writer process runs on the other core, and the thread waits on the network, not on the writer.

A delivery that fails is retried (``tenacity``: ``retries`` attempts, exponential waits from
``retry_wait_s``); a chunk still undelivered after that is recorded and the run goes on. While Label
Studio is failing, the next chunks get one attempt each (a stopped server must not hold the run's end
for every chunk's retries); the first success restores the retries. The run's summary then lists the
undelivered chunks and the ``rlhf deliver`` command that completes the delivery (it imports only what is
missing). Nothing is ever raised into the writer: generation never stops for a delivery.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a delivery starts: the writer process imports this module either way
    from flows.config import RunConfig
    from platforms.label_studio.client import LabelStudioClient
    from task_builder.template import AnnotationTemplate

_STOP = None


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What a run that delivers as it goes needs to know (plain data: it goes to the writer process).

    ``token_env`` names the variable holding the token; the token itself is read where it is used.
    ``widest``: the answer count a complete task of the layout has (its tasks go to ``title``).
    """

    url: str
    token_env: str
    title: str
    predictions: str
    judge: str | None
    widest: int
    carried: bool = False  # pairwise: each answer rated once per prompt (flows.delivery.deliver.LabelStudioTarget)
    retries: int = 5
    retry_wait_s: float = 1.0
    timeout_s: float = 30.0
    annotators_per_task: int | None = None  # Label Studio's overlap, set on every project delivered to


def layout_width(config: RunConfig) -> int:
    """The answer count of a complete task of the run's layout: its tasks go to the project's base title
    (tasks that lost answers to ``<title> (k answers)``), the same for every chunk."""
    layout = config.annotation.layout
    return 2 if layout == "pairwise" else 1 if layout == "single" else config.answers_per_prompt


def stream_settings(config: RunConfig) -> StreamSettings | None:
    """The settings of the run's delivery as it goes (its ``delivery:``), or None when it has none."""
    delivery = config.delivery
    if delivery is None:
        return None
    return StreamSettings(
        url=delivery.url,
        token_env=delivery.token_env,
        title=delivery.project_title or f"{config.project} / {config.batch}",
        predictions=delivery.predictions,
        judge=delivery.judge,
        widest=layout_width(config),
        carried=config.annotation.layout == "pairwise",
        retries=delivery.retries,
        retry_wait_s=delivery.retry_wait_s,
        timeout_s=delivery.timeout_s,
        annotators_per_task=delivery.annotators_per_task,
    )


def delivery_override(config: RunConfig, fields: dict[str, Any], where: str) -> Any:
    """The run's delivery with ``fields`` (``rlhf run --deliver`` and its options) over the config's block;
    an :class:`~common.errors.InputError` naming the option when they do not make a delivery, or when the
    token's variable is not set."""
    from pydantic import ValidationError

    from common.errors import InputError, InputProblem
    from flows.config import DeliveryConfig

    base = config.delivery.model_dump() if config.delivery is not None else {}
    try:
        delivery = DeliveryConfig.model_validate({**base, **{k: v for k, v in fields.items() if v is not None}})
    except ValidationError as exc:
        raise InputError(
            [
                InputProblem(where, None, error["msg"], f"--{str(error['loc'][0]).replace('_', '-')}")
                for error in exc.errors()
            ]
        ) from None
    judges = [judge.source_id for judge in config.judges]
    problems = []
    if delivery.judge is not None and delivery.judge not in judges:
        problems.append(
            InputProblem(
                where,
                None,
                f"'{delivery.judge}' is not one of the run's judges ({', '.join(judges) or 'none'})",
                "--judge",
            )
        )
    if not os.environ.get(delivery.token_env):
        problems.append(
            InputProblem(
                where,
                None,
                f"environment variable {delivery.token_env} is not set (the Label Studio token)",
                "--token-env",
            )
        )
    if problems:
        raise InputError(problems)
    return delivery


def complete_command(run_dir: str | Path, settings: StreamSettings) -> str:
    """The ``rlhf deliver`` command that completes this run's delivery (imports only what is missing)."""
    command = f"rlhf deliver {run_dir} --url {settings.url} --project-title '{settings.title}'"
    if settings.token_env != "LABEL_STUDIO_TOKEN":
        command += f" --token-env {settings.token_env}"
    if settings.predictions != "all":
        command += f" --predictions {settings.predictions}"
    if settings.judge:
        command += f" --judge {settings.judge}"
    if settings.annotators_per_task is not None:
        command += f" --annotators-per-task {settings.annotators_per_task}"
    return command


class StreamDelivery:
    """A thread delivering chunks in the order they are handed over (:meth:`put`); :meth:`finish` waits for
    the last one and returns the report (``summary.json``'s ``delivery``)."""

    def __init__(self, run_dir: str | Path, settings: StreamSettings, template: AnnotationTemplate, batch: str) -> None:
        self._run_dir = Path(run_dir)
        self._settings = settings
        self._template = template
        self._batch = batch
        self._queue: queue.Queue[tuple[int, list[str]] | None] = queue.Queue()
        self._known: dict[int, set[str]] = {}
        self._kept: Any = None  # KeptVersions, made when the first chunk is delivered
        self._records_size = -1  # deliveries.jsonl's size after our last delivery: changed = another delivered
        self._judge: str | None = None  # the judge the first chunk chose: every chunk pre-fills the same
        self._failing = False
        self._report: dict[str, Any] = {
            "platform": "label-studio",
            "url": settings.url,
            "project_title": settings.title,
            "annotators_per_task": settings.annotators_per_task,
            "chunks_delivered": 0,
            "tasks_delivered": 0,
            "imported": 0,
            "already_delivered": 0,
            "project_urls": [],
            "undelivered": [],
            "first_import_at": None,
        }
        self._thread = threading.Thread(target=self._work, name="rlhf-stream-delivery", daemon=True)
        self._thread.start()

    def put(self, chunk_index: int, lines: list[str]) -> None:
        """Deliver one chunk's shells (their JSON lines as written to ``tasks.jsonl``); never blocks."""
        if lines:
            self._queue.put((chunk_index, lines))

    def finish(self) -> dict[str, Any]:
        """Wait until every chunk handed over was delivered or given up on; the report."""
        self._queue.put(_STOP)
        self._thread.join()
        report = self._report
        report["undelivered_tasks"] = sum(entry["tasks"] for entry in report["undelivered"])
        if report["undelivered"]:
            report["complete_with"] = complete_command(self._run_dir, self._settings)
        return report

    def _work(self) -> None:
        from pydantic import SecretStr

        from platforms.label_studio.client import LabelStudioClient

        client: LabelStudioClient | None = None
        broken = "no client"
        try:
            token = SecretStr(os.environ.get(self._settings.token_env, ""))
            client = LabelStudioClient(self._settings.url, token, timeout_s=self._settings.timeout_s)
        except Exception as exc:  # noqa: BLE001 - nothing may stop the writer; every chunk is then reported
            broken = f"{type(exc).__name__}: {exc}"
        try:
            while (item := self._queue.get()) is not _STOP:
                index, lines = item
                if client is None:
                    self._undelivered(index, len(lines), broken)
                else:
                    self._deliver(client, index, lines)
        finally:
            if client is not None:
                client.close()

    def _deliver(self, client: LabelStudioClient, index: int, lines: list[str]) -> None:
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        from flows.delivery.deliver import delivering
        from platforms.label_studio.client import LabelStudioError

        settings = self._settings
        shells = [json.loads(line) for line in lines]
        attempts = 1 if self._failing else max(1, settings.retries)
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(attempts),
                wait=wait_exponential(multiplier=settings.retry_wait_s, max=max(settings.retry_wait_s, 30.0)),
                retry=retry_if_exception_type(LabelStudioError),
                reraise=True,
            ):
                with attempt, delivering(self._run_dir):
                    report = self._deliver_held(client, shells)
        except Exception as exc:  # noqa: BLE001 - a delivery never stops generation: reported instead
            self._failing = True
            detail = str(exc) if isinstance(exc, (LabelStudioError, ValueError)) else f"{type(exc).__name__}: {exc}"
            self._undelivered(index, len(shells), detail)
            return
        self._failing = False
        out = self._report
        out["chunks_delivered"] += 1
        out["tasks_delivered"] += report["tasks_in_run"] - report["not_delivered_no_answers"]
        out["imported"] += report["imported"]
        out["already_delivered"] += report["already_delivered"]
        if report["imported"] and out["first_import_at"] is None:
            from common.clock import utc_now

            out["first_import_at"] = utc_now()
        for project in report["projects"]:
            if project["project_url"] not in out["project_urls"]:
                out["project_urls"].append(project["project_url"])

    def _deliver_held(self, client: LabelStudioClient, shells: list[dict[str, Any]]) -> dict[str, Any]:
        """One attempt, holding the run's delivery lock. The projects' task ids are listed again when another
        delivery of the run (``rlhf deliver``) recorded something since ours, or after a failed attempt."""
        from flows.delivery.deliver import DELIVERIES, LabelStudioTarget, deliver_shells, delivery_records
        from flows.delivery.delivered import KeptVersions
        from platforms.label_studio.client import LabelStudioError

        settings = self._settings
        records = self._run_dir / DELIVERIES
        if (records.stat().st_size if records.is_file() else 0) != self._records_size:
            self._known.clear()
            if self._judge is None:  # a resumed run pre-fills the judge its projects already show
                earlier = [r["prefill_judge"] for r in delivery_records(self._run_dir, settings.url).values()]
                self._judge = next((judge for judge in earlier if judge), None)
        judge = settings.judge or self._judge
        self._kept = self._kept or KeptVersions()
        try:
            report = deliver_shells(
                client,
                self._run_dir,
                LabelStudioTarget(
                    settings.url,
                    settings.title,
                    settings.predictions,
                    judge,
                    settings.carried,
                    settings.annotators_per_task,
                ),
                self._template,
                self._batch,
                lambda: shells,
                widest=settings.widest,
                known=self._known,
                kept=self._kept,
            )
        except LabelStudioError:
            self._records_size = -1  # what a failed import left behind is listed again
            raise
        self._records_size = records.stat().st_size if records.is_file() else 0
        self._judge = self._judge or report["judge"]
        return report

    def _undelivered(self, index: int, tasks: int, error: str) -> None:
        self._report["undelivered"].append({"chunk": index, "tasks": tasks, "error": error})


def stream_warning(report: dict[str, Any]) -> str | None:
    """The operator's warning for a summary whose delivery left tasks out, or None."""
    delivery = report.get("delivery")
    if not delivery or not delivery.get("undelivered"):
        return None
    chunks = ", ".join(str(entry["chunk"]) for entry in delivery["undelivered"])
    return (
        f"{delivery['undelivered_tasks']} task(s) of chunk(s) {chunks} were not delivered to Label Studio at "
        f"{delivery['url']} (last error: {delivery['undelivered'][-1]['error']}). The tasks are written; deliver "
        f"them (nothing already there is imported twice): {delivery['complete_with']}"
    )
