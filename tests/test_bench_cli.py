"""`pdp bench`: bad input is one line and a non-zero exit, before any benchmark work starts."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pdp.bench import BenchSettingError, setting


def test_a_bench_setting_is_a_whole_number_or_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PDP_BENCH_GOLD_ROUNDS", raising=False)
    assert setting("PDP_BENCH_GOLD_ROUNDS", 2) == 2
    monkeypatch.setenv("PDP_BENCH_GOLD_ROUNDS", " ")
    assert setting("PDP_BENCH_GOLD_ROUNDS", 2) == 2
    monkeypatch.setenv("PDP_BENCH_GOLD_ROUNDS", "3")
    assert setting("PDP_BENCH_GOLD_ROUNDS", 2) == 3
    for bad in ("two", "0", "-1", "1.5"):
        monkeypatch.setenv("PDP_BENCH_GOLD_ROUNDS", bad)
        with pytest.raises(BenchSettingError, match=f"PDP_BENCH_GOLD_ROUNDS must be a whole number >= 1, not '{bad}'"):
            setting("PDP_BENCH_GOLD_ROUNDS", 2)


@pytest.mark.parametrize(("args", "env", "says"), [
    (["bench", "gold", "--persons", "10"], {"PDP_BENCH_GOLD_ROUNDS": "two"},
     "PDP_BENCH_GOLD_ROUNDS must be a whole number >= 1, not 'two'"),
    (["bench", "scaling"], {"PDP_BENCH_SCALING_ROUNDS": "0"},
     "PDP_BENCH_SCALING_ROUNDS must be a whole number >= 1, not '0'"),
    (["bench", "labfeed"], {"PDP_BENCH_LABFEED_DROPS": "many"},
     "PDP_BENCH_LABFEED_DROPS must be a whole number >= 1, not 'many'"),
    (["bench", "ingest", "--persons", "10"], {"PDP_BENCH_INGEST_WORKERS": "-2"},
     "PDP_BENCH_INGEST_WORKERS must be a whole number >= 0, not '-2'"),
    (["bench", "nosuch"], {}, "unknown benchmark 'nosuch'"),
    (["bench", "authz", "--persons", "10"], {}, "benchmark 'authz' takes no --persons"),
])
def test_bad_bench_input_is_one_line_and_a_non_zero_exit(
    pdp_cli: Callable[..., tuple[int, str, str]], monkeypatch: pytest.MonkeyPatch,
    args: list[str], env: dict[str, str], says: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = pdp_cli(*args)
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and says in lines[0], err
    assert "Traceback" not in err + out
