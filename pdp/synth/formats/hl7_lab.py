"""Lab results as a medical biology lab's information system (SIL) sends them: HL7 v2.5
ORU^R01 messages in one batch file per lab (``labs/<finess>.hl7``).

Why this shape: French labs push results to GPs, hospitals and regional platforms as
HL7 v2.5 ORU^R01 (IHE LAB-3 style, PAM-FR identity conventions), and file-based transfers
wrap them in FHS/BHS ... BTS/FTS. The PDP's lab ingest must cope with exactly that:
escaped delimiters, one INS-NIR or only a local patient id, a birth name and a used name,
latin-1 senders, and, from Windows-based senders, a line feed after each message.

Strings are built directly (no hl7apy objects): the generator renders millions of results.
Everything is deterministic: ids and times are derived by hashing stable values (seed,
FINESS, event ids), never from a clock or a random UUID.
"""

from __future__ import annotations

import codecs
import hashlib
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date
from functools import lru_cache

from pdp.synth.model import ClinicalEvent, Facility, Person, Professional, SourceIdentity
from pdp.synth.output import FileSpec, Rendered, record_link
from pdp.synth.world import World

SOURCE = "lab_hl7"
LAB_DIR = "labs"
RECEIVER = "PDP"
ENCODING_CHARACTERS = "^~\\&"
SEGMENT_END = "\r"

# INS-NIR as French senders write it in PID-3 (IHE PAM national extension for France):
# assigning authority ASIP-SANTE-INS-NIR with the NIR OID, identifier type "INS".
NIR_OID = "1.2.250.1.213.1.4.8"
NIR_AUTHORITY = f"ASIP-SANTE-INS-NIR&{NIR_OID}&ISO"
NIR_ID_TYPE = "INS"
# National health professional id (IdNatPs = "8" + RPPS) and its authority (CI-SIS).
RPPS_OID = "1.2.250.1.71.4.2.1"
RPPS_AUTHORITY = f"ASIP-SANTE-PS&{RPPS_OID}&ISO"
ORDER_SERVICE = "BIO^Bilan de biologie médicale^L"

# Characters python-hl7 (str.splitlines) treats as line breaks: they must never reach a
# field value, or a segment would be cut in two when the file is read back.
_LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_ESCAPES = str.maketrans(
    {
        "\\": "\\E\\",
        "|": "\\F\\",
        "^": "\\S\\",
        "&": "\\T\\",
        "~": "\\R\\",
        **{c: " " for c in _LINE_BREAKS},
    }
)
_DELIMITERS = frozenset("|^~\\&") | frozenset(_LINE_BREAKS)

# Transliterations NFKD cannot find (ligatures, typographic punctuation).
_TRANSLITERATIONS = {
    "œ": "oe",
    "Œ": "OE",
    "’": "'",
    "‘": "'",
    "‚": ",",
    "“": '"',
    "”": '"',
    "„": '"',
    "–": "-",
    "—": "-",
    "‐": "-",
    "‑": "-",
    "…": "...",
    "€": "EUR",
    "\u2009": " ",
    "\u202f": " ",
    "ŀ": "l",
    "Ŀ": "L",
}

# HL7 table 0211 names of the character sets a French lab may declare in MSH-18.
_HL7_CHARSETS = {
    "utf-8": "UNICODE UTF-8",
    "utf-8-sig": "UNICODE UTF-8",
    "iso8859-1": "8859/1",
    "iso8859-15": "8859/15",
    "ascii": "ASCII",
}

# Multipliers for the local-id bijection: odd and not a multiple of 5, hence invertible
# modulo a power of ten, so two persons never share a local id at the same sender.
_LOCAL_ID_MODULUS = 10**10
_LOCAL_ID_MULTIPLIER = 6_364_136_223


@dataclass(frozen=True, slots=True)
class MeasurementRule:
    """How a lab (or GP software) writes one LOINC result: precision and reference range."""

    decimals: int
    low: float | None = None
    high: float | None = None


