"""The territory's facilities and the residents' identities, contacts and GPs.

Two steps, on purpose:
- a *skeleton* pass, sequential in the main process, draws each resident's sex, birth date,
  birthplace, birth name and NIR birth-order number. The NIR order must be unique within
  (sex, year, month, birthplace) across the whole territory, and twins and minors share a
  parent's NIR for reimbursement, so this pass keeps a little state (counters, recent adults);
- the *person* pass, in worker processes, fleshes out each skeleton independently.
"""

from __future__ import annotations

import hashlib
import random
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate

from faker.providers.person.fr_FR import Provider as _FakerNames

from pdp.synth.catalog import load_catalog
from pdp.synth.model import Address, Facility, Identity, Professional
from pdp.synth.nir import make_nir
from pdp.synth.territory import TerritoryDef, load_calibration, load_identity_data
from pdp.synth.world import Commune, World

_STREETS = (
    "rue Victor Hugo",
    "rue Jean Jaurès",
    "rue de la République",
    "rue Pasteur",
    "rue du Moulin",
    "rue de l'Église",
    "rue des Écoles",
    "avenue du Général de Gaulle",
    "rue de la Gare",
    "place du Marché",
    "rue des Tilleuls",
    "chemin des Prés",
    "rue Émile Zola",
    "boulevard Gambetta",
    "rue du Château",
    "impasse des Lilas",
    "allée des Peupliers",
    "rue Saint-Éloi",
    "route de Paris",
    "rue d'Arras",
    "rue Anatole France",
    "rue Louis Pasteur",
    "rue de Verdun",
    "résidence les Hêtres",
    "rue des Acacias",
)
_MAIL_DOMAINS = ("orange.fr", "free.fr", "gmail.com", "laposte.net", "wanadoo.fr", "sfr.fr", "yahoo.fr")
_ASSOCIATIONS = (
    "Association des diabétiques de {t}",
    "Secours populaire {t}",
    "Restos du Cœur {t}",
    "CCAS de {c}",
    "Maison sport-santé {t}",
    "Croix-Rouge {t}",
    "Atelier santé ville {c}",
    "Ligue contre l'obésité {t}",
    "Club cœur et santé {t}",
)


