"""A small text syntax for training triggers, so they live in config instead of code.

    spec     := any ('|' any)*                 OR: fires when one part fires
    any      := all ('&' all)*                 AND: fires when every part fires
    all      := '(' spec ')' | rule
    rule     := 'episodes' '>=' INT            new episodes since the last training (CountTrigger)
              | 'every' DURATION               time since the last training: 90s, 15m, 1h, 2d (TimeTrigger)
              | 'success' '<=' NUMBER ['over' INT]
                                               recent success rate at or below a threshold, over at
                                               least INT recent episodes (QualityTrigger)
              | 'always' | 'never' | 'manual'
              | 'default'                      the reference default_watch: episodes>=100 | every 1h

Examples: `episodes>=100 | every 1h`, `(episodes>=50 & every 10m) | success<=0.4 over 30`.
A bad spec is refused with the column and the token that broke it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .rules import (
    AlwaysTrigger,
    AndTrigger,
    CountTrigger,
    ManualTrigger,
    NeverTrigger,
    OrTrigger,
    QualityTrigger,
    TimeTrigger,
    TrainTrigger,
    default_watch,
)

DEFAULT_SPEC = "episodes>=100 | every 1h"
_TOKEN = re.compile(r"\s*(>=|<=|[()|&]|[A-Za-z_]+|\d+(?:\.\d+)?[a-z]*|\S)")
_UNITS_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class TriggerSpecError(ValueError):
    """A trigger spec that does not parse; the message points at the offending token."""


@dataclass(frozen=True)
class _Token:
    text: str
    column: int  # 1-based, for messages


def _tokens(spec: str) -> list[_Token]:
    out, pos = [], 0
    while pos < len(spec):
        match = _TOKEN.match(spec, pos)
        if match is None:  # only trailing whitespace is left
            break
        out.append(_Token(match.group(1), match.start(1) + 1))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, spec: str):
        self.spec = spec
        self.tokens = _tokens(spec)
        self.i = 0

    def fail(self, expected: str) -> TriggerSpecError:
        token = self.tokens[self.i] if self.i < len(self.tokens) else None
        where = f"column {token.column} ({token.text!r})" if token else "the end"
        column = token.column if token else len(self.spec) + 1
        pointer = f"\n  {self.spec}\n  {' ' * (column - 1)}^"
        return TriggerSpecError(f"trigger spec {self.spec!r}: expected {expected} at {where}{pointer}")

    def peek(self) -> str | None:
        return self.tokens[self.i].text if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None, what: str | None = None) -> str:
        text = self.peek()
        if text is None or (expected is not None and text != expected):
            raise self.fail(what or repr(expected))
        self.i += 1
        return text

    def number(self, what: str, integer: bool) -> float:
        text = self.peek()
        pattern = r"\d+" if integer else r"\d+(\.\d+)?"
        if text is None or not re.fullmatch(pattern, text):
            raise self.fail(what)
        self.i += 1
        return int(text) if integer else float(text)

    def parse(self) -> TrainTrigger:
        if not self.tokens:
            raise self.fail("a trigger such as 'episodes>=100 | every 1h'")
        trigger = self.spec_()
        if self.peek() is not None:
            raise self.fail("'|', '&' or the end")
        return trigger

    def spec_(self) -> TrainTrigger:
        parts = [self.all_()]
        while self.peek() == "|":
            self.take("|")
            parts.append(self.all_())
        return parts[0] if len(parts) == 1 else OrTrigger(tuple(parts))

    def all_(self) -> TrainTrigger:
        parts = [self.factor()]
        while self.peek() == "&":
            self.take("&")
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else AndTrigger(tuple(parts))

    def factor(self) -> TrainTrigger:
        if self.peek() == "(":
            self.take("(")
            inner = self.spec_()
            self.take(")", "')'")
            return inner
        return self.rule()

    def rule(self) -> TrainTrigger:
        word = self.peek()
        rules = "'episodes>=N', 'every DURATION', 'success<=X [over N]', 'always', 'never', 'manual', 'default' or '('"
        if word is None:
            raise self.fail(rules)
        self.i += 1
        if word == "episodes":
            self.take(">=", "'>='")
            count = int(self.number("a whole number of episodes", integer=True))
            if count < 1:
                self.i -= 1
                raise self.fail("at least 1 episode")
            return CountTrigger(count)
        if word == "every":
            text = self.peek()
            match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text or "")
            if match is None:
                raise self.fail("a duration such as 90s, 15m, 1h or 2d")
            self.i += 1
            return TimeTrigger(int(float(match.group(1)) * _UNITS_MS[match.group(2)]))
        if word == "success":
            self.take("<=", "'<='")
            threshold = self.number("a success rate between 0 and 1", integer=False)
            if not 0 <= threshold <= 1:
                self.i -= 1
                raise self.fail("a success rate between 0 and 1")
            samples = 1
            if self.peek() == "over":
                self.take("over")
                samples = int(self.number("a whole number of recent episodes", integer=True))
            return QualityTrigger(threshold, samples)
        simple = {"always": AlwaysTrigger, "never": NeverTrigger, "manual": ManualTrigger, "default": default_watch}
        if word in simple:
            return simple[word]()
        self.i -= 1
        raise self.fail(rules)


def parse_trigger(spec: str) -> TrainTrigger:
    """The trigger a spec describes; raises `TriggerSpecError` pointing at the bad token."""
    return _Parser(spec).parse()


def time_parts(trigger: TrainTrigger) -> list[TimeTrigger]:
    """The time rules anywhere in a trigger: what a schedule has to check."""
    if isinstance(trigger, TimeTrigger):
        return [trigger]
    children = getattr(trigger, "triggers", ())
    return [t for child in children for t in time_parts(child)]


TRIGGERS_FILE_ENV = "SWARM_LEARN_TRIGGERS"  # path to a triggers YAML file


@dataclass(frozen=True)
class TriggerSettings:
    """Which trigger each scenario uses (a default for all, overrides by name) and what a firing
    runs (the processor mode: `offline`, `lora` or `full`)."""

    default: str = DEFAULT_SPEC
    scenarios: tuple[tuple[str, str], ...] = ()
    mode: str = "lora"
    run_config: str = "{}"  # JSON of the Dagster run config for triggered runs (e.g. LoRA settings)

    def __post_init__(self) -> None:
        from .rules import ProcessorMode

        for spec in (self.default, *(s for _, s in self.scenarios)):
            parse_trigger(spec)  # refuse a bad spec when settings load, not at the first tick
        object.__setattr__(self, "mode", ProcessorMode.parse(self.mode).value)

    def spec_for(self, scenario: str) -> str:
        return dict(self.scenarios).get(scenario, self.default)

    def trigger_for(self, scenario: str) -> TrainTrigger:
        return parse_trigger(self.spec_for(scenario))

    def shortest_interval_ms(self) -> int | None:
        intervals = [t.interval_ms for s in (self.default, *(s for _, s in self.scenarios))
                     for t in time_parts(parse_trigger(s))]
        return min(intervals) if intervals else None


def load_trigger_settings(path: str | None) -> TriggerSettings:
    """Settings from a YAML file (`default: SPEC`, `scenarios: {name: SPEC}`, `mode: lora`,
    `run_config: {ops: …}` for the runs a trigger starts), or the defaults when no file is given.
    Errors name the file."""
    if not path:
        return TriggerSettings()
    import yaml

    try:
        data = yaml.safe_load(open(path, encoding="utf-8").read()) or {}
    except OSError as exc:
        raise TriggerSpecError(f"{path}: cannot read the triggers file ({exc.strerror})") from exc
    if not isinstance(data, dict) or set(data) - {"default", "scenarios", "mode", "run_config"}:
        raise TriggerSpecError(
            f"{path}: expected a mapping with keys default, scenarios, mode, run_config; got {data!r}"
        )
    try:
        return TriggerSettings(str(data.get("default", DEFAULT_SPEC)),
                               tuple(sorted((str(k), str(v)) for k, v in (data.get("scenarios") or {}).items())),
                               str(data.get("mode", "lora")), json.dumps(data.get("run_config") or {}))
    except (TriggerSpecError, ValueError) as exc:
        raise TriggerSpecError(f"{path}: {exc}") from exc


def check_interval_cron(interval_ms: int | None) -> str:
    """The schedule that checks time rules: as often as the shortest one needs, hourly without any."""
    if interval_ms is None:
        return "0 * * * *"
    minutes = max(1, interval_ms // 60_000)
    if minutes < 60:
        return "* * * * *" if minutes == 1 else f"*/{minutes} * * * *"
    hours = minutes // 60
    return "0 * * * *" if hours == 1 else (f"0 */{hours} * * *" if hours < 24 else "0 0 * * *")
