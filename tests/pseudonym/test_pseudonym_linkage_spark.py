"""Linkage on Spark decides as the in-memory linkage does — same pseudonym for every record — and
leaves no identity in a Spark plan or a file."""

from __future__ import annotations

import base64
import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pdp.config import Settings
from pdp.pseudonym.keys import KeyStore
from pdp.pseudonym.linkage import LinkageOptions, LinkInput, LinkResult, link
from pdp.pseudonym.linkage_model import DEFAULT_PARAMETERS
from pdp.pseudonym.pseudonymise import Pseudonymiser
from tests.pseudonym.test_pseudonym_linkage import background, canon, nir

pytestmark = pytest.mark.usefixtures("spark")

# A name no generator draws, so finding it on disk can only mean this test's identity leaked.
SECRET_NAME = "QWYZZELBROCK"


@pytest.fixture(scope="module")
def key_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A key store whose master key is in a file: what the executors open for themselves."""
    home = tmp_path_factory.mktemp("slink")
    key_file = home / "master.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
    key_file.chmod(0o600)
    settings = Settings(_env_file=None, key_store=home / "keys", master_key_file=key_file)
    KeyStore.from_settings(settings).init()
    return settings


@pytest.fixture(scope="module")
def pseudonymiser(key_settings: Settings) -> Pseudonymiser:
    return Pseudonymiser(KeyStore.from_settings(key_settings))


def both(spark: Any, pseudonymiser: Pseudonymiser, settings: Settings, inputs: list[LinkInput], known: list = (),
         **options: Any) -> tuple[LinkResult, LinkResult]:
    """The in-memory and the Spark result of one batch, with the same (given) model."""
    from pdp.pseudonym.linkage_spark import SparkLinker

    opts = LinkageOptions(parameters=DEFAULT_PARAMETERS, model_version="test", **options)
    memory = link(inputs, pseudonymiser, known=known, options=opts)
    with SparkLinker(spark, pseudonymiser, options=opts, settings=settings) as linker:
        on_spark = linker.link(inputs, known=known).result()
    return memory, on_spark


def assert_same(memory: LinkResult, on_spark: LinkResult) -> None:
    assert on_spark.pseudonyms == memory.pseudonyms
    assert on_spark.superseded == memory.superseded
    assert on_spark.cluster_sizes == memory.cluster_sizes
    assert on_spark.rule_counts == memory.rule_counts
    assert on_spark.canonicals == memory.canonicals
    for count in ("variants", "deterministic_groups", "pairs_scored", "merges", "merges_refused_own_nir",
                  "ambiguous_groups", "persons"):
        assert on_spark.parameters["counts"][count] == memory.parameters["counts"][count], count


# --- one edge case per rule -----------------------------------------------------------------------


def test_a_deterministic_nir_match_gives_the_same_pseudonym_on_spark(spark, pseudonymiser, key_settings) -> None:
    a = canon(birth_name="Dupont", first_names="Claire", sex="F", birth_date="1975-03-14",
              nir=nir("F", "1975-03-14", 1))
    b = canon(birth_name="Dupond", first_names="Claire Anne", sex="F", birth_date="1975-03-14",
              nir=nir("F", "1975-03-14", 1))
    memory, on_spark = both(spark, pseudonymiser, key_settings,
                            [LinkInput("a", a), LinkInput("b", b), *background(120)])
    assert on_spark.pseudonyms["a"] == on_spark.pseudonyms["b"] == pseudonymiser.pseudonym(a)
    assert_same(memory, on_spark)


def test_a_near_duplicate_name_is_linked_on_spark_by_the_model(spark, pseudonymiser, key_settings) -> None:
    gp = canon(birth_name="Fontaine", first_names="Jean-Claude", sex="M", birth_date="1950-08-05",
               nir=nir("M", "1950-08-05", 2))
    pharmacy = canon(birth_name="FOTAINE", first_names="JEAN CLAUDE", sex="M", birth_date="1950-08-05")
    memory, on_spark = both(spark, pseudonymiser, key_settings, [LinkInput("gp", gp), LinkInput("ph", pharmacy),
                                                  *background(120)])
    assert on_spark.pseudonyms["ph"] == on_spark.pseudonyms["gp"]
    assert on_spark.rule_counts["probabilistic"] >= 1
    assert_same(memory, on_spark)


def pair_probability(inputs: list[LinkInput], a: str, b: str) -> float:
    """The in-memory model's match probability of the variants carrying records ``a`` and ``b``."""
    from pdp.pseudonym.linkage_model import ModelOptions, score_pairs
    from pdp.pseudonym.linkage_rules import UnionFind, apply_rules, build_variants

    variants = build_variants((i.record_key, i.canonical, i.postcode) for i in inputs)
    uf = UnionFind(variants)
    apply_rules(variants, uf)
    index = {key: v.index for v in variants for key in v.records}
    pairs, _ = score_pairs(variants, uf, ModelOptions(), parameters=DEFAULT_PARAMETERS)
    wanted = tuple(sorted((index[a], index[b])))
    return next(p.match_probability for p in pairs if (p.left, p.right) == wanted)


