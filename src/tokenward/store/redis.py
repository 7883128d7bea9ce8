"""Redis store: every operation one Lua script, every batch one pipeline.

Each operation of :mod:`.ops` is a Lua script shipped in ``store/lua/`` (loaded once per
server with ``SCRIPT LOAD``, called by ``EVALSHA``, loaded again after ``NOSCRIPT``, e.g.
when the server restarted). :meth:`RedisStore.execute` sends a whole batch as one
non-transactional pipeline: one network round trip (on Redis Cluster, one per node the
batch touches, sent in parallel), each operation atomic on its own, exactly like the
memory store.

Time comes from Redis ``TIME`` inside each script, so gateways whose clocks differ still
agree. Keys are ``<prefix>{<key>}:<kind>``: the braces are a hash tag, so every key of one
operation lives in one Cluster slot. Budgets are the exception that needs thought: one
:class:`~.ops.Reserve` spans several budgets, all or nothing, and a :class:`~.ops.Commit`
only names its reservation, so every budget bucket and hold of a store shares the single
tag ``{<prefix>budgets}``. That keeps reserve/commit atomic on Cluster at the price of
putting all budget traffic (two small scripts per request) on one shard; see
``docs/stores.md``.

Connection errors and timeouts become :class:`~.base.StoreUnavailable`; a full Redis
(``OOM`` under ``maxmemory-policy noeviction``) becomes :class:`~.base.StoreFull`. Only
batches made entirely of reads (:class:`~.ops.Get`, :class:`~.ops.Range`) are retried,
with jittered backoff: retrying a write whose reply was lost could apply it twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..errors import ConfigurationError

try:
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.cluster import ClusterNode, RedisCluster
    from redis.asyncio.retry import Retry
    from redis.asyncio.sentinel import Sentinel
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import (
        NoScriptError,
        OutOfMemoryError,
        RedisClusterException,
        RedisError,
    )
    from redis.exceptions import TimeoutError as RedisTimeoutError
except ImportError as exc:  # pragma: no cover - depends on the environment
    from .._extras import MissingExtra

    if exc.name is None or exc.name.split(".")[0] != "redis":
        raise
    raise MissingExtra(["redis"], "redis", "the Redis store (store: redis://...)") from exc

from .base import StoreFull, StoreMethods, StoreUnavailable
from .ops import (
    Append,
    Cadence,
    CadenceResult,
    Commit,
    Consume,
    Distinct,
    Get,
    Hit,
    Inflight,
    Op,
    Put,
    Range,
    Rate,
    RateResult,
    Reserve,
    ReserveResult,
    WindowResult,
)

__all__ = ["RedisStore", "open_redis_store"]

log = logging.getLogger("tokenward.store")

_SCRIPT_NAMES = (
    "consume", "hit", "reserve", "commit", "distinct", "inflight", "get", "put", "cadence",
    "append", "range", "rate",
)  # fmt: skip
# Errors after which a request may simply not have reached Redis, or its reply was lost.
_TRANSIENT = (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError)
_IDEMPOTENT = (Get, Range)


@dataclass(frozen=True, slots=True)
class _Script:
    name: str
    text: str
    sha: str


def _load_script_files() -> dict[str, _Script]:
    folder = resources.files("tokenward.store.lua")
    prelude = folder.joinpath("common.lua").read_text(encoding="utf-8")
    scripts = {}
    for name in _SCRIPT_NAMES:
        text = prelude + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        scripts[name] = _Script(name, text, hashlib.sha1(text.encode()).hexdigest())
    return scripts


_SCRIPTS = _load_script_files()


@dataclass(frozen=True, slots=True)
class _Call:
    script: _Script
    keys: tuple[str, ...]
    args: tuple[str | bytes, ...]
    decode: Callable[[Any], Any]


def _num(x: float) -> str:
    """A float as Lua reads it back exactly (``repr`` is the shortest round-trip form)."""
    return repr(float(x))


def _tag(key: str) -> str:
    """The caller's key made safe as a hash tag: braces escaped (injectively), never empty."""
    return key.replace("%", "%25").replace("{", "%7B").replace("}", "%7D") or "%"


