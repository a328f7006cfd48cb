"""NIR (numéro d'inscription au répertoire, the French social security number) construction.

The generator must produce NIRs whose control key is valid, including the Corsican
département codes 2A/2B (replaced by 19/18 to compute the key), since the edge rejects any
NIR whose key fails: a wrong key here would make the synthetic data lie about linkage.
"""

from __future__ import annotations

from datetime import date


def nir_key(body13: str) -> str:
    """The 2-digit control key of a 13-character NIR body: 97 - (body mod 97)."""
    dept = body13[5:7].upper()
    numeric = body13[:5] + {"2A": "19", "2B": "18"}.get(dept, dept) + body13[7:]
    return f"{97 - int(numeric) % 97:02d}"


def make_nir(sex: str, birth: date, birth_place: str, order: int) -> str:
    """Build a 15-character NIR: sex, year, month, birthplace (dept + commune), order, key.

    `birth_place` is an INSEE commune code (5 characters, 2A/2B for Corsica) or 99xxx for
    people born abroad (département 99, then the country code).
    """
    if not 1 <= order <= 999:
        raise ValueError("order must be in 1..999")
    body = (
        f"{1 if sex == 'M' else 2}{birth.year % 100:02d}{birth.month:02d}{birth_place[:2]}{birth_place[2:5]}{order:03d}"
    )
    return body + nir_key(body)


def nir_is_valid(nir: str) -> bool:
    """True when `nir` is 15 characters and its key matches its body."""
    if len(nir) != 15 or not nir[13:].isdigit():
        return False
    body = nir[:13]
    if not (body[:5].isdigit() and body[7:].isdigit()) or not (
        body[5:7].isdigit() or body[5:7].upper() in {"2A", "2B"}
    ):
        return False
    return nir_key(body) == nir[13:]