def test_a_pair_just_below_the_threshold_stays_apart_on_spark(spark, pseudonymiser, key_settings) -> None:
    """The same pair, with the threshold at its match probability and just above it: linked in
    the first case only, by both engines alike."""
    gp = canon(birth_name="Fontaine", first_names="Jean-Claude", sex="M", birth_date="1950-08-05")
    report = canon(birth_name="FONTAINE", first_names="JEAN", sex="M", birth_date="1950-05-08")
    inputs = [LinkInput("gp", gp), LinkInput("rep", report), *background(120)]
    probability = pair_probability(inputs, "gp", "rep")
    assert 0.5 <= probability < 1.0
    memory, on_spark = both(spark, pseudonymiser, key_settings, inputs, threshold=probability)
    assert on_spark.pseudonyms["rep"] == on_spark.pseudonyms["gp"]
    assert_same(memory, on_spark)
    above = probability + (1.0 - probability) / 1024  # the pair is just below this threshold
    memory, on_spark = both(spark, pseudonymiser, key_settings, inputs, threshold=above)
    assert on_spark.pseudonyms["rep"] != on_spark.pseudonyms["gp"]
    assert_same(memory, on_spark)


def test_a_transitive_chain_joins_three_records_on_spark(spark, pseudonymiser, key_settings) -> None:
    """NIR record ← married-name record (probabilistic) and a typo of the married name (Damerau-
    Levenshtein): the chain ends in one person, through the connected components."""
    hospital = canon(birth_name="Dupont", used_name="Martin", first_names="Claire, Anne", sex="F",
                     birth_date="1975-03-14", nir=nir("F", "1975-03-14", 1))
    social = canon(birth_name="MARTIN", first_names="Claire", sex="F", birth_date="14/03/1975")
    typo = canon(birth_name="MARTEN", first_names="Claire", sex="F", birth_date="14/03/1975", birth_place="59178")
    memory, on_spark = both(spark, pseudonymiser, key_settings, [LinkInput("h", hospital), LinkInput("s", social),
                                                  LinkInput("t", typo), *background(120)])
    assert on_spark.pseudonyms["h"] == on_spark.pseudonyms["s"] == on_spark.pseudonyms["t"]
    assert_same(memory, on_spark)


def test_twins_sharing_a_traits_key_get_the_same_distinct_pseudonyms_on_spark(
    spark, pseudonymiser, key_settings
) -> None:
    """Two persons kept apart but claiming one traits pseudonym: settled by the same rule."""
    twin_a = canon(birth_name="Leroy", first_names="Marie Claire", sex="F", birth_date="1990-06-01")
    twin_b = canon(birth_name="Leroy", first_names="Marie France", sex="F", birth_date="1990-06-01")
    memory, on_spark = both(spark, pseudonymiser, key_settings, [LinkInput("a", twin_a), LinkInput("b", twin_b),
                                                  *background(60)])
    assert on_spark.pseudonyms["a"] != on_spark.pseudonyms["b"]
    assert_same(memory, on_spark)


def test_the_deterministic_rules_alone_decide_as_in_memory_on_spark(spark, pseudonymiser, key_settings) -> None:
    """``probabilistic=False``: rules 1-3 only, run per traits key on Spark."""
    with_nir = canon(birth_name="Vaillant", first_names="Remy Antoine", sex="M", birth_date="1962-04-03",
                     nir=nir("M", "1962-04-03", 3))
    short = canon(birth_name="VAILLANT", first_names="Remy", sex="M", birth_date="1962-04-03")
    memory, on_spark = both(spark, pseudonymiser, key_settings, [LinkInput("lab", with_nir), LinkInput("gp", short),
                                                  *background(60)], probabilistic=False)
    assert on_spark.pseudonyms["gp"] == on_spark.pseudonyms["lab"]
    assert on_spark.parameters["model_version"] == memory.parameters["model_version"] == "not-run"
    assert_same(memory, on_spark)


