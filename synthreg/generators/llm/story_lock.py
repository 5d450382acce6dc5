"""Structure a story states explicitly, read without an LLM and locked before any call.

- row counts: ``50k users``, ``2 million orders``, ``1.5k products``, ``10,000 customers``,
  ``3M events``, ``users (50k)``, ``users: 50000``, ``10k rows of users``;
- table names: nouns listed after ``with`` / ``having`` / ``containing`` / ``including``
  (``a fitness app with 50k users, subscriptions and workouts``): plural nouns, or any
  noun with a count; the list ends at the first clause word (``for``, ``where``...);
- enums: ``plans free, pro and team``, ``status: active, paused or cancelled``,
  ``tier one of bronze/silver/gold``, ``plan in {free, pro}``: the column is the singular
  of the noun. Two values joined by and/or with no comma or trigger must not be plurals
  ("tracks users and workouts" is no enum).

Counts inside a per-parent clause (``each user logs 3 workouts``, ``4 visits per patient``)
are ratios, not table sizes: they are left to the model. The reading is deterministic
and errs on the side of locking less: a fact it misses is still the model's to answer.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation

__all__ = ["Locked", "LockedEnum", "LockedTable", "ident", "lock_story", "singular"]


@dataclass(frozen=True)
class LockedTable:
    """A table the story names; ``rows`` when it states a count; ``source``: the words it came from."""

    name: str
    rows: int | None
    source: str


@dataclass(frozen=True)
class LockedEnum:
    """A category column the story enumerates; ``table``: the table its sentence names last before it."""

    column: str
    values: tuple[str, ...]
    table: str | None
    source: str


@dataclass(frozen=True)
class Locked:
    """Everything locked from a story, in the order the story names it."""

    tables: tuple[LockedTable, ...] = ()
    enums: tuple[LockedEnum, ...] = ()

    def to_dict(self) -> dict[str, list[dict[str, object]]]:
        """A JSON-able dict (also shown to the model as the locked facts)."""
        return {
            "tables": [asdict(t) for t in self.tables],
            "enums": [{**asdict(e), "values": list(e.values)} for e in self.enums],
        }


_MULTIPLIERS = {
    "k": 10**3,
    "thousand": 10**3,
    "m": 10**6,
    "mn": 10**6,
    "mio": 10**6,
    "million": 10**6,
    "b": 10**9,
    "bn": 10**9,
    "billion": 10**9,
}
_NUMBER = (
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s*"
    r"(?P<mult>thousand|million|billion|mio|mn|bn|k|m|b)?\b"
)
_WORD = r"[A-Za-z][A-Za-z_-]*"
_COUNT = re.compile(rf"{_NUMBER}\s+(?P<words>{_WORD}(?:\s+{_WORD}){{0,2}})", re.I)
_COUNT_AFTER = re.compile(rf"\b(?P<words>{_WORD})\s*(?:\(\s*|[:=]\s*){_NUMBER}", re.I)
_ROWS_OF = re.compile(r"\b(?:rows|records|entries)\s+(?:of|for|in)\s+", re.I)
_LIST_START = re.compile(r"\b(?:with|having|containing|including)\b", re.I)
_HARD_STOP = re.compile(r"[;:!?()\[\]\n]|\.(?!\d)")
_ITEM_SPLIT = re.compile(r",(?!\d)|&|\band\b|\bplus\b|\bas well as\b", re.I)
_CLAUSE_END = re.compile(r"[;:!?\n]|[.,](?!\d)")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOP = _words(
    "a an the and or with without for of in on at to by from per each every where who whom which that "
    "whose while when has have having had is are be been was were as than then so also their its his "
    "her our your this these those such like including containing about into over under"
)
_FILLERS = _words(
    "about around roughly approximately approx nearly almost over under some many several various "
    "multiple lots few their its the a an ~ also related associated optional"
)
_ADJECTIVES = _words(
    "active inactive unique distinct registered paying paid free monthly daily weekly yearly annual "
    "total new existing past recent historical synthetic realistic fake sample random"
)
_UNITS = _words(
    "rows row records record entries entry lines columns tables years year months month weeks week "
    "days day hours hour minutes minute seconds second percent pct times usd dollars eur euros kg km "
    "mb gb million thousand billion k m b"
)
_RATIO_WORDS = _words(
    "each every per average avg mean median typically usually up most least between maximum minimum"
)
_IRREGULAR_PLURALS = _words("people staff data media children personnel inventory feedback")
_NOT_VALUE = "and|or|with|the|a|an|to|of|in|on|for|from|by|per|each|who|that|which|where|has|have"
_VALUE = rf"(?!(?:{_NOT_VALUE})\b)[A-Za-z][\w+-]*"
_ENUM = re.compile(
    rf"\b(?P<noun>[A-Za-z][A-Za-z_]*)"
    rf"(?P<trigger>\s*[:=]\s*|\s+(?:one\s+of|either|like|such\s+as)\s+|(?:\s+in)?\s*[\[{{(]\s*|\s+)"
    rf"(?P<values>{_VALUE}(?:\s*(?:,|/|\|)\s*(?:(?:and|or)\s+)?{_VALUE})*(?:\s*,?\s+(?:and|or)\s+{_VALUE})?)",
    re.I,
)
_ENUM_SPLIT = re.compile(r"\s*(?:,|/|\||\band\b|\bor\b)\s*", re.I)
_MAX_ROWS = 10**10


def ident(name: str) -> str:
    """A name as a spec identifier: lowercase, runs of other characters as ``_``."""
    out = re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")
    if not out:
        return "t"
    return out if out[0].isalpha() or out[0] == "_" else f"t_{out}"


def singular(word: str) -> str:
    """An English plural's singular, for the common cases (plans -> plan, statuses -> status)."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes", "uses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _plural(word: str) -> bool:
    return word in _IRREGULAR_PLURALS or (word.endswith("s") and not word.endswith(("ss", "us", "is")))


