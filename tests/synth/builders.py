"""Hand-built worlds, persons and events for the synth writer tests.

Why by hand: writer tests must know exactly what went in (accents, a compound first name,
a used name, a missing NIR, a lab that sends latin-1) to check what comes out, without
depending on the population generator. `synthetic_population` adds volume for throughput
measurements, still from a fixed seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

from pdp.synth.catalog import load_catalog
from pdp.synth.model import (
    Address,
    Channel,
    ClinicalEvent,
    ClinicalTruth,
    Facility,
    Identity,
    Person,
    Professional,
    Sex,
    SourceIdentity,
)
from pdp.synth.world import Commune, World

REFERENCE_DATE = date(2025, 6, 30)
TERRITORY_PERSONS = 20_000  # the acceptance territory (conftest.territory_dir)
TERRITORY_SEED = 7

COMMUNES = (
    Commune("59178", "Douai", "59500", 39_700),
    Commune("59569", "Sin-le-Noble", "59450", 15_700),
    Commune("59014", "Aniche", "59580", 10_000),
)
UTF8_LAB = Facility("590000011", "Laboratoire Bio-Douaisis", "lab", "59178")
LATIN1_LAB = Facility("590000029", "Laboratoire Œnologie & Analyses", "lab", "59569", "latin-1", "\r\n")
BOM_LAB = Facility("590000037", "Biolab Scarpe", "lab", "59014", "utf-8-sig", "\n")
HOSPITAL = Facility("590000045", "Centre hospitalier de Douai", "hospital", "59178")
PHARMACY = Facility("590000052", "Pharmacie de la Place", "pharmacy", "59178")
GP_A = Professional("10001234567", "DUBOIS", "Hélène", "59178")
GP_B = Professional("10007654321", "N'GUYEN", "François", "59569")
SPECIALIST = Professional("10005555555", "MOREAU", "Luc", "59178")


def make_world(seed: int = 20250630) -> World:
    """A three-commune world with three labs (UTF-8, latin-1 + CRLF, UTF-8 with BOM)."""
    return World(
        territory="douaisis",
        territory_name="Douaisis",
        seed=seed,
        reference_date=REFERENCE_DATE,
        history_start=date(2020, 1, 1),
        communes=COMMUNES,
        hospitals=(HOSPITAL,),
        labs=(UTF8_LAB, LATIN1_LAB, BOM_LAB),
        pharmacies=(PHARMACY,),
        gps=(GP_A, GP_B),
        specialists=(SPECIALIST,),
        associations=("Association Diabète Douaisis",),
        catalog=load_catalog(),
    )


def make_person(
    person_id: int,
    *,
    birth_name: str = "MARTIN",
    first_names: tuple[str, ...] = ("Pierre",),
    used_name: str | None = None,
    sex: Sex = "M",
    birth_date: date = date(1958, 4, 12),
    birth_place: str = "59178",
    nir: str | None = None,
    gp: Professional | None = GP_A,
    phone: str | None = None,
    email: str | None = None,
    commune: Commune = COMMUNES[0],
    street: str = "12 rue des Tilleuls",
    events: Iterable[ClinicalEvent] = (),
) -> Person:
    """A person with a true identity and the given events (NIR derived when not given)."""
    identity = Identity(
        birth_name=birth_name,
        used_name=used_name,
        first_names=first_names,
        sex=sex,
        birth_date=birth_date,
        birth_place=birth_place,
        nir=nir or fake_nir(sex, birth_date, birth_place, person_id),
    )
    return Person(
        person_id=person_id,
        territory="douaisis",
        identity=identity,
        address=Address(street, commune.postcode, commune.code, commune.name),
        phone=phone,
        email=email,
        gp=gp,
        truth=ClinicalTruth(),
        events=list(events),
    )


def fake_nir(sex: Sex, birth: date, place: str, serial: int) -> str:
    """A 15-character NIR with a valid key (97 - number mod 97)."""
    body = f"{1 if sex == 'M' else 2}{birth.year % 100:02d}{birth.month:02d}{place}{serial % 1000:03d}"
    return f"{body}{97 - int(body) % 97:02d}"


def source_identity(person: Person, drop_nir: bool = False) -> SourceIdentity:
    """The true identity as a source would write it without degradation."""
    ident = person.identity
    return SourceIdentity(
        birth_name=ident.birth_name,
        used_name=ident.used_name,
        first_names=" ".join(ident.first_names),
        sex=ident.sex,
        birth_date=ident.birth_date,
        birth_place=ident.birth_place,
        nir=None if drop_nir else ident.nir,
    )


def identity_of_factory(without_nir: Iterable[int] = ()) -> Callable[[Person, str], SourceIdentity]:
    """An `identity_of` callback for the writers; persons listed lose their NIR."""
    missing = frozenset(without_nir)
    return lambda person, _source: source_identity(person, person.person_id in missing)


class EventFactory:
    """Builds events from catalog concepts with unique, deterministic event ids."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.count = 0
        self.catalog: dict[str, Any] = load_catalog()

    def _id(self) -> str:
        self.count += 1
        return f"{self.prefix}-{self.count:04d}"

    def measurement(
        self, concept: str, day: date, value: float | None, channel: Channel, facility: str, **overrides: Any
    ) -> ClinicalEvent:
        entry = self.catalog["measurements"][concept]
        event = ClinicalEvent(
            event_id=self._id(),
            kind="measurement",
            day=day,
            code_system="LOINC",
            code=entry["code"],
            label=entry["label"],
            channel=channel,
            facility=facility,
            value=value,
            unit=entry["unit"],
        )
        return replace(event, **overrides)

    def diagnosis(self, concept: str, day: date, facility: str, channel: Channel = "gp") -> ClinicalEvent:
        entry = self.catalog["diagnoses"][concept]
        return ClinicalEvent(self._id(), "diagnosis", day, "CIM-10", entry["code"], entry["label"], channel, facility)

    def drug(self, concept: str, day: date, facility: str, channel: Channel = "gp") -> ClinicalEvent:
        entry = self.catalog["drugs"][concept]
        return ClinicalEvent(self._id(), "drug", day, "ATC", entry["code"], entry["label"], channel, facility)

    def procedure(self, concept: str, day: date, facility: str, channel: Channel = "gp") -> ClinicalEvent:
        entry = self.catalog["procedures"][concept]
        return ClinicalEvent(
            self._id(), "procedure", day, entry["system"], entry["code"], entry["label"], channel, facility
        )

    def encounter(self, day: date, facility: str) -> ClinicalEvent:
        return ClinicalEvent(
            self._id(),
            "encounter",
            day,
            "SNOMED",
            "185349003",
            "Consultation de médecine générale",
            "gp",
            facility,
        )


