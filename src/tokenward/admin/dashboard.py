"""The dashboard (docs/dashboard.md): what the decision log says, for a person to read.

Mounted by :func:`tokenward.admin.app.admin_app` under ``/.tokenward/dashboard`` behind
the admin token. It only reads the decision log (SQLite or PostgreSQL), in the admin
listener's own process, so it shows every instance that logs there and costs the request
path nothing. Every query is plain SQL that runs on both databases (placeholders written
``?``), bounded by a time window and a ``LIMIT``, and runs in a thread.

Routes, relative to the mount:

* ``/``: the page; ``/static/dashboard.js`` and ``/static/dashboard.css``: its assets
  (package data, no CDN);
* ``/api/summary?window=3600``: requests per minute by action, spend and refused spend,
  under-attack minutes and breaker trips, top refusal reasons, the filter choices;
* ``/api/top?window=3600``: subnets, devices, accounts and templates by refused and by
  allowed spend;
* ``/api/people?window=3600``: refusals that looked most like a person, ranked;
* ``/api/decisions?route=&action=&reason=&since=&until=&limit=``: the explorer;
* ``/api/decision/{request_id}``: one decision with every signal and its evidence.

Words used here: a **refusal** is a decision whose action is ``challenge``, ``throttle``,
``block`` or ``invalid`` (not forwarded); **spend** is ``cost_usd``, what forwarded calls cost;
**refused spend** is ``held_usd`` of refusals: what the call would have held at most (its
reservation, or its input and the route's full output allowance at its model's price), the
same figure as the ``tokenward_refused_usd_total`` metric. Refusals without it (requests
that matched no protected route) are counted apart, never guessed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

__all__ = [
    "dashboard_routes",
    "decision",
    "decisions",
    "people",
    "person_rank",
    "summary",
    "top",
]

log = logging.getLogger("tokenward.admin")

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

FORWARDED = ("allow", "degrade")
ACTIONS = ("allow", "degrade", "challenge", "throttle", "block", "invalid")  # decision.Action
WINDOWS = (900, 3600, 6 * 3600, 24 * 3600)  # the page offers these
BUCKETS = 60  # points on the timeline, whatever the window
TOP = 10  # rows per "top" table
SCAN = 20_000  # rows (or groups) read at most by one scan done in Python
PEOPLE_SCAN = 2_000  # recent hard refusals ranked for the person-likeness list
EXPLORER_MAX = 500

_IN_REFUSED = "action NOT IN ('allow', 'degrade')"  # challenge, throttle, block, invalid
# What a refusal would have held at most (logs written before held_usd: the reservation).
_HELD = "COALESCE(held_usd, reserved_usd)"
_ROUTE = "COALESCE(route, path)"
_ESC = "!"


def _like_quoted(value: str) -> str:
    """A LIKE pattern matching ``"value"`` anywhere in a JSON text (``ESCAPE '!'``)."""
    escaped = value.replace(_ESC, _ESC * 2).replace("%", _ESC + "%").replace("_", _ESC + "_")
    return f'%"{escaped}"%'


_UNDER_ATTACK = _like_quoted("under_attack")  # in risk only when true (guard/decide.py)


def _json(value: Any) -> Any:
    """A JSON column as read: text from SQLite, already decoded from PostgreSQL's jsonb."""
    if isinstance(value, str | bytes):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _num(value: Any) -> float:
    return float(value) if value is not None else 0.0


def _window(value: str | None) -> int:
    try:
        w = int(value or 3600)
    except ValueError:
        return 3600
    return min(WINDOWS, key=lambda x: abs(x - w))


def _bucket_expr(since: float, bucket: float) -> str:
    """The bucket number of ``ts`` from ``since``: floor((ts - since) / bucket) for ts >=
    since, the same on both databases (SQLite's CAST truncates, PostgreSQL's rounds, so a
    value rounded up is taken back by one). Numbers are ours, formatted, never user input."""
    x = f"((ts - {since:.6f}) / {bucket:.6f})"
    return f"(CAST({x} AS INTEGER) - CASE WHEN CAST({x} AS INTEGER) > {x} THEN 1 ELSE 0 END)"