class RedisStore(StoreMethods):
    """The Store protocol on Redis, Redis Cluster or a Sentinel-managed Redis.

    ``client`` is a ``redis.asyncio.Redis`` or ``RedisCluster`` built without retries of
    its own (:func:`open_redis_store` builds one from a URI). At most ``max_connections``
    batches are in flight at once; a batch waits up to ``timeout`` seconds for its turn.

    ``clock`` is for tests only (or for a deployment that explicitly accepts clock skew
    between instances): when given, its time is sent to every script instead of Redis
    ``TIME``, so windows, holds and expiries follow it. Redis still expires keys in real
    time, as garbage collection; every value also carries its own logical expiry, which is
    what the operations obey.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        prefix: str = "tw:",
        timeout: float = 1.0,
        max_connections: int = 256,
        retries: int = 2,
        clock: Callable[[], float] | None = None,
        description: str = "redis",
        on_close: Sequence[Callable[[], Awaitable[Any]]] = (),
    ):
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError(f"redis store prefix must not contain braces (hash tags): {prefix!r}")
        if not (timeout > 0 and math.isfinite(timeout)):
            raise ConfigurationError(f"redis store timeout must be a positive number of seconds, got {timeout!r}")
        if max_connections < 1:
            raise ConfigurationError(f"redis store max_connections must be at least 1, got {max_connections!r}")
        self._client = client
        self._cluster = isinstance(client, RedisCluster)
        self._prefix = prefix
        budgets = f"{prefix}{{{prefix}budgets}}"
        self._bucket_prefix = f"{budgets}:b:"
        self._hold_prefix = f"{budgets}:h:"
        self._timeout = timeout
        # One attempt may need a pipeline, a script reload and the pipeline again.
        self._deadline = 3 * timeout
        self._retries = retries
        self._clock = clock
        self._description = description
        self._on_close = tuple(on_close)
        self._slots = asyncio.Semaphore(max_connections)
        self._load_lock = asyncio.Lock()
        self._generation = 0  # bumped by every successful script load
        self._last_refresh = 0.0
        self._refresh: asyncio.Task[None] | None = None
        self._stats = {"pipelines": 0, "script_loads": 0, "noscript": 0, "unavailable": 0}
        self._encode: dict[type, Callable[[Any, str], _Call]] = {
            Consume: self._consume,
            Hit: self._hit,
            Reserve: self._reserve,
            Commit: self._commit,
            Distinct: self._distinct,
            Inflight: self._inflight,
            Get: self._get,
            Put: self._put,
            Cadence: self._cadence,
            Append: self._append,
            Range: self._range,
            Rate: self._rate,
        }

    def __repr__(self) -> str:
        return f"RedisStore({self._description}, prefix={self._prefix!r})"

    # -- the protocol ------------------------------------------------------------------
    async def execute(self, ops: Sequence[Op]) -> list[Any]:
        if not ops:
            return []
        now = "" if self._clock is None else _num(self._clock())
        try:
            calls = [self._encode[type(op)](op, now) for op in ops]
        except KeyError as exc:
            raise TypeError(f"the Redis store has no script for {exc.args[0].__name__} operations") from None
        idempotent = all(isinstance(op, _IDEMPOTENT) for op in ops)
        raw = await self._call(calls, idempotent)
        return [call.decode(result) for call, result in zip(calls, raw, strict=True)]

    async def ping(self) -> bool:
        try:
            async with asyncio.timeout(self._deadline):
                return bool(await self._client.ping())
        except (RedisError, RedisClusterException, *_TRANSIENT) as exc:
            log.debug("redis store ping failed: %s", exc)
            await self._after_connection_error()
            return False

    async def close(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
        await self._client.aclose()
        for closer in self._on_close:
            await closer()

    def supports(self, op_type: type) -> bool:
        """Whether this store has a script for that operation type."""
        return op_type in self._encode

    def stats(self) -> dict[str, int]:
        """Counters: pipelines sent (one per execute, plus one per NOSCRIPT retry), script
        loads, NOSCRIPT replies seen, batches that ended in StoreUnavailable."""
        return dict(self._stats)

    # -- sending -------------------------------------------------------------------------
    async def _call(self, calls: list[_Call], idempotent: bool) -> list[Any]:
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                async with asyncio.timeout(self._deadline):
                    return await self._attempt(calls)
            except _TRANSIENT as exc:
                await self._after_connection_error()
                pause = random.uniform(0, min(0.2, 0.02 * 2**attempt))  # full jitter
                elapsed = time.monotonic() - started
                if not idempotent or attempt >= self._retries or elapsed + pause > self._timeout:
                    self._stats["unavailable"] += 1
                    raise StoreUnavailable(f"redis store unavailable ({self._description}): {exc!r}") from exc
                attempt += 1
                await asyncio.sleep(pause)
            except OutOfMemoryError as exc:
                raise StoreFull(f"redis store is full ({self._description}): {exc}") from exc
            except (RedisError, RedisClusterException) as exc:
                self._stats["unavailable"] += 1
                raise StoreUnavailable(f"redis store error ({self._description}): {exc!r}") from exc

    async def _attempt(self, calls: list[_Call]) -> list[Any]:
        async with self._slots:
            if self._generation == 0:
                await self._load_scripts(0)
            generation = self._generation
            results = await self._pipeline(calls)
            missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
            if missing:
                # The server lost its scripts (restart, failover, SCRIPT FLUSH). A NOSCRIPT
                # reply means that script did not run, so running it now is not a repeat.
                self._stats["noscript"] += len(missing)
                await self._load_scripts(generation)
                again = await self._pipeline([calls[i] for i in missing])
                for i, result in zip(missing, again, strict=True):
                    results[i] = result
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
        self._stats["pipelines"] += 1
        return list(await pipe.execute(raise_on_error=False))

    async def _load_scripts(self, seen_generation: int) -> None:
        async with self._load_lock:
            if self._generation != seen_generation:
                return  # another batch reloaded them while this one waited
            scripts = list(_SCRIPTS.values())
            pipe = self._client.pipeline(transaction=False)
            if self._cluster:
                # Every primary needs every script: one pipeline, one round trip per node.
                cluster: Any = self._client
                await cluster.initialize()
                for node in cluster.get_primaries():
                    for s in scripts:
                        pipe.execute_command("SCRIPT LOAD", s.text, target_nodes=node)
            else:
                for s in scripts:
                    pipe.execute_command("SCRIPT LOAD", s.text)
            replies = list(await pipe.execute())
            shas = replies[: len(scripts)]
            if any(r != replies[i % len(scripts)] for i, r in enumerate(replies)):
                raise RedisError(f"nodes disagree on script hashes: {replies!r}")
            for s, sha in zip(scripts, shas, strict=True):
                got = sha.decode() if isinstance(sha, bytes) else str(sha)
                if got != s.sha:
                    raise RedisError(f"script {s.name}: server sha {got} differs from {s.sha}")
            self._stats["script_loads"] += 1
            self._generation += 1

    async def _after_connection_error(self) -> None:
        # A cluster client keeps sending to the node it last knew for a slot; after a
        # connection error, have it read the topology again (a replica may have been
        # promoted), in the background and at most once a second. Connections to the
        # healthy nodes stay as they are.
        if not self._cluster or time.monotonic() - self._last_refresh < 1.0:
            return
        if self._refresh is not None and not self._refresh.done():
            return
        self._last_refresh = time.monotonic()
        self._refresh = asyncio.create_task(self._refresh_topology())

    async def _refresh_topology(self) -> None:
        try:
            async with asyncio.timeout(self._deadline * 2):
                await self._client.nodes_manager.initialize()  # type: ignore[union-attr]
        except (RedisError, RedisClusterException, *_TRANSIENT) as exc:
            log.debug("redis cluster topology refresh failed: %s", exc)

    # -- keys ----------------------------------------------------------------------------
    def _key(self, key: str, kind: str) -> str:
        return f"{self._prefix}{{{_tag(key)}}}:{kind}"

    # -- one encoder per operation ---------------------------------------------------------
    def _consume(self, op: Consume, now: str) -> _Call:
        return _Call(_SCRIPTS["consume"], (self._key(op.key, "u"),), (now, _num(op.ttl)), _flag)

    def _hit(self, op: Hit, now: str) -> _Call:
        def decode(r: list[Any]) -> WindowResult:
            return WindowResult(r[0] == 1, float(r[1]), op.limit, float(r[2]))

        args = (now, _num(op.limit), _num(op.window), _num(op.cost))
        return _Call(_SCRIPTS["hit"], (self._key(op.key, "w"),), args, decode)

    def _reserve(self, op: Reserve, now: str) -> _Call:
        def decode(r: list[Any]) -> ReserveResult:
            if r[0] == 1:
                return ReserveResult(True)
            return ReserveResult(False, op.budgets[int(r[1]) - 1], float(r[2]))

        args: list[str] = [
            now, _num(op.amount), op.reservation, _num(op.ttl), self._bucket_prefix, str(len(op.budgets))
        ]  # fmt: skip
        for b in op.budgets:
            args += [b.key, _num(b.limit), _num(b.window), f"{b.window:g}"]
        return _Call(_SCRIPTS["reserve"], (self._hold_prefix + op.reservation,), tuple(args), decode)

    def _commit(self, op: Commit, now: str) -> _Call:
        args = (now, _num(op.actual), op.reservation)
        return _Call(_SCRIPTS["commit"], (self._hold_prefix + op.reservation,), args, _none)

    def _distinct(self, op: Distinct, now: str) -> _Call:
        args = (now, op.member, _num(op.window), str(int(op.cap)))
        keys = (self._key(op.key, "d"), self._key(op.key, "de"))
        return _Call(_SCRIPTS["distinct"], keys, args, int)

    def _inflight(self, op: Inflight, now: str) -> _Call:
        args = (now, str(int(op.delta)), _num(op.ttl))
        return _Call(_SCRIPTS["inflight"], (self._key(op.key, "n"),), args, int)

    def _get(self, op: Get, now: str) -> _Call:
        return _Call(_SCRIPTS["get"], (self._key(op.key, "v"),), (now,), _bytes_or_none)

    def _put(self, op: Put, now: str) -> _Call:
        args = (now, bytes(op.value), _num(op.ttl), "1" if op.only_new else "0")
        return _Call(_SCRIPTS["put"], (self._key(op.key, "v"),), args, _flag)

    def _cadence(self, op: Cadence, now: str) -> _Call:
        args = (now, str(int(op.span)), _num(op.ttl))
        return _Call(_SCRIPTS["cadence"], (self._key(op.key, "c"),), args, _cadence_result)

    def _append(self, op: Append, now: str) -> _Call:
        keys = (self._key(op.key, "l"), self._key(op.key, "le"))
        args = (now, bytes(op.item), str(int(op.max_items)), _num(op.ttl))
        return _Call(_SCRIPTS["append"], keys, args, int)

    def _range(self, op: Range, now: str) -> _Call:
        keys = (self._key(op.key, "l"), self._key(op.key, "le"))
        return _Call(_SCRIPTS["range"], keys, (now,), _byte_list)

    def _rate(self, op: Rate, now: str) -> _Call:
        args = (now, _num(op.amount), _num(op.bucket), _num(op.half_life))
        return _Call(_SCRIPTS["rate"], (self._key(op.key, "r"),), args, _rate_result)


def _flag(r: Any) -> bool:
    return r == 1


def _none(r: Any) -> None:
    return None


def _bytes_or_none(r: Any) -> bytes | None:
    return None if r is None else bytes(r)


def _byte_list(r: Any) -> list[bytes]:
    return [bytes(item) for item in r]


def _cadence_result(r: list[Any]) -> CadenceResult:
    mean, var = float(r[1]), float(r[2])
    return CadenceResult(int(r[0]), mean, math.sqrt(var) / mean if mean > 0 else 0.0)


def _rate_result(r: list[Any]) -> RateResult:
    return RateResult(float(r[0]), float(r[1]), float(r[2]), int(r[3]))


# -- opening a store from a URI -------------------------------------------------------------

_SCHEMES = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}
_OPTIONS: dict[str, Callable[[str], Any]] = {
    "prefix": str,
    "timeout": float,
    "max_connections": int,
}
_TLS_OPTIONS: dict[str, Callable[[str], Any]] = {"ssl_ca_certs": str, "ssl_cert_reqs": str}
_CERT_REQS = ("none", "optional", "required")


def open_redis_store(uri: str, *, clock: Callable[[], float] | None = None) -> RedisStore:
    """A :class:`RedisStore` from a URI (``clock``: tests only, see :class:`RedisStore`).

    * ``redis://[user:password@]host[:port][/db]``, ``rediss://`` for TLS
    * ``redis+cluster://[user:password@]host:port[,host:port...]`` (seed nodes), ``rediss+cluster://``
    * ``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]``,
      ``rediss+sentinel://`` (TLS to the master; the credentials are the master's)

    Query options: ``prefix`` (default ``tw:``), ``timeout`` seconds for connecting and
    for each reply (default 1.0), ``max_connections`` (default 256), and with TLS
    ``ssl_ca_certs`` (a CA file) and ``ssl_cert_reqs`` (none/optional/required).
    Nothing connects until the first operation.
    """
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise ConfigurationError(f"invalid redis store URI {_mask(uri)!r}: {exc}") from None
    if parts.scheme not in _SCHEMES:
        raise ConfigurationError(
            f"not a redis store URI: {_mask(uri)!r}; supported schemes: {', '.join(f'{s}://' for s in _SCHEMES)}"
        )
    kind, tls = _SCHEMES[parts.scheme]
    options = _parse_options(parts.query, tls, uri)
    userinfo, _, hostlist = parts.netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    default_port = 26379 if kind == "sentinel" else 6379
    hosts = [_host_port(item, default_port, uri) for item in hostlist.split(",")]
    timeout = options.get("timeout", 1.0)
    max_connections = options.get("max_connections", 256)
    common: dict[str, Any] = {
        "username": unquote(username) or None,
        "password": unquote(password) or None,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),  # never resend a script whose reply was lost
    }
    if tls:
        common["ssl"] = True
        for name in _TLS_OPTIONS:
            if name in options:
                common[name] = options[name]
    path = [unquote(p) for p in parts.path.split("/") if p]
    on_close: list[Callable[[], Awaitable[Any]]] = []
    client: Redis | RedisCluster
    if kind == "single":
        if len(hosts) != 1:
            raise ConfigurationError(f"{_mask(uri)!r} names several hosts: use redis+cluster:// or redis+sentinel://")
        pool_kwargs = dict(common)
        if pool_kwargs.pop("ssl", False):
            from redis.asyncio.connection import SSLConnection

            pool_kwargs["connection_class"] = SSLConnection
        pool = BlockingConnectionPool(
            host=hosts[0][0], port=hosts[0][1], db=_db(path, uri), max_connections=max_connections + 2,
            timeout=timeout, **pool_kwargs,
        )  # fmt: skip
        client = Redis.from_pool(pool)
    elif kind == "cluster":
        if path:
            raise ConfigurationError(f"a Redis Cluster has no databases: drop the path in {_mask(uri)!r}")
        client = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in hosts],
            max_connections=max_connections + 2, **common,
        )  # fmt: skip
    else:
        if not path or len(path) > 2:
            raise ConfigurationError(f"name the Sentinel service: redis+sentinel://host:port/SERVICE in {_mask(uri)!r}")
        service, db = path[0], _db(path[1:], uri)
        sentinel = Sentinel(
            hosts,
            sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
            db=db, max_connections=max_connections + 2, **common,
        )  # fmt: skip
        client = sentinel.master_for(service, redis_class=Redis)
        for s in sentinel.sentinels:
            on_close.append(s.aclose)
    return RedisStore(
        client, prefix=options.get("prefix", "tw:"), timeout=timeout, max_connections=max_connections,
        clock=clock, description=_mask(uri.partition("?")[0]), on_close=on_close,
    )  # fmt: skip


def _parse_options(query: str, tls: bool, uri: str) -> dict[str, Any]:
    known = {**_OPTIONS, **(_TLS_OPTIONS if tls else {})}
    options: dict[str, Any] = {}
    for name, values in parse_qs(query, keep_blank_values=True).items():
        if name not in known:
            supported = ", ".join(known)
            raise ConfigurationError(f"unknown redis store option {name!r} in {_mask(uri)!r}; supported: {supported}")
        try:
            value = known[name](values[-1])
        except ValueError:
            raise ConfigurationError(f"redis store option {name} has an unusable value {values[-1]!r}") from None
        options[name] = value
    if "timeout" in options and not (options["timeout"] > 0 and math.isfinite(options["timeout"])):
        raise ConfigurationError(f"redis store option timeout must be a positive number, got {options['timeout']!r}")
    if "max_connections" in options and options["max_connections"] < 1:
        raise ConfigurationError("redis store option max_connections must be at least 1")
    if "prefix" in options and ("{" in options["prefix"] or "}" in options["prefix"]):
        raise ConfigurationError("redis store option prefix must not contain braces")
    if "ssl_cert_reqs" in options and options["ssl_cert_reqs"] not in _CERT_REQS:
        raise ConfigurationError(f"redis store option ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}")
    return options


def _host_port(item: str, default_port: int, uri: str) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else rest
    elif item.count(":") == 1:
        host, _, port_text = item.partition(":")
    else:
        host, port_text = item, ""
    if not host:
        raise ConfigurationError(f"missing host in redis store URI {_mask(uri)!r}")
    if port_text and not port_text.isdigit():
        raise ConfigurationError(f"bad port {port_text!r} in redis store URI {_mask(uri)!r}")
    port = int(port_text) if port_text else default_port
    if not 0 < port < 65536:
        raise ConfigurationError(f"bad port {port} in redis store URI {_mask(uri)!r}")
    return host, port


def _db(path: list[str], uri: str) -> int:
    if not path:
        return 0
    if len(path) != 1 or not path[0].isdigit():
        raise ConfigurationError(f"the database in {_mask(uri)!r} must be a number, e.g. redis://host:6379/0")
    return int(path[0])


def _mask(uri: str) -> str:
    """The URI with its password replaced by ``***`` (for messages and reprs)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri
    netloc, slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    return f"{scheme}{sep}{userinfo}{at}{hosts}{slash}{tail}"
