"""What a PSI item is: the canonical identity string both sides compute with the same normalisation.

Why canonical bytes and not names: the partner and the platform must turn the same person into
the same string, whatever the accents, hyphens, case or first-name order of their records. The
edge's normalisation (:func:`pdp.pseudonym.normalise.normalise`) already does that for the
pseudonym; its ``canonical_bytes`` (NIR-based when the record has the person's own NIR, else
traits-based: birth name, first first name, birth date, sex) are the item.

One item per partner record (its NIR form when it has the person's NIR, else its traits form),
so a count counts persons. The registry side holds *both* forms of every member it knows the NIR
of: a partner without the NIR still matches on traits. A partner record with a NIR whose person
the platform knows only by traits does not match (the NIR form is not in the registry): the
price of counting each partner record once.

>>> from pdp.pseudonym import RawIdentity
>>> a = partner_item(RawIdentity(birth_name="Lefèvre-Dupont", first_names="Zoé", sex="F", birth_date="1950-03-14"))
>>> b = partner_item(RawIdentity(birth_name="LEFEVRE DUPONT", first_names="zoe, anne", sex="2",
...                              birth_date="14/03/1950"))
>>> a == b, a.split("\\x1f")[1:]
(True, ['traits', 'LEFEVREDUPONT', 'ZOE', '1950-03-14', 'F'])
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from pdp.pseudonym.normalise import CanonicalIdentity, RawIdentity, Rejection, normalise

__all__ = ["member_items", "partner_item"]


def _text(canonical: CanonicalIdentity) -> str:
    return canonical.canonical_bytes.decode("ascii")


def partner_item(raw: RawIdentity, *, today: date | None = None) -> str | Rejection:
    """The one item of a partner record, or why it cannot be normalised (never sent)."""
    result = normalise(raw, today=today)
    return result if isinstance(result, Rejection) else _text(result)


def member_items(raw: RawIdentity, *, today: date | None = None) -> list[str]:
    """The items of a registry member: its NIR form (if any) and its traits form; none if it no longer normalises."""
    result = normalise(raw, today=today)
    if isinstance(result, Rejection):
        return []
    items = [_text(result)]
    if result.scheme == "nir":
        items.append(_text(replace(result, scheme="traits", nir=None)))
    return items
