"""A scan for values that look like real people's personal data.

Synthetic data should never contain a reachable address, a working phone number or a
valid payment card. The engine's vocabularies only emit reserved e-mail domains
(RFC 2606/6761) and fictional 555-01xx numbers, so a finding means someone put real
data in (a derived version, a hand-edited file) or a vocabulary regressed.

The scan reads a deterministic sample of each text and category column: every run on
the same files reports the same findings.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from synthreg.generators.sampling import Drawn, SampleRequest, sample_positions
from synthreg.generators.spec import Spec

__all__ = [
    "KINDS",
    "PII_SAMPLE",
    "is_reserved_domain",
    "luhn_valid",
    "sample_requests",
    "sample_rows",
    "scan",
    "table_files",
]

#: What the scan looks for, in report order.
KINDS = ("email", "phone", "payment_card", "iban", "national_id")
#: Examples kept per finding (masked).
EXAMPLES = 3
#: Rows the scan reads per table (a seeded sample: the same rows on every scan).
PII_SAMPLE = 10000

_RESERVED_SLDS = ("example.com", "example.org", "example.net")
_RESERVED_TLDS = ("example", "test", "invalid", "localhost")
#: Ofcom's ranges for drama (UK numbers, national form without the leading 0).
_UK_DRAMA = ("7700900", "2079460", "1632960", "1134960", "1164960", "1174960", "1214960", "1614960")
#: Published test card numbers: not anyone's card.
_TEST_CARDS = frozenset({"4111111111111111", "4242424242424242", "5555555555554444", "378282246310005"})

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")
_PHONE = re.compile(r"(?<![\w+])(?:\+\d[\d ().-]{6,}\d|\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4})(?!\w)")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
_SSN = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")


# ---------------------------------------------------------------- reading


def table_files(version_dir: Path, table: str) -> list[Path]:
    """The Parquet parts of ``table``, in part order."""
    return sorted((version_dir / "tables" / table).glob("*.parquet"))


def sample_rows(
    version_dir: Path, table: str, columns: list[str], limit: int, drawn: Drawn | None = None
) -> pa.Table:
    """At most ``limit`` rows of ``columns``, the same rows on every call (a seeded sample, in row order).

    Only the named columns are read; a table with ``limit`` rows or fewer is read whole. The
    sample is taken one row group at a time, so the whole columns are never held in memory.
    ``drawn``: the same rows taken by the engine's workers as they wrote the parts
    (``GenerationResult.samples``), used instead of reading when they hold this request.
    """
    taken = (drawn or {}).get(SampleRequest(table, tuple(columns), limit))
    if taken is not None:
        return taken
    files = [pq.ParquetFile(f) for f in table_files(version_dir, table)]
    if not files:
        return pa.table({c: pa.array([], pa.null()) for c in columns})
    total = sum(f.metadata.num_rows for f in files)
    if total <= limit:
        return _concat([f.read(columns=columns) for f in files])
    index = sample_positions(total, limit)
    pieces = []
    start = 0
    for f in files:
        for group in range(f.metadata.num_row_groups):
            rows = f.metadata.row_group(group).num_rows
            low, high = np.searchsorted(index, [start, start + rows])
            if high > low:
                pieces.append(
                    f.read_row_group(group, columns=columns).take(pa.array(index[low:high] - start))
                )
            start += rows
    if not pieces:  # limit 0
        return pa.schema([files[0].schema_arrow.field(c) for c in columns]).empty_table()
    return _concat(pieces)


def _concat(pieces: list[pa.Table]) -> pa.Table:
    """The pieces as one table, with the first piece's schema (as a dataset of the parts reads them)."""
    schema = pieces[0].schema
    return pa.concat_tables([p if p.schema.equals(schema) else p.cast(schema) for p in pieces])


def _scanned_columns(spec: Spec, table: str) -> list[str]:
    return [
        name
        for name, col in spec.tables[table].columns.items()
        if col.type in ("text", "llm_text", "category")
    ]


# ---------------------------------------------------------------- detectors


def is_reserved_domain(domain: str) -> bool:
    """Whether an e-mail domain is reserved for examples (RFC 2606/6761): nobody's mailbox."""
    domain = domain.lower().rstrip(".")
    if domain.rsplit(".", 1)[-1] in _RESERVED_TLDS:
        return True
    return any(domain == d or domain.endswith("." + d) for d in _RESERVED_SLDS)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a digit string (what payment card numbers satisfy)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _fictional_phone(digits: str, international: bool) -> bool:
    if (international and digits.startswith("1") and len(digits) == 11) or (
        not international and len(digits) == 10
    ):
        return digits[-7:-2] == "55501"  # NANP: 555-0100..555-0199 are reserved for fiction
    if international and digits.startswith("44"):
        return digits[2:].startswith(_UK_DRAMA)
    if international and digits.startswith("4930") and digits[4:5] == "0":
        return True  # Berlin subscriber numbers never start with 0 (it is the trunk prefix): unassignable
    return international and digits.startswith("33199")  # ARCEP reserves 01 99 xx xx xx for fiction


#: Domains repeat (a vocabulary has a few): each is checked once.
_reserved = functools.lru_cache(maxsize=4096)(is_reserved_domain)


def _emails(text: str) -> Iterator[str]:
    for m in _EMAIL.finditer(text):
        if not _reserved(m.group(1)):
            yield m.group(0)


