"""The event contract as Polars types and vectorized validation rules, derived from the pydantic models.

Deriving (rather than restating) the rules keeps one definition: every field constraint written in
:mod:`shoppulse.contract.events` (required, allowed values, pattern, bounds, lengths) becomes a Polars
expression here, plus the models' cross-field checks, written once more as expressions below.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, get_args, get_origin

import polars as pl
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from shoppulse.contract.events import (
    EVENT_MODELS,
    MAX_FUTURE_SKEW_MS,
    SCHEMA_VERSIONS,
    Envelope,
    EventType,
    OrderLine,
    RefundLine,
)

ITEM_MODELS: tuple[type[BaseModel], ...] = (OrderLine, RefundLine)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _literal_values(annotation: Any) -> list[Any] | None:
    if get_origin(annotation) is Literal:
        return [v.value if isinstance(v, Enum) else v for v in get_args(annotation)]
    return None


def _polars_type(annotation: Any) -> pl.DataType:
    annotation, _ = _unwrap_optional(annotation)
    values = _literal_values(annotation)
    if values is not None:
        return pl.Int64() if all(isinstance(v, int) for v in values) else pl.String()
    if annotation is int:
        return pl.Int64()
    if annotation is str:
        return pl.String()
    if get_origin(annotation) is list:
        return pl.List(ITEM_STRUCT)
    raise TypeError(f"no Polars type for {annotation!r}")


def _item_struct() -> pl.Struct:
    fields: dict[str, pl.DataType] = {}
    for model in ITEM_MODELS:
        for name, info in model.model_fields.items():
            fields.setdefault(name, _polars_type(info.annotation))
    return pl.Struct(fields)


ITEM_STRUCT = _item_struct()


def _wire_schema() -> dict[str, pl.DataType]:
    schema: dict[str, pl.DataType] = {"event_id": pl.String(), "event_type": pl.String()}
    for model in EVENT_MODELS.values():
        for name, info in model.model_fields.items():
            dtype = _polars_type(info.annotation)
            if name in schema and schema[name] != dtype:
                raise TypeError(f"field {name!r} has two types across event models")
            schema.setdefault(name, dtype)
    return schema


WIRE_SCHEMA: dict[str, pl.DataType] = _wire_schema()
"""Polars schema to read one JSON message per line: the union of all event types' fields."""

KAFKA_COLUMNS: dict[str, pl.DataType] = {
    "kafka_partition": pl.Int32(),
    "kafka_offset": pl.Int64(),
    "kafka_ts": pl.Datetime("ms", "UTC"),
}

LAKE_SCHEMA: dict[str, pl.DataType] = {
    **{name: (pl.Datetime("ms", "UTC") if name == "event_ts" else dtype) for name, dtype in WIRE_SCHEMA.items()},
    **KAFKA_COLUMNS,
    "event_date": pl.Date(),
}
"""Columns of an events Parquet file in the lake (event_ts as a UTC timestamp, plus where it came from)."""

EVENT_TYPES = [t.value for t in EventType]


@dataclass(frozen=True)
class Rule:
    """A named check: `failed` is true for rows that break it; `reason` says what is wrong."""

    reason: str
    failed: pl.Expr
    code: str = "invalid_value"


def _constraint(info: FieldInfo, key: str) -> Any:
    for meta in info.metadata:
        value = getattr(meta, key, None)
        if value is not None:
            return value
    return None


def _field_rules(prefix: str, name: str, info: FieldInfo, value: pl.Expr) -> list[Rule]:
    """Rules for one field, from its annotation and constraints; `value` is the column expression."""
    annotation, optional = _unwrap_optional(info.annotation)
    required = info.is_required() and not optional
    where = f"{prefix}{name}"
    rules: list[Rule] = []
    if required:
        rules.append(Rule(f"{where}: missing", value.is_null()))
    present = value.is_not_null()
    values = _literal_values(annotation)
    if values is not None and len(values) > 1:
        allowed = ", ".join(map(str, values))
        rules.append(Rule(f"{where}: not one of {allowed}", present & ~value.is_in(values)))
    pattern = _constraint(info, "pattern")
    if pattern is not None:
        rules.append(Rule(f"{where}: does not match {pattern}", present & ~value.str.contains(pattern)))
    for key, op in (("ge", "lt"), ("le", "gt")):
        bound = _constraint(info, key)
        if bound is not None:
            word = "below" if key == "ge" else "above"
            rules.append(Rule(f"{where}: {word} {bound}", present & getattr(value, op)(bound)))
    for key, word in (("min_length", "shorter than"), ("max_length", "longer than")):
        bound = _constraint(info, key)
        if bound is None:
            continue
        length = value.list.len() if get_origin(annotation) is list else value.str.len_chars()
        op = length.lt(bound) if key == "min_length" else length.gt(bound)
        rules.append(Rule(f"{where}: {word} {bound}", present & op))
    return rules


