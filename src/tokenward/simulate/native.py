"""A native proof-of-work solver for the simulation (the search of docs/protocol.md §2 in C).

The *native solver* attacker is a script that solves proofs in native code, and the
HTTP-level model of legit users needs real proofs for hundreds of browsers on one
machine (its timing is then paced to each persona's browser speed). Both use this when
a C compiler is available: a 60-line SHA-256 with the prefix's midstate, compiled once
per source version into the user's cache folder and loaded with ``ctypes`` (which
releases the GIL, so a solve in a thread never stalls the event loop). Without a
compiler, :func:`solver` falls back to the Python reference solver.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from ..proof.challenge import solve as python_solve

__all__ = ["native_available", "native_solve", "solver"]

_SOURCE = r"""
#include <stdint.h>
#include <string.h>
static const uint32_t K[64] = {
 0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,
 0xd807aa98,0x12835b01,0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,
 0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,0x4a7484aa,0x5cb0a9dc,0x76f988da,
 0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
 0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,
 0xa2bfe8a1,0xa81a664b,0xc24b8b70,0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,
 0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,0x5b9cca4f,0x682e6ff3,
 0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2};
#define R(x,n) (((x)>>(n))|((x)<<(32-(n))))
static void block(uint32_t s[8], const uint8_t *p) {
  uint32_t w[64], a, b, c, d, e, f, g, h;
  for (int i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4*i] << 24 | (uint32_t)p[4*i+1] << 16 | (uint32_t)p[4*i+2] << 8 | p[4*i+3];
  for (int i = 16; i < 64; i++)
    w[i] = w[i-16] + (R(w[i-15],7) ^ R(w[i-15],18) ^ (w[i-15] >> 3)) + w[i-7]
         + (R(w[i-2],17) ^ R(w[i-2],19) ^ (w[i-2] >> 10));
  a = s[0]; b = s[1]; c = s[2]; d = s[3]; e = s[4]; f = s[5]; g = s[6]; h = s[7];
  for (int i = 0; i < 64; i++) {
    uint32_t t1 = h + (R(e,6) ^ R(e,11) ^ R(e,25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (R(a,2) ^ R(a,13) ^ R(a,22)) + ((a & b) ^ (a & c) ^ (b & c));
    h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
  }
  s[0] += a; s[1] += b; s[2] += c; s[3] += d; s[4] += e; s[5] += f; s[6] += g; s[7] += h;
}
static int enough(const uint32_t *s, int d) {
  int i = 0;
  while (d >= 32) { if (s[i]) return 0; i++; d -= 32; }
  return d == 0 || (s[i] >> (32 - d)) == 0;
}
/* Smallest nonce in [start, start + count) with `difficulty` leading zero bits of
   SHA-256(prefix || nonce as 8 bytes big-endian); -1 if none. */
int64_t tw_solve(const uint8_t *prefix, uint32_t len, int difficulty, uint64_t start, uint64_t count) {
  uint32_t mid[8] = {0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19};
  uint32_t full = len - len % 64, rest = len - full, n_blocks = rest + 8 + 9 <= 64 ? 1 : 2;
  uint8_t tail[128];
  uint64_t bits = ((uint64_t)len + 8) * 8;
  for (uint32_t off = 0; off < full; off += 64) block(mid, prefix + off);
  memset(tail, 0, sizeof tail);
  memcpy(tail, prefix + full, rest);
  tail[rest + 8] = 0x80;
  for (int i = 0; i < 8; i++) tail[n_blocks * 64 - 1 - i] = (uint8_t)(bits >> (8 * i));
  for (uint64_t n = start; n - start < count; n++) {
    uint32_t s[8];
    for (int i = 0; i < 8; i++) tail[rest + i] = (uint8_t)(n >> (56 - 8 * i));
    memcpy(s, mid, sizeof s);
    block(s, tail);
    if (n_blocks == 2) block(s, tail + 64);
    if (enough(s, difficulty)) return (int64_t)n;
  }
  return -1;
}
"""

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    path = Path(base) / "tokenward"
    try:
        path.mkdir(parents=True, exist_ok=True)
        return path
    except OSError:
        return Path(tempfile.gettempdir())


def _load() -> ctypes.CDLL | None:
    global _lib, _tried
    with _lock:
        if _tried:
            return _lib
        _tried = True
        compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
        if compiler is None or sys.platform == "win32":
            return None
        tag = hashlib.sha256((_SOURCE + sys.platform).encode()).hexdigest()[:16]
        lib_path = _cache_dir() / f"tokenward-pow-{tag}.so"
        if not lib_path.exists():
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / "pow.c"
                src.write_text(_SOURCE)
                out = Path(tmp) / "pow.so"
                try:
                    subprocess.run(
                        [compiler, "-O3", "-shared", "-fPIC", "-o", str(out), str(src)],
                        check=True, capture_output=True, timeout=60,
                    )  # fmt: skip
                    staged = lib_path.with_suffix(f".{os.getpid()}.tmp")
                    shutil.copyfile(out, staged)
                    os.replace(staged, lib_path)
                except (OSError, subprocess.SubprocessError):
                    return None
        try:
            lib = ctypes.CDLL(str(lib_path))
        except OSError:
            return None
        lib.tw_solve.restype = ctypes.c_int64
        lib.tw_solve.argtypes = [ctypes.c_char_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64]
        if _self_test(lib):
            _lib = lib
        return _lib


def _prefix(challenge: str, body: bytes, signals: bytes | None) -> bytes:
    return challenge.encode() + b"\x00" + hashlib.sha256(body).digest() + hashlib.sha256(signals or b"").digest()


def _self_test(lib: ctypes.CDLL) -> bool:
    """The C search must agree with the reference solver (else it is not used)."""
    with contextlib.suppress(Exception):
        for challenge, bits in (("AeoRKHsAAAGi" * 9, 10), ("x" * 3, 9), ("y" * 200, 8)):
            prefix = _prefix(challenge, b'{"a":1}', None)
            if lib.tw_solve(prefix, len(prefix), bits, 0, 1 << 40) != python_solve(challenge, b'{"a":1}', bits):
                return False
        return True
    return False


def native_available() -> bool:
    return _load() is not None


def native_solve(challenge: str, body: bytes, difficulty: int, signals: bytes | None = None) -> int:
    """The smallest valid nonce, found in C (or by the Python solver without a compiler)."""
    lib = _load()
    if lib is None:
        return python_solve(challenge, body, difficulty, signals)
    prefix = _prefix(challenge, body, signals)
    nonce = lib.tw_solve(prefix, len(prefix), difficulty, 0, 1 << 62)
    if nonce < 0:  # pragma: no cover - 2^62 hashes
        raise RuntimeError("no nonce found")
    return int(nonce)


def solver() -> tuple[Callable[[str, bytes, int, bytes | None], int], str]:
    """The fastest solver here, and its name for the report."""
    return (native_solve, "C (compiled here)") if native_available() else (python_solve, "Python hashlib")
