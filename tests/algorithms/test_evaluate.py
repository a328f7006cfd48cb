"""The action agreement of `pdp bench strata`: overall and per action, a missing row disagrees."""

from __future__ import annotations

from pathlib import Path

from pdp.bench.evaluate import _score_actions


def test_action_agreement_is_reported_per_action(tmp_path: Path) -> None:
    truth = tmp_path / "ground_truth"
    truth.mkdir()
    (truth / "actions_due_coded.csv").write_text(
        "person_id,pathway,action,interval_days,last_done,due_date,status\n"
        "1,t2d,hba1c,182,,2026-06-30,overdue\n"
        "1,t2d,influenza_vaccine,365,2025-10-20,2026-10-20,up_to_date\n"
        "2,t2d,hba1c,182,,2026-06-30,overdue\n"
        "2,t2d,influenza_vaccine,365,,2026-06-30,overdue\n",
        encoding="utf-8",
    )
    owners = {"p1": 1, "p2": 2}
    rows = [
        {"person_pseudonym": "p1", "pathway": "t2d", "action": "hba1c", "status": "overdue"},
        {"person_pseudonym": "p1", "pathway": "t2d", "action": "influenza_vaccine", "status": "up_to_date"},
        {"person_pseudonym": "p2", "pathway": "t2d", "action": "hba1c", "status": "due"},  # disagrees
        # p2's influenza_vaccine row is missing: disagrees
    ]
    scores = _score_actions(tmp_path, owners, rows)
    assert scores["agreement"] == 0.5 and scores["rows"] == 4 and scores["missing"] == 1
    assert scores["t2d.hba1c"] == 0.5 and scores["t2d.influenza_vaccine"] == 0.5
