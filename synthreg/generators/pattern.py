"""Regex-like text patterns (``ORD-\\d{6}``, ``[A-Z]{2}-\\d{4}``) and UUIDs, vectorized.

Supported: literal characters, ``\\d`` (digit), ``\\w`` (letter or digit), ``\\L``
(upper-case letter), classes such as ``[A-Z]``, ``[a-z0-9]``, ``[ABC]``, and an exact
repeat ``{n}`` after any atom. Every value has the same length, so the strings are
built as one byte matrix and handed to Arrow without a Python loop per row.
"""

from __future__ import annotations

import math
import re
import string

import numpy as np
import pyarrow as pa

__all__ = [
    "Pattern",
    "decode_number",
    "parse_pattern",
    "pattern_regex",
    "render_indices",
    "space_size",
    "uuid_strings",
]

_ESCAPES = {
    "d": string.digits,
    "w": string.ascii_uppercase + string.ascii_lowercase + string.digits,
    "L": string.ascii_uppercase,
    "l": string.ascii_lowercase,
}
_TOKEN = re.compile(r"\\(?P<esc>.)|\[(?P<cls>[^\]]+)\]|(?P<lit>[^\\\[{])|(?P<rep>\{(?P<n>\d+)\})")

Pattern = list[str]  # one charset per output character


def _expand_class(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            lo, hi = body[i], body[i + 2]
            if ord(lo) > ord(hi):
                raise ValueError(f"character class [{body}]: range {lo}-{hi} is reversed")
            out.extend(chr(c) for c in range(ord(lo), ord(hi) + 1))
            i += 3
        else:
            out.append(body[i])
            i += 1
    return "".join(dict.fromkeys(out))


def parse_pattern(text: str) -> Pattern:
    """One charset per output position, or ValueError naming the problem."""
    positions: Pattern = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ValueError(
                f"pattern {text!r}: cannot read {text[pos:]!r}; use literals, \\d, \\w, [A-Z], {{n}}"
            )
        if match.group("rep"):
            if not positions:
                raise ValueError(f"pattern {text!r}: {{n}} must follow a character or class")
            count = int(match.group("n"))
            if not 1 <= count <= 64:
                raise ValueError(f"pattern {text!r}: repeat counts must be 1..64")
            positions.extend([positions[-1]] * (count - 1))
        elif match.group("esc") is not None:
            esc = match.group("esc")
            positions.append(_ESCAPES.get(esc, esc if not esc.isalnum() else ""))
            if not positions[-1]:
                raise ValueError(f"pattern {text!r}: unknown escape \\{esc}; known: \\d \\w \\L \\l")
        elif match.group("cls") is not None:
            positions.append(_expand_class(match.group("cls")))
        else:
            positions.append(match.group("lit"))
        pos = match.end()
    if not positions or len(positions) > 128:
        raise ValueError(f"pattern {text!r}: must make 1..128 characters")
    if any(not c.isascii() for cs in positions for c in cs):
        raise ValueError(f"pattern {text!r}: only ASCII characters are supported")
    return positions


def space_size(pattern: Pattern) -> int:
    """How many distinct values the pattern can make."""
    return math.prod(len(cs) for cs in pattern)


def _fixed_width(matrix: np.ndarray) -> pa.Array:
    rows, width = matrix.shape
    offsets = np.arange(rows + 1, dtype=np.int32) * width
    data = np.ascontiguousarray(matrix, dtype=np.uint8)
    return pa.Array.from_buffers(pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def render_indices(pattern: Pattern, choice: np.ndarray) -> pa.Array:
    """Strings from per-position choices: ``choice[:, k]`` indexes ``pattern[k]``."""
    matrix = np.empty(choice.shape, dtype=np.uint8)
    for k, charset in enumerate(pattern):
        table = np.frombuffer(charset.encode(), dtype=np.uint8)
        matrix[:, k] = table[choice[:, k] % len(table)]
    return _fixed_width(matrix)


def decode_number(pattern: Pattern, values: np.ndarray) -> np.ndarray:
    """Mixed-radix digits of ``values`` (0 <= v < space) as per-position choices."""
    choice = np.empty((len(values), len(pattern)), dtype=np.int64)
    rest = values.astype(np.int64, copy=True)
    for k in range(len(pattern) - 1, -1, -1):
        base = len(pattern[k])
        choice[:, k] = rest % base
        rest //= base
    return choice


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def uuid_strings(high: np.ndarray, low: np.ndarray) -> pa.Array:
    """Version-4 UUID strings from two uint64 arrays of random bits."""
    high = (high & np.uint64(0xFFFFFFFFFFFF0FFF)) | np.uint64(0x0000000000004000)
    low = (low & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)
    raw = np.concatenate(
        [high.astype(">u8").view(np.uint8).reshape(-1, 8), low.astype(">u8").view(np.uint8).reshape(-1, 8)],
        axis=1,
    )
    nibbles = np.empty((len(high), 32), dtype=np.uint8)
    nibbles[:, 0::2] = _HEX[raw >> 4]
    nibbles[:, 1::2] = _HEX[raw & 0x0F]
    dash = np.full((len(high), 1), ord("-"), dtype=np.uint8)
    parts = [
        nibbles[:, 0:8],
        dash,
        nibbles[:, 8:12],
        dash,
        nibbles[:, 12:16],
        dash,
        nibbles[:, 16:20],
        dash,
        nibbles[:, 20:32],
    ]
    return _fixed_width(np.concatenate(parts, axis=1))


def pattern_regex(text: str) -> str:
    """An anchored regular expression matching exactly what the pattern can make."""
    positions = parse_pattern(text)
    parts: list[str] = []
    i = 0
    while i < len(positions):
        j = i
        while j + 1 < len(positions) and positions[j + 1] == positions[i]:
            j += 1
        charset = positions[i]
        atom = (
            re.escape(charset)
            if len(charset) == 1
            else "[" + "".join("\\" + c if c in "\\]^-[" else c for c in charset) + "]"
        )
        parts.append(atom if j == i else f"{atom}{{{j - i + 1}}}")
        i = j + 1
    return "^" + "".join(parts) + "$"
