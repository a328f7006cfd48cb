"""Twins are two people: never the same first first name (issue 14's collisions at 1 M persons).

Why this test: the generator drew each twin's first names independently, so ~0.4 % of twin
pairs of the same sex shared their first first name (55 of 14 740 pairs at 1 M persons, 15 of
them minors on one parent's card). A pharmacy card then shows the same birth name, first name,
birth date, sex and (the parent's) NIR for both: identical records that no linkage can tell
apart — the collisions `pdp bench linkage` counted at 1 M persons. Real parents do not give
twins the same first name. Measured with skeletons and identities only (no history): 100 000
persons, ~1 470 twin pairs, ~4 s.
"""

from __future__ import annotations

from pdp.synth.generator import build_world, person_identities
from pdp.synth.population import SkeletonSource
from pdp.synth.territory import load_territory

PERSONS = 100_000
CHUNK = 2000


def test_twins_of_one_sex_never_share_their_first_first_name() -> None:
    world = build_world(load_territory("douaisis"), 7, PERSONS)
    source = SkeletonSource(world, PERSONS)
    pairs = same = 0
    for index in range(PERSONS // CHUNK):
        skeletons = source.chunk(index, CHUNK)
        identities = {sk.person_id: ident for sk, ident in zip(skeletons, person_identities(skeletons, world),
                                                               strict=True)}  # fmt: skip
        for sk in skeletons:
            if sk.twin_of is None:
                continue
            pairs += 1
            first, second = identities[sk.twin_of], identities[sk.person_id]
            same += first.sex == second.sex and first.first_names[0] == second.first_names[0]
    assert pairs > 1000
    assert same == 0
