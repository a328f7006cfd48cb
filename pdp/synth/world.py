"""The territory a synthetic population lives in: communes, facilities, GPs, associations.

Built once per run from the territory definition file and the seed, before any person is
generated, so every chunk (in any worker) sees the same facilities and GPs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pdp.synth.model import Facility, Professional


@dataclass(frozen=True, slots=True)
class Commune:
    code: str  # INSEE code
    name: str
    postcode: str
    population: int  # INSEE-like municipal population used as the sampling weight


@dataclass(frozen=True, slots=True)
class World:
    territory: str  # territory key, e.g. "douaisis"
    territory_name: str  # display name, e.g. "Douaisis"
    seed: int
    reference_date: date  # the "as of" date of the ground truth
    history_start: date  # first day of the care history
    communes: tuple[Commune, ...]
    hospitals: tuple[Facility, ...]
    labs: tuple[Facility, ...]
    pharmacies: tuple[Facility, ...]
    gps: tuple[Professional, ...]
    specialists: tuple[Professional, ...]  # hospital doctors who sign discharge letters
    associations: tuple[str, ...]  # social / associative referrers (names)
    catalog: dict  # parsed catalog.yml (codes and labels per concept)
    gp_software: frozenset[str] = frozenset()  # RPPS of GPs whose software exports FHIR records
    # How the free-text reports are written: "standard" (the phrasing the NLP pipes were tuned
    # and are tested on) or "varied" (held-out phrasing and style artefacts, for evaluation).
    report_style: str = "standard"

    def commune(self, code: str) -> Commune:
        for c in self.communes:
            if c.code == code:
                return c
        raise KeyError(code)
