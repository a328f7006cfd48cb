"""Clinical facts out of one French report: conditions, complications, treatments, signs and
measurements bound to their test, each with its qualifiers and the rule that found it.

Why rules and not a model: the facts a population definition needs are few and named
(DOMAIN: the T2D and HF criteria and complications), the traps are linguistic and known
("pas de rétinopathie", "on ne peut exclure un AVC", "mère diabétique", a value written after
its test), and every fact must say which rule produced it so that a stratum built on it can be
explained. The lexicon and the cues are data (``lexicon.yml``, ``qualifiers.yml``).

How: the text is folded once (lower case, accents off, same length: offsets are the original's);
every term, acronym and measurement pattern is matched; where matches overlap the longest wins
("rétinopathie diabétique" is one retinopathy); then each fact's clause is read for cues —
family, hypothesis, negation (the cue nearest the fact wins; a hypothesis cue that holds a
negation, "on ne peut exclure", is a hypothesis), history — and for a date.

The input is de-identified text or raw text at the edge; nothing here logs or raises with it.

Example::

    >>> [(f.concept, f.assertion) for f in extract_facts("Pas de rétinopathie ni de néphropathie. HTA.")]
    [('retinopathy', 'negated'), ('nephropathy', 'negated'), ('hypertension', 'affirmed')]
    >>> f = extract_facts("HbA1c à 8,2 % le 12/03/2024")[0]
    >>> (f.concept, f.value, f.unit, f.date)
    ('hba1c', 8.2, '%', '2024-03-12')

Measured (`pdp bench nlp`, 576 synthetic letters of ~1 050 characters in the generator's varied
style, seed 20261205, load ~3): ~440 documents per CPU-second; F1 0.983 against the generator's
labels, which is a floor (the generator's phrasing), not a proof on real letters.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

from pdp.semantic.deid.text import fold
from pdp.semantic.facts.definitions import Cue, compile_pattern, lexicon, qualifiers

__all__ = ["Assertion", "Fact", "extract_facts"]

Assertion = Literal["affirmed", "negated", "hypothesis", "family"]
_WORD = "a-z0-9"
_NUMBER = r"\d{1,3}(?:[  ]\d{3})+(?:[,.]\d+)?|\d+(?:[,.]\d+)?"
#: "HbA1c passée de 8,9 à 8,4 %": the value is the last one
_EVOLUTION = (r"(?:(?:passee?s?|evoluant|evoluee?|descendue?|remontee?|diminuee?|augmentee?|amelioree?)\s+"
              r"de\s+(?:\d+(?:[,.]\d+)?)\s*%?\s+a\s+)?")
_MONTHS = ("janvier", "fevrier", "mars", "avril", "mai", "juin", "juillet", "aout", "septembre", "octobre",
           "novembre", "decembre")
_DATE_RE = re.compile(
    r"\b(?P<d>[0-3]?\d)[/.-](?P<m>[01]?\d)[/.-](?P<y>(?:19|20)?\d\d)\b"
    r"|\b(?P<month>" + "|".join(_MONTHS) + r")\s+(?P<my>(?:19|20)\d\d)\b"
    r"|\b(?:en|depuis|de|le|du|dès|des)\s+(?P<year>(?:19|20)\d\d)\b"
)


@dataclass(frozen=True, slots=True)
class Fact:
    """A clinical fact found in a text: what, where, how asserted, and the rule that found it."""

    concept: str
    kind: str  # condition | complication | treatment | sign | measurement
    code: str | None  # "CIM-10:E11", "ATC:A10A", "LOINC:4548-4"
    start: int
    end: int
    assertion: Assertion
    history: bool
    value: float | None
    unit: str | None
    date: str | None  # ISO date, year-month or year, as precise as the text
    rule: str  # "lexicon:<concept>#<n>" (the term) and the cue of qualifiers.yml that qualified it, if any

    @property
    def counts(self) -> bool:
        """Whether the fact counts as evidence about the patient (affirmed: not negated, hypothetical
        or a relative's)."""
        return self.assertion == "affirmed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class _Matcher:
    concept: str
    kind: str
    code: str | None
    pattern: re.Pattern[str]
    folded: bool
    rule: str
    measurement: tuple[float, float, bool] | None = None  # range low, high, pair


@dataclass(frozen=True, slots=True)
class _CompiledCues:
    before: tuple[tuple[re.Pattern[str], int, str], ...]  # pattern, reach, source
    after: tuple[tuple[re.Pattern[str], str], ...]


@dataclass(frozen=True, slots=True)
class _Compiled:
    matchers: tuple[_Matcher, ...]
    mentions: tuple[_Matcher, ...]  # measurement tests without a value (facts only when negated)
    clause_break: re.Pattern[str]
    line_break: re.Pattern[str]
    segment_break: re.Pattern[str]
    coordination: re.Pattern[str]
    hypothesis: _CompiledCues
    negation: _CompiledCues
    history: _CompiledCues
    family: tuple[re.Pattern[str], ...]
    pseudo: tuple[re.Pattern[str], ...]
    after_reach: int


def _code(code: Any) -> str | None:
    return f"{code.system}:{code.value}" if code is not None else None


#: Coordinated facts between a fact and its `after` cue: "néphropathie[, de rétinopathie] et de neuropathie négative"
_COORDINATED = r"(?:\s*(?:,|\bet\b|\bni\b|\bou\b)\s*(?:de |d'|du |des )[^,.;\n]{1,60}?)*?"


def _cues(cues: Any, reach: int, name: str) -> _CompiledCues:
    """Compiled cues, each named by its place in qualifiers.yml (``negation.before#0``): the rule a fact cites."""
    before = tuple((compile_pattern(c.cue), c.reach, f"{name}.before#{n}") if isinstance(c, Cue)
                   else (compile_pattern(c), reach, f"{name}.before#{n}") for n, c in enumerate(cues.before))
    after = tuple((compile_pattern(_COORDINATED + c.removeprefix("^")), f"{name}.after#{n}")
                  for n, c in enumerate(cues.after))
    return _CompiledCues(before, after)


@lru_cache(maxsize=1)
def _compiled() -> _Compiled:
    lex, qual = lexicon(), qualifiers()
    matchers: list[_Matcher] = []
    mentions: list[_Matcher] = []
    for name, concept in lex.concepts.items():
        for n, term in enumerate(concept.terms):
            matchers.append(_Matcher(name, concept.kind, _code(concept.code),
                                     compile_pattern(rf"(?<![{_WORD}])(?:{term})(?![{_WORD}])"), True,
                                     f"lexicon:{name}#{n}"))
        if concept.acronyms:
            acronyms = "|".join(re.escape(a) for a in concept.acronyms)
            matchers.append(_Matcher(name, concept.kind, _code(concept.code),
                                     re.compile(rf"(?<![A-Za-z0-9])(?:{acronyms})(?![A-Za-z0-9])"), False,
                                     f"lexicon:{name}#acronym"))
    for name, m in lex.measurements.items():
        tests = "|".join(f"(?:{t})" for t in m.tests)
        units = "|".join(f"(?:{u})" for u in sorted(m.units, key=len, reverse=True))
        value = rf"(?P<value>{_NUMBER})(?:\s*/\s*(?P<second>\d{{2,3}}))?" if m.pair else rf"(?P<value>{_NUMBER})"
        pattern = (rf"(?<![{_WORD}])(?:{tests})(?![{_WORD}])(?:[^0-9.;\n(]|\.{{2,}}|\([^)\n]{{0,15}}\)){{0,40}}?"
                   rf"{_EVOLUTION}{value}\s*(?P<unit>{units})(?![a-z0-9])")
        matchers.append(_Matcher(name, "measurement", _code(m.code), compile_pattern(pattern), True,
                                 f"lexicon:{name}#value", (m.range[0], m.range[1], m.pair)))
        mentions.append(_Matcher(name, "measurement", _code(m.code),
                                 compile_pattern(rf"(?<![{_WORD}])(?:{tests})(?![{_WORD}])"), True,
                                 f"lexicon:{name}#mention"))
    return _Compiled(
        matchers=tuple(matchers), mentions=tuple(mentions),
        clause_break=compile_pattern(qual.clause_break),
        line_break=re.compile(qual.line_break),
        segment_break=re.compile(r",|\(|\)|\s-\s"),
        coordination=compile_pattern(qual.coordination),
        hypothesis=_cues(qual.hypothesis, qual.reach, "hypothesis"),
        negation=_cues(qual.negation, qual.reach, "negation"),
        history=_cues(qual.history, qual.reach, "history"),
        family=tuple(compile_pattern(c) for c in qual.family.anywhere),
        pseudo=tuple(compile_pattern(c) for c in qual.pseudo),
        after_reach=qual.after_reach,
    )


def _number(text: str) -> float:
    return float(re.sub(r"[  ]", "", text).replace(",", "."))


@dataclass(slots=True)
class _Candidate:
    matcher: _Matcher
    start: int
    end: int
    value: float | None = None
    unit: str | None = None


def _candidates(text: str, folded: str, c: _Compiled) -> list[_Candidate]:
    found: list[_Candidate] = []
    for matcher in c.matchers:
        for m in matcher.pattern.finditer(folded if matcher.folded else text):
            if matcher.measurement is None:
                found.append(_Candidate(matcher, m.start(), m.end()))
                continue
            low, high, _pair = matcher.measurement
            value = _number(m.group("value"))
            if low <= value <= high:
                unit = text[m.start("unit"):m.end("unit")] or None
                found.append(_Candidate(matcher, m.start(), m.end(), value, unit))
    for matcher in c.mentions:
        for m in matcher.pattern.finditer(folded):
            found.append(_Candidate(matcher, m.start(), m.end()))
    # the longest match wins where matches overlap; then the earliest
    found.sort(key=lambda x: (-(x.end - x.start), x.start, x.matcher.measurement is None))
    kept: list[_Candidate] = []
    taken: list[tuple[int, int]] = []
    for cand in found:
        at = bisect.bisect_left(taken, (cand.start, cand.end))
        if (at > 0 and taken[at - 1][1] > cand.start) or (at < len(taken) and taken[at][0] < cand.end):
            continue
        taken.insert(at, (cand.start, cand.end))
        kept.append(cand)
    kept.sort(key=lambda x: x.start)
    return kept


class _Bounds:
    """Clause (or segment) bounds of one document: the breaks' starts and ends sorted once.

    Why a class: a letter holds hundreds of facts and of breaks; building the start and end
    lists for every fact made extraction quadratic in the document's length (a 2 000-line
    document took ~4.7 s instead of ~0.5 s). Built once per document, each look-up is a bisect.
    """

    __slots__ = ("_ends", "_length", "_starts")

    def __init__(self, breaks: list[tuple[int, int]], length: int) -> None:
        self._starts = [b[0] for b in breaks]
        self._ends = [b[1] for b in breaks]
        self._length = length

    def around(self, start: int, end: int) -> tuple[int, int]:
        """The clause around [start, end): from the end of the last break before it to the next break."""
        i = bisect.bisect_right(self._ends, start)
        left = self._ends[i - 1] if i > 0 else 0
        j = bisect.bisect_left(self._starts, end)
        right = self._starts[j] if j < len(self._starts) else self._length
        return left, right


def _carries(gap: str, c: _Compiled) -> bool:
    """Whether a cue's scope carries over ``gap`` (text between the cue and the fact): every comma
    or "et" in it must open a coordination ("…, de néphropathie ni de neuropathie")."""
    return all(c.coordination.match(gap[m.start():]) for m in re.finditer(r",|\bet\b", gap))


def _nearest_before(cues: _CompiledCues, folded: str, left: int, start: int, c: _Compiled,
                    masked: list[tuple[int, int]]) -> tuple[int, str] | None:
    """The nearest `before` cue whose scope reaches the fact, ignoring cues inside a pseudo cue."""
    best: tuple[int, str] | None = None
    window = folded[left:start]
    for pattern, reach, source in cues.before:
        for m in pattern.finditer(window):
            if any(s <= left + m.start() < e for s, e in masked):
                continue
            gap = window[m.end():]
            if len(gap) > reach or not _carries(gap, c):
                continue
            if best is None or m.end() > best[0]:
                best = (m.end(), source)
    return best


def _after(cues: _CompiledCues, folded: str, end: int, right: int, reach: int) -> str | None:
    window = folded[end:min(right + 1, end + reach + 120)]  # room for coordinated facts before the cue
    for pattern, source in cues.after:
        if pattern.match(window):
            return source
    return None


def _date(folded: str, start: int, right: int) -> str | None:
    m = _DATE_RE.search(folded, start, right)
    if m is None:
        return None
    if m.group("y"):
        year = m.group("y") if len(m.group("y")) == 4 else f"20{m.group('y')}"
        day, month = int(m.group("d")), int(m.group("m"))
        return f"{year}-{month:02d}-{day:02d}" if 1 <= month <= 12 and 1 <= day <= 31 else None
    if m.group("month"):
        return f"{m.group('my')}-{_MONTHS.index(m.group('month')) + 1:02d}"
    return m.group("year")


def extract_facts(text: str) -> list[Fact]:
    """The clinical facts of ``text``, in order of appearance (see the module docstring)."""
    if not isinstance(text, str):
        raise TypeError("extract_facts takes a str")
    c = _compiled()
    folded = fold(text)
    breaks = sorted([(m.start(), m.end()) for m in c.clause_break.finditer(folded)]
                    + [(m.start(), m.end()) for m in c.line_break.finditer(text)])
    segments = sorted(breaks + [(m.start(), m.end()) for m in c.segment_break.finditer(folded)])
    clauses, sections = _Bounds(breaks, len(folded)), _Bounds(segments, len(folded))
    masked = [(m.start(), m.end()) for p in c.pseudo for m in p.finditer(folded)]
    facts: list[Fact] = []
    # terms and values are matched across hard-wrapped lines ("insuffisance\ncardiaque")
    for cand in _candidates(text, folded.replace("\n", " "), c):
        left, right = clauses.around(cand.start, cand.end)
        seg_left, seg_right = sections.around(cand.start, cand.end)
        segment = folded[seg_left:cand.start] + " " + folded[cand.end:seg_right]
        rule = cand.matcher.rule
        assertion: Assertion = "affirmed"
        family = next((f"family.anywhere#{n}" for n, p in enumerate(c.family) if p.search(segment)), None)
        if family is None and c.family[0].search(folded[left:cand.start]):
            family = "family.anywhere#0"  # under a "family history" heading of the clause
        hyp_after = _after(c.hypothesis, folded, cand.end, right, c.after_reach)
        neg_after = _after(c.negation, folded, cand.end, right, c.after_reach)
        hyp_before = _nearest_before(c.hypothesis, folded, left, cand.start, c, masked)
        neg_before = _nearest_before(c.negation, folded, left, cand.start, c, masked)
        cue: str | None = None
        if family is not None:
            assertion, cue = "family", family
        elif hyp_after is not None:
            assertion, cue = "hypothesis", hyp_after
        elif neg_after is not None:
            assertion, cue = "negated", neg_after
        elif hyp_before is not None and (neg_before is None or hyp_before[0] >= neg_before[0]):
            assertion, cue = "hypothesis", hyp_before[1]
        elif neg_before is not None:
            assertion, cue = "negated", neg_before[1]
        if cand.matcher.rule.endswith("#mention") and assertion != "negated":
            continue  # a test named without its value is a fact only when it was not done
        history = (_nearest_before(c.history, folded, left, cand.start, c, masked) is not None
                   or _after(c.history, folded, cand.end, right, c.after_reach) is not None)
        facts.append(Fact(
            concept=cand.matcher.concept, kind=cand.matcher.kind, code=cand.matcher.code,
            start=cand.start, end=cand.end, assertion=assertion, history=history,
            value=cand.value, unit=cand.unit, date=_date(folded, cand.start, right),
            rule=rule + (f" + {cue}" if cue else ""),
        ))
    return facts
