"""Private set intersection: partners learn which of *their* persons are in a registry, or how many.

The platform is the server, a partner (pharmacy, home-care nurses, an association, a social
service) the client; neither reveals its list (``openmined-psi``, ECDH over P-256). Items are
the canonical identity strings of the edge's own normalisation (:mod:`.items`), so both sides
turn a person into the same string. Registries are declared beside the other definitions
(``pdp/algorithms/definitions/registries/``) and built by ``pdp run`` into ``gold.psi_registry``.

- :mod:`.items` — partner record / registry member → item(s)
- :mod:`.protocol` — setup (parallel over cores), request, response, client (bytes in, bytes out)
- :mod:`.limits` — per-partner limits (``limits.yml``)
- :mod:`.service` — the server: cached setups per registry version and opposition state, limits,
  the request ledger
- :mod:`.client` — the partner's side over HTTP (``pdp psi query``)

Routes: ``pdp/api/routers/psi.py``; policy: ``psi_registry/<registry>`` objects, ``count`` and
``query`` actions, per-partner lines (``partner=<subject>``) in ``infra/policy/policy.csv``.
"""

from pdp.pseudonym.psi.items import member_items, partner_item
from pdp.pseudonym.psi.limits import Limits, LimitsError, PartnerLimits, load_limits
from pdp.pseudonym.psi.protocol import Client, ProtocolError, build_setup, process_request, server_key

__all__ = [
    "Client",
    "Limits",
    "LimitsError",
    "PartnerLimits",
    "ProtocolError",
    "build_setup",
    "load_limits",
    "member_items",
    "partner_item",
    "process_request",
    "server_key",
]
