"""The logger of runs the CLI starts: Dagster's console format, but a failure is its first line only.

A failed step's event carries the whole chain of wrapped exceptions and stack traces (~100 lines);
the CLI already ends with one line naming the root cause, so the stack is noise unless asked for
(`--verbose` turns `traceback` on). Runs the daemon starts keep Dagster's own console logger.
"""

from __future__ import annotations

import logging
import sys

import dagster as dg


class _FirstLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).split("\n", 1)[0]


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, default_value="INFO", description="The logger's threshold."),
        "traceback": dg.Field(bool, default_value=False, description="Print failures with their stack traces."),
    },
    description="Console logger of CLI runs: failures in one line unless `traceback` is set.",
)
def cli_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    config = init_context.logger_config
    log = logging.Logger("dagster", level=config["log_level"].upper())
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"
    handler.setFormatter(logging.Formatter(fmt) if config["traceback"] else _FirstLineFormatter(fmt))
    log.addHandler(handler)
    return log
