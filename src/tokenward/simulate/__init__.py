"""Attack simulator and evaluation report (``tokenward simulate``, docs/simulate.md).

Modules, one job each:

* ``profiles`` — the YAML timelines and actor settings (``profiles/*.yaml``);
* ``population`` — addresses, browser personas, accounts, prompts and agent payloads;
* ``actors`` — what every HTTP-level client shares (the target, solvers, a recorded
  POST, rotation); ``resellers`` — attackers on the official SDKs; ``scripted`` —
  curl_cffi impersonation and a native-solving script; ``legit`` — legit users at the
  HTTP level;
* ``browsers`` — real Chromium clients (legit pages, headless farm);
* ``native`` — a C proof-of-work solver, compiled on first use when a compiler exists;
* ``records`` — what each call did, as its client saw it;
* ``services`` — the demo LLM, the gateway under test and its alert receiver;
* ``runner`` — the run itself; ``plan`` — who arrives when; ``progress`` — the live
  display; ``rundata`` — the settings and what a run leaves behind; ``worker`` — the
  attack process;
* ``report`` — the figures; ``render`` and ``charts`` — Markdown, HTML and SVG.
"""

from __future__ import annotations

from .profiles import Profile, ProfileError, load_profile
from .render import write_report
from .report import build_report
from .runner import RunData, SimulationError, SimulationSettings, run_simulation

__all__ = [
    "Profile",
    "ProfileError",
    "RunData",
    "SimulationError",
    "SimulationSettings",
    "build_report",
    "load_profile",
    "run_simulation",
    "write_report",
]