def sample_persons() -> list[Person]:
    """Five persons covering the identity and event cases the writers must handle.

    1: accents, compound first name, used name, phone + email, two lab orders, full GP file.
    2: "Œ" (not in latin-1), no NIR in sources, results at the latin-1 lab, a label and a
       unit holding HL7 delimiters, a result without value, a result at two GPs.
    3: no lab event, GP file only, no declared GP, no phone or email, a weight without value.
    4: no event at all.
    5: BOM lab, unknown-to-the-rules LOINC code (no reference range), no used name.
    """
    f1 = EventFactory("p1")
    d1, d2 = date(2024, 3, 4), date(2024, 9, 16)
    p1 = make_person(
        1,
        birth_name="LEFÈVRE",
        used_name="DUPONT-MÉNARD",
        first_names=("Marie-Hélène", "Françoise"),
        sex="F",
        birth_date=date(1961, 11, 2),
        gp=GP_A,
        phone="0612345678",
        email="mh.dupont@example.fr",
        street="3 impasse de l'Église",
        events=[
            f1.measurement("hba1c", d1, 7.46, "lab", UTF8_LAB.finess),
            f1.measurement("glucose", d1, 1.384, "lab", UTF8_LAB.finess),
            f1.measurement("creatinine", d1, 5.2, "lab", UTF8_LAB.finess),
            f1.measurement("hba1c", d2, 6.9, "lab", UTF8_LAB.finess),
            f1.measurement("egfr", d2, 58.0, "lab", UTF8_LAB.finess),
            f1.encounter(d1, GP_A.rpps),
            f1.diagnosis("t2d", d1, GP_A.rpps),
            f1.diagnosis("hypertension", d1, GP_A.rpps),
            f1.measurement("weight", d1, 82.36, "gp", GP_A.rpps),
            f1.measurement("sbp", d1, 148.0, "gp", GP_A.rpps),
            f1.drug("metformin", d1, GP_A.rpps),
            f1.procedure("ecg", d2, GP_A.rpps),
            f1.procedure("monofilament", d2, GP_A.rpps),
        ],
    )
    f2 = EventFactory("p2")
    d3 = date(2023, 12, 5)
    p2 = make_person(
        2,
        birth_name="CŒURDEROY",
        first_names=("Jean-Marie", "Noël"),
        sex="M",
        birth_date=date(1949, 1, 30),
        birth_place="99134",
        gp=GP_B,
        commune=COMMUNES[1],
        street="7 rue du Général-de-Gaulle",
        events=[
            f2.measurement("ldl", d3, 1.92, "lab", LATIN1_LAB.finess),
            f2.measurement(
                "potassium",
                d3,
                3.1,
                "lab",
                LATIN1_LAB.finess,
                label="Potassium | sérum ^ plasma & ~ test \\ “K+”",
                unit="mmol/L",
            ),
            f2.measurement("ntprobnp", d3, None, "lab", LATIN1_LAB.finess),
            f2.diagnosis("hf", d3, GP_B.rpps),
            f2.measurement("bmi", d3, 31.27, "gp", GP_B.rpps),
            f2.drug("furosemide", d3, GP_B.rpps),
            f2.diagnosis("t2d", date(2024, 2, 1), GP_A.rpps),
        ],
    )
    f3 = EventFactory("p3")
    p3 = make_person(
        3,
        birth_name="ÉLOÏSE",
        first_names=("Zoé",),
        sex="F",
        birth_date=date(1990, 7, 14),
        gp=None,
        events=[
            f3.diagnosis("obesity", date(2025, 1, 10), GP_B.rpps),
            f3.drug("paracetamol", date(2025, 1, 10), GP_B.rpps),
            f3.measurement("weight", date(2025, 1, 10), None, "gp", GP_B.rpps),
        ],
    )
    p4 = make_person(4, birth_name="PETIT", first_names=("Louis",), gp=GP_A)
    f5 = EventFactory("p5")
    p5 = make_person(
        5,
        birth_name="DURAND",
        first_names=("Anne", "Sophie"),
        sex="F",
        birth_date=date(1975, 5, 5),
        commune=COMMUNES[2],
        events=[
            f5.measurement("uacr", date(2025, 2, 3), 45.0, "lab", BOM_LAB.finess),
            f5.measurement(
                "hba1c",
                date(2025, 2, 3),
                5.4,
                "lab",
                BOM_LAB.finess,
                code="2345-7",
                label="Glucose",
                unit="g/L",
            ),
        ],
    )
    return [p1, p2, p3, p4, p5]


