"""The person's known traits, as the edge knows them when a document arrives.

Why a type of its own: de-identification needs more than the pseudonymisation identity
(:class:`~pdp.pseudonym.RawIdentity` has no address, phone or e-mail, and one person has several
family names and sometimes several NIRs). At the ingest edge the traits are the index row's plus
the identity vault's *linkage view* of the same person (other names, first names, NIR, birth
date: :mod:`pdp.ingest.known`); the vault's address, phone and e-mail are sealed and the edge
cannot read them, so the contact fields are only filled by a caller who has them (the CLI's
``--identity``). :meth:`PersonTraits.from_identity` builds one from a ``RawIdentity`` plus
contact traits.

Like ``RawIdentity``, nothing here shows a value: ``repr`` is hidden, and :meth:`from_json`
reports a bad field by its name only (pydantic's errors echo the input, so it is not used here).

Example::

    >>> t = PersonTraits.from_json({"birth_name": "Dupont", "used_name": "Martin",
    ...                             "first_names": "Jeanne, Marie", "birth_date": "1950-03-14"})
    >>> t.first_name_list, t
    (('Jeanne', 'Marie'), PersonTraits(<hidden>))
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pdp.pseudonym import RawIdentity

__all__ = ["PersonTraits", "TraitsError"]

_FIELDS = ("birth_name", "used_name", "first_names", "birth_date", "nir", "address", "postcode", "phone", "email",
           "other_names", "other_nirs")
_LISTS = frozenset({"first_names", "other_names", "other_nirs"})
_FIRST_NAME_SPLIT = re.compile(r"\s*[,;/]\s*")


class TraitsError(ValueError):
    """A trait of the wrong shape; the message names the field, never its value."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PersonTraits:
    """What is known of the person a document is about; every field optional.

    ``first_names``: one string (comma-, semicolon- or slash-separated, else space-separated) or
    a sequence. ``birth_date``: a date or ``YYYY-MM-DD`` / ``dd/mm/yyyy``. ``address``: the street
    line ("12 rue des Lilas"); ``postcode``: five characters (2A/2B allowed). ``other_names`` and
    ``other_nirs``: the same person's other family names (a maiden or used name the index row
    does not give) and NIRs, as the identity vault's linkage view knows them; they are redacted
    like the row's own.
    """

    birth_name: str | None = None
    used_name: str | None = None
    first_names: str | tuple[str, ...] | None = None
    birth_date: date | None = None
    nir: str | None = None
    address: str | None = None
    postcode: str | None = None
    phone: str | None = None
    email: str | None = None
    other_names: tuple[str, ...] = ()
    other_nirs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.birth_date is not None and not isinstance(self.birth_date, date):
            object.__setattr__(self, "birth_date", _parse_date(self.birth_date))

    def __repr__(self) -> str:
        return "PersonTraits(<hidden>)"

    __str__ = __repr__

    @property
    def family_names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.used_name, self.birth_name, *self.other_names) if n and n.strip())

    @property
    def nirs(self) -> tuple[str, ...]:
        return tuple(n for n in (self.nir, *self.other_nirs) if n and n.strip())

    @property
    def first_name_list(self) -> tuple[str, ...]:
        if self.first_names is None:
            return ()
        if isinstance(self.first_names, str):
            text = self.first_names.strip()
            parts = _FIRST_NAME_SPLIT.split(text) if _FIRST_NAME_SPLIT.search(text) else text.split()
        else:
            parts = [p.strip() for p in self.first_names]
        return tuple(p for p in parts if p)

    @classmethod
    def from_identity(cls, identity: RawIdentity, **contact: str | None) -> PersonTraits:
        """From the pseudonymisation edge's identity plus contact traits (address, postcode, phone, email)."""
        first = identity.first_names
        return cls.from_json(
            {
                "birth_name": identity.birth_name,
                "used_name": identity.used_name,
                "first_names": first if isinstance(first, str | None) else list(first),
                "birth_date": identity.birth_date,
                "nir": identity.nir,
                **contact,
            }
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PersonTraits:
        """From a JSON object (the CLI's ``--identity``); unknown keys and wrong types are errors."""
        if not isinstance(data, Mapping):
            raise TraitsError("identity: expected a JSON object")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise TraitsError(f"identity: unknown field(s) {', '.join(unknown)} (known: {', '.join(_FIELDS)})")
        values: dict[str, Any] = {}
        for key in _FIELDS:
            value = data.get(key)
            if value is None or value == "":
                continue
            if key == "birth_date":
                values[key] = _parse_date(value)
            elif key in _LISTS and isinstance(value, Sequence) and not isinstance(value, str):
                if not all(isinstance(v, str) for v in value):
                    raise TraitsError(f"identity.{key}: expected a string or a list of strings")
                values[key] = tuple(value)
            elif key in _LISTS - {"first_names"} and isinstance(value, str):
                values[key] = (value,)
            elif isinstance(value, str):
                values[key] = value
            else:
                raise TraitsError(f"identity.{key}: expected a string")
        return cls(**values)


def _parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        for fmt in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y", "%Y%m%d"):
            try:
                return datetime.strptime(value.strip(), fmt).date()
            except ValueError:
                continue
    raise TraitsError("identity.birth_date: expected a date (YYYY-MM-DD or dd/mm/yyyy)")
