"""Opposition: a citizen's objection honoured at once (every result) and everywhere (every file).

>>> from pdp.governance.opposition import submit, apply     # doctest: +SKIP
"""

from pdp.governance.opposition.consent import ConsentError, ConsentRequest, parse_consent
from pdp.governance.opposition.registry import OppositionRegistry
from pdp.governance.opposition.service import (
    ApplyReport,
    SubmitOutcome,
    apply,
    identity_tokens,
    purge_lake,
    resolve,
    submit,
    withdraw,
    withheld_at_edge,
)

__all__ = [
    "ApplyReport",
    "ConsentError",
    "ConsentRequest",
    "OppositionRegistry",
    "SubmitOutcome",
    "apply",
    "identity_tokens",
    "parse_consent",
    "purge_lake",
    "resolve",
    "submit",
    "withdraw",
    "withheld_at_edge",
]