# -- the summary ---------------------------------------------------------------------------


def summary(run: Run, now: float, window: int) -> dict[str, Any]:
    since = now - window
    bucket = window / BUCKETS
    b = _bucket_expr(since, bucket)
    series: list[dict[str, Any]] = [
        {"t": since + i * bucket, "actions": dict.fromkeys(ACTIONS, 0), "spend": 0.0, "refused_usd": 0.0,
         "under_attack": 0, "breaker": 0}
        for i in range(BUCKETS)
    ]  # fmt: skip
    totals = dict.fromkeys(ACTIONS, 0)
    spend = refused_usd = 0.0
    refusals = refused_estimated = shadow = 0
    rows = run(
        f"SELECT {b}, action, COUNT(*), COALESCE(SUM(cost_usd), 0), COALESCE(SUM({_HELD}), 0),"
        f" COUNT({_HELD}), SUM(CASE WHEN CAST(risk AS TEXT) LIKE ? ESCAPE '!' THEN 1 ELSE 0 END),"
        f" SUM(CASE WHEN name = 'breaker/open' THEN 1 ELSE 0 END),"
        f" SUM(CASE WHEN shadow_action IS NOT NULL AND shadow_action <> action THEN 1 ELSE 0 END)"
        f" FROM decisions WHERE ts >= ? AND ts < ? GROUP BY 1, 2 LIMIT ?",
        [_UNDER_ATTACK, since, now, BUCKETS * 16],
    )  # fmt: skip
    for i, action, n, cost, reserved, estimated, attack, breaker, shadowed in rows:
        point = series[min(max(int(i), 0), BUCKETS - 1)]
        action, n = str(action), int(n)
        point["actions"][action] = point["actions"].get(action, 0) + n
        totals[action] = totals.get(action, 0) + n
        point["spend"] += _num(cost)
        spend += _num(cost)
        if action not in FORWARDED:
            point["refused_usd"] += _num(reserved)
            refused_usd += _num(reserved)
            refusals += n
            refused_estimated += int(estimated)
        point["under_attack"] += int(attack or 0)
        point["breaker"] += int(breaker or 0)
        shadow += int(shadowed or 0)
    attacked: dict[int, list[str]] = {}
    for i, route, _n in run(
        f"SELECT {b}, {_ROUTE}, COUNT(*) FROM decisions WHERE ts >= ? AND ts < ?"
        f" AND CAST(risk AS TEXT) LIKE ? ESCAPE '!' GROUP BY 1, 2 LIMIT ?",
        [since, now, _UNDER_ATTACK, BUCKETS * 8],
    ):
        attacked.setdefault(min(max(int(i), 0), BUCKETS - 1), []).append(str(route))
    for i, under in attacked.items():
        series[i]["attacked_routes"] = sorted(under)
    reasons = [
        {"name": str(name), "count": int(n), "refused_usd": _num(usd), "estimated": int(est)}
        for name, n, usd, est in run(
            f"SELECT name, COUNT(*), COALESCE(SUM({_HELD}), 0), COUNT({_HELD}) FROM decisions"
            f" WHERE ts >= ? AND ts < ? AND {_IN_REFUSED} GROUP BY name ORDER BY 2 DESC, 1 LIMIT ?",
            [since, now, TOP * 2],
        )
    ]  # fmt: skip
    routes: set[str] = set()
    names: set[str] = set()
    for route, name in run(
        "SELECT route, name FROM decisions WHERE ts >= ? AND ts < ? GROUP BY 1, 2 LIMIT ?", [since, now, 2000]
    ):
        if route is not None:
            routes.add(str(route))
        names.add(str(name))
    return {
        "now": now,
        "since": since,
        "window": window,
        "bucket": bucket,
        "series": series,
        "totals": totals,
        "requests": sum(totals.values()),
        "refusals": refusals,
        "spend_usd": spend,
        "refused_usd": refused_usd,
        "refused_estimated": refused_estimated,  # refusals that carry held_usd
        "shadow_refusals": shadow,
        "under_attack_buckets": sum(1 for p in series if p["under_attack"]),
        "breaker_trips": sum(p["breaker"] for p in series),
        "reasons": reasons,
        "routes": sorted(routes),
        "names": sorted(names),
    }


