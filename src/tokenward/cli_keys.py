"""``tokenward keys``: create, list, revoke and rotate the signing keys of server clients.

Keys live in a key file the operator controls (``--keys-file``, default the policy's
``clients.keys_file``) or in the Store (``--store redis://...``, or the policy's store when
``clients.keys_in_store`` is set) for several gateway instances. Only public keys are
stored; a private key is printed once, on stdout alone (instructions go to stderr), or
written to ``--private-key-out`` with mode 0600.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.markup import escape

from .cli_output import print_table
from .proof.signature import private_key_b64url, private_key_pem
from .trusted_clients import ClientsError, ClientsSettings, KeyFile, KeyRecord, StoreKeys, new_key

__all__ = ["keys_app", "parse_duration"]

keys_app = typer.Typer(
    help="Signing keys of trusted server clients (RFC 9421 signed requests).",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as the main app's
)
err = Console(stderr=True, soft_wrap=True)  # long paths and keyids stay on one line
out = Console()
out.soft_wrap = not out.is_terminal  # piped: never wrapped at COLUMNS

T = TypeVar("T")

KeysFileOpt = Annotated[
    Path | None, typer.Option("--keys-file", help="key file (JSON, or YAML by extension); default: the policy's")
]
StoreOpt = Annotated[str | None, typer.Option("--store", help="keep keys in this Store instead (redis://...)")]
PolicyOpt = Annotated[
    Path | None, typer.Option("--policy", "-p", help="policy file: clients.keys_file / keys_in_store say where")
]
FormatOpt = Annotated[str, typer.Option("--format", help="how to print the private key: b64url or pem")]
OutOpt = Annotated[
    Path | None, typer.Option("--private-key-out", help="write the private key to this file (mode 0600)")
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_duration(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``24h``, ``7d``, ``2w`` -> seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise ValueError(f"not a duration: {text!r} (e.g. 3600, 15m, 24h, 7d)")
    return float(m.group(1)) * _UNITS[m.group(2)]


class _Keys(Protocol):
    where: str

    async def records(self) -> list[KeyRecord]: ...
    async def add(self, record: KeyRecord) -> None: ...
    async def retire(self, keyid: str, at: float, reason: Literal["revoked", "rotated"]) -> None: ...
    async def close(self) -> None: ...


class _FileKeys:
    def __init__(self, path: Path):
        self.file = KeyFile(path)
        self.where = str(path)

    async def records(self) -> list[KeyRecord]:
        return self.file.load()

    async def add(self, record: KeyRecord) -> None:
        records = self.file.load()
        if any(r.keyid == record.keyid for r in records):
            raise ClientsError([f"keyid {record.keyid} exists already"], self.where)
        self.file.save([*records, record])

    async def retire(self, keyid: str, at: float, reason: Literal["revoked", "rotated"]) -> None:
        records = self.file.load()
        out = []
        for r in records:
            if r.keyid == keyid:
                if reason == "revoked":
                    r = replace(r, revoked_at=min(at, r.revoked_at if r.revoked_at is not None else at))
                else:
                    r = replace(r, not_after=min(at, r.not_after if r.not_after is not None else at))
            out.append(r)
        self.file.save(out)

    async def close(self) -> None:
        return None


class _StoreKeys:
    def __init__(self, uri: str):
        from .store import open_store

        self.store = open_store(uri)
        self.keys = StoreKeys(self.store)
        parts = urlsplit(uri)
        self.where = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()  # never print credentials

    async def records(self) -> list[KeyRecord]:
        return await self.keys.all()

    async def add(self, record: KeyRecord) -> None:
        if await self.keys.get(record.keyid) is not None:
            raise ClientsError([f"keyid {record.keyid} exists already"], self.where)
        await self.keys.put(record)

    async def retire(self, keyid: str, at: float, reason: Literal["revoked", "rotated"]) -> None:
        await self.keys.revoke(keyid, at, reason)

    async def close(self) -> None:
        await self.store.close()


def _policy_clients(policy: Path) -> tuple[ClientsSettings, dict[str, Any]]:
    from .policy import PolicyError, read_policy_data

    try:
        data = read_policy_data(policy)
        return ClientsSettings.model_validate(data.get("clients") or {}), data
    except (PolicyError, ValueError) as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None


def _open(keys_file: Path | None, store: str | None, policy: Path | None) -> tuple[_Keys, ClientsSettings | None]:
    settings = None
    if policy is not None:
        settings, data = _policy_clients(policy)
        if keys_file is None and store is None:
            if settings.keys_file is not None:
                keys_file = settings.keys_file
            elif settings.keys_in_store:
                store = str(data.get("store") or "memory://")
    if keys_file is not None and store is not None:
        err.print("[red]choose one: --keys-file or --store[/red]")
        raise typer.Exit(2)
    if store is not None:
        if store.startswith("memory:"):
            err.print("[red]a memory:// store lives inside one gateway process: use a shared store (redis://...)[/red]")
            raise typer.Exit(2)
        try:
            return _StoreKeys(store), settings
        except ValueError as exc:
            err.print(f"[red]{escape(str(exc))}[/red]")
            raise typer.Exit(2) from None
    if keys_file is not None:
        return _FileKeys(keys_file), settings
    err.print("[red]where are the keys? pass --keys-file PATH, --store URI, or --policy with clients.keys_file[/red]")
    raise typer.Exit(2)


def _run(keys: _Keys, work: Callable[[_Keys], Awaitable[T]]) -> T:
    async def go() -> T:
        try:
            return await work(keys)
        finally:
            await keys.close()

    try:
        return asyncio.run(go())
    except ClientsError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    except Exception as exc:  # a store that does not answer, a file we cannot write
        from .store import StoreUnavailable

        if isinstance(exc, StoreUnavailable | OSError):
            err.print(f"[red]{keys.where}: {escape(str(exc))}[/red]")
            raise typer.Exit(1) from None
        raise


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _reveal(record: KeyRecord, private: Any, fmt: str, private_out: Path | None, where: str) -> None:
    secret = private_key_pem(private) if fmt == "pem" else private_key_b64url(private) + "\n"
    routes = ", ".join(record.routes) or "(the policy's routes for this client)"
    err.print(f"Created key [bold]{record.keyid}[/bold] for client {record.client} (routes: {routes}) in {where}.")
    if private_out is not None:
        fd = os.open(private_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret)
        err.print(f"The private key is in {private_out} (mode 0600); it is not stored anywhere else.")
    else:
        err.print("The private key follows on stdout. It is shown [bold]once[/bold] and not stored: put it in your")
        err.print("secret manager now (e.g. as TOKENWARD_SIGNING_KEY).")
        typer.echo(secret, nl=False)
    err.print(
        "Sign requests with it (docs/signed-requests.md):\n"
        "    from tokenward.sdk.signing import SigningTransport\n"
        "    openai.OpenAI(base_url=..., api_key='unused', http_client=httpx2.Client(\n"
        f"        transport=SigningTransport(os.environ['TOKENWARD_SIGNING_KEY'], '{record.keyid}')))",
        markup=False,
        highlight=False,
    )


def _check_format(fmt: str) -> None:
    if fmt not in ("b64url", "pem"):
        err.print("[red]--format is b64url or pem[/red]")
        raise typer.Exit(2)


def _routes_for(
    client: str, given: list[str] | None, known: list[KeyRecord], settings: ClientsSettings | None
) -> list[str]:
    if given:
        return given
    for r in reversed(known):
        if r.client == client and r.routes:
            return list(r.routes)
    if settings is not None and any(c.name == client and c.routes for c in settings.named):
        return []  # the policy names them
    err.print(f"[red]which routes may {client} call? pass --route PATH (repeatable; '*' for all)[/red]")
    raise typer.Exit(2)


@keys_app.command("create")
def create(
    client: Annotated[str, typer.Argument(metavar="CLIENT", help="client name (letters, digits, _ . -)")],
    route: Annotated[
        list[str] | None,
        typer.Option(
            "--route", "-r", metavar="<path>", help="a route it may call: path, prefix/*, or '*' (repeatable)"
        ),
    ] = None,
    keyid: Annotated[str | None, typer.Option(help="key id (default: CLIENT.<key thumbprint>)")] = None,
    keys_file: KeysFileOpt = None,
    store: StoreOpt = None,
    policy: PolicyOpt = None,
    fmt: FormatOpt = "b64url",
    private_key_out: OutOpt = None,
) -> None:
    """Create a key pair for CLIENT: store the public key, print the private key once."""
    _check_format(fmt)
    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", client):
        err.print("[red]a client name is 1-64 letters, digits, _ . -[/red]")
        raise typer.Exit(2)
    keys, settings = _open(keys_file, store, policy)

    async def work(k: _Keys) -> tuple[KeyRecord, Any]:
        routes = _routes_for(client, route, await k.records(), settings)
        record, private = new_key(client, routes, time.time(), keyid)
        await k.add(record)
        return record, private

    try:
        record, private = _run(keys, work)
    except ValueError as exc:  # bad routes or keyid
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    _reveal(record, private, fmt, private_key_out, keys.where)


@keys_app.command("list")
def list_keys(
    client: Annotated[str | None, typer.Option(help="only this client's keys")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    keys_file: KeysFileOpt = None,
    store: StoreOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """List keys: id, client, state (active, retiring, retired, revoked), routes."""
    keys, _ = _open(keys_file, store, policy)
    records = [r for r in _run(keys, lambda k: k.records()) if client is None or r.client == client]
    now = time.time()
    if as_json:
        typer.echo(json.dumps([{**r.to_dict(), "state": r.state(now)} for r in records], indent=2))
        return
    rows = []
    for r in records:
        until = r.revoked_at if r.revoked_at is not None else r.not_after
        rows.append((r.keyid, r.client, r.state(now), _when(r.created_at), _when(until), ", ".join(r.routes)))
    print_table(
        out, f"keys in {keys.where}", ("keyid", "client", "state", "created", "until", "routes"), rows, wrap="routes"
    )


@keys_app.command("revoke")
def revoke(
    keyid: Annotated[str, typer.Argument(metavar="KEYID", help="the key to refuse from now on")],
    keys_file: KeysFileOpt = None,
    store: StoreOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Revoke a key now. On a Store, every gateway refuses it from its next request."""
    keys, _ = _open(keys_file, store, policy)

    async def work(k: _Keys) -> None:
        if not any(r.keyid == keyid for r in await k.records()):
            raise ClientsError([f"no key {keyid}"], k.where)
        await k.retire(keyid, time.time(), "revoked")

    _run(keys, work)
    err.print(f"Revoked {keyid} in {keys.where}.")
    if isinstance(keys, _FileKeys):
        err.print("Gateways reading this key file refuse it within a couple of seconds (they watch the file).")