def _rows(num: str, mult: str | None) -> int | None:
    try:
        value = Decimal(num.replace(",", "")) * _MULTIPLIERS.get((mult or "").lower(), 1)
    except InvalidOperation:
        return None
    if value != value.to_integral_value() or not 0 < value <= _MAX_ROWS:
        return None
    return int(value)


def _noun(words: list[str]) -> tuple[str | None, int]:
    """The table name a short phrase starts with, and how many words it used (0: none)."""
    words = [w.lower() for w in words]
    skip = 0
    while skip < len(words) - 1 and words[skip] in _ADJECTIVES:
        skip += 1
    rest = words[skip:]
    if not rest or rest[0] in _STOP or rest[0] in _UNITS:
        return None, 0
    if len(rest) > 1 and not _plural(rest[0]) and rest[1] not in _STOP and _plural(rest[1]):
        return f"{rest[0]}_{rest[1]}", skip + 2
    return rest[0], skip + 1


def _is_ratio(text: str, start: int, end: int) -> bool:
    """A count in a per-parent clause ('each user has 3 workouts', '4 visits per patient')."""
    clause = _CLAUSE_END.split(text[:start])[-1].lower().split()
    after = text[end:].lower().split()[:1]
    return bool(_RATIO_WORDS & set(clause)) or bool(after and after[0] in ("per", "each", "every", "a", "an"))


def _counted(text: str) -> dict[str, tuple[int | None, int, str]]:
    """name -> (rows, position, source) for every explicit count."""
    found: dict[str, tuple[int | None, int, str]] = {}
    for match in _COUNT.finditer(text):
        name, used = _noun(match["words"].split())
        words_end = match.start("words") + len(" ".join(match["words"].split()[:used]))
        rows = _rows(match["num"], match["mult"])
        if name and rows and not _is_ratio(text, match.start(), words_end):
            found.setdefault(ident(name), (rows, match.start(), text[match.start() : words_end].strip()))
    for match in _COUNT_AFTER.finditer(text):
        name, _ = _noun([match["words"]])
        rows = _rows(match["num"], match["mult"])
        if name and rows and _plural(name):
            found.setdefault(ident(name), (rows, match.start(), match.group(0).strip()))
    return found