ItemField = Callable[[str], pl.Expr]
"""How a rule reaches a field of an order line: inside `list.eval`, or on lines exploded into rows."""

IN_LIST: ItemField = lambda name: pl.element().struct.field(name)  # noqa: E731
EXPLODED: ItemField = lambda name: pl.col("items").struct.field(name)  # noqa: E731


def _item_rules(event_type: EventType, model: type[BaseModel], item: ItemField) -> list[Rule]:
    """Per-line rules for a list of items: with IN_LIST a row fails when any of its lines fails; with
    EXPLODED each rule is true for the (exploded) lines that break it."""
    rules = []
    for name, info in model.model_fields.items():
        for rule in _field_rules(f"{event_type.value}.items[].", name, info, item(name)):
            if item is IN_LIST:
                rule = Rule(rule.reason, pl.col("items").list.eval(rule.failed).list.any().fill_null(False))
            rules.append(rule)
    return rules


def _cross_field_rules(item: ItemField) -> dict[EventType, list[Rule]]:
    """The models' model_validators, as expressions (kept next to each other in the tests).

    With IN_LIST a sum over a row's lines is a `list.eval`; with EXPLODED, a sum over the lines of
    the same row (`_rid`).
    """

    def total(expr: pl.Expr) -> pl.Expr:
        return pl.col("items").list.eval(expr).list.sum() if item is IN_LIST else expr.sum().over("_rid")

    order_rules = [
        Rule(
            "subtotal must equal Σ items.unit_price × items.quantity",
            pl.col("subtotal") != total(item("unit_price") * item("quantity")),
        ),
        Rule("discount must equal Σ items.discount", pl.col("discount") != total(item("discount"))),
        Rule(
            "total must equal subtotal − discount + shipping + tax",
            pl.col("total") != pl.col("subtotal") - pl.col("discount") + pl.col("shipping") + pl.col("tax"),
        ),
    ]
    refund_rules = [
        Rule(
            "amount must equal Σ items.amount + shipping + tax",
            pl.col("amount") != total(item("amount")) + pl.col("shipping") + pl.col("tax"),
        )
    ]
    return {EventType.ORDER_PLACED: order_rules, EventType.ORDER_CANCELLED: order_rules, EventType.REFUND: refund_rules}


@dataclass(frozen=True)
class TypeChecks:
    """One event type's rules, split for fast flagging: per row, and per order line (exploded)."""

    row: list[Rule]
    line: list[Rule]


def _build_rules() -> tuple[list[Rule], dict[EventType, list[Rule]], dict[EventType, TypeChecks]]:
    common = [
        Rule("event_id: missing", pl.col("event_id").is_null()),
        Rule("event_type: missing", pl.col("event_type").is_null()),
        Rule(
            f"event_type: unknown (one of {', '.join(EVENT_TYPES)})",
            pl.col("event_type").is_not_null() & ~pl.col("event_type").is_in(EVENT_TYPES),
            code="unknown_event_type",
        ),
        Rule(
            f"schema_version: unsupported (this consumer reads {', '.join(map(str, SCHEMA_VERSIONS))})",
            pl.col("schema_version").is_not_null() & ~pl.col("schema_version").is_in(list(SCHEMA_VERSIONS)),
            code="unsupported_schema_version",
        ),
        Rule(
            "event_ts: more than 1 h after the broker received the event",
            pl.col("event_ts") > pl.col("kafka_ts_ms") + MAX_FUTURE_SKEW_MS,
            code="future_event_ts",
        ),
        Rule(
            "experiment_variant requires schema_version 2",
            pl.col("experiment_variant").is_not_null() & (pl.col("schema_version") < 2),
        ),
    ]
    for name, info in Envelope.model_fields.items():
        common.extend(_field_rules("", name, info, pl.col(name)))
    per_type: dict[EventType, list[Rule]] = {}
    checks: dict[EventType, TypeChecks] = {}
    cross, cross_exploded = _cross_field_rules(IN_LIST), _cross_field_rules(EXPLODED)
    for event_type, model in EVENT_MODELS.items():
        rules: list[Rule] = []
        row: list[Rule] = []
        line: list[Rule] = []
        for name, info in model.model_fields.items():
            if name in Envelope.model_fields or name == "event_type":
                continue
            field_rules = _field_rules(f"{event_type.value}.", name, info, pl.col(name))
            rules.extend(field_rules)
            row.extend(field_rules)
            annotation, _ = _unwrap_optional(info.annotation)
            if get_origin(annotation) is list:
                (item_model,) = get_args(annotation)
                rules.extend(_item_rules(event_type, item_model, IN_LIST))
                line.extend(_item_rules(event_type, item_model, EXPLODED))
        rules.extend(cross.get(event_type, []))
        line.extend(cross_exploded.get(event_type, []))
        per_type[event_type] = rules
        checks[event_type] = TypeChecks(row, line)
    return common, per_type, checks