# -- the top tables ------------------------------------------------------------------------


def subnet_of(ip: str) -> str:
    """The /24 of an IPv4 address, the /64 of an IPv6 one; anything else as it is."""
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts):
        return f"{int(parts[0])}.{int(parts[1])}.{int(parts[2])}.0/24"  # the common case, fast
    try:
        addr = ipaddress.ip_address(ip.strip().strip("[]"))
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    prefix = 24 if addr.version == 4 else 64
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def _add(table: dict[str, dict[str, Any]], key: str, refused: bool, n: int, usd: float, **extra: Any) -> None:
    row = table.setdefault(
        key, {"key": key, "refusals": 0, "refused_usd": 0.0, "allowed": 0, "allowed_usd": 0.0, **extra}
    )
    if refused:
        row["refusals"] += n
        row["refused_usd"] += usd
    else:
        row["allowed"] += n
        row["allowed_usd"] += usd


def _ranked(table: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    rows = list(table.values())
    return {
        "refused": sorted(
            (r for r in rows if r["refusals"]), key=lambda r: (-r["refused_usd"], -r["refusals"], r["key"])
        )[:TOP],
        "allowed": sorted(
            (r for r in rows if r["allowed"]), key=lambda r: (-r["allowed_usd"], -r["allowed"], r["key"])
        )[:TOP],
    }


def _identities(signals: Any) -> tuple[str | None, bool, str | None]:
    """(device, verified, template) as the signals' evidence names them."""
    device, verified, template = None, False, None
    for s in signals if isinstance(signals, list) else ():
        if not isinstance(s, dict):
            continue
        name, ev = s.get("name"), s.get("evidence")
        if not isinstance(ev, dict):
            continue
        if name == "device/ok" and ev.get("device"):
            device, verified = str(ev["device"]), True
        elif isinstance(name, str) and name.startswith("device/") and ev.get("claimed") and device is None:
            device = str(ev["claimed"])  # claimed, not verified (unknown, bad signature)
        elif name == "content/template-farm" and ev.get("template"):
            template = f"{ev.get('part', '?')}:{ev['template']}"
    return device, verified, template


def top(run: Run, now: float, window: int) -> dict[str, Any]:
    since = now - window
    subnets: dict[str, dict[str, Any]] = {}
    ip_rows = run(
        f"SELECT client_ip, CASE WHEN {_IN_REFUSED} THEN 1 ELSE 0 END, COUNT(*),"
        f" COALESCE(SUM(CASE WHEN {_IN_REFUSED} THEN {_HELD} ELSE cost_usd END), 0)"
        f" FROM decisions WHERE ts >= ? AND ts < ? GROUP BY 1, 2 ORDER BY 3 DESC LIMIT ?",
        [since, now, SCAN],
    )  # fmt: skip
    for ip, refused, n, usd in ip_rows:
        _add(subnets, subnet_of(str(ip)), bool(refused), int(n), _num(usd))
    accounts: dict[str, dict[str, Any]] = {}
    for account, refused, n, usd in run(
        f"SELECT account, CASE WHEN {_IN_REFUSED} THEN 1 ELSE 0 END, COUNT(*),"
        f" COALESCE(SUM(CASE WHEN {_IN_REFUSED} THEN {_HELD} ELSE cost_usd END), 0)"
        f" FROM decisions WHERE ts >= ? AND ts < ? AND account IS NOT NULL GROUP BY 1, 2 ORDER BY 3 DESC LIMIT ?",
        [since, now, SCAN],
    ):  # fmt: skip
        _add(accounts, str(account), bool(refused), int(n), _num(usd))
    devices: dict[str, dict[str, Any]] = {}
    templates: dict[str, dict[str, Any]] = {}
    scanned = run(
        f"SELECT CASE WHEN {_IN_REFUSED} THEN 1 ELSE 0 END, CASE WHEN {_IN_REFUSED} THEN {_HELD}"
        f" ELSE cost_usd END, signals FROM decisions WHERE ts >= ? AND ts < ?"
        f" AND (CAST(signals AS TEXT) LIKE ? ESCAPE '!' OR CAST(signals AS TEXT) LIKE ? ESCAPE '!'"
        f" OR CAST(signals AS TEXT) LIKE ? ESCAPE '!' OR CAST(signals AS TEXT) LIKE ? ESCAPE '!')"
        f" ORDER BY ts DESC LIMIT ?",
        [since, now, _like_quoted("device/ok"), _like_quoted("device/unknown"),
         _like_quoted("device/bad-signature"), _like_quoted("content/template-farm"), SCAN],
    )  # fmt: skip
    for refused, usd, signals in scanned:
        device, verified, template = _identities(_json(signals))
        if device is not None:
            _add(devices, device, bool(refused), 1, _num(usd), verified=verified)
            if verified:
                devices[device]["verified"] = True
        if template is not None:
            _add(templates, template, bool(refused), 1, _num(usd))
    return {
        "now": now,
        "since": since,
        "window": window,
        "subnets": _ranked(subnets),
        "devices": _ranked(devices),
        "accounts": _ranked(accounts),
        "templates": _ranked(templates),
        "truncated": {"subnets": len(ip_rows) >= SCAN, "identities": len(scanned) >= SCAN},
    }


# -- who looked most like a person ---------------------------------------------------------


def person_rank(signals: Any, proof: Any = None) -> dict[str, Any]:
    """How much a refused request looked like a person (docs/dashboard.md):

    1. it did its work: a fresh, valid proof (``proof/ok``) or a trusted signature;
    2. the automation weight, the sum of its signals' positive weights, is low;
    3. its device key was verified (``device/ok``).

    Ranked in that order (then newest first): the top of the list is who to look at
    first for a false refusal.
    """
    names: list[str] = []
    weight = 0.0
    fired: list[tuple[float, str]] = []
    for s in signals if isinstance(signals, list) else ():
        if not isinstance(s, dict):
            continue
        name = str(s.get("name"))
        names.append(name)
        try:
            score = float(s.get("score") or 0)
        except (TypeError, ValueError):
            score = 0.0
        if score > 0:
            weight += score
            fired.append((score, name))
    worked = "proof/ok" in names or "signature/ok" in names
    device = "device/ok" in names
    fired.sort(key=lambda x: (-x[0], x[1]))
    return {
        "worked": worked,
        "device": device,
        "automation_weight": round(weight, 4),
        "fired": [{"name": n, "score": w} for w, n in fired[:6]],
    }


def people(run: Run, now: float, window: int, limit: int = 15) -> dict[str, Any]:
    since = now - window
    rows = run(
        f"SELECT ts, request_id, {_ROUTE}, client_ip, action, name, code, signals, risk, {_HELD}"
        f" FROM decisions WHERE ts >= ? AND ts < ? AND action IN ('block', 'throttle')"
        f" AND name <> 'breaker/open' ORDER BY ts DESC LIMIT ?",
        [since, now, PEOPLE_SCAN],
    )  # fmt: skip
    ranked = []
    for ts, rid, route, ip, action, name, code, signals, risk, reserved in rows:
        signals = _json(signals)
        if not signals:
            continue  # not judged on who sent it (a bad request): nothing to rank
        risk = _json(risk)
        rank = person_rank(signals)
        ranked.append(
            {
                "ts": float(ts), "request_id": str(rid), "route": str(route), "client_ip": str(ip),
                "action": str(action), "name": str(name), "code": code,
                "risk": risk.get("score") if isinstance(risk, dict) else None,
                "held_usd": None if reserved is None else float(reserved), **rank,
            }
        )  # fmt: skip
    ranked.sort(key=lambda r: (not r["worked"], r["automation_weight"], not r["device"], -r["ts"]))
    return {"now": now, "since": since, "window": window, "scanned": len(rows), "people": ranked[:limit]}


# -- the explorer --------------------------------------------------------------------------

_LIST = (
    f"ts, request_id, method, {_ROUTE}, client_ip, action, name, code, status, risk, cost_usd,"
    " reserved_usd, shadow_action"
)


def decisions(
    run: Run, *, since: float, until: float, route: str | None = None, action: str | None = None,
    reason: str | None = None, client: str | None = None, limit: int = 100,
) -> dict[str, Any]:  # fmt: skip
    where: list[str] = ["ts >= ?", "ts < ?"]
    params: list[Any] = [since, until]
    if route:
        where.append(f"{_ROUTE} = ?")
        params.append(route)
    if action == "refused":
        where.append(_IN_REFUSED)
    elif action:
        where.append("action = ?")
        params.append(action)
    if reason:  # the rule that decided, or any signal among the reasons
        where.append("(name = ? OR CAST(reasons AS TEXT) LIKE ? ESCAPE '!')")
        params += [reason, _like_quoted(reason)]
    if client:
        where.append("client_ip = ?")
        params.append(client)
    limit = max(1, min(int(limit), EXPLORER_MAX))
    rows = run(f"SELECT {_LIST} FROM decisions WHERE {' AND '.join(where)} ORDER BY ts DESC LIMIT ?", [*params, limit])
    items = []
    for ts, rid, method, route_, ip, action_, name, code, status, risk, cost, reserved, shadow in rows:
        risk = _json(risk)
        items.append(
            {
                "ts": float(ts), "request_id": str(rid), "method": str(method), "route": str(route_),
                "client_ip": str(ip), "action": str(action_), "name": str(name), "code": code,
                "status": int(status), "risk": risk.get("score") if isinstance(risk, dict) else None,
                "under_attack": bool(isinstance(risk, dict) and risk.get("under_attack")),
                "cost_usd": None if cost is None else float(cost),
                "reserved_usd": None if reserved is None else float(reserved), "shadow_action": shadow,
            }
        )  # fmt: skip
    return {"decisions": items, "limit": limit, "more": len(rows) >= limit}


def decision(run: Run, request_id: str) -> dict[str, Any] | None:
    from ..log.sqlite import COLUMNS

    rows = run(
        f"SELECT {', '.join(COLUMNS)} FROM decisions WHERE request_id = ? ORDER BY ts DESC LIMIT 1", [request_id]
    )
    if not rows:
        return None
    item = dict(zip(COLUMNS, rows[0], strict=True))
    for col in ("reasons", "signals", "proof", "risk"):
        item[col] = _json(item[col])
    if item["usage_exact"] is not None:
        item["usage_exact"] = bool(item["usage_exact"])
    signals = item["signals"] if isinstance(item["signals"], list) else []
    item["person"] = person_rank(signals)
    return item


# -- HTTP ----------------------------------------------------------------------------------

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": _CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
_ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


def cache_ttl(window: int) -> float:
    """Seconds a window's answers are reused: the page polls about as often (5 s for the
    last hour, 30 s for 6 or 24 hours), and several viewers share one query."""
    return max(2.0, min(30.0, window / 720))


def _asset(name: str) -> bytes:
    return (resources.files("tokenward.admin") / "static" / name).read_bytes()


def _json_response(data: Any, status: int = 200) -> Response:
    return Response(
        orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status_code=status,
        media_type="application/json",
        headers=SECURITY_HEADERS,
    )


def _float(value: str | None, default: float) -> float:
    try:
        f = float(value) if value not in (None, "") else default
    except ValueError:
        return default
    return f if f == f and abs(f) != float("inf") else default


def dashboard_routes(log_uri: str) -> list[BaseRoute]:
    """The dashboard's routes over the decision log at ``log_uri``, relative to its mount."""
    page = _asset("dashboard.html")
    assets = {name: _asset(name) for name in _ASSETS}

    def query(fn: Callable[[Run], Any]) -> Any:
        from ..log import runner

        try:
            run = runner(log_uri)
        except FileNotFoundError:
            return None  # nothing written yet
        try:
            return fn(run)
        except FileNotFoundError:  # PostgreSQL without the table yet
            return None

    cache: dict[tuple[str, int], tuple[float, Any]] = {}
    locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def cached(key: tuple[str, int], fn: Callable[[Run], Any]) -> Response:
        """One query at a time per panel and window; its answer reused for cache_ttl."""
        hit = cache.get(key)
        if hit is None or hit[0] < time.monotonic():
            async with locks.setdefault(key, asyncio.Lock()):
                hit = cache.get(key)
                if hit is None or hit[0] < time.monotonic():
                    response = await answer(fn)
                    if response.status_code != 200:
                        return response
                    hit = (time.monotonic() + cache_ttl(key[1]), response.body)
                    cache[key] = hit
        return Response(hit[1], media_type="application/json", headers=SECURITY_HEADERS)

    async def answer(fn: Callable[[Run], Any]) -> Response:
        try:
            data = await asyncio.to_thread(query, fn)
        except ConnectionError as exc:
            return _json_response({"error": {"code": "log_unreachable", "message": str(exc)}}, 503)
        except Exception as exc:  # a locked or broken database: say so, keep serving
            log.warning("dashboard: reading the decision log failed: %r", exc)
            message = f"Reading the decision log failed ({type(exc).__name__}); see the admin listener's log."
            return _json_response({"error": {"code": "log_error", "message": message}}, 503)
        if data is None:
            return _json_response(
                {"error": {"code": "no_log", "message": "The decision log has no decisions yet."}}, 503
            )
        return data if isinstance(data, Response) else _json_response(data)

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            return Response("not found", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
        return Response(assets[name], media_type=_ASSETS[name], headers=SECURITY_HEADERS)

    async def api_summary(request: Request) -> Response:
        window = _window(request.query_params.get("window"))
        return await cached(("summary", window), lambda run: summary(run, time.time(), window))

    async def api_top(request: Request) -> Response:
        window = _window(request.query_params.get("window"))
        return await cached(("top", window), lambda run: top(run, time.time(), window))

    async def api_people(request: Request) -> Response:
        window = _window(request.query_params.get("window"))
        return await cached(("people", window), lambda run: people(run, time.time(), window))

    async def api_decisions(request: Request) -> Response:
        q = request.query_params
        now = time.time()
        until = _float(q.get("until"), now)
        since = max(_float(q.get("since"), until - 3600), until - 86400)  # a day at most per query
        action = q.get("action") or None
        if action is not None and action not in (*ACTIONS, "refused"):
            return _json_response({"error": {"code": "bad_request", "message": "unknown action"}}, 400)
        limit = int(_float(q.get("limit"), 100))
        return await answer(
            lambda run: decisions(
                run, since=since, until=until, route=q.get("route") or None, action=action,
                reason=q.get("reason") or None, client=q.get("client") or None, limit=limit,
            )
        )  # fmt: skip

    async def api_decision(request: Request) -> Response:
        rid = request.path_params["request_id"][:200]

        def one(run: Run) -> Any:
            found = decision(run, rid)
            if found is None:
                return _json_response({"error": {"code": "not_found", "message": "No decision with that id."}}, 404)
            return found

        return await answer(one)

    return [
        Route("/", index),
        Route("/static/{name}", asset),
        Route("/api/summary", api_summary),
        Route("/api/top", api_top),
        Route("/api/people", api_people),
        Route("/api/decisions", api_decisions),
        Route("/api/decision/{request_id}", api_decision),
    ]
