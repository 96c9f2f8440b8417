"""The file contract's rule for device ids, as Polars expressions.

A file's id columns are checked with these (validate.schemas), and so is a single id that
arrives another way (the gateway's path parameter), so both answer by the same rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import polars as pl

from energy_pipelines.contract import MAX_ID_LENGTH


@dataclass(frozen=True)
class IdRule:
    holds: Callable[[pl.Expr], pl.Expr]  # true where an id keeps the rule (null stays null)
    error: str  # the words quarantine shows and the gateway answers with


ID_RULES: tuple[IdRule, ...] = (
    IdRule(
        lambda ids: ids.str.strip_chars().str.len_chars() > 0, "must not be empty or only spaces"
    ),
    IdRule(
        lambda ids: ids.str.len_chars() <= MAX_ID_LENGTH,
        f"must be at most {MAX_ID_LENGTH} characters",
    ),
    IdRule(lambda ids: ~ids.str.contains(r"\p{Cc}"), "must not contain control characters"),
)


def id_rule_broken(value: str) -> str | None:
    """The first rule `value` breaks as a device id, or None when it could be one."""
    held = pl.select(
        *(rule.holds(pl.lit(value, pl.String)).alias(str(n)) for n, rule in enumerate(ID_RULES))
    ).row(0)
    return next((rule.error for rule, ok in zip(ID_RULES, held, strict=True) if not ok), None)
