"""Progress reporting from inside the flow to whoever runs it (the CLI's live display, or nothing).

The flow reports events to the process's :func:`sink`: how many (prompt, answer slot) pairs the run
has, each pair's result as it arrives, and, after each chunk, the providers' tallies exactly as the
summary will report them (:meth:`ProgressSink.settled`). The live display counts the arriving results
the way :class:`~flows.reporting.summary.ProviderTally` does (answered / failed / skipped: not made, because the
run was stopped or the provider cut off) and replaces its own counts by the tallies at every settle,
so when the run ends the display and the summary table show the same numbers.

The per-call path is a dictionary lookup and a few integer additions; everything else (rates, ETA,
in-flight requests and rate-limit waiting read from the providers' limiters, cost) is computed when the
display is drawn, a few times a second, on rich's refresh thread.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from flows.reporting.summary import cost_text

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from flows.reporting.summary import ProviderTally
    from providers.config import Price, ProviderConfig
    from providers.result import CallResult

RATE_WINDOW_S = 10.0  # rates are measured over the last this many seconds of the run
REFRESH_PER_SECOND = 2  # a frame costs ~10 ms of CPU (3 providers): 2% of a core


class ProgressSink(Protocol):
    """Receives the run's events (see the module docstring)."""

    def planned(self, calls: int) -> None:
        """The run has ``calls`` (prompt, answer slot) pairs (reused answers included)."""

    def attach(self, pool: Any) -> None:
        """The run's :class:`~providers.pool.ProviderPool` (its limiters tell requests in flight and waits)."""

    def finished(self, source_id: str, result: CallResult | bool | None, reused: bool = False) -> None:
        """One pair has its result: a :class:`CallResult` (one not ``made`` counts as skipped), ``None`` for
        a call not made (the provider's breaker is open), or a bare ``ok`` flag."""

    def settled(self, tallies: Mapping[str, ProviderTally]) -> None:
        """A chunk is done: ``tallies`` are the run's counts so far, as ``summary.json`` will give them."""

    def batches(self, lines: Mapping[str, str]) -> None:
        """What each batch-mode provider's batches are doing, in words (``flows/generation/batches.py``)."""


class _NullSink:
    def planned(self, calls: int) -> None:
        pass

    def attach(self, pool: Any) -> None:
        pass

    def finished(self, source_id: str, result: CallResult | bool | None, reused: bool = False) -> None:
        pass

    def settled(self, tallies: Mapping[str, ProviderTally]) -> None:
        pass

    def batches(self, lines: Mapping[str, str]) -> None:
        pass


_sink: ProgressSink = _NullSink()


def set_sink(sink: ProgressSink | None) -> None:
    """Install a sink for this process (``None`` restores the silent one)."""
    global _sink
    _sink = sink if sink is not None else _NullSink()


def sink() -> ProgressSink:
    """The sink in force."""
    return _sink


class _Counts:
    """Per provider: results counted since the last settle, plus what this run has called (never reset)."""

    __slots__ = ("answered", "failed", "skipped", "input_tokens", "output_tokens", "called", "called_tokens")

    def __init__(self) -> None:
        self.answered = self.failed = self.skipped = 0
        self.input_tokens = self.output_tokens = 0
        self.called = self.called_tokens = 0  # calls made this run and their tokens: the rates


class _Rate:
    """A rate over the last :data:`RATE_WINDOW_S` seconds, from cumulative counts sampled at each draw."""

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[float, int, int]] = collections.deque()

    def per_second(self, now: float, calls: int, tokens: int) -> tuple[float, float]:
        samples = self._samples
        samples.append((now, calls, tokens))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW_S:
            samples.popleft()
        then, calls_then, tokens_then = samples[0]
        span = now - then
        if span < 0.5:
            return 0.0, 0.0
        return (calls - calls_then) / span, (tokens - tokens_then) / span


