"""The live display of ``rlhf run`` (flows/reporting/progress.py) and the cost wording (flows/reporting/summary.py).

Unit tests feed the display the events the flow sends and read what it draws (rich, recorded to text);
the slow tests run the real flow with the display as its sink and require that the display and the
summary count every call the same way, interrupted or cut off.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import closed_port_url, provider_entry, write_config, write_prompts
from rich.console import Console

from flows.generation import stopping
from flows.reporting import progress
from flows.reporting.progress import RunProgress
from flows.reporting.summary import ProviderTally, cost_text, summary_cost_text, summary_table
from providers.config import Price, ProviderConfig
from providers.result import INTERRUPTED, SKIPPED, CallResult
from simulator import RunningSimulator


def _provider(source_id: str, price: Price | None = None) -> ProviderConfig:
    return ProviderConfig(source_id=source_id, kind="openai", model=f"m-{source_id}", price=price)


def _text(renderable: object, width: int = 200) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


PRICE = Price(input_per_million=2.0, output_per_million=10.0)


def test_before_the_flow_starts_it_says_what_it_waits_for_not_0_of_0() -> None:
    display = RunProgress(
        [_provider("a"), _provider("b")],
        planned=150,
        waiting_for="starting Prefect's temporary local server for the flow run (usually ~20 s)",
    )
    text = _text(display)
    assert "starting Prefect's temporary local server" in text and "150 calls planned" in text
    assert "0/0" not in text and "0/75" not in text
    display.planned(150)
    text = _text(display)
    assert "starting Prefect" not in text and "opening the response store" in text
    assert "0/75" in text and "0/150" in text


def test_batch_providers_show_their_batches_and_are_priced_at_the_batch_price() -> None:
    batch = ProviderConfig(source_id="b", kind="openai", model="m", price=PRICE, mode="batch")
    display = RunProgress([_provider("a", PRICE), batch], planned=4)
    display.planned(4)
    display.finished("b", CallResult(ok=True, input_tokens=1_000_000, output_tokens=0, attempts=1))
    assert "$1.0000" in _text(display)  # 1M input tokens at $2 per million, less the 50% batch discount
    display.batches({"b": "1 in_progress; 3/10 requests done in pending batches; 0 collected"})
    text = _text(display)
    assert "waiting for the providers' batches" in text
    assert "batches of b: 1 in_progress; 3/10 requests done in pending batches" in text


def test_counts_rates_eta_cost_and_skipped_as_the_summary_counts_them() -> None:
    clock = Clock()
    display = RunProgress([_provider("a", PRICE), _provider("b")], planned=40, clock=clock)
    display.planned(40)
    display.rows()  # the first draw: rates are measured from here
    ok = CallResult(ok=True, input_tokens=100, output_tokens=400)
    for _ in range(6):
        display.finished("a", ok)
    display.finished("a", CallResult(ok=False, error_type="server_error"))
    display.finished("a", CallResult(ok=True, input_tokens=100, output_tokens=400), reused=True)
    display.finished("a", CallResult(ok=False, error_type=INTERRUPTED))  # stopped before it was made
    display.finished("b", CallResult(ok=False, error_type=SKIPPED))  # the breaker opened
    display.finished("b", None)  # not even handed to the provider: the breaker was open
    display.finished("b", True)
    clock.now += 2.0
    rows = {row["provider"]: row for row in display.rows()}
    a, b, total = rows["a"], rows["b"], rows["all"]
    assert (a["answered"], a["failed"], a["skipped"], a["done"], a["total"]) == (7, 1, 1, 9, 20)
    assert (b["answered"], b["failed"], b["skipped"]) == (1, 0, 2)
    assert a["req_s"] == pytest.approx(7 / 2.0)  # 7 calls made in 2 s (the reused answer was not called)
    assert a["tok_s"] == pytest.approx(6 * 500 / 2.0 + 0)
    assert a["eta_s"] == pytest.approx(11 / 3.5)
    assert a["cost_usd"] == pytest.approx(PRICE.cost(700, 2800))  # every answer, reused included: as the summary
    assert b["cost_usd"] is None and total["no_price"] == ["b"]
    assert total["done"] == 12 and total["total"] == 40
    text = _text(display)
    assert (
        "7/20" in text
        and "no price" in text
        and "≥ $0.03" in text
        and "cost is a lower bound: ≥ $0.03 (no price: b)" in text
        and "calling providers" in text
    )


def test_settle_replaces_the_live_counts_by_the_tallies() -> None:
    display = RunProgress([_provider("a")], planned=10)
    display.planned(10)
    for _ in range(3):
        display.finished("a", False)  # the display saw three failures ...
    tally = ProviderTally("a", "m-a")
    for result in (
        CallResult(ok=True, input_tokens=1, output_tokens=2),
        CallResult(ok=False, error_type=SKIPPED),
        CallResult(ok=False, error_type=SKIPPED),
        CallResult(ok=False, error_type=INTERRUPTED),
    ):
        tally.add(result)
    display.settled({"a": tally})  # ... the summary counts 1 answered, 0 failed, 3 skipped
    assert display.counts("a") == {"answered": 1, "failed": 0, "skipped": 3, "input_tokens": 1, "output_tokens": 2}
    display.finished("a", True)
    assert display.counts("a")["answered"] == 2


def test_limiter_figures_in_flight_rate_limit_wait_and_pause() -> None:
    from providers.limits import ProviderLimiter

    clock = Clock()
    limiter = ProviderLimiter(8)
    limiter.in_flight = 5
    limiter.governor.wait_s = 12.5

    class Pool:
        def opened(self) -> dict[str, object]:
            return {"a": type("P", (), {"limiter": limiter})()}

    display = RunProgress([_provider("a")], planned=10, clock=time.monotonic)
    display.planned(10)
    display.attach(Pool())
    limiter.pause(30)
    row = display.rows()[0]
    assert row["in_flight"] == 5 and row["rate_limit_wait_s"] == pytest.approx(12.5) and row["paused_s"] > 25
    text = _text(display)
    assert "12.5 s (paused" in text
    del clock


def test_the_display_is_the_flows_sink_only_while_it_is_shown() -> None:
    display = RunProgress([_provider("a")], planned=1)
    console = Console(file=io.StringIO(), force_terminal=True)
    with progress.live_progress(console, display) as shown:
        assert shown is display and progress.sink() is display
    assert progress.sink() is not display
    with progress.live_progress(console, None) as shown:
        assert shown is None and progress.sink() is not display


def test_the_per_call_path_is_lean() -> None:
    display = RunProgress([_provider("a", PRICE)], planned=100_000)
    result = CallResult(ok=True, input_tokens=10, output_tokens=20)
    started = time.perf_counter()
    for _ in range(100_000):
        display.finished("a", result)
    per_call_us = (time.perf_counter() - started) / 100_000 * 1e6
    assert per_call_us < 20, per_call_us  # ~0.3 µs on the dev machine; a call costs ~1,500 µs of CPU


# -------------------------------------------------------------------------------------------- cost


def test_cost_text_is_never_silently_partial() -> None:
    assert cost_text(1.23, []) == "$1.2300"
    assert cost_text(1.23, ["x", "y"]) == "≥ $1.2300 (no price: x, y)"
    assert cost_text(None, ["x"]) == "unknown (no price: x)"
    assert cost_text(None, []) == "-"


def test_summary_names_the_providers_without_a_price_and_the_table_has_a_cost_column() -> None:
    from flows.reporting.summary import RunSummary

    tallies = {"a": ProviderTally("a", "m-a", PRICE), "b": ProviderTally("b", "m-b")}
    tallies["a"].add(CallResult(ok=True, input_tokens=1000, output_tokens=1000))
    tallies["b"].add(CallResult(ok=True, input_tokens=1000, output_tokens=1000))
    summary = RunSummary("p", "b1", "r", "h", tallies)
    data = summary.to_dict()
    assert data["cost_usd"] == pytest.approx(0.012) and data["cost_no_price"] == ["b"]
    assert data["cost_is_lower_bound"] is True
    assert summary_cost_text(data) == "≥ $0.0120 (no price: b)"
    text = _text(summary_table({**data, "files": {}}))
    assert "cost USD" in text and "0.0120" in text and "no price" in text and "cost: ≥ $0.0120 (no price: b)" in text
    everyone = RunSummary("p", "b1", "r", "h", {"a": tallies["a"]}).to_dict()
    assert everyone["cost_no_price"] == [] and everyone["cost_is_lower_bound"] is False
    assert summary_cost_text(everyone) == "$0.0120"


# ------------------------------------------------------------------------------------ real runs


def _run_with_display(
    config: Path, providers: list[ProviderConfig], planned: int, stop_after: int | None = None
) -> tuple[RunProgress, dict]:
    from flows.generation.generate import generate_tasks

    display = RunProgress(providers, planned=planned, stopping=stopping.requested)
    progress.set_sink(display)
    stopper: threading.Thread | None = None
    if stop_after is not None:

        def stop_when_seen() -> None:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if sum(display.counts(p.source_id)["answered"] for p in providers) >= stop_after:
                    stopping._handle(signal.SIGINT, None)  # what Ctrl-C does
                    return
                time.sleep(0.01)

        stopper = threading.Thread(target=stop_when_seen, daemon=True)
        stopper.start()
    try:
        # An interrupted run may end Cancelled rather than Completed: the summary is read from its file.
        asyncio.run(generate_tasks(str(config), return_state=True))
    finally:
        progress.set_sink(None)
        stopping.reset()
        if stopper is not None:
            stopper.join(5)
    return display, json.loads((config.parent / "out" / "b1" / "summary.json").read_text(encoding="utf-8"))


def _assert_agree(display: RunProgress, summary: dict) -> None:
    for sid, p in summary["providers"].items():
        shown = display.counts(sid)
        assert (shown["answered"], shown["failed"], shown["skipped"]) == (
            p["answered"],
            p["failed"],
            p["skipped"] + p["interrupted"],
        ), (sid, shown, p)
        assert (shown["input_tokens"], shown["output_tokens"]) == (p["input_tokens"], p["output_tokens"])


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_after_an_interrupt_the_display_and_the_summary_agree(sim: RunningSimulator, tmp_path: Path) -> None:
    sim.configure(latency_ms=150)
    entries = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", max_concurrency=2),
        provider_entry(sim, "claude", "anthropic", "claude-sonnet-4-5", max_concurrency=2),
    ]
    config = write_config(tmp_path, entries, write_prompts(tmp_path / "p.jsonl", 40), chunk_size=10)
    display, summary = _run_with_display(config, [ProviderConfig(**e) for e in entries], 80, stop_after=4)
    assert summary["interrupted"] is True
    not_made = sum(p["skipped"] + p["interrupted"] for p in summary["providers"].values())
    assert not_made > 0 and all(p["failed"] == 0 for p in summary["providers"].values())
    _assert_agree(display, summary)
    text = _text(display)
    assert " 0 " in text.splitlines()[2]  # no call shown as failed
    assert f"{not_made}" in text.splitlines()[-1]  # the total row's skipped count is the summary's


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_api", "fake_keys")
def test_a_provider_cut_off_by_its_breaker_is_counted_alike(sim: RunningSimulator, tmp_path: Path) -> None:
    entries = [
        provider_entry(sim, "gpt-4o", "openai", "gpt-4o", price={"input_per_million": 2.5, "output_per_million": 10}),
        provider_entry(
            sim, "down", "openai", "down", base_url=closed_port_url() + "/v1", breaker_threshold=2, max_retries=0
        ),
    ]
    config = write_config(tmp_path, entries, write_prompts(tmp_path / "p.jsonl", 30), chunk_size=10)
    display, summary = _run_with_display(config, [ProviderConfig(**e) for e in entries], 60)
    down = summary["providers"]["down"]
    assert down["answered"] == 0 and down["failed"] >= 2 and down["skipped"] > 0
    _assert_agree(display, summary)
    rows = {row["provider"]: row for row in display.rows()}
    assert rows["gpt-4o"]["cost_usd"] == pytest.approx(summary["providers"]["gpt-4o"]["cost_usd"], abs=1e-6)
    assert rows["all"]["no_price"] == ["down"] and summary["cost_no_price"] == ["down"]
    assert summary["cost_is_lower_bound"] is True
    assert rows["gpt-4o"]["in_flight"] == 0 and rows["gpt-4o"]["rate_limit_wait_s"] == 0.0