COMMON_RULES, TYPE_RULES, TYPE_CHECKS = _build_rules()
"""Rules in the models' field order (the first broken one is the reason), and the same rules split
for flagging (`TYPE_CHECKS`): `list.eval` costs ~1 ms per call whatever the rows, exploding does not."""


def _first_failure(rules: list[Rule]) -> tuple[pl.Expr, pl.Expr]:
    """(reason, code) expressions of the first rule a row breaks; null when it breaks none."""
    reason: Any = None
    code: Any = None
    for rule in rules:
        failed = rule.failed.fill_null(False)
        reason = (pl.when(failed) if reason is None else reason.when(failed)).then(pl.lit(rule.reason))
        code = (pl.when(failed) if code is None else code.when(failed)).then(pl.lit(rule.code))
    null = pl.lit(None, dtype=pl.String)
    return reason.otherwise(null), code.otherwise(null)


def _any_failed(rules: list[Rule]) -> pl.Expr:
    return pl.any_horizontal([rule.failed.fill_null(False) for rule in rules]) if rules else pl.lit(False)


def flagged_rows(frame: pl.DataFrame) -> pl.Series:
    """The `_rid` of every row of `frame` that breaks any rule (one pass of every check, no reasons).

    Type rules run on the rows of their type alone, order-line rules on the lines exploded into rows.
    """
    rows = frame.lazy()
    known = pl.col("event_type").is_in(EVENT_TYPES).fill_null(False)
    queries = [rows.filter(_any_failed(COMMON_RULES) | ~known).select("_rid")]
    present = set(frame.get_column("event_type").unique().drop_nulls().to_list())
    for event_type, checks in TYPE_CHECKS.items():
        if event_type.value not in present:
            continue
        of_type = rows.filter(pl.col("event_type") == event_type.value)
        if checks.row:
            queries.append(of_type.filter(_any_failed(checks.row)).select("_rid"))
        if checks.line:  # a row without lines already breaks a row rule (items: missing / too short)
            lines = of_type.filter(pl.col("items").list.len() > 0).explode("items")
            queries.append(lines.filter(_any_failed(checks.line)).select("_rid"))
    return pl.concat(queries).unique().collect().get_column("_rid")


NON_STRING_TEXTS = ("0", "-1", "2.5", "true", "false", "{}", "[]", '{"a": 1}', "[1, 2]")
"""What Polars makes of JSON numbers, booleans, objects and arrays read into a String column: their text."""

NON_STRING_TEXT = r"^(?:[-0-9]|true$|false$|[\[{])"
"""Matches every text in NON_STRING_TEXTS (the first character of any JSON number, object or array)."""


def _fields_of_type(dtype: pl.DataType) -> tuple[frozenset[str], frozenset[str]]:
    """Names of the wire fields, and of the order-line fields, of type `dtype`."""
    return (
        frozenset(name for name, field_type in WIRE_SCHEMA.items() if field_type == dtype),
        frozenset(field.name for field in ITEM_STRUCT.fields if field.dtype == dtype),
    )


STRING_FIELDS, LINE_STRING_FIELDS = _fields_of_type(pl.String())
INTEGER_FIELDS, LINE_INTEGER_FIELDS = _fields_of_type(pl.Int64())


def _lets_non_string_text_pass(info: FieldInfo) -> bool:
    """Whether the text of a JSON non-string satisfies the field's allowed values or pattern."""
    annotation, _ = _unwrap_optional(info.annotation)
    values = _literal_values(annotation)
    if values is not None:
        return any(text in map(str, values) for text in NON_STRING_TEXTS)
    pattern = _constraint(info, "pattern")
    return pattern is None or any(re.search(pattern, text) for text in NON_STRING_TEXTS)


