"""Delimited-text sources: hospital discharge abstracts (PMSI-like), pharmacy deliveries,
social and associative referrals.

Each facility writes its own file with its own habits — encoding (UTF-8, UTF-8 with BOM,
Latin-1), line endings (CRLF from Windows exports), French dates (dd/mm/yyyy) — because
that is what the edge receives in France and what its parsers must survive.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Iterable
from datetime import date

from pdp.synth.identity_variants import IdentityOf, strip_accents
from pdp.synth.model import Facility, Person
from pdp.synth.output import FileSpec, Rendered, record_link
from pdp.synth.population import stable_seed
from pdp.synth.world import World

PMSI_COLUMNS = (
    "num_sejour",
    "finess",
    "champ",
    "date_entree",
    "date_sortie",
    "mode_entree",
    "provenance",
    "dp",
    "das",
    "actes",
    "nir",
    "nom_naissance",
    "nom_usage",
    "prenoms",
    "date_naissance",
    "sexe",
    "lieu_naissance",
    "code_postal",
    "commune_residence",
)
PHARMACY_COLUMNS = (
    "num_facture",
    "date_delivrance",
    "finess",
    "cip13",
    "atc",
    "libelle",
    "quantite",
    "nir_assure",
    "rang_beneficiaire",
    "nom",
    "prenom",
    "date_naissance",
    "sexe",
    "prescripteur_rpps",
)
SOCIAL_COLUMNS = (
    "id_signalement",
    "date_signalement",
    "structure",
    "motif",
    "nom",
    "prenom",
    "date_naissance",
    "sexe",
    "adresse",
    "code_postal",
    "commune",
    "telephone",
    "nir",
)
_SOCIAL_MOTIFS = (
    "Repérage précarité - orientation médecin traitant",
    "Dépistage diabète (score FINDRISC élevé)",
    "Surpoids - atelier activité physique",
    "Isolement - personne âgée",
    "Aide à l'ouverture de droits",
    "Orientation bilan de santé",
)


def fr_date(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def encodable(text: str, encoding: str) -> str:
    """Text that `encoding` can hold: Latin-1 senders lose œ and other characters as they really do."""
    if encoding.replace("-", "").lower() in {"latin1", "iso88591"}:
        text = text.replace("Œ", "OE").replace("œ", "oe").replace("€", "EUR").replace("’", "'")
        return text.encode("latin-1", errors="replace").decode("latin-1")
    return text


def _csv_text(rows: Iterable[Iterable[object]], delimiter: str, newline: str) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline, quoting=csv.QUOTE_MINIMAL)
    writer.writerows(rows)
    return buffer.getvalue()


def _spec(path: str, columns: tuple[str, ...], facility_encoding: str, newline: str, delimiter: str) -> FileSpec:
    return FileSpec(path=path, encoding=facility_encoding, header=_csv_text([columns], delimiter, newline))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", strip_accents(text).lower()).strip("-")


def render_pmsi(persons: list[Person], world: World, identity_of: IdentityOf) -> list[Rendered]:
    """One row per stay in `pmsi/<finess>.csv`, `;`-separated, in each hospital's encoding."""
    by_finess: dict[str, Facility] = {h.finess: h for h in world.hospitals}
    rows: dict[str, list[list[str]]] = {}
    links: list[Rendered] = []
    for person in persons:
        if not person.stays:
            continue
        ident = identity_of(person, "pmsi")
        for stay in person.stays:
            hosp = by_finess[stay.hospital]
            rows.setdefault(hosp.finess, []).append(
                [
                    stay.stay_id,
                    hosp.finess,
                    stay.unit,
                    fr_date(stay.admission),
                    fr_date(stay.discharge),
                    "8",
                    "5" if stay.emergency else "",
                    stay.principal_dx,
                    "|".join(stay.associated_dx),
                    "|".join(stay.acts),
                    ident.nir or "",
                    ident.birth_name.upper(),
                    (ident.used_name or "").upper(),
                    ident.first_names,
                    fr_date(ident.birth_date),
                    "1" if ident.sex == "M" else "2",
                    ident.birth_place or "",
                    (ident.address or person.address).postcode,
                    (ident.address or person.address).commune_code,
                ]
            )
            links.append(record_link("pmsi", f"pmsi/{hosp.finess}.csv", stay.stay_id, person.person_id))
    out = []
    for finess, table in rows.items():
        hosp = by_finess[finess]
        spec = _spec(f"pmsi/{finess}.csv", PMSI_COLUMNS, hosp.encoding, hosp.newline, ";")
        text = encodable(_csv_text(table, ";", hosp.newline), hosp.encoding)
        out.append(Rendered(spec, text, records=len(table)))
    return out + links