def test_known_persons_are_linked_to_and_superseded_as_in_memory(spark, pseudonymiser, key_settings) -> None:
    with_nir = canon(birth_name="Vaillant", first_names="Remy", sex="M", birth_date="1962-04-03",
                     nir=nir("M", "1962-04-03", 3))
    known_traits = canon(birth_name="VAILLANT", first_names="Remy", sex="M", birth_date="1962-04-03")
    known = [("v1:" + "K" * 43, known_traits)]
    memory, on_spark = both(spark, pseudonymiser, key_settings, [LinkInput("lab", with_nir), *background(60)],
                            known=known)
    assert on_spark.superseded == {"v1:" + "K" * 43: pseudonymiser.pseudonym(with_nir)}
    assert_same(memory, on_spark)


# --- a generated territory ------------------------------------------------------------------------


@pytest.mark.slow
def test_on_a_generated_territory_spark_gives_every_record_the_in_memory_pseudonym(
    spark, pseudonymiser, key_settings, tmp_path: Path
) -> None:
    from pdp.pseudonym.linkage_bench import load_inputs
    from pdp.synth import generate

    generate(tmp_path / "territory", persons=600, seed=7, territory="douaisis", workers=1)
    inputs, _ = load_inputs(tmp_path / "territory")
    known_half = inputs[: len(inputs) // 3]
    batch = inputs[len(inputs) // 3 :]
    known = [(pseudonymiser.pseudonym(item.canonical), item.canonical) for item in known_half]
    memory, on_spark = both(spark, pseudonymiser, key_settings, batch, known=known)
    assert_same(memory, on_spark)
    counts = memory.parameters["counts"]
    assert counts["merges"] > 0 and counts["pairs_scored"] > 0 and memory.superseded
    assert Counter(memory.pseudonyms.values()).most_common(1)[0][1] > 1


# --- nothing nominative in plans or files -----------------------------------------------------------


def _files_containing(root: Path, needle: bytes) -> tuple[list[str], int]:
    """Files under ``root`` whose bytes hold ``needle``, and how many files were read."""
    found, read = [], 0
    for path in root.rglob("*"):
        try:
            if path.is_file():
                data = path.read_bytes()
                read += 1
                if needle in data:
                    found.append(str(path.relative_to(root)))
        except OSError:  # a shuffle or temp file removed meanwhile
            continue
    return found, read


def spark_dirs(spark: Any) -> list[Path]:
    """Where this Spark application writes: its block manager directories (shuffle files, spills,
    disk blocks) and the driver's temporary directory (PySpark's parallelize and broadcast files)."""
    from pyspark import SparkFiles

    env = spark.sparkContext._jvm.org.apache.spark.SparkEnv.get()
    dirs = [Path(str(d)) for d in env.blockManager().diskBlockManager().localDirs()]
    return [*dirs, Path(SparkFiles.getRootDirectory()).parent]


def test_no_identity_in_the_spark_plans_or_in_any_spark_file(spark, pseudonymiser, key_settings, pdp_var: Path) -> None:
    from pdp.pseudonym.linkage_spark import SparkLinker, encryption_enabled

    assert encryption_enabled(spark)
    person = canon(birth_name=SECRET_NAME, first_names="Odile", sex="F", birth_date="1941-02-03",
                   nir=nir("F", "1941-02-03", 7))
    alias = canon(birth_name=SECRET_NAME[:-1] + "X", first_names="Odile", sex="F", birth_date="1941-02-03")
    inputs = [LinkInput("p", person), LinkInput("q", alias), *background(60)]
    opts = LinkageOptions(parameters=DEFAULT_PARAMETERS, model_version="test")
    def seal(target: str, canonical: Any) -> bytes:  # the caller's sealer (here a digest: it opens nothing)
        return hashlib.sha256(f"{target}|{canonical.birth_name if canonical else ''}".encode()).digest()

    with SparkLinker(spark, pseudonymiser, options=opts, settings=key_settings) as linker:
        run = linker.link(inputs)
        plans = [frame._jdf.queryExecution().toString()
                 for frame in (run.assignments, run.superseded, run.made, run.variants)]
        result = run.result()
        changes = run.write_changes(str(pdp_var / "changes"), seal)  # under pdp_var: scanned below
    assert result.pseudonyms["p"] == result.pseudonyms["q"]
    target = result.pseudonyms["p"]
    owners = {r["target"]: r["box"] for r in spark.read.parquet(str(pdp_var / "changes" / "owners")).collect()}
    assert owners[target] in {seal(target, person), seal(target, alias)}, "sealed where it was computed"
    mapping = spark.read.parquet(str(pdp_var / "changes" / "mapping")).collect()
    assert changes.relinked == len(mapping) and {r["record_key"] for r in mapping} >= {"p", "q"}
    for plan in plans:
        assert SECRET_NAME not in plan and "ODILE" not in plan
        assert "1941-02-03" not in plan
    leaks, read = [], 0
    for root in [pdp_var, *spark_dirs(spark)]:
        found, n = _files_containing(root, SECRET_NAME.encode())
        leaks += found
        read += n
    assert read > 0 and leaks == []


def test_executors_opening_another_key_store_stop_the_linkage(spark, pseudonymiser, tmp_path: Path) -> None:
    """Settings naming another key store than the pseudonymiser's would give other pseudonyms,
    silently: the executors compare the driver's key check value and stop the job."""
    from pdp.pseudonym.executor_keys import key_check
    from pdp.pseudonym.linkage_spark import SparkLinker

    key_file = tmp_path / "other.key"
    key_file.write_text(base64.b64encode(os.urandom(32)).decode("ascii"))
    key_file.chmod(0o600)
    other = Settings(_env_file=None, key_store=tmp_path / "keys", master_key_file=key_file)
    KeyStore.from_settings(other).init()
    assert key_check(Pseudonymiser(KeyStore.from_settings(other))) != key_check(pseudonymiser)
    opts = LinkageOptions(parameters=DEFAULT_PARAMETERS, model_version="test")
    with pytest.raises(Exception, match="pseudonym key is not the job's"), \
            SparkLinker(spark, pseudonymiser, options=opts, settings=other) as linker:
        linker.link(background(20)).result()


def test_the_file_scan_finds_a_name_written_in_clear(tmp_path: Path) -> None:
    """The scan above can fail: a file holding the name is found."""
    (tmp_path / "spill").mkdir()
    (tmp_path / "spill" / "block").write_bytes(b"\x00" + SECRET_NAME.encode() + b"\x00")
    assert _files_containing(tmp_path, SECRET_NAME.encode()) == (["spill/block"], 1)


def test_spark_linkage_refuses_a_session_without_io_encryption(pseudonymiser) -> None:
    from pdp.pseudonym.linkage_spark import SparkLinker

    class Conf:
        def get(self, key: str, default: str) -> str:
            return "false"

    class Context:
        def getConf(self) -> Conf:
            return Conf()

    class Session:
        sparkContext = Context()

    with pytest.raises(RuntimeError, match=r"io\.encryption"):
        SparkLinker(Session(), pseudonymiser)  # type: ignore[arg-type]


_SHUFFLE_PROBE = """
import sys
from pathlib import Path
from pyspark.sql import SparkSession

encrypted, local_dir, name = sys.argv[1] == "true", sys.argv[2], sys.argv[3]
spark = (SparkSession.builder.master("local[1]").config("spark.ui.enabled", "false")
         .config("spark.local.dir", local_dir).config("spark.io.encryption.enabled", str(encrypted).lower())
         .config("spark.shuffle.compress", "false")  # compression encodes, it does not protect: off to see
         .getOrCreate())
rows = spark.sparkContext.parallelize([(i, name + str(i)) for i in range(2000)])
spark.createDataFrame(rows, "i int, n string").repartition(3, "n").agg({"n": "max"}).collect()  # n shuffled
found = [p.name for p in Path(local_dir).rglob("*.data") if name.encode() in p.read_bytes()]
shuffles = [p.name for p in Path(local_dir).rglob("*.data")]
print(len(shuffles), len(found))
spark.stop()
"""


@pytest.mark.slow
@pytest.mark.parametrize(("encrypted", "leaks"), [(False, True), (True, False)])
def test_shuffle_files_hold_the_name_in_clear_unless_io_encryption_is_on(
    tmp_path: Path, encrypted: bool, leaks: bool
) -> None:
    """Why the scan above means something: without ``spark.io.encryption.enabled`` a shuffle file
    holds the name the scan looks for (compression off: it is an encoding anyone can reverse,
    which would hide the bytes from this scan but not from a reader); with it, it does not."""
    import subprocess
    import sys

    script = tmp_path / "probe.py"
    script.write_text(_SHUFFLE_PROBE, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(script), str(encrypted).lower(), str(tmp_path / "local"), SECRET_NAME],
        capture_output=True, text=True, timeout=300, check=True, env={**os.environ, "PYSPARK_PYTHON": sys.executable},
    ).stdout.split()
    shuffles, found = int(out[-2]), int(out[-1])
    assert shuffles > 0
    assert (found > 0) is leaks