class RunProgress:
    """The live display of ``rlhf run``: per provider answered / failed / skipped of its calls, requests in
    flight, requests and tokens per second, time spent waiting on rate limits, running cost where a price
    is known, and the ETA; before the run's first event, what it is waiting for.

    It is the flow's :class:`ProgressSink` and a rich renderable (drawn with ``Live``).
    """

    def __init__(
        self,
        providers: Sequence[ProviderConfig],
        planned: int | None = None,
        waiting_for: str = "waiting for the flow run to start",
        clock: Callable[[], float] = time.monotonic,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self._clock = clock
        self._started = clock()
        self._stopping = stopping
        self._waiting_for = waiting_for
        self._run_started = False
        self._ids = [p.source_id for p in providers]
        self._prices: dict[str, Price | None] = {p.source_id: p.effective_price for p in providers}
        self._batch_lines: dict[str, str] = {}
        self._live = {sid: _Counts() for sid in self._ids}
        self._settled: dict[str, tuple[int, int, int, int, int]] = dict.fromkeys(self._ids, (0, 0, 0, 0, 0))
        self._rates = {sid: _Rate() for sid in self._ids}
        self._planned = planned or 0
        self._pool: Any = None
        self._limiter_of: dict[str, Any] = {}

    # -- the sink (called from the flow's event loop) ------------------------------------------------
    def planned(self, calls: int) -> None:
        self._planned = calls
        self._run_started = True

    def attach(self, pool: Any) -> None:
        self._pool = pool

    def finished(self, source_id: str, result: CallResult | bool | None, reused: bool = False) -> None:
        counts = self._live[source_id]
        if result is None:
            counts.skipped += 1
        elif result is True or result is False:
            if not reused:
                counts.called += 1
            if result:
                counts.answered += 1
            else:
                counts.failed += 1
        elif not result.made:
            counts.skipped += 1
        else:
            tokens_in, tokens_out = result.input_tokens or 0, result.output_tokens or 0
            if not reused:
                counts.called += 1
                counts.called_tokens += tokens_in + tokens_out
            if result.ok:
                counts.answered += 1
                counts.input_tokens += tokens_in
                counts.output_tokens += tokens_out
            else:
                counts.failed += 1

    def settled(self, tallies: Mapping[str, ProviderTally]) -> None:
        self._limiters()  # keep the limiters for the last frame, drawn after the pool has closed
        for sid, tally in tallies.items():
            if sid not in self._live:
                continue
            self._settled[sid] = (
                tally.answered,
                tally.failed,
                tally.skipped + tally.interrupted,
                tally.input_tokens,
                tally.output_tokens,
            )
            live = self._live[sid]
            live.answered = live.failed = live.skipped = live.input_tokens = live.output_tokens = 0

    def batches(self, lines: Mapping[str, str]) -> None:
        self._batch_lines = dict(lines)

    # -- reading -------------------------------------------------------------------------------------
    def counts(self, source_id: str) -> dict[str, int]:
        """What the display shows for a provider: answered, failed, skipped (not made), tokens in and out."""
        answered, failed, skipped, tokens_in, tokens_out = self._settled[source_id]
        live = self._live[source_id]
        return {
            "answered": answered + live.answered,
            "failed": failed + live.failed,
            "skipped": skipped + live.skipped,
            "input_tokens": tokens_in + live.input_tokens,
            "output_tokens": tokens_out + live.output_tokens,
        }

    def _limiters(self) -> dict[str, Any]:
        """The providers' limiters, kept once seen: the last frame, drawn after the pool closed, shows them too."""
        if self._pool is not None:
            try:
                opened = self._pool.opened()
            except Exception:  # noqa: BLE001 - a pool changing under the display: keep what was seen
                opened = {}
            for sid, provider in opened.items():
                self._limiter_of[sid] = provider.limiter
        return self._limiter_of

    def rows(self) -> list[dict[str, Any]]:
        """One row per provider and a last one for all calls: the figures the display draws."""
        now = self._clock()
        per_provider = max(1, len(self._ids))
        limiters = self._limiters()
        rows: list[dict[str, Any]] = []
        for sid in self._ids:
            counts = self.counts(sid)
            live = self._live[sid]
            req_s, tok_s = self._rates[sid].per_second(now, live.called, live.called_tokens)
            total = self._planned // per_provider
            done = counts["answered"] + counts["failed"] + counts["skipped"]
            limiter = limiters.get(sid)
            price = self._prices[sid]
            rows.append(
                {
                    "provider": sid,
                    "total": total,
                    "done": done,
                    **counts,
                    "in_flight": limiter.in_flight if limiter is not None else None,
                    "req_s": req_s,
                    "tok_s": tok_s,
                    "rate_limit_wait_s": _waited(limiter.governor, now) if limiter is not None else None,
                    "paused_s": max(0.0, limiter.paused_until - now) if limiter is not None else 0.0,
                    "cost_usd": price.cost(counts["input_tokens"], counts["output_tokens"])
                    if price is not None
                    else None,
                    "eta_s": (total - done) / req_s
                    if req_s > 0 and total > done
                    else (0.0 if total and done >= total else None),
                }
            )
        priced = [r["cost_usd"] for r in rows if r["cost_usd"] is not None]
        etas = [r["eta_s"] for r in rows]
        rows.append(
            {
                "provider": "all",
                "total": self._planned,
                **{
                    key: sum(r[key] for r in rows)
                    for key in (
                        "done",
                        "answered",
                        "failed",
                        "skipped",
                        "input_tokens",
                        "output_tokens",
                        "req_s",
                        "tok_s",
                    )
                },
                "in_flight": sum(r["in_flight"] or 0 for r in rows) if limiters else None,
                # One figure per governor: providers of a rate_limit_group share one, and its waiting.
                "rate_limit_wait_s": (
                    sum(_waited(g, now) for g in {id(lim.governor): lim.governor for lim in limiters.values()}.values())
                    if limiters
                    else None
                ),
                "paused_s": 0.0,
                "cost_usd": sum(priced) if priced else None,
                "no_price": [r["provider"] for r in rows if r["cost_usd"] is None],
                "eta_s": None if not etas or None in etas else max(etas),
            }
        )
        return rows

    def status(self) -> str:
        """What the run is doing, in words (the display's first line)."""
        if not self._run_started:
            return self._waiting_for
        if self._stopping():
            return "stopping: calls in flight get up to 10 s, then what is complete is written"
        done = sum(
            self.counts(sid)["answered"] + self.counts(sid)["failed"] + self.counts(sid)["skipped"] for sid in self._ids
        )
        if done == 0 and not any(live.called for live in self._live.values()):
            return "opening the response store, the providers and the task writer"
        if self._batch_lines:
            return "waiting for the providers' batches (they answer within 24 h; --no-wait returns at once)"
        if done >= self._planned:
            return "every call has its result: writing the last tasks and the summary"
        return "calling providers"

    def __rich__(self) -> RenderableType:
        return self.render()

    def render(self) -> RenderableType:
        """The display: a status line, then a table with a bar per provider and a total."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        elapsed = _clock_text(self._clock() - self._started)
        rows = self.rows()
        header = Text.assemble(("rlhf run ", "bold"), (f"{elapsed} ", "dim"), self.status())
        if not self._run_started:
            planned = f" ({self._planned} calls planned)" if self._planned else ""
            return Text.assemble(header, planned, "…")
        no_price = rows[-1]["no_price"]
        caption = None
        if no_price and rows[-1]["cost_usd"] is not None:
            caption = f"cost is a lower bound: {cost_text(rows[-1]['cost_usd'], no_price, short=True)}"
        table = Table(
            box=None, pad_edge=False, show_edge=False, header_style="bold", caption=caption, caption_justify="left"
        )
        for name in (
            "provider",
            "",
            "answered",
            "failed",
            "skipped",
            "in flight",
            "req/s",
            "tok/s",
            "rate-limit wait",
            "cost",
            "ETA",
        ):
            table.add_column(
                name,
                justify="left" if name in ("provider", "") else "right",
                no_wrap=True,
                min_width=max(len(sid) for sid in self._ids) if name == "provider" else None,
            )
        for row in rows:
            is_total = row["provider"] == "all"
            wait = "-" if row["rate_limit_wait_s"] is None else f"{row['rate_limit_wait_s']:.1f} s"
            if row["paused_s"] > 0:
                wait += f" (paused {row['paused_s']:.0f} s)"
            if row["cost_usd"] is None:
                cost = "no price" if not is_total or no_price else "-"
            else:
                cost = ("≥ " if is_total and no_price else "") + f"${row['cost_usd']:.{2 if is_total else 4}f}"
            table.add_row(
                Text(row["provider"], style="bold" if is_total else ""),
                ProgressBar(total=max(1, row["total"]), completed=row["done"], width=16),
                f"{row['answered']}/{row['total']}",
                Text(str(row["failed"]), style="red" if row["failed"] else ""),
                Text(str(row["skipped"]), style="yellow" if row["skipped"] else ""),
                "-" if row["in_flight"] is None else str(row["in_flight"]),
                f"{row['req_s']:.1f}",
                _si(row["tok_s"]),
                wait,
                cost,
                "-" if row["eta_s"] is None else _clock_text(row["eta_s"]),
            )
        batch_lines = [Text(f"batches of {sid}: {line}", style="dim") for sid, line in self._batch_lines.items()]
        return Group(header, table, *batch_lines)


def _waited(governor: Any, now: float) -> float:
    """Seconds calls were held back by a rate limit, including a hold that is still going on."""
    waited = governor.wait_s
    if getattr(governor, "_waiting", 0) > 0:
        waited += max(0.0, now - getattr(governor, "_waiting_since", now))
    return waited


def _clock_text(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _si(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:.1f}M"
    if value >= 1_000:
        return f"{value / 1_000:.1f}k"
    return f"{value:.0f}"


def prefect_wait_text() -> str:
    """What ``rlhf run`` waits for before the flow's first event: Prefect starting the flow run."""
    import os

    if os.environ.get("PREFECT_API_URL"):
        return "waiting for the Prefect server (PREFECT_API_URL) to start the flow run"
    return "starting Prefect's temporary local server for the flow run (usually ~20 s)"


@contextmanager
def live_progress(console: Console, display: RunProgress | None) -> Iterator[RunProgress | None]:
    """Show ``display`` live on ``console`` and make it the flow's sink while the block runs (``None``: no
    display, the silent sink stays). The last frame stays on screen."""
    if display is None:
        yield None
        return
    from rich.live import Live

    set_sink(display)
    try:
        with Live(display, console=console, refresh_per_second=REFRESH_PER_SECOND, transient=False):
            yield display
    finally:
        set_sink(None)