def stable_seed(*parts: object) -> int:
    """A seed derived from `parts` that is the same in every process and Python run."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def surnames() -> tuple[str, ...]:
    extra = tuple(load_identity_data()["surnames_extra"])
    return tuple(n.upper() for n in _FakerNames.last_names) + extra


def first_names(sex: str) -> tuple[str, ...]:
    data = load_identity_data()
    if sex == "M":
        return tuple(_FakerNames.first_names_male) + tuple(data["first_names_compound_male"])
    return tuple(_FakerNames.first_names_female) + tuple(data["first_names_compound_female"])


def _finess(dept: str, rng: random.Random) -> str:
    return f"{dept}{rng.randrange(10**7):07d}"


def _rpps(rng: random.Random) -> str:
    return f"10{rng.randrange(10**9):09d}"


def build_world(territory: TerritoryDef, seed: int, persons: int) -> World:
    """Facilities, GPs and associations sized for `persons` residents; deterministic for a seed."""
    cal = load_calibration()
    rng = random.Random(stable_seed(seed, territory.key, "world"))
    communes = tuple(Commune(c.code, c.name, c.postcode, c.population) for c in territory.communes)
    by_size = sorted(communes, key=lambda c: -c.population)
    dept = communes[0].code[:2]
    names = surnames()

    def sized(per: int, minimum: int) -> int:
        return max(minimum, round(persons / per))

    hospitals = []
    for i in range(sized(cal["persons_per_hospital"], 2)):
        town = by_size[i % len(by_size)]
        label = "Centre hospitalier" if i % len(by_size) == i else "Clinique"
        encoding, newline = [("latin-1", "\r\n"), ("utf-8-sig", "\r\n"), ("utf-8", "\n")][min(i, 2)]
        hospitals.append(
            Facility(_finess(dept, rng), f"{label} de {town.name}", "hospital", town.code, encoding, newline)
        )
    labs = []
    for i in range(sized(cal["persons_per_lab"], 2)):
        town = by_size[(i * 3) % len(by_size)]
        encoding = "latin-1" if i == 0 else "utf-8"
        labs.append(
            Facility(
                _finess(dept, rng),
                f"Laboratoire {rng.choice(names).title()} Biologie",
                "lab",
                town.code,
                encoding,
                "\r",
                si_units=i % 2 == 1,  # IFCC HbA1c, glucose and creatinine in moles: the edge must convert
            )
        )
    pharmacies = []
    for i in range(sized(cal["persons_per_pharmacy"], 3)):
        town = rng.choices(communes, weights=[c.population for c in communes])[0]
        encoding, newline = [("utf-8-sig", "\r\n"), ("latin-1", "\r\n"), ("utf-8", "\n")][i % 3]
        kind = rng.choice(("du Centre", "de la Gare", "de la Mairie", f"{rng.choice(names).title()}", "du Marché"))
        pharmacies.append(Facility(_finess(dept, rng), f"Pharmacie {kind}", "pharmacy", town.code, encoding, newline))
    gps = []
    for _ in range(sized(cal["patients_per_gp"], 3)):
        sex = rng.choice("MF")
        town = rng.choices(communes, weights=[c.population for c in communes])[0]
        gps.append(Professional(_rpps(rng), rng.choice(names), rng.choice(first_names(sex)).split("-")[0], town.code))
    specialists = []
    for _ in range(2 * len(hospitals)):
        sex = rng.choice("MF")
        specialists.append(
            Professional(_rpps(rng), rng.choice(names), rng.choice(first_names(sex)), hospitals[0].commune_code)
        )
    n_assoc = max(2, round(persons / 100_000 * cal["associations_per_100k"]))
    associations = tuple(
        _ASSOCIATIONS[i % len(_ASSOCIATIONS)].format(t=territory.name, c=by_size[i % len(by_size)].name)
        for i in range(n_assoc)
    )
    software = frozenset(g.rpps for g in gps if rng.random() < cal["gp_software_share"])
    ref: date = cal["reference_date"]
    return World(
        territory=territory.key,
        territory_name=territory.name,
        seed=seed,
        reference_date=ref,
        history_start=ref.replace(year=ref.year - cal["history_years"]) + timedelta(days=1),
        communes=communes,
        hospitals=tuple(hospitals),
        labs=tuple(labs),
        pharmacies=tuple(pharmacies),
        gps=tuple(gps),
        specialists=tuple(specialists),
        associations=associations,
        catalog=load_catalog(),
        gp_software=software,
    )


@dataclass(frozen=True, slots=True)
class Skeleton:
    """The part of a resident that needs territory-wide state (see module docstring)."""

    person_id: int
    sex: str
    birth_date: date
    birth_place: str
    birth_name: str
    nir: str
    insured_nir: str  # NIR on the health-insurance card: a parent's for minors
    deceased: bool  # died during the history window
    twin_of: int | None = None  # the first twin's person id (always in the same chunk, just before)


class SkeletonSource:
    """Sequential source of skeletons, chunk after chunk; holds the NIR order counters."""

    def __init__(self, world: World, persons: int) -> None:
        cal = load_calibration()
        self.world = world
        self.persons = persons
        self._bands = [tuple(b) for b in cal["age_bands"]]
        self._cum = list(accumulate(b[2] for b in self._bands))
        self._communes = world.communes
        self._commune_cum = list(accumulate(c.population for c in world.communes))
        self._ident = load_identity_data()
        self._surnames = surnames()
        self._orders: dict[tuple[str, int, int, str], int] = {}
        self._recent_adults: list[str] = []
        self._death_rate = cal["deaths_per_year"] * cal["history_years"]

    def _next_order(self, sex: str, birth: date, place: str) -> int:
        key = (sex, birth.year % 100, birth.month, place)  # the NIR holds a 2-digit year
        order = self._orders.get(key, 0) + 1
        self._orders[key] = order
        if order > 999:
            raise ValueError("more than 999 births in one commune, month and sex: use more communes")
        return order

    def _birth_place(self, rng: random.Random) -> str:
        u = rng.random()
        if u < 0.08:
            return rng.choice(self._ident["birthplaces_abroad"])
        if u < 0.28:
            return rng.choice(self._ident["birthplaces_other_france"])
        return self._communes[bisect_right(self._commune_cum, rng.random() * self._commune_cum[-1])].code

    def chunk(self, index: int, size: int) -> list[Skeleton]:
        """Skeletons of chunk `index` (persons index*size .. ), to be called in chunk order."""
        rng = random.Random(stable_seed(self.world.seed, self.world.territory, "skeleton", index))
        ref = self.world.reference_date
        first = index * size
        out: list[Skeleton] = []
        twin: Skeleton | None = None
        for pid in range(first, min(first + size, self.persons)):
            if twin is not None:  # second twin: same birth, same name, same insured parent
                sex = rng.choice("MF")
                nir = make_nir(
                    sex, twin.birth_date, twin.birth_place, self._next_order(sex, twin.birth_date, twin.birth_place)
                )
                out.append(
                    Skeleton(
                        pid,
                        sex,
                        twin.birth_date,
                        twin.birth_place,
                        twin.birth_name,
                        nir,
                        twin.insured_nir if twin.insured_nir != twin.nir else nir,
                        False,
                        twin_of=twin.person_id,
                    )
                )
                twin = None
                continue
            band = self._bands[bisect_right(self._cum, rng.random() * self._cum[-1])]
            sex = "F" if rng.random() < band[3] else "M"
            age_days = rng.randrange(band[0] * 365 + 1, (band[1] + 1) * 365 - 1)
            birth = ref - timedelta(days=age_days)
            place = self._birth_place(rng)
            nir = make_nir(sex, birth, place, self._next_order(sex, birth, place))
            age = age_days // 365
            insured = nir
            if age < 18 and self._recent_adults:
                insured = rng.choice(self._recent_adults)
            elif 25 <= age <= 50:
                self._recent_adults.append(nir)
                if len(self._recent_adults) > 400:
                    self._recent_adults.pop(0)
            name = rng.choice(self._surnames)
            deceased = age >= 50 and rng.random() < self._death_rate * (age / 75) ** 3
            sk = Skeleton(pid, sex, birth, place, name, nir, insured, deceased)
            out.append(sk)
            if not deceased and rng.random() < 0.015:
                twin = sk
        return out


def make_identity(sk: Skeleton, reference: date, rng: random.Random, *, avoid: str | None = None) -> Identity:
    """The civil identity of a skeleton: first names, used (married) name.

    ``avoid``: a first name the first first name must not be — the other twin's: parents do
    not give twins one first name, and identical twins' records (same birth name, date, sex and,
    on a minor's pharmacy card, the parent's NIR) would be one person to any linkage. Drawn
    independently, 55 of 14 740 twin pairs shared it at 1 M persons (tests/synth/test_twins.py).
    """
    cal = load_calibration()
    names = first_names(sk.sex)
    count = rng.choices((1, 2, 3), weights=(0.35, 0.45, 0.2))[0]
    firsts = tuple(dict.fromkeys(rng.choice(names) for _ in range(count)))
    if avoid is not None and firsts[0] == avoid:
        other = rng.choice([name for name in names if name != avoid])
        firsts = (other, *(name for name in firsts[1:] if name != other))
    used = None
    age = (reference - sk.birth_date).days // 365
    if sk.sex == "F" and age > 25 and rng.random() < cal["married_women_used_name_share"]:
        used = rng.choice(surnames())
        if used == sk.birth_name:
            used = None
    return Identity(sk.birth_name, used, firsts, sk.sex, sk.birth_date, sk.birth_place, sk.nir)


def make_contact(identity: Identity, world: World, rng: random.Random) -> tuple[Address, str | None, str | None]:
    """Address in a commune of the territory, and a phone and e-mail where plausible."""
    cal = load_calibration()
    commune = rng.choices(world.communes, weights=[c.population for c in world.communes])[0]
    address = Address(f"{rng.randrange(1, 180)} {rng.choice(_STREETS)}", commune.postcode, commune.code, commune.name)
    phone = None
    if rng.random() < cal["phone_share"]:
        prefix = rng.choice(
            ("06", "07", "06", "0" + ("3" if world.communes[0].code[:2] in {"59", "10", "51", "70"} else "2"))
        )
        phone = prefix + "".join(f" {rng.randrange(100):02d}" for _ in range(4))
    email = None
    age = (world.reference_date - identity.birth_date).days // 365
    share = cal["email_share"]["under_60" if age < 60 else "over_60"]
    if age >= 16 and rng.random() < share:
        local = f"{_ascii(identity.first_names[0])}.{_ascii(identity.used_name or identity.birth_name)}"
        email = f"{local.lower()}{rng.randrange(100) if rng.random() < 0.4 else ''}@{rng.choice(_MAIL_DOMAINS)}"
    return address, phone, email


def _ascii(text: str) -> str:
    stripped = unicodedata.normalize("NFKD", text.replace("Œ", "OE").replace("œ", "oe"))
    return "".join(ch for ch in stripped if ch.isalnum() and ch.isascii())


def choose_gp(world: World, address: Address, rng: random.Random) -> Professional | None:
    """Most residents declare a GP, usually one practising in their commune."""
    if rng.random() >= load_calibration()["gp_share"]:
        return None
    local = [g for g in world.gps if g.commune_code == address.commune_code]
    return rng.choice(local) if local and rng.random() < 0.7 else rng.choice(world.gps)
