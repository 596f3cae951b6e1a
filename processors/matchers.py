"""Silence matchers, as in Alertmanager: label to "=v", "!=v", "=~regex" or "!~regex" (a bare value means "=").

Regexes match the whole label value; a matcher set that cannot be used (not text,
too long, a broken regex) matches nothing rather than everything.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

MAX_MATCHER_CHARS = 256


def parse(matchers: Mapping[str, Any]) -> list[tuple[str, str, Any]] | None:
    """label -> "=v", "!=v", "=~re", "!~re" (a bare value means "="); None if any is unusable."""
    parsed: list[tuple[str, str, Any]] = []
    for label, text in sorted(matchers.items()):
        if not isinstance(text, str) or len(text) > MAX_MATCHER_CHARS:
            return None
        operand: Any
        for op in ("=~", "!~", "!=", "="):
            if text.startswith(op):
                operand = text[len(op):]
                break
        else:
            op, operand = "=", text
        if op in ("=~", "!~"):
            try:
                operand = re.compile(operand)
            except re.error:
                return None
        parsed.append((label, op, operand))
    return parsed if parsed else None


def matches(parsed: list[tuple[str, str, Any]], labels: Mapping[str, str]) -> bool:
    """Whether labels satisfy every parsed matcher; an empty (unusable) set matches nothing."""
    if not parsed:
        return False
    for label, op, operand in parsed:
        value = labels.get(label, "")
        if op == "=" and value != operand or op == "!=" and value == operand:
            return False
        if op == "=~" and not operand.fullmatch(value) or op == "!~" and operand.fullmatch(value):
            return False
    return True