def render_pharmacy(persons: list[Person], world: World, identity_of: IdentityOf) -> list[Rendered]:
    """One row per delivery in `pharmacy/<finess>.csv` (insurance-card identity: parent's NIR for minors)."""
    by_finess = {p.finess: p for p in world.pharmacies}
    rows: dict[str, list[list[str]]] = {}
    links: list[Rendered] = []
    for person in persons:
        deliveries = [e for e in person.events if e.channel == "pharmacy"]
        if not deliveries:
            continue
        ident = identity_of(person, "pharmacy")
        insured_other = person.insured_nir is not None and person.insured_nir != person.identity.nir
        rank = "02" if insured_other else "01"
        rng = random.Random(stable_seed(world.seed, person.person_id, "pharmacy-rank"))
        if insured_other and rng.random() < 0.3:
            rank = "03"
        first = ident.first_names.replace(",", " ").split()[0] if ident.first_names.strip() else ""
        for event in deliveries:
            prescriber = person.gp.rpps if person.gp and event.code not in {"N02BE01"} else ""
            rows.setdefault(event.facility, []).append(
                [
                    event.event_id,
                    event.day.isoformat(),
                    event.facility,
                    event.cip13 or "",
                    event.code,
                    event.label,
                    "1",
                    ident.nir or "",
                    rank if ident.nir else "",
                    ident.birth_name.upper(),
                    first.upper(),
                    fr_date(ident.birth_date),
                    "1" if ident.sex == "M" else "2",
                    prescriber,
                ]
            )
            links.append(record_link("pharmacy", f"pharmacy/{event.facility}.csv", event.event_id, person.person_id))
    out = []
    for finess, table in rows.items():
        ph = by_finess[finess]
        spec = _spec(f"pharmacy/{finess}.csv", PHARMACY_COLUMNS, ph.encoding, ph.newline, ";")
        out.append(Rendered(spec, encodable(_csv_text(table, ";", ph.newline), ph.encoding), records=len(table)))
    return out + links


def render_social(persons: list[Person], world: World, identity_of: IdentityOf) -> list[Rendered]:
    """Referral lists from associations and social services: identity traits only, NIR rare."""
    rows: dict[str, list[list[str]]] = {}
    links: list[Rendered] = []
    for person in persons:
        if not person.social_referral:
            continue
        ident = identity_of(person, "social")
        rng = random.Random(stable_seed(world.seed, person.person_id, "social"))
        ref_id = f"SIG{world.seed:x}-{person.person_id}"
        day = world.history_start.toordinal() + rng.randrange((world.reference_date - world.history_start).days)
        slug = _slug(person.social_referral)
        first = ident.first_names.replace(",", " ").split()[0] if ident.first_names.strip() else ""
        rows.setdefault(slug, []).append(
            [
                ref_id,
                fr_date(date.fromordinal(day)),
                person.social_referral,
                rng.choice(_SOCIAL_MOTIFS),
                (ident.used_name or ident.birth_name).title() if rng.random() < 0.5 else ident.birth_name,
                first.title(),
                fr_date(ident.birth_date),
                ident.sex,
                (ident.address or person.address).line,
                (ident.address or person.address).postcode,
                (ident.address or person.address).commune_name,
                person.phone or "",
                ident.nir or "",
            ]
        )
        links.append(record_link("social", f"social/{slug}.csv", ref_id, person.person_id))
    out = []
    for slug, table in rows.items():
        # office-suite exports: UTF-8 with BOM and CRLF for odd-numbered structures, plain UTF-8 otherwise
        bom = int(stable_seed(slug)) % 2 == 1
        encoding, newline = ("utf-8-sig", "\r\n") if bom else ("utf-8", "\n")
        spec = _spec(f"social/{slug}.csv", SOCIAL_COLUMNS, encoding, newline, ";")
        out.append(Rendered(spec, _csv_text(table, ";", newline), records=len(table)))
    return out + links
