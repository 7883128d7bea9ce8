"""Hypothesis strategies for the headers a client controls (shared by the in-process and
the over-a-socket fuzz tests). JSON values come from tests/robustness/test_fuzz_bodies.py."""

from __future__ import annotations

import base64
from typing import Any

import orjson
from hypothesis import strategies as st
from tests.robustness.test_fuzz_bodies import json as any_json

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
B64 = B64URL[:-2] + "+/="
VISIBLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)  # what a header may carry as is
TOKEN_CHARS = 150  # a challenge token is 150 base64url characters

any_text = st.text(max_size=300)  # in-process only: any Unicode
header_text = st.text(VISIBLE, max_size=300)  # also on the wire


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mutate(value: str) -> st.SearchStrategy[str]:
    """``value`` with one character replaced, one removed, or cut short."""
    if not value:
        return st.just(value)
    i = st.integers(0, len(value) - 1)
    return st.one_of(
        st.tuples(i, st.sampled_from(B64URL + '.=:;," ')).map(lambda t: value[: t[0]] + t[1] + value[t[0] + 1 :]),
        i.map(lambda n: value[:n] + value[n + 1 :]),
        i.map(lambda n: value[:n]),
    )


# -- Tokenward-Proof -------------------------------------------------------------------------

nonces = st.one_of(
    st.integers(0, 2**64 + 5).map(str), st.integers(-5, 5).map(str), st.text(VISIBLE, max_size=24),
    st.sampled_from(["", "0", "00000000000000000000001", "18446744073709551616", "١٢٣", "1e3", "+1"]),
)  # fmt: skip
tokens = st.one_of(
    st.text(st.sampled_from(B64URL), min_size=TOKEN_CHARS, max_size=TOKEN_CHARS),
    st.text(st.sampled_from(B64URL), max_size=TOKEN_CHARS + 4),
    st.binary(min_size=110, max_size=114).map(b64url),
    st.binary(min_size=112, max_size=112).map(lambda raw: b64url(bytes([raw[0] % 4]) + raw[1:])),
)


def proof_headers(real: str | None = None) -> st.SearchStrategy[str]:
    """Proof header values: ``v1.<token>.<nonce>`` shapes, a real one mutated, any text."""
    shaped = st.builds(
        lambda v, t, n: f"{v}.{t}.{n}", st.sampled_from(["v1", "v2", "V1", "v0", "", " v1"]), tokens, nonces
    )
    options = [shaped, header_text, st.builds(lambda t: f"v1.{t}", tokens)]
    if real is not None:
        options += [mutate(real), st.builds(lambda n: real.rsplit(".", 1)[0] + "." + n, nonces)]
    return st.one_of(*options)


# -- Tokenward-Signals -----------------------------------------------------------------------

SIGNAL_FIELDS = ["v", "wd", "ua", "uad", "gl", "scr", "vp", "tz", "tzo", "langs", "hc", "dm", "touch", "plugins",
                 "hl", "input", "prev"]  # fmt: skip
signal_objects = st.dictionaries(st.sampled_from(SIGNAL_FIELDS) | st.text(max_size=6), any_json, max_size=8)
signals_headers = st.one_of(
    signal_objects.map(lambda d: b64url(orjson.dumps(d))),
    any_json.map(lambda v: b64url(orjson.dumps(v))),
    st.binary(max_size=400).map(b64url),
    st.integers(3000, 6000).map(lambda n: b64url(b"{" + b" " * n + b"}")),
    header_text,
)

# -- Tokenward-Device ------------------------------------------------------------------------

device_headers = st.one_of(
    st.builds(
        lambda v, d, s: f"{v}.{d}.{s}",
        st.sampled_from(["v1", "v2", ""]),
        st.one_of(st.binary(min_size=16, max_size=16).map(b64url), st.text(st.sampled_from(B64URL), max_size=30)),
        st.one_of(
            st.binary(min_size=64, max_size=64).map(b64url),
            st.binary(max_size=90).map(b64url),
            st.text(VISIBLE, max_size=110),
        ),
    ),
    header_text,
)

# -- HTTP Message Signatures -----------------------------------------------------------------

COMPONENTS = ['"@method"', '"@target-uri"', '"content-digest"', '"content-type"', '"@authority"', '"@path"',
              '"@query"', '"@request-target"', '"@scheme"', '"@status"', '"x-unknown"', '"@query-param";name="a"',
              '"content-digest";sf', '"content-type";bs', '"@method";req', '"signature-agent";key="x"',
              "@method", "(", '"', '""']  # fmt: skip
PARAMS = ['created={n}', 'expires={n}', 'keyid="backend.k1"', 'keyid="{s}"', 'nonce="{s}"', 'alg="ed25519"',
          'alg="rsa"', 'tag="web-bot-auth"', 'created="{s}"', 'created={n}.5', 'unknown=?1', "created",
          "keyid=1"]  # fmt: skip


def _params(ps: list[str], n: int, s: str) -> str:
    return "".join(";" + p.format(n=n, s=s) for p in ps)


sf_strings = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'), max_size=40)
signature_inputs = st.one_of(
    st.builds(
        lambda label, comps, ps, n, s: f"{label}=({' '.join(comps)}){_params(ps, n, s)}",
        st.sampled_from(["tokenward", "sig1", "x", "A", "1", ""]),
        st.lists(st.sampled_from(COMPONENTS), max_size=6),
        st.lists(st.sampled_from(PARAMS), max_size=7),
        st.integers(-(2**40), 2**40),
        sf_strings,
    ),
    header_text,
)
signatures = st.one_of(
    st.builds(
        lambda label, raw: f"{label}=:{base64.b64encode(raw).decode()}:",
        st.sampled_from(["tokenward", "sig1", "x"]),
        st.binary(max_size=80),
    ),
    header_text,
)
digests = st.one_of(
    st.builds(
        lambda alg, raw: f"{alg}=:{base64.b64encode(raw).decode()}:",
        st.sampled_from(["sha-256", "sha-512", "md5", "SHA-256"]),
        st.binary(max_size=70),
    ),
    header_text,
)


def headers_for(choice: dict[str, Any]) -> dict[str, str]:
    """The non-None entries of a drawn header set."""
    return {k: v for k, v in choice.items() if v is not None}