# Adult reference ranges as French labs print them (units of catalog.yml); None = open.
MEASUREMENT_RULES: dict[str, MeasurementRule] = {
    "4548-4": MeasurementRule(1, 4.0, 6.0),  # HbA1c, %
    "1558-6": MeasurementRule(2, 0.70, 1.10),  # fasting glucose, g/L
    "2160-0": MeasurementRule(1, 6.0, 12.0),  # creatinine, mg/L
    "62238-1": MeasurementRule(0, 60.0, None),  # eGFR CKD-EPI, mL/min/1.73 m2
    "9318-7": MeasurementRule(1, None, 30.0),  # urine albumin/creatinine, mg/g
    "13457-7": MeasurementRule(2, None, 1.60),  # LDL cholesterol, g/L
    "2823-3": MeasurementRule(1, 3.5, 5.0),  # potassium, mmol/L
    "33762-6": MeasurementRule(0, None, 125.0),  # NT-proBNP, pg/mL
    "29463-7": MeasurementRule(1),  # weight, kg
    "39156-5": MeasurementRule(1, 18.5, 25.0),  # BMI, kg/m2
    "8480-6": MeasurementRule(0, 90.0, 140.0),  # systolic BP, mm[Hg]
    "8462-4": MeasurementRule(0, 60.0, 90.0),  # diastolic BP, mm[Hg]
    "10230-1": MeasurementRule(0, 50.0, None),  # LVEF, %
}
_DEFAULT_DECIMALS = 3


def render_lab_messages(
    persons: list[Person],
    world: World,
    identity_of: Callable[[Person, str], SourceIdentity],
) -> list[Rendered]:
    """One ORU^R01 message per lab order of each person, appended to its lab's batch file,
    plus one ground-truth record link per message.

    The lab files come first (in order of first appearance), then the record links, so the
    output order depends only on the order of `persons` and their events.
    """
    facilities = {f.finess: f for f in (*world.hospitals, *world.labs)}  # a lab wins a shared FINESS
    bodies: dict[str, list[str]] = {}
    specs: dict[str, FileSpec] = {}
    links: list[Rendered] = []
    for person in persons:
        orders = lab_orders(person.events)
        if not orders:
            continue
        identity = identity_of(person, SOURCE)
        for (finess, day), events in orders:
            facility = facilities.get(finess) or _unlisted_lab(finess)
            spec = specs.get(finess)
            if spec is None:
                spec = specs[finess] = lab_file_spec(facility, world)
            text, control_id = render_message(person, identity, facility, day, events, world.seed)
            bodies.setdefault(finess, []).append(text)
            links.append(record_link(SOURCE, spec.path, sender_record_id(facility, control_id), person.person_id))
    files = [Rendered(specs[finess], "".join(texts), len(texts)) for finess, texts in bodies.items()]
    return files + links


def sender_record_id(facility: Facility, control_id: str) -> str:
    """The id a receiver knows this message's results by: the lab (MSH-4) and the order's filler
    number (OBR-3), as the platform's HL7 parser reads it — a correction comes in a new message
    (new MSH-10) for the same order."""
    return f"{facility.finess}|{_filler_number(control_id)}"


def _filler_number(control_id: str) -> str:
    return control_id[8:]


def lab_orders(events: Iterable[ClinicalEvent]) -> list[tuple[tuple[str, date], list[ClinicalEvent]]]:
    """A person's lab measurements grouped into orders: one per (lab FINESS, day).

    Sorted by day then FINESS so the message order does not depend on how the generator
    happened to append events; results inside an order keep the events' order.
    """
    groups: dict[tuple[str, date], list[ClinicalEvent]] = {}
    for event in events:
        if event.channel == "lab" and event.kind == "measurement":
            groups.setdefault((event.facility, event.day), []).append(event)
    return sorted(groups.items(), key=lambda item: (item[0][1], item[0][0]))


def lab_file_path(finess: str) -> str:
    """Relative path of a lab's batch file."""
    return f"{LAB_DIR}/{finess}.hl7"