def _phones(text: str) -> Iterator[str]:
    for m in _PHONE.finditer(text):
        raw = m.group(0)
        digits = re.sub(r"\D", "", raw)
        if 8 <= len(digits) <= 15 and not _fictional_phone(digits, raw.startswith("+")):
            yield raw


def _cards(text: str) -> Iterator[str]:
    for m in _CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        issuer = re.match(r"3[47]|3[068]|4|5[1-5]|2[2-7]|6", digits)
        if issuer and digits not in _TEST_CARDS and luhn_valid(digits):
            yield m.group(0)


def _ibans(text: str) -> Iterator[str]:
    for m in _IBAN.finditer(text):
        code = m.group(0).replace(" ", "")
        if 15 <= len(code) <= 34:
            rearranged = code[4:] + code[:4]
            number = "".join(str(int(ch, 36)) for ch in rearranged)
            if int(number) % 97 == 1:
                yield m.group(0)


def _national_ids(text: str) -> Iterator[str]:
    yield from (m.group(0) for m in _SSN.finditer(text))


_DETECTORS: dict[str, Callable[[str], Iterator[str]]] = {
    "email": _emails,
    "phone": _phones,
    "payment_card": _cards,
    "iban": _ibans,
    "national_id": _national_ids,
}
#: What a value must contain for each detector's pattern to match (a weaker pattern, in RE2 for
#: Arrow, ``\pN`` covering Python's Unicode ``\d``): the detectors run in Python only on the
#: distinct values that pass, so a column of 10,000 e-mails with digits is not tried as phones.
#: Phone, card and national-id matches all are a digit, 6+ digits or ``( ).-``, and a digit.
_SEPARATED_DIGITS = r"\pN[\pN ().-]{6,}\pN"
_PREFILTERS = {
    "email": "@",
    "phone": _SEPARATED_DIGITS,
    "payment_card": _SEPARATED_DIGITS,
    "iban": r"[A-Z]{2}\pN{2}",
    "national_id": _SEPARATED_DIGITS,
}


def _candidates(values: pa.Array) -> dict[str, np.ndarray]:
    """Per kind, the positions of ``values`` its detector may match (a superset, never fewer)."""
    found: dict[str, np.ndarray] = {}
    by_pattern: dict[str, np.ndarray] = {}
    for kind, pattern in _PREFILTERS.items():
        if pattern not in by_pattern:
            mask = pc.match_substring_regex(values, pattern).fill_null(False)
            by_pattern[pattern] = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        found[kind] = by_pattern[pattern]
    return found


def _mask(kind: str, value: str) -> str:
    """Enough of a value to recognise the problem, not enough to reuse it."""
    if kind == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    keep = 4 if len(value) > 6 else 2
    return re.sub(r"\d", "*", value[:-keep]) + value[-keep:]


# ---------------------------------------------------------------- the scan


def _column_findings(table: str, column: str, values: pa.ChunkedArray) -> list[dict[str, Any]]:
    values = values.drop_null()
    if isinstance(values.type, pa.DictionaryType):
        values = values.cast(values.type.value_type)
    if len(values) == 0 or not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        return []
    counts = pc.value_counts(values)
    distinct, tally = counts.field("values"), counts.field("counts").to_numpy()
    hits: dict[str, int] = dict.fromkeys(KINDS, 0)
    examples: dict[str, list[str]] = {k: [] for k in KINDS}
    for kind, positions in _candidates(distinct).items():
        detect = _DETECTORS[kind]
        texts = distinct.take(positions).to_pylist()
        for position, text in zip(positions.tolist(), texts, strict=True):  # in value_counts' order
            found = next(detect(text), None)
            if found is None:
                continue
            hits[kind] += int(tally[position])
            if len(examples[kind]) < EXAMPLES:
                examples[kind].append(_mask(kind, found))
    return [
        {"table": table, "column": column, "kind": k, "share": hits[k] / len(values), "examples": examples[k]}
        for k in KINDS
        if hits[k]
    ]


def sample_requests(spec: Spec, sample: int = PII_SAMPLE) -> list[SampleRequest]:
    """The rows :func:`scan` reads, for the engine's workers to take as they write."""
    return [
        SampleRequest(table, tuple(columns), sample)
        for table in spec.table_order()
        if (columns := _scanned_columns(spec, table))
    ]


def scan(
    version_dir: Path, spec: Spec, sample: int = PII_SAMPLE, drawn: Drawn | None = None
) -> dict[str, Any]:
    """Scan the text and category columns of a version for real-looking personal data.

    Returns ``{looks_like_real_personal_data, findings: [{table, column, kind, share,
    examples}], columns_scanned, sample}``; ``share`` is the fraction of sampled non-null
    values with that kind of finding, ``examples`` are masked.
    """
    findings: list[dict[str, Any]] = []
    scanned: list[str] = []
    for table in spec.table_order():
        columns = _scanned_columns(spec, table)
        if not columns:
            continue
        data = sample_rows(version_dir, table, columns, sample, drawn)
        for column in columns:
            scanned.append(f"{table}.{column}")
            findings += _column_findings(table, column, data.column(column))
    return {
        "looks_like_real_personal_data": bool(findings),
        "findings": findings,
        "columns_scanned": scanned,
        "sample": sample,
    }
