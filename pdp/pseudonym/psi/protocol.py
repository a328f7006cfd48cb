"""The PSI exchange (``openmined-psi``: ECDH over P-256), server and client halves, as bytes.

How it runs: the server encrypts every registry item under its key once per registry version
(the *setup*, cached); the client encrypts its items under a fresh key of its own (the
*request*); the server re-encrypts them under its key (the *response*, shuffled in cardinality
mode so the client learns only how many); the client removes its key and compares with the
setup. The server never sees a client item in clear, and the client only learns membership
of its own items.

Setup cost is one P-256 point multiplication per item (about 75 µs on this machine's cores), so
:func:`build_setup` splits the items over worker processes, each encrypting its share under the
same key, and joins the shares into one ``RAW`` setup (a list of encrypted elements: exact, no
false positive, ~35 bytes per item; a GCS filter would be 7 times smaller but is built inside
the library in one call and cannot be split). The key bytes reach a worker through the process
pool's pipe, never a command line or a log.

>>> key = server_key(b"k" * 32, "t2d_at_risk_unscreened", "3", "query", "0")
>>> setup = build_setup(key, ["A", "B", "C"], reveal=True, workers=1)
>>> client = Client(reveal=True)
>>> request = client.request(["B", "X"])
>>> client.intersection(setup, process_request(key, request, reveal=True))
[0]

Measured by ``pdp bench psi`` (the README gives the figures).
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

__all__ = ["Client", "ProtocolError", "build_setup", "process_request", "request_size", "server_key"]

_FPR = 1e-9  # unused by RAW setups (exact), required by the library's signature
_CHUNK = 4096


class ProtocolError(ValueError):
    """A setup, request or response that does not parse or does not fit (no value echoed)."""


def _psi():
    import private_set_intersection.python as psi

    return psi


def server_key(secret: bytes, registry: str, version: str, mode: str, generation: str) -> bytes:
    """A fresh P-256 server key per registry version, mode and opposition state, derived from the `psi` key.

    Derived rather than random so that every API worker holds the same key for the same
    registry version without sharing state; a new registry version (or opposition) gives a
    new, unrelated key. Retried with a counter in the (2^-32) case the digest is not a valid scalar.
    """
    psi = _psi()
    for counter in range(8):
        label = "\x1f".join(("pdp-psi/1", registry, version, mode, generation, str(counter))).encode("utf-8")
        candidate = hmac.new(secret, label, hashlib.sha256).digest()
        try:
            psi.server.CreateFromKey(candidate, True)
        except Exception:
            continue
        return candidate
    raise ProtocolError("could not derive a PSI server key")


def _encrypt_share(key: bytes, items: list[str]) -> list[bytes]:
    psi = _psi()
    server = psi.server.CreateFromKey(key, True)
    setup = server.CreateSetupMessage(_FPR, 1, items, psi.DataStructure.RAW)
    return list(setup.raw.encrypted_elements)


def build_setup(key: bytes, items: Sequence[str], *, reveal: bool, workers: int | None = None) -> bytes:
    """The serialised ``ServerSetup`` (RAW) of `items` under `key`, encrypted on `workers` processes.

    ``workers`` defaults to the machine's cores; 1 runs in this process. ``reveal`` does not change
    the setup (the server's mode shows in its responses) but is kept in the signature so a caller
    cannot mix the two modes' keys by mistake.
    """
    del reveal
    psi = _psi()
    items = list(items)
    workers = max(1, min(workers or os.cpu_count() or 1, -(-len(items) // _CHUNK) or 1))
    if workers == 1:
        elements = _encrypt_share(key, items)
    else:
        size = -(-len(items) // workers)
        shares = [items[i : i + size] for i in range(0, len(items), size)]
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            elements = [e for part in pool.map(_encrypt_share, [key] * len(shares), shares) for e in part]
    elements.sort()  # the order of the registry's rows must not show through the setup
    setup = psi.ServerSetup()
    setup.raw.encrypted_elements.extend(elements)
    return setup.SerializeToString()


def request_size(request: bytes) -> int:
    """How many items a serialised request carries (for the partner's limits), or ProtocolError."""
    psi = _psi()
    message = psi.Request()
    try:
        message.ParseFromString(request)
    except Exception:
        raise ProtocolError("the request is not a PSI request message") from None
    return len(message.encrypted_elements)


def process_request(key: bytes, request: bytes, *, reveal: bool) -> bytes:
    """The server's response to a serialised client request (shuffled unless `reveal`)."""
    psi = _psi()
    message = psi.Request()
    try:
        message.ParseFromString(request)
        response = psi.server.CreateFromKey(key, reveal).ProcessRequest(message)
    except Exception:
        raise ProtocolError("the request is not a valid PSI request") from None
    return response.SerializeToString()


class Client:
    """The partner's half: a fresh key per client, one request, then the intersection or its size."""

    def __init__(self, *, reveal: bool) -> None:
        self._reveal = reveal
        self._client = _psi().client.CreateWithNewKey(reveal)

    def request(self, items: Sequence[str]) -> bytes:
        return self._client.CreateRequest(list(items)).SerializeToString()

    def _parse(self, setup: bytes, response: bytes) -> tuple[object, object]:
        psi = _psi()
        s, r = psi.ServerSetup(), psi.Response()
        try:
            s.ParseFromString(setup)
            r.ParseFromString(response)
        except Exception:
            raise ProtocolError("the server's setup or response does not parse") from None
        return s, r

    def intersection(self, setup: bytes, response: bytes) -> list[int]:
        """Indexes of the request's items that are in the server's set (full mode only)."""
        if not self._reveal:
            raise ProtocolError("a cardinality client learns a count, not the items")
        s, r = self._parse(setup, response)
        return sorted(self._client.GetIntersection(s, r))

    def count(self, setup: bytes, response: bytes) -> int:
        s, r = self._parse(setup, response)
        return int(self._client.GetIntersectionSize(s, r))