def lab_file_spec(facility: Facility, world: World) -> FileSpec:
    """The lab's batch file: FHS/BHS header, BTS (message count)/FTS (batch count) trailer.

    The header only depends on the facility and the world, so every chunk rendering the
    same lab produces the same spec.
    """
    end = message_end(facility)
    stamp = f"{_hl7_date(world.reference_date)}230000"
    sender = f"{_text(facility.finess)}|{_text(facility.finess)}|{RECEIVER}|{RECEIVER}|{stamp}"
    name = f"{facility.finess}.hl7"
    header = (
        f"FHS|{ENCODING_CHARACTERS}|{sender}||{name}||F{facility.finess}{end}"
        f"BHS|{ENCODING_CHARACTERS}|{sender}||{name}||B{facility.finess}{end}"
    )
    footer = f"BTS|{{count}}{end}FTS|1{end}"
    encoding = facility.encoding
    return FileSpec(
        path=lab_file_path(facility.finess),
        encoding=encoding,
        header=to_charset(header, encoding),
        footer=footer,
    )


def message_end(facility: Facility) -> str:
    """What closes a message (and each FHS/BHS/BTS/FTS segment) in this lab's file.

    Segments always end with a carriage return (HL7 v2). Windows-based senders
    (``newline == "\\r\\n"``) add a line feed after each message, which python-hl7 and most
    receivers accept; others send bare carriage returns.
    """
    return "\r\n" if facility.newline == "\r\n" else SEGMENT_END


def render_message(
    person: Person,
    identity: SourceIdentity,
    facility: Facility,
    day: date,
    events: list[ClinicalEvent],
    seed: int,
) -> tuple[str, str]:
    """One ORU^R01 message (text ending with the message end) and its control id."""
    digest = hashlib.blake2b(
        "|".join((str(seed), facility.finess, day.isoformat(), *(e.event_id for e in events))).encode(),
        digest_size=10,
    ).hexdigest()
    control_id = digest.upper()
    collected, reported = _order_times(day, int(digest[:8], 16))
    placer = control_id[:12]
    filler = f"{_filler_number(control_id)}^{facility.finess}"
    ordering = _xcn(person.gp)
    segments = [
        _msh(facility, reported, control_id),
        _pid(person, identity, facility, seed),
        "PV1|1|O",
        f"ORC|RE|{placer}|{filler}||CM||||{reported}|||{ordering}",
        _obr(placer, filler, collected, reported, ordering),
        *(_obx(i, as_sent(event, facility), collected) for i, event in enumerate(events, start=1)),
    ]
    end = message_end(facility)
    text = SEGMENT_END.join(segments) + end
    return to_charset(text, facility.encoding), control_id


def as_sent(event: ClinicalEvent, facility: Facility) -> ClinicalEvent:
    """The result as `facility` reports it: a lab in SI units sends HbA1c in mmol/mol (IFCC), glucose
    and creatinine in moles, each under its own LOINC code (catalog.yml ``si_units``)."""
    si = _si_units().get(event.code) if facility.si_units and event.value is not None else None
    if si is None:
        return event
    value = round((event.value - si["offset"]) / si["factor"], si["decimals"])  # type: ignore[operator]
    return replace(event, code=str(si["code"]), label=si["label"], unit=si["unit"], value=value)


@lru_cache(maxsize=1)
def _si_units() -> dict[str, dict]:
    from pdp.synth.catalog import load_catalog

    return {str(code): entry for code, entry in load_catalog()["si_units"].items()}


def _msh(facility: Facility, stamp: str, control_id: str) -> str:
    """MSH: the lab (FINESS) to the PDP, v2.5, declared character set."""
    charset = _HL7_CHARSETS.get(_codec_name(facility.encoding), "")
    finess = _text(facility.finess)
    return (
        f"MSH|{ENCODING_CHARACTERS}|{finess}|{finess}|{RECEIVER}|{RECEIVER}|{stamp}||"
        f"ORU^R01^ORU_R01|{control_id}|P|2.5|||AL|NE|FRA|{charset}"
    )


