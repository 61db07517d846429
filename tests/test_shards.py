"""Bench and classify split across processes (cxrg.bench.shards): the sharded results equal one process's.

In-process tests play every rank in this process: rank 0's barrier (the point where, launched, the others
wait for it to prepare the run folder) runs the other ranks to the end, then rank 0 scores its share,
finds their shards done and merges. The slow tests launch real processes with torchrun (gloo, CPU).

Compared: every per_sample.csv / scores.csv column except `seconds` (wall time of that process), and
summary.json whole (bootstrap intervals included). The fingerprint column is compared too: it depends on
the inputs only, not on the process.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cxrg_test_support import read_csv, run_cli

import cxrg.bench.runner
from cxrg.bench import shards
from cxrg.bench.datasets import read_dataset
from cxrg.bench.harness import FINISHED, PER_SAMPLE_FIELDS, run_benchmark
from cxrg.bench.shards import Ranks
from cxrg.config import load_config
from cxrg.errors import CxrgError
from cxrg.loading import load_models
from cxrg.runs import Interrupted, RunDir

ROOT = Path(__file__).resolve().parents[1]


def rows_of(path: Path, drop=("seconds",)) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in drop} for row in read_csv(path)]


def bench_args(ms_cxr, out: Path, models: str = "oracle,prior") -> list[str]:
    annotations, images = ms_cxr
    return ["--models", models, "--dataset", "ms-cxr", "--annotations", str(annotations), "--images",
            str(images), "--out", str(out), "--resamples", "300", "--no-report"]


def play_ranks(monkeypatch, world: int, call) -> None:
    """Run `call()` (a whole command) as `world` processes in this one: rank 0 first; at its barrier the
    other ranks run to their end (they find the folder rank 0 prepared); then rank 0 goes on and merges."""
    def rank(r: int) -> Ranks:
        if r == 0:
            return Ranks(0, world, 0, sync=lambda what: others())
        return Ranks(r, world, r, sync=lambda what: None)

    playing = [0]

    def others() -> None:
        for r in range(1, world):
            playing.append(r)
            try:
                assert call() == 0, f"rank {r} failed"
            finally:
                playing.pop()

    monkeypatch.setattr(Ranks, "from_environment", classmethod(lambda cls: rank(playing[-1])))
    assert call() == 0


def test_sharded_bench_equals_one_process(ms_cxr, tmp_path, monkeypatch):
    one = tmp_path / "one"
    assert run_cli("bench", *bench_args(ms_cxr, one)) == 0
    assert not (one / "shards").exists()
    expected_rows, expected_summary = rows_of(one / "per_sample.csv"), (one / "summary.json").read_text()
    for world in (2, 3):
        out = tmp_path / f"n{world}"
        play_ranks(monkeypatch, world, lambda out=out: run_cli("bench", *bench_args(ms_cxr, out)))
        assert rows_of(out / "per_sample.csv") == expected_rows  # same rows, same order
        assert (out / "summary.json").read_text() == expected_summary
        assert (out / "summary.csv").read_text() == (one / "summary.csv").read_text()
        assert not (out / "shards").exists()  # merged and removed
        assert sorted(p.relative_to(out) for p in (out / "heatmaps").rglob("*.npz")) == sorted(
            p.relative_to(one) for p in (one / "heatmaps").rglob("*.npz"))
        assert (out / f"log.rank1-of-{world}.txt").is_file()
        assert "merged the shards of" in (out / "log.txt").read_text()


def harness_inputs(ms_cxr):
    annotations, images = ms_cxr
    data = read_dataset("ms-cxr", annotations, images)
    cxrg.bench.runner.normalise_prompts(data.samples, False, lambda text: None)
    loaded, errors, _ = load_models(["oracle", "prior"], load_config(), None, "cpu", {})
    assert not errors
    return data, loaded


def run_rank(data, loaded, out: Path, rank: int, world: int, stop_after: int | None = None):
    """One process of a sharded run at the harness level (rank 0 also waits and merges)."""
    out.mkdir(parents=True, exist_ok=True)
    run = RunDir(out, "bench", {}) if rank == 0 else shards.RankRun(out, "bench", Ranks(rank, world))
    seen = []

    def progress(k: int) -> None:
        seen.append(k)
        if stop_after is not None and len(seen) >= stop_after:
            raise KeyboardInterrupt  # the process stops here (as on SIGTERM): its shard is written

    try:
        return run_benchmark(loaded, data, run, 300, 0, progress=progress,
                             ranks=Ranks(rank, world, rank, sync=lambda what: None))
    finally:
        run.close()


def test_a_killed_rank_fails_the_run_in_one_line_and_a_rerun_with_any_n_resumes(ms_cxr, tmp_path,
                                                                                 monkeypatch):
    data, loaded = harness_inputs(ms_cxr)
    one = tmp_path / "one"
    reference = run_rank(data, loaded, one, 0, 1)
    for rerun_world in (1, 2, 3):
        out = tmp_path / f"rerun{rerun_world}"
        # A two-process run: process 1 stops after one image; process 0 finishes its share, then waits
        # for process 1 until its heartbeat has been still for the stall time, and fails with one line.
        with pytest.raises(Interrupted, match="process 1 of 2: 1 of its 3 samples done; its shard is kept"):
            run_rank(data, loaded, out, 1, 2, stop_after=1)
        monkeypatch.setenv("CXRG_SHARD_STALL_SECONDS", "0.3")
        with pytest.raises(CxrgError) as failure:
            run_rank(data, loaded, out, 0, 2)
        monkeypatch.delenv("CXRG_SHARD_STALL_SECONDS")
        message = failure.value.one_line()
        assert "\n" not in message and message.startswith("process 1 of 2 stopped before finishing its shard")
        kept = {name: read_csv(out / "shards" / f"per_sample.rank{r}-of-2.csv")
                for r, name in ((0, "rank0"), (1, "rank1"))}
        # 7 images dealt round-robin: process 0 has d1 (2 samples), d3, d5, d7; process 1 d2, d4, d6
        assert len(kept["rank0"]) == 2 * 5 and len(kept["rank1"]) == 2 * 1
        assert not (out / "per_sample.csv").exists()
        # The rerun (any number of processes): rank 0 folds the shards into per_sample.csv, then only the
        # images left are dealt out; the rows of the killed run are kept as they were (same seconds).
        if rerun_world == 1:
            result = run_rank(data, loaded, out, 0, 1)
        else:
            shards.fold_in(out, "per_sample.csv", PER_SAMPLE_FIELDS, cxrg.bench.harness.read_per_sample)
            for r in range(rerun_world - 1, -1, -1):
                result = run_rank(data, loaded, out, r, rerun_world)
        assert not (out / "shards").exists()
        final = {(r["model"], r["sample_id"]): r for r in read_csv(out / "per_sample.csv")}
        finished = [row for row in kept["rank0"] + kept["rank1"] if row["status"] in FINISHED]
        assert len(finished) >= 8  # failed rows are retried; finished ones are kept as they were
        for row in finished:
            assert final[(row["model"], row["sample_id"])]["seconds"] == row["seconds"]
        got, want = rows_of(out / "per_sample.csv"), rows_of(one / "per_sample.csv")
        if rerun_world == 1:  # a resumed one-process run appends new rows after the old ones, as ever
            got, want = (sorted(r, key=lambda row: (row["model"], row["sample_id"])) for r in (got, want))
        assert got == want  # a sharded run writes the rows in a fresh one-process run's order
        assert json.dumps(result.summary, default=str) == json.dumps(reference.summary, default=str)


def test_one_process_folds_in_the_shards_of_a_killed_run_and_restart_drops_them(ms_cxr, tmp_path):
    data, loaded = harness_inputs(ms_cxr)
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        run_rank(data, loaded, out, 1, 2, stop_after=2)
    kept = read_csv(out / "shards" / "per_sample.rank1-of-2.csv")
    assert len(kept) == 4  # d2 and d4, two models
    run_rank(data, loaded, out, 0, 1)  # no launcher: the shard's rows are kept, the rest computed
    final = {(r["model"], r["sample_id"]): r for r in read_csv(out / "per_sample.csv")}
    assert len(final) == 16 and not (out / "shards").exists()
    assert all(final[(r["model"], r["sample_id"])]["seconds"] == r["seconds"] for r in kept
               if r["status"] in FINISHED)
    with pytest.raises(Interrupted):
        run_rank(data, loaded, out, 1, 2, stop_after=1)
    assert run_cli("bench", *bench_args(ms_cxr, out), "--restart") == 0  # drops the shards too
    assert not (out / "shards").exists() and len(read_csv(out / "per_sample.csv")) == 16


def test_rank_device_and_environment(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    single = Ranks.from_environment()
    assert (single.rank, single.world, single.sharded) == (0, 1, False)
    assert single.device("cuda") == "cuda" and single.device(None) == "cpu"
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "6")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(CxrgError, match="RANK=6 is outside WORLD_SIZE=4"):
        Ranks.from_environment()
    monkeypatch.setenv("RANK", "3")
    ranks = Ranks.from_environment()
    assert (ranks.rank, ranks.world, ranks.local_rank) == (3, 4, 2)
    assert ranks.device("cuda") == "cuda:2" and ranks.device("cuda:0") == "cuda:0"
    assert ranks.device("cpu") == "cpu"
    assert shards.mine(list(range(10)), ranks) == [3, 7]


def test_fold_in_is_idempotent_and_a_shard_replaces_the_file_row(tmp_path):
    fields = ("key", "value")

    def read(path: Path) -> dict:
        if not path.exists():
            return {}
        with path.open(newline="") as handle:
            return {row["key"]: row for row in csv.DictReader(handle)}

    from cxrg.runs import atomic_write_csv

    atomic_write_csv(tmp_path / "t.csv", fields, [{"key": "a", "value": "old"}, {"key": "b", "value": "1"}])
    atomic_write_csv(shards.shard_path(tmp_path, "t", 0, 2), fields, [{"key": "a", "value": "new"}])
    atomic_write_csv(shards.shard_path(tmp_path, "t", 2, 3), fields, [{"key": "c", "value": "2"}])
    keep = tmp_path / "copy"
    shutil.copytree(tmp_path / "shards", keep)
    assert shards.fold_in(tmp_path, "t.csv", fields, read) == 2
    first = (tmp_path / "t.csv").read_text()
    assert first == "key,value\na,new\nb,1\nc,2\n" and not (tmp_path / "shards").exists()
    shutil.copytree(keep, tmp_path / "shards")  # a crash between the write and the removal
    assert shards.fold_in(tmp_path, "t.csv", fields, read) == 2
    assert (tmp_path / "t.csv").read_text() == first


# ------------------------------------------------------------------------------------------- classify

from test_classify import tiny as tiny_ldm  # noqa: E402, F401 (the fixture `tiny`: the tiny LDM)


def classify_args(tiny: Path, tmp_path: Path, out: Path) -> list[str]:
    from test_classify import write_cohort

    cohort = tmp_path / "cohort"
    if not cohort.exists():
        cohort.mkdir()
        write_cohort(cohort)
    positives, images, negatives, healthy = (cohort / "ms_cxr_loc.csv", cohort / "images",
                                             cohort / "healthy.csv", cohort / "healthy")
    return ["--positives", str(positives), "--images", str(images), "--negatives", str(negatives),
            "--negatives-images", str(healthy), "--weights", str(tiny), "--out", str(out), "--draws", "2",
            "--resamples", "200", "--batch-size", "4", "--strategies", "none,location", "--limit", "3",
            "--negative-locations", "left,right"]


def test_sharded_classify_equals_one_process(tiny, tmp_path, monkeypatch):
    from test_classify import SMALL

    from cxrg.classify import heatmaps

    monkeypatch.setattr(heatmaps, "HEATMAP_SETTINGS", SMALL)
    one = tmp_path / "one"
    assert run_cli("classify", *classify_args(tiny, tmp_path, one)) == 0
    out = tmp_path / "two"
    play_ranks(monkeypatch, 2, lambda: run_cli("classify", *classify_args(tiny, tmp_path, out)))
    assert rows_of(out / "scores.csv") == rows_of(one / "scores.csv")
    assert read_csv(out / "scores.csv")
    assert (out / "summary.json").read_text() == (one / "summary.json").read_text()
    assert not (out / "shards").exists() and (out / "log.rank1-of-2.txt").is_file()


# ------------------------------------------------------------------------------- real processes (slow)

def torchrun(args: list[str], cwd: Path, world: int = 2) -> subprocess.CompletedProcess:
    runner = Path(sys.executable).with_name("torchrun")
    assert runner.is_file(), "torchrun comes with torch"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CXRG_SHARD_STALL_SECONDS": "60"}
    return subprocess.run([str(runner), "--standalone", "--nproc_per_node", str(world), "-m", "cxrg", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def one_process(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "cxrg", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_torchrun_bench_on_the_tiny_ldm_equals_one_process(tiny, ms_cxr, tmp_path):
    options = ["--weights", str(tiny), "-o", "ldm-frozen.inference_steps=10", "-o",
               "ldm-frozen.capture_steps=3,5"]
    args = lambda out: ["bench", *bench_args(ms_cxr, out, "ldm-frozen,oracle"), *options]  # noqa: E731
    single = one_process(args(tmp_path / "one"), tmp_path)
    assert single.returncode == 0, single.stderr
    launched = torchrun(args(tmp_path / "two"), tmp_path)
    assert launched.returncode == 0, launched.stderr
    assert rows_of(tmp_path / "two" / "per_sample.csv") == rows_of(tmp_path / "one" / "per_sample.csv")
    assert len(read_csv(tmp_path / "two" / "per_sample.csv")) == 16
    assert ((tmp_path / "two" / "summary.json").read_text()
            == (tmp_path / "one" / "summary.json").read_text())
    assert not (tmp_path / "two" / "shards").exists()
    assert launched.stderr.count("results in") == 1  # rank 0 reports once


@pytest.mark.slow
def test_torchrun_classify_equals_one_process(tiny, tmp_path):
    config = "[ldm]\ninference_steps = 10\ncapture_steps = [3, 4]\n"
    (tmp_path / "cxrg.toml").write_text(config)
    single = one_process(["classify", *classify_args(tiny, tmp_path, tmp_path / "one")], tmp_path)
    assert single.returncode == 0, single.stderr
    launched = torchrun(["classify", *classify_args(tiny, tmp_path, tmp_path / "two")], tmp_path)
    assert launched.returncode == 0, launched.stderr
    assert rows_of(tmp_path / "two" / "scores.csv") == rows_of(tmp_path / "one" / "scores.csv")
    assert ((tmp_path / "two" / "summary.json").read_text()
            == (tmp_path / "one" / "summary.json").read_text())
    assert not (tmp_path / "two" / "shards").exists()


@pytest.mark.slow
def test_torchrun_rank_that_dies_fails_the_run_keeping_the_finished_shards(ms_cxr, tmp_path):
    """Process 1 is killed (os._exit) after its first image: the run fails, process 0's shard is kept
    whole, and a rerun with one process completes from the shards and equals a straight run."""
    script = tmp_path / "dies.py"
    script.write_text(
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "import cxrg.bench.harness as harness\n"
        "original = harness.score_samples\n"
        "count = [0]\n"
        f"done = Path({str(tmp_path / 'run' / 'shards' / 'per_sample.rank0-of-2.done')!r})\n"
        "def score_samples(*args, **kwargs):\n"
        "    if os.environ.get('RANK') == '1':\n"
        "        count[0] += 1\n"
        "        if count[0] > 2:  # its second image: wait for process 0 to be done, then die\n"
        "            for _ in range(600):\n"
        "                if done.exists():\n"
        "                    break\n"
        "                time.sleep(0.1)\n"
        "            os._exit(3)\n"
        "    return original(*args, **kwargs)\n"
        "harness.score_samples = score_samples\n"
        "from cxrg.cli.main import run\n"
        "run(sys.argv[1:])\n")
    out = tmp_path / "run"
    runner = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CXRG_SHARD_STALL_SECONDS": "60"}
    launched = subprocess.run([str(runner), "--standalone", "--nproc_per_node", "2", str(script), "bench",
                               *bench_args(ms_cxr, out)], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
    assert launched.returncode != 0, launched.stderr
    assert not (out / "per_sample.csv").exists(), launched.stderr
    kept = read_csv(out / "shards" / "per_sample.rank0-of-2.csv")
    assert len(kept) == 10  # d1 (2 samples), d3, d5, d7: two models; done before process 1 died
    lines = [line for line in launched.stderr.splitlines() if line.startswith("cxrg:")]
    assert lines == [f"cxrg: stopped while waiting for the other processes (Ctrl-C, or the launcher ended "
                     f"the run because one of them failed): the finished shards are kept in "
                     f"{out / 'shards'}; rerun the same command (any number of processes) to resume"
                     ], launched.stderr
    assert one_process(["bench", *bench_args(ms_cxr, out)], tmp_path).returncode == 0
    assert one_process(["bench", *bench_args(ms_cxr, tmp_path / "straight")], tmp_path).returncode == 0
    key = lambda row: (row["model"], row["sample_id"])  # noqa: E731 (a resumed one-process run's order)
    assert (sorted(rows_of(out / "per_sample.csv"), key=key)
            == sorted(rows_of(tmp_path / "straight" / "per_sample.csv"), key=key))
    assert (out / "summary.json").read_text() == (tmp_path / "straight" / "summary.json").read_text()
