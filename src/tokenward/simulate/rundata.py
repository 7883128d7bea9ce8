"""What a run is asked to do and what it leaves behind: :class:`SimulationSettings`,
:class:`RunData` (everything the report is computed from), ``run.json`` and the rows of
the gateway's SQLite decision log.

A finished run's folder (``--out/run``) holds enough to compute the report again
(:func:`load_run`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..policy import Policy
from .profiles import Profile, Timeline
from .records import CallRecord, read_records

__all__ = ["RunData", "SimulationSettings", "load_run", "read_log", "save_run"]


@dataclass(slots=True)
class SimulationSettings:
    profile: str = "incident"
    policy: Path | None = None
    target: str | None = None
    duration_scale: float = 1.0
    hold_minutes: float | None = None
    max_requests: int | None = None
    out: Path = Path("tokenward-simulate")
    allow_non_loopback: bool = False
    seed: int | None = None
    browsers: bool = True
    decision_log: Path | None = None  # with --target: the target's SQLite decision log
    jwt_key: str | None = None  # with --target: the HS256 key of its identity.jwt, if any
    progress: bool = True
    skip_missing: bool = False  # run without the actors whose client library or browser is missing


@dataclass(slots=True)
class RunData:
    """Everything the report is computed from."""

    profile: Profile
    settings: SimulationSettings
    timeline: Timeline
    t0: float
    t_end: float
    seed: int
    records: list[CallRecord]
    log_rows: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    notes: list[str]
    policy: Policy | None
    policy_source: str
    target: str
    control_ttfb_ms: float | None
    hash_rate: float
    attack_kinds: dict[str, float]
    offered: dict[str, int] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)  # the machine's load average around the run
    not_run: dict[str, str] = field(default_factory=dict)  # actor -> why it did not take part (--skip-missing)


_RUN_FIELDS = ("t0", "t_end", "seed", "alerts", "notes", "policy_source", "target", "control_ttfb_ms", "hash_rate",
               "attack_kinds", "offered", "load")  # fmt: skip


def save_run(data: RunData, run_dir: Path) -> None:
    """Everything but the records and the log (saved beside it) in ``run.json``, so a
    report can be computed again from the run's folder (:func:`load_run`)."""
    doc = {name: getattr(data, name) for name in _RUN_FIELDS}
    doc["not_run"] = data.not_run
    doc["profile"] = data.profile.model_dump(mode="json")
    doc["settings"] = {k: str(v) if isinstance(v, Path) else v for k, v in vars_of(data.settings).items()
                       if k != "jwt_key"}  # a secret: never written down  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(doc, indent=1, default=str))


def load_run(run_dir: Path) -> RunData:
    """A finished run read back from its folder (``--out/run``)."""
    doc = json.loads((run_dir / "run.json").read_text())
    raw: dict[str, Any] = {k: (Path(v) if k in ("policy", "out", "decision_log") and v else v)
                           for k, v in doc["settings"].items()}  # fmt: skip
    settings = SimulationSettings(**raw)
    profile = Profile.model_validate(doc["profile"])
    log_path = run_dir / "decisions.db" if settings.target is None else settings.decision_log
    return RunData(
        profile=profile, settings=settings,
        timeline=Timeline(profile, duration_scale=settings.duration_scale, hold_minutes=settings.hold_minutes),
        records=read_records(run_dir / "records.jsonl"),
        log_rows=read_log(log_path, doc["t0"] - 5) if log_path is not None else [], policy=None,
        not_run=doc.get("not_run", {}),
        **{name: doc[name] for name in _RUN_FIELDS},
    )  # fmt: skip


def vars_of(settings: SimulationSettings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in settings.__slots__}  # type: ignore[attr-defined]


def read_log(path: Path, since: float) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        con.row_factory = sqlite3.Row
        rows = con.execute(
            "SELECT ts, request_id, route, client_ip, action, name, code, status, shadow_action, reasons, "
            "cost_usd, reserved_usd, tokens_in, tokens_out, upstream_status FROM decisions WHERE ts >= ? "
            "AND route IS NOT NULL ORDER BY ts",
            (since,),
        ).fetchall()
    finally:
        con.close()
    out = []
    for r in rows:
        d = dict(r)
        d["reasons"] = json.loads(d["reasons"]) if d["reasons"] else []
        out.append(d)
    return out