_FIRST_NAMES = ("Jean-Pierre", "Marie", "Éric", "Anaïs", "Noël", "Chloé", "Jérôme", "Gaëlle", "Loïc", "Inès")
_NAMES = (
    "MARTIN",
    "BERNARD",
    "LEFÈVRE",
    "DUPONT",
    "GARÇON",
    "MÜLLER",
    "CŒUR",
    "D'ALMEIDA",
    "ROUSSEL",
    "FAURE",
)


def synthetic_population(n: int, world: World, seed: int = 7) -> list[Person]:
    """`n` persons for throughput measurements: about 60 % with a GP file, the chronic
    third with about ten lab orders of three or four tests over the history."""
    rng = random.Random(seed)
    catalog = world.catalog
    lab_concepts = ("hba1c", "glucose", "creatinine", "egfr", "uacr", "ldl", "potassium", "ntprobnp")
    gp_measures = ("weight", "bmi", "sbp", "dbp")
    span = (world.reference_date - world.history_start).days
    persons = []
    for pid in range(1000, 1000 + n):
        factory = EventFactory(f"s{pid}")
        gp = world.gps[pid % len(world.gps)]
        events: list[ClinicalEvent] = []
        chronic = rng.random() < 0.33
        if chronic:
            for _ in range(rng.randint(8, 12)):
                day = world.history_start + timedelta(days=rng.randrange(span))
                lab = world.labs[rng.randrange(len(world.labs))].finess
                for concept in rng.sample(lab_concepts, rng.randint(3, 4)):
                    value = rng.uniform(0.5, 2.0) * _typical(catalog, concept)
                    events.append(factory.measurement(concept, day, value, "lab", lab))
        if rng.random() < 0.6:
            for _ in range(rng.randint(2, 8)):
                day = world.history_start + timedelta(days=rng.randrange(span))
                events.append(factory.encounter(day, gp.rpps))
                for concept in rng.sample(gp_measures, 2):
                    value = rng.uniform(0.8, 1.2) * _typical(catalog, concept)
                    events.append(factory.measurement(concept, day, value, "gp", gp.rpps))
                if chronic:
                    events.append(factory.diagnosis("t2d", day, gp.rpps))
                    events.append(factory.drug("metformin", day, gp.rpps))
            if chronic:
                events.append(factory.procedure("ecg", day, gp.rpps))
        first = rng.sample(_FIRST_NAMES, rng.randint(1, 2))
        persons.append(
            make_person(
                pid,
                birth_name=rng.choice(_NAMES),
                first_names=tuple(first),
                used_name=rng.choice((None, None, "ROUSSEL")),
                sex=rng.choice(("M", "F")),
                birth_date=date(1930, 1, 1) + timedelta(days=rng.randrange(30_000)),
                gp=gp,
                phone="0601020304" if rng.random() < 0.5 else None,
                commune=world.communes[pid % len(world.communes)],
                events=events,
            )
        )
    return persons


_TYPICAL = {
    "hba1c": 6.5,
    "glucose": 1.1,
    "creatinine": 9.0,
    "egfr": 75.0,
    "uacr": 20.0,
    "ldl": 1.2,
    "potassium": 4.3,
    "ntprobnp": 200.0,
    "weight": 78.0,
    "bmi": 27.0,
    "sbp": 135.0,
    "dbp": 80.0,
}


def _typical(catalog: dict[str, Any], concept: str) -> float:
    """A typical value for a measurement concept (checked against the catalog)."""
    assert concept in catalog["measurements"], concept
    return _TYPICAL[concept]