@keys_app.command("rotate")
def rotate(
    client: Annotated[str, typer.Argument(metavar="CLIENT", help="the client to give a new key")],
    overlap: Annotated[str, typer.Option(help="how long its current keys stay valid: 0, 15m, 24h, 7d")] = "24h",
    keys_file: KeysFileOpt = None,
    store: StoreOpt = None,
    policy: PolicyOpt = None,
    fmt: FormatOpt = "b64url",
    private_key_out: OutOpt = None,
) -> None:
    """Create a new key for CLIENT; its current keys stay valid for --overlap, then retire."""
    _check_format(fmt)
    try:
        seconds = parse_duration(overlap)
    except ValueError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise typer.Exit(2) from None
    keys, settings = _open(keys_file, store, policy)

    async def work(k: _Keys) -> tuple[KeyRecord, Any, list[str]]:
        now = time.time()
        known = await k.records()
        current = [r for r in known if r.client == client and r.in_force(now)]
        if not current and not any(r.client == client for r in known):
            raise ClientsError([f"no keys for client {client}: use `tokenward keys create`"], k.where)
        record, private = new_key(client, _routes_for(client, None, known, settings), now)
        await k.add(record)
        for r in current:
            await k.retire(r.keyid, now + seconds, "rotated")
        return record, private, [r.keyid for r in current]

    record, private, old = _run(keys, work)
    _reveal(record, private, fmt, private_key_out, keys.where)
    if old:
        until = _when(time.time() + seconds)
        err.print(f"Still valid until {until}: {', '.join(old)}. Deploy the new key before then.")
