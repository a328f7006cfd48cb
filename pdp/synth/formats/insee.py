"""INSEE-like public files: commune populations and the deaths register.

The deaths file follows INSEE's fixed-width "fichier des personnes décédées" layout, because
that is how death data reach a French platform; it is the only fixed-width source.
"""

from __future__ import annotations

from pdp.synth.identity_variants import strip_accents
from pdp.synth.model import Person
from pdp.synth.output import FileSpec, Rendered, record_link
from pdp.synth.territory import TerritoryDef
from pdp.synth.world import World

COMMUNES = FileSpec(path="insee/communes.csv", encoding="utf-8", header="CODGEO;LIBGEO;CP;PMUN\n")
DEATHS = FileSpec(path="insee/deces.txt", encoding="ascii")

# (field, width) of the INSEE deaths file, 176 characters a line
DEATH_LAYOUT = (
    ("nom_prenoms", 80),
    ("sexe", 1),
    ("date_naissance", 8),
    ("lieu_naissance", 5),
    ("commune_naissance", 30),
    ("pays_naissance", 30),
    ("date_deces", 8),
    ("lieu_deces", 5),
    ("numero_acte", 9),
)


def render_communes(territory: TerritoryDef) -> Rendered:
    """The INSEE municipal populations of the territory's communes (real totals, not the sample)."""
    rows = "".join(f"{c.code};{c.name};{c.postcode};{c.population}\n" for c in territory.communes)
    return Rendered(COMMUNES, rows, records=len(territory.communes))


def _field(value: str, width: int) -> str:
    return value[:width].ljust(width)


def render_deaths(persons: list[Person], world: World) -> list[Rendered]:
    """One fixed-width line per person who died during the history window."""
    lines: list[str] = []
    links: list[Rendered] = []
    for person in persons:
        death = person.truth.death_date
        if death is None:
            continue
        ident = person.identity
        name = strip_accents(f"{ident.birth_name}*{' '.join(ident.first_names)}/").upper()
        place = ident.birth_place
        abroad = place.startswith("99")
        act = f"{person.person_id % 10**9:09d}"
        values = {
            "nom_prenoms": name,
            "sexe": "1" if ident.sex == "M" else "2",
            "date_naissance": ident.birth_date.strftime("%Y%m%d"),
            "lieu_naissance": place,
            "commune_naissance": "" if abroad else _commune_name(world, place),
            "pays_naissance": "ETRANGER" if abroad else "",
            "date_deces": death.strftime("%Y%m%d"),
            "lieu_deces": person.address.commune_code,
            "numero_acte": act,
        }
        lines.append("".join(_field(values[f], w) for f, w in DEATH_LAYOUT) + "\n")
        links.append(record_link("insee_deaths", DEATHS.path, act, person.person_id))
    return ([Rendered(DEATHS, "".join(lines), records=len(lines))] if lines else []) + links


def _commune_name(world: World, code: str) -> str:
    try:
        return strip_accents(world.commune(code).name).upper()
    except KeyError:
        return ""