def _listed(text: str) -> dict[str, tuple[int | None, int, str]]:
    """name -> (None, position, source) for nouns listed after 'with' and its kin."""
    found: dict[str, tuple[int | None, int, str]] = {}
    for start in _LIST_START.finditer(text):
        stop = _HARD_STOP.search(text, start.end())
        segment = text[start.end() : stop.start() if stop else len(text)]
        offset = start.end()
        for item in _ITEM_SPLIT.split(segment):
            name, complete = _list_item(item)
            if name:
                position = offset + segment.find(item)
                found.setdefault(ident(name), (None, position, f"{start.group(0)} ... {item.strip()}"))
            if not complete:
                break
    return found


def _list_item(item: str) -> tuple[str | None, bool]:
    """The table an item of a 'with' list names, and whether the list goes on after it."""
    words = item.split()
    while words and words[0].lower() in _FILLERS:
        words = words[1:]
    rest = " ".join(words)
    number = re.match(rf"{_NUMBER}\s+", rest, re.I)
    words = rest[number.end() :].split() if number else words
    phrase = []
    for word in words:
        if not re.fullmatch(_WORD, word):
            break
        phrase.append(word)
    name, used = _noun(phrase[:3])
    if name is None or not (number or _plural(name.rsplit("_", 1)[-1])):
        return None, False
    return name, used == len(words)


def _enums(text: str, tables: dict[str, tuple[int | None, int, str]]) -> list[tuple[LockedEnum, int, int]]:
    """(enum, start, end) for every enumeration that reads as one (see the module docstring)."""
    out = []
    match = _ENUM.search(text)
    while match is not None:
        enum = _enum(match, tables)
        if enum is not None:
            out.append((enum, match.start(), match.end()))
        # matches may overlap ("with status a, b"): a rejected one retries from its next word
        match = _ENUM.search(text, match.end() if enum else match.end("noun"))
    return out


def _enum(match: re.Match[str], tables: dict[str, tuple[int | None, int, str]]) -> LockedEnum | None:
    noun, trigger = match["noun"].lower(), match["trigger"].strip()
    values = tuple(dict.fromkeys(v for v in _ENUM_SPLIT.split(match["values"].strip()) if v))
    if len(values) < 2 or noun in _STOP or noun in _UNITS or noun.endswith("ing"):
        return None
    listed = bool(trigger) or bool(re.search(r"[,/|]", match["values"]))
    if not listed and any(_plural(v.lower()) for v in values):
        return None
    if tables.get(ident(noun), (None,))[0] is not None or any(ident(v) in tables for v in values):
        return None
    return LockedEnum(ident(singular(noun)), values, None, match.group(0).strip())


def lock_story(story: str) -> Locked:
    """The tables, row counts and enums ``story`` states explicitly (see the module docstring)."""
    text = _ROWS_OF.sub("", story)
    first = {**_listed(text), **_counted(text)}
    enums = _enums(text, first)
    masked = text
    for _, start, end in enums:
        masked = masked[:start] + " " * (end - start) + masked[end:]
    tables = _listed(masked)
    for name, fact in _counted(masked).items():
        tables[name] = (fact[0], min(fact[1], tables.get(name, fact)[1]), fact[2])
    ordered = sorted(tables.items(), key=lambda item: item[1][1])
    return Locked(
        tables=tuple(LockedTable(name, rows, source) for name, (rows, _, source) in ordered),
        enums=tuple(_with_table(e, start, [n for n, _ in ordered], text) for e, start, _ in enums),
    )


def _with_table(enum: LockedEnum, start: int, names: list[str], text: str) -> LockedEnum:
    """The enum with the table its sentence names last before it (None when it names none)."""
    sentence = max((m.end() for m in re.finditer(r"[.;!?\n](?!\d)", text[:start])), default=0)
    mentions = []
    for name in names:
        pattern = rf"\b{re.escape(name).replace('_', '[ _]')}\b"
        mentions += [(m.start(), name) for m in re.finditer(pattern, text[sentence:start], re.I)]
    return LockedEnum(enum.column, enum.values, max(mentions)[1] if mentions else None, enum.source)