def _screened(models: typing.Iterable[type[BaseModel]], string_fields: frozenset[str]) -> tuple[str, ...]:
    """The string fields (in the models' order) whose rules, in some model, let a non-string's text pass."""
    screened: dict[str, None] = {}
    for model in models:
        for name, info in model.model_fields.items():
            if name in string_fields and _lets_non_string_text_pass(info):
                screened[name] = None
    return tuple(screened)


SCREENED_FIELDS = _screened(EVENT_MODELS.values(), STRING_FIELDS)
SCREENED_LINE_FIELDS = _screened(ITEM_MODELS, LINE_STRING_FIELDS)
"""String fields whose rules would accept the text Polars makes of a JSON number/boolean/object/array
(the others, e.g. event_id's UUID pattern or an allowed-values list, reject it anyway)."""


def non_string_suspects(frame: pl.DataFrame) -> pl.Series:
    """`_row` of the decoded rows where a screened string field holds text that may have been a JSON
    number, boolean, object or array. Only a suspect: check its bytes with :func:`non_string_field`."""
    looks = [pl.col(name).str.contains(NON_STRING_TEXT).fill_null(False) for name in SCREENED_FIELDS]
    rows = frame.lazy()
    queries = [rows.filter(pl.any_horizontal(looks)).select("_row")] if looks else []
    if SCREENED_LINE_FIELDS:
        lines = rows.select("_row", "items").filter(pl.col("items").list.len() > 0).explode("items")
        line_looks = [
            pl.col("items").struct.field(name).str.contains(NON_STRING_TEXT).fill_null(False)
            for name in SCREENED_LINE_FIELDS
        ]
        queries.append(lines.filter(pl.any_horizontal(line_looks)).select("_row"))
    if not queries:
        return pl.Series("_row", [], dtype=pl.Int64)
    return pl.concat(queries).unique().collect().get_column("_row")


def _json_type(value: object) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "an array"}.get(
        type(value), type(value).__name__
    )


def non_string_field(document: object) -> str | None:
    """The first string field of a decoded JSON event holding something else than a string or null,
    as a reason (None: there is none). The pydantic models reject these; Polars would read their text."""
    if not isinstance(document, dict):
        return None
    for name, value in document.items():
        if name in STRING_FIELDS and value is not None and not isinstance(value, str):
            return f"{name}: Input should be a valid string (got {_json_type(value)}: {value!r:.60})"
    items = document.get("items")
    for index, line in enumerate(items if isinstance(items, list) else ()):
        for name, value in line.items() if isinstance(line, dict) else ():
            if name in LINE_STRING_FIELDS and value is not None and not isinstance(value, str):
                return f"items[{index}].{name}: Input should be a valid string (got {_json_type(value)}: {value!r:.60})"
    return None


def find_rejections(frame: pl.DataFrame) -> pl.DataFrame:
    """Add `reject_reason` / `reject_code` (null for valid events) to decoded wire rows.

    `frame` has the WIRE_SCHEMA columns plus ``kafka_ts_ms`` (broker timestamp, epoch ms). Rows are
    first only flagged (:func:`flagged_rows`); the first broken rule's reason, in the models' field
    order, is worked out for the flagged rows alone.
    """
    numbered = frame.with_row_index("_rid")
    is_bad = pl.col("_rid").is_in(flagged_rows(numbered).implode())
    good = numbered.filter(~is_bad).with_columns(
        reject_reason=pl.lit(None, dtype=pl.String), reject_code=pl.lit(None, dtype=pl.String)
    )
    bad = numbered.filter(is_bad)
    if bad.height:
        reasons = [bad.with_columns(*_named(_first_failure(COMMON_RULES)))]
        still = reasons[0].filter(pl.col("reject_reason").is_null())
        reasons[0] = reasons[0].filter(pl.col("reject_reason").is_not_null())
        for (event_type,), rows in still.partition_by("event_type", as_dict=True).items():
            reasons.append(rows.with_columns(*_named(_first_failure(TYPE_RULES[EventType(event_type)]))))
        explained = pl.concat(reasons, how="vertical")
        # Both formulations of a rule are tested to agree; should one row still slip through, it is
        # rejected anyway rather than let in unexplained.
        explained = explained.with_columns(
            reject_reason=pl.col("reject_reason").fill_null("breaks a contract rule"),
            reject_code=pl.col("reject_code").fill_null("invalid_value"),
        )
        good = pl.concat([good, explained], how="vertical")
    return good.drop("_rid")


def _named(pair: tuple[pl.Expr, pl.Expr]) -> tuple[pl.Expr, pl.Expr]:
    return pair[0].alias("reject_reason"), pair[1].alias("reject_code")
