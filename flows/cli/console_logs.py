"""Keep tracebacks of errors the CLI explains itself, and the run's own story lines, off the operator's console.

When a flow fails, Prefect logs the exception with its traceback. For errors the ``rlhf`` command
reports in clear lines of its own (bad input, output that cannot be written) that traceback is noise
on the terminal. Only the console handlers' formatting changes: the record itself is untouched, so
Prefect's API log handler still sends the traceback to the flow run's logs.
"""

from __future__ import annotations

import logging


class _WithoutTraceback(logging.Formatter):
    """Formats like ``inner``, but leaves out the traceback of the expected exceptions."""

    def __init__(self, inner: logging.Formatter, expected: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.inner = inner
        self.expected = expected

    def format(self, record: logging.LogRecord) -> str:
        if not (record.exc_info and isinstance(record.exc_info[1], self.expected)):
            return self.inner.format(record)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def drop_console_tracebacks(*expected: type[BaseException]) -> None:
    """On Prefect's console handlers, log the ``expected`` exceptions in one line, without the traceback."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, PrefectConsoleHandler) and not isinstance(handler.formatter, _WithoutTraceback):
                handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter(), expected))


class _DropStopped(logging.Filter):
    """Drops the engine's ``Finished in state Cancelled(...)`` and ``Finished in state Incomplete(...)``
    lines (the latter at ERROR): the ``rlhf`` command says itself that the run was stopped or left calls
    missing, and how to resume it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name.startswith("prefect.flow_runs")
            and str(record.msg).startswith(("Finished in state Cancelled", "Finished in state Incomplete"))
        )


class _DropRunStory(logging.Filter):
    """Drops the run's own story lines (start, chunks, cut-offs, failures, the table): the console has the
    live display and the table ``rlhf run`` prints; ``-v`` shows them."""

    def __init__(self) -> None:
        super().__init__()
        from flows.reporting.report import RUN_STORY

        self.flag = RUN_STORY

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, self.flag, False)


def drop_console_run_story() -> None:
    """On Prefect's console handlers, leave out the run's story lines; the flow run's logs keep them."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, _DropRunStory) for f in handler.filters
            ):
                handler.addFilter(_DropRunStory())


def drop_console_stopped_line() -> None:
    """On Prefect's console handlers, leave out the line a flow run stopped by a signal (or left
    incomplete) ends with.

    Only the console: the flow run's logs in Prefect keep it.
    """
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in getattr(logger, "handlers", ()):
            if isinstance(handler, PrefectConsoleHandler) and not any(
                isinstance(f, _DropStopped) for f in handler.filters
            ):
                handler.addFilter(_DropStopped())
