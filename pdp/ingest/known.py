"""What the identity vault already knows of the persons a file is about, for de-identifying their text.

Why: a discharge letter names its patient as the writer knows her — often by her used name,
while the document-sharing index row sent with it gives only the birth name (or the reverse).
The edge has met the same person before (a GP export, a hospital stay) and the vault's
*linkage view* holds her other names, first names, birth date and NIR. Redacting those too is
what issue 11 asks ("through the vault, the other traits of the same person").

How, at the edge and nowhere else:

1. the parser hands a chunk of index rows' identities (:class:`~pdp.ingest.model.IdentityFields`)
   to :meth:`KnownPersons.lookup`;
2. each identity is normalised and keyed exactly as the edge will key the record
   (:meth:`pdp.ingest.edge.Edge.pseudonym_of`, same keys, same rules); a rejected identity
   has no pseudonym and no known traits;
3. one :meth:`~pdp.pseudonym.vault.IdentityVault.linkage_view` read per chunk (not per
   document), through :class:`~pdp.pseudonym.vault.EdgeKeys`: the vault is opened lazily, on
   the first report of the worker, so a batch without reports never connects to it;
4. :func:`enrich` adds the view's names, first names, NIR and birth date to the index row's
   :class:`~pdp.semantic.deid.traits.PersonTraits`.

What the edge cannot read, and does not try to: address, phone, e-mail and GP are only in the
vault's *sealed* observations, under the private ``seal`` key that only re-identification
holds (:class:`~pdp.pseudonym.vault.EdgeKeys` refuses it). A letter's street or phone number
is therefore found by the generic recognizers (and the index row's own traits), never from the
vault.

Fail closed: a vault that cannot be read stops the file (the parser's exception becomes the
file's PARSER_ERROR row, :func:`pdp.ingest.parse.parse_file`) rather than de-identifying with
fewer traits than the edge is meant to know.

Limits, by design: the vault holds the persons of *earlier* batches (a person first seen in the
same batch is de-identified with the index row's traits: parsing runs before the batch's vault
commit, and in parallel files); a person whom linkage will only later tie to a known one (a
different pseudonym, e.g. a traits-scheme key for a NIR-scheme person) is not enriched. Nothing
here logs a value; the traits stay in the worker's memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pdp.config import Settings
    from pdp.ingest.model import IdentityFields
    from pdp.pseudonym.keys import KeyStore
    from pdp.pseudonym.vault import IdentityVault, VaultRecord
    from pdp.semantic.deid.traits import PersonTraits

__all__ = ["KnownPersons", "edge_vault", "enrich"]


class KnownPersons:
    """The vault's linkage view of the persons behind a chunk of identities (one read per chunk).

    ``pseudonym_of``: the edge's keying of one identity (None if the edge would reject it);
    ``open_vault``: builds the edge's vault (``IdentityVault(engine, EdgeKeys(store))``), called
    once, on first use.
    """

    def __init__(
        self, pseudonym_of: Callable[[IdentityFields], str | None], open_vault: Callable[[], IdentityVault]
    ) -> None:
        self._pseudonym_of = pseudonym_of
        self._open_vault = open_vault
        self._vault: IdentityVault | None = None
        self.reads = 0  # vault reads made (the tests check it is per chunk, not per document)

    def __repr__(self) -> str:
        return f"KnownPersons(reads={self.reads})"

    def lookup(self, identities: Sequence[IdentityFields]) -> list[VaultRecord | None]:
        """Per identity, in order: the vault's linkage traits of that person, or None if unknown."""
        pseudonyms = [self._pseudonym_of(identity) for identity in identities]
        wanted = sorted({p for p in pseudonyms if p is not None})
        if not wanted:
            return [None] * len(pseudonyms)
        if self._vault is None:
            self._vault = self._open_vault()
        self.reads += 1
        view = self._vault.linkage_view(wanted)
        return [view.get(p) if p is not None else None for p in pseudonyms]


def enrich(traits: PersonTraits, known: VaultRecord | None) -> PersonTraits:
    """``traits`` (the index row's) plus the vault's linkage traits of the same person.

    Family names and NIRs the row lacks or spells otherwise become ``other_names`` /
    ``other_nirs``; first names are the union; the birth date is the row's, else the vault's.
    Never address, phone or e-mail: the linkage view has none.
    """
    if known is None:
        return traits
    names = tuple(n for n in (known.birth_name, known.used_name) if n and n not in traits.family_names)
    nirs = tuple(n for n in (known.nir,) if n and n not in traits.nirs)
    first = tuple(dict.fromkeys((*traits.first_name_list, *(known.first_names or ()))))
    return replace(
        traits,
        other_names=traits.other_names + names,
        other_nirs=traits.other_nirs + nirs,
        first_names=first or None,
        birth_date=traits.birth_date or known.birth_date,
    )


def edge_vault(settings: Settings, store: KeyStore) -> IdentityVault:
    """The vault as a parse worker opens it: the governance store of `settings` (its tables made
    by the batch before any worker starts), keys through :class:`~pdp.pseudonym.vault.EdgeKeys`."""
    from pdp.governance.db import make_engine
    from pdp.pseudonym.vault import EdgeKeys, IdentityVault

    return IdentityVault(make_engine(settings=settings), EdgeKeys(store))
