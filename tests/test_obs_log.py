"""Process logs keep their structured fields, in text and JSON."""

from __future__ import annotations

import json
import logging

from mnp.obs.log import JsonFormatter, TextFormatter


def _record(**extra: object) -> logging.LogRecord:
    record = logging.LogRecord("mnp.test", logging.INFO, __file__, 1, "pod started", None, None)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


def test_text_lines_append_extra_fields_and_quote_values_with_spaces() -> None:
    line = TextFormatter("%(levelname)s %(message)s").format(_record(pod="ns/a", ms=12, why="two words"))
    assert line == 'INFO pod started pod=ns/a ms=12 why="two words"'


def test_a_record_without_extra_fields_is_the_plain_line() -> None:
    assert TextFormatter("%(message)s").format(_record()) == "pod started"


def test_json_lines_carry_message_level_and_every_extra_field() -> None:
    out = json.loads(JsonFormatter().format(_record(pod="ns/a", errors=["x"])))
    assert (out["msg"], out["level"], out["logger"]) == ("pod started", "INFO", "mnp.test")
    assert out["pod"] == "ns/a" and out["errors"] == ["x"]
