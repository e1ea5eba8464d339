"""The log line of each settled order, made for a whole batch at once."""

from __future__ import annotations

import logging

MESSAGE = "order %s"


class BatchLog:
    """Log records for the orders one worker settles together.

    Every line of a batch shares its logger, call site, thread, process and moment.
    `Logger.info` would look each of them up again for every order (walking the stack for the
    caller, asking for the thread's and the process's names), which costs more than the rest
    of settling the order. So the first record is made by the logger, and the batch's other
    records are copies of it that carry their own outcome and fields. Each still passes the
    logger's level, filters and handlers on its own.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._enabled = logger.isEnabledFor(logging.INFO)
        self._shared: dict[str, object] | None = None

    def write(self, kind: str, fields: dict[str, object]) -> None:
        """One line: "order <kind>", with `fields` as the record's extra attributes."""
        if not self._enabled:
            return
        if self._shared is None:
            record = self._first(kind, fields)
            self._shared = {k: v for k, v in vars(record).items() if k not in fields}
        else:
            record = logging.LogRecord.__new__(logging.LogRecord)
            attributes = vars(record)
            attributes.update(self._shared)
            attributes["args"] = (kind,)
            attributes.update(fields)
        self._logger.handle(record)

    def _first(self, kind: str, fields: dict[str, object]) -> logging.LogRecord:
        # stacklevel 3: past this method and write(), to the function that logs the outcome.
        path, line, function, _stack = self._logger.findCaller(stacklevel=3)
        return self._logger.makeRecord(
            self._logger.name, logging.INFO, path, line, MESSAGE, (kind,), None, function, fields
        )