def _pid(person: Person, identity: SourceIdentity, facility: Facility, seed: int) -> str:
    """PID: INS-NIR when the source has it, always the lab's own patient id, names, traits."""
    local = local_patient_id(seed, facility.finess, person.person_id)
    ids = f"{local}^^^{_text(facility.finess)}^PI"
    if identity.nir:
        ids = f"{_text(identity.nir)}^^^{NIR_AUTHORITY}^{NIR_ID_TYPE}~{ids}"
    return (
        f"PID|1||{ids}||{_pid5(identity)}||{_hl7_date(identity.birth_date)}|{identity.sex}|||{_pid11(person, identity)}"
    )


def _pid5(identity: SourceIdentity) -> str:
    """PID-5 as PAM-FR writes it: birth name (type L) with first given name in component 2
    and the full list of first names in component 3; then the used name (type D)."""
    first_names = _text(identity.first_names.strip())
    first = _text(given_names(identity.first_names)[0]) if first_names else ""
    legal = f"{_text(identity.birth_name)}^{first}^{first_names}^^^^L"
    if identity.used_name:
        return f"{legal}~{_text(identity.used_name)}^{first}^^^^^D"
    return legal


def _pid11(person: Person, identity: SourceIdentity) -> str:
    """PID-11: home address (the lab's, a former one after a move), then the birth place (INSEE code,
    type BDL) when known."""
    a = identity.address or person.address
    home = f"{_text(a.line)}^^{_text(a.commune_name)}^^{_text(a.postcode)}^FRA^H"
    if identity.birth_place:
        return f"{home}~^^^^^^BDL^^{_text(identity.birth_place)}"
    return home


def _obr(placer: str, filler: str, collected: str, reported: str, ordering: str) -> str:
    """OBR: the order (collection time, ordering GP, final status)."""
    return _segment(
        "OBR",
        25,
        {1: "1", 2: placer, 3: filler, 4: ORDER_SERVICE, 7: collected, 16: ordering, 22: reported, 25: "F"},
    )


def _obx(set_id: int, event: ClinicalEvent, observed: str) -> str:
    """OBX: one numeric result with UCUM unit, reference range and abnormal flag."""
    identifier, units, ref_range = _test_fields(event.code, event.label, event.unit)
    if event.value is None:
        value, flag, status = "", "", "X"
    else:
        value = format_value(event.value, event.code)
        flag = abnormal_flag(float(value), MEASUREMENT_RULES.get(event.code))
        status = "F"
    return f"OBX|{set_id}|NM|{identifier}||{value}|{units}|{ref_range}|{flag}|||{status}|||{observed}"


@lru_cache(maxsize=4096)
def _test_fields(code: str, label: str, unit: str | None) -> tuple[str, str, str]:
    """OBX-3, OBX-6 and OBX-7 of a test: they only depend on the catalog entry, so they are
    escaped once per distinct test rather than once per result."""
    escaped_unit = _text(unit) if unit else ""
    units = f"{escaped_unit}^{escaped_unit}^UCUM" if escaped_unit else ""
    return f"{_text(code)}^{_text(label)}^LN", units, reference_range(MEASUREMENT_RULES.get(code))


def _segment(name: str, last: int, values: dict[int, str]) -> str:
    """A segment from its non-empty fields by HL7 field number (1..last)."""
    return "|".join([name, *(values.get(i, "") for i in range(1, last + 1))])


def _xcn(professional: Professional | None) -> str:
    """Ordering provider as CI-SIS writes it: IdNatPs ("8" + RPPS), names, RPPS authority."""
    if professional is None:
        return ""
    return (
        f"8{_text(professional.rpps)}^{_text(professional.family_name)}^{_text(professional.first_name)}"
        f"^^^^^^{RPPS_AUTHORITY}^D^^^RPPS"
    )


def format_value(value: float, loinc: str) -> str:
    """The value as the lab prints it: fixed decimals per test, never an exponent."""
    rule = MEASUREMENT_RULES.get(loinc)
    decimals = rule.decimals if rule else _DEFAULT_DECIMALS
    text = f"{value:.{decimals}f}"
    if rule is None and "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def measurement_decimals(loinc: str) -> int:
    """Decimals a sender keeps for this LOINC code (shared with the GP writer)."""
    rule = MEASUREMENT_RULES.get(loinc)
    return rule.decimals if rule else _DEFAULT_DECIMALS


def abnormal_flag(value: float, rule: MeasurementRule | None) -> str:
    """OBX-8: L below the range, H above, N inside; empty when the test has no range."""
    if rule is None or (rule.low is None and rule.high is None):
        return ""
    if rule.low is not None and value < rule.low:
        return "L"
    if rule.high is not None and value > rule.high:
        return "H"
    return "N"


def reference_range(rule: MeasurementRule | None) -> str:
    """OBX-7 text: "low-high", ">low" or "<high"; empty without a range."""
    if rule is None:
        return ""
    low = None if rule.low is None else f"{rule.low:.{rule.decimals}f}"
    high = None if rule.high is None else f"{rule.high:.{rule.decimals}f}"
    if low is not None and high is not None:
        return f"{low}-{high}"
    if low is not None:
        return f">{low}"
    return f"<{high}" if high is not None else ""


def local_patient_id(seed: int, sender: str, person_id: int) -> str:
    """A sender's own patient number: stable per (seed, sender, person), distinct between
    persons of the same sender (an affine bijection modulo 10^10), and not the ground-truth
    person id itself."""
    offset = int.from_bytes(hashlib.blake2b(f"{seed}|{sender}".encode(), digest_size=8).digest(), "big")
    return f"{(person_id * _LOCAL_ID_MULTIPLIER + offset) % _LOCAL_ID_MODULUS:010d}"


def given_names(first_names: str) -> list[str]:
    """First names as separate given names: the sources separate them with spaces or
    commas; hyphens belong to compound names ("Jean-Marie") and are kept."""
    names = first_names.replace(",", " ").replace(";", " ").split()
    return names or [first_names]


def escape(text: str) -> str:
    """HL7 v2 escaping of delimiters (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\); line breaks become spaces."""
    return text.translate(_ESCAPES)


_text = escape


def to_charset(text: str, encoding: str) -> str:
    """`text` restricted to what `encoding` can write: latin-1 senders transliterate
    ("Œ" -> "OE", "’" -> "'", accents kept where latin-1 has them) instead of failing."""
    if text.isascii() or _codec_name(encoding).startswith("utf"):
        return text
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return "".join(_transliterate(char, encoding) for char in text)
    return text


@lru_cache(maxsize=4096)
def _transliterate(char: str, encoding: str) -> str:
    """One character in `encoding`: itself, a known transliteration, its NFKD base letters,
    or "?"; never an HL7 delimiter (NFKD of a full-width "｜" is "|")."""
    try:
        char.encode(encoding)
    except UnicodeEncodeError:
        pass
    else:
        return char
    if char in _TRANSLITERATIONS:
        return _TRANSLITERATIONS[char]
    kept = []
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.combining(part) or part in _DELIMITERS:
            continue
        try:
            part.encode(encoding)
        except UnicodeEncodeError:
            continue
        kept.append(part)
    return "".join(kept) or "?"


@lru_cache(maxsize=32)
def _codec_name(encoding: str) -> str:
    """Canonical codec name ("latin-1" -> "iso8859-1")."""
    return codecs.lookup(encoding).name


def _order_times(day: date, entropy: int) -> tuple[str, str]:
    """Deterministic collection time (07:00-10:59) and report time (2-9 h later)."""
    collected_min = 7 * 60 + entropy % 240
    reported_min = collected_min + 120 + (entropy >> 8) % 420
    stamp = _hl7_date(day)
    return (
        f"{stamp}{collected_min // 60:02d}{collected_min % 60:02d}00",
        f"{stamp}{reported_min // 60:02d}{reported_min % 60:02d}{(entropy >> 16) % 60:02d}",
    )


def _hl7_date(day: date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _unlisted_lab(finess: str) -> Facility:
    """A lab event pointing to a FINESS the world does not list still gets a (UTF-8) file,
    so no result is silently dropped."""
    return Facility(finess=finess, name=finess, kind="lab", commune_code="")
