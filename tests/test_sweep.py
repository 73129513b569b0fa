"""``diag sweep`` and ``diag.diagnose_path`` over a fleet of real training runs (tests/sweep_fleet.py)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

import diag
from diag.cli import main
from diag.sweep import RunOutcome, discover_runs, separating_settings, sweep
from diag.sweep.cache import CACHE_FILE
from diag.sweep.runner import SweepStats
from tests.sweep_fleet import EXPECTED, make_fleet

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    """Each test gets its own cache folder, never the user's."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("DIAG_CACHE_DIR", str(folder))
    monkeypatch.delenv("DIAG_RULES_PATH", raising=False)
    return folder


def _sweep_cli(capsys, *args) -> tuple[int, str, str]:
    code = main(["sweep", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def _under(root: Path, report) -> dict[str, RunOutcome]:
    return {os.path.relpath(row.path, root): row for row in report.runs}


# ---------------------------------------------------------------------- diagnose_path


def test_diagnose_path_is_public_and_reads_a_trace_file_and_a_shard_folder(fleet):
    assert diag.diagnose_path(fleet / "diverged/lr5-seed0.jsonl").top.id == "lr_too_high"
    shards = diag.diagnose_path(fleet / "multi")
    assert shards.top is None and shards.trace.steps == 60


def test_diagnose_path_hands_the_loaded_trace_to_on_load(fleet):
    seen = []
    diagnosis = diag.diagnose_path(fleet / "nan/run.jsonl", on_load=seen.append)
    assert len(seen) == 1 and seen[0].num_steps == diagnosis.trace.steps == 60


# ---------------------------------------------------------------------- discovery


def test_discovery_finds_trace_files_and_shard_folders_but_not_configs_or_hidden_folders(fleet):
    found = {os.path.relpath(run.path, fleet): run.kind for run in discover_runs(fleet)}
    assert set(found) == set(EXPECTED)
    assert found["multi"] == "shards"
    assert found["healthy/seed0.jsonl"] == "trace"


def test_discovery_of_a_missing_root_is_a_clear_input_error(tmp_path):
    from diag.errors import DiagInputError

    with pytest.raises(DiagInputError, match="no such file or folder"):
        discover_runs(tmp_path / "nowhere")


# ---------------------------------------------------------------------- rows, groups, separation


def test_every_run_is_a_row_with_the_status_and_top_cause_diagnose_path_gives(fleet):
    rows = _under(fleet, sweep(fleet, jobs=2, use_cache=False))
    assert set(rows) == set(EXPECTED)
    for path, (status, cause) in EXPECTED.items():
        assert (rows[path].status, rows[path].top_cause) == (status, cause), path
        if status != "unreadable":
            top = diag.diagnose_path(fleet / path).top
            assert rows[path].certainty == (round(top.certainty, 4) if top else None)
            assert rows[path].steps == 60
    assert rows["healthy/seed0.jsonl"].hyperparameters["lr"] == 0.1
    assert rows["healthy/seed0.jsonl"].hyperparameters["optimizer"] == "sgd"


def test_a_run_that_cannot_be_read_is_a_row_with_its_reason_not_a_crash(fleet):
    rows = _under(fleet, sweep(fleet, jobs=1, use_cache=False))
    broken = rows["broken/killed.jsonl"]
    assert broken.status == "unreadable"
    assert "incomplete record" in broken.reason and broken.reason.startswith("line 1:")


def test_groups_count_the_runs_sharing_a_top_cause(fleet):
    report = sweep(fleet, jobs=2, use_cache=False)
    groups = {g.cause: g for g in report.groups}
    assert set(groups) == {"lr_too_high", "nan_in_input_data"}
    assert groups["lr_too_high"].count == 2 and groups["lr_too_high"].likely == 2
    assert [os.path.relpath(p, fleet) for p in groups["lr_too_high"].runs] == [
        "diverged/lr5-seed0.jsonl", "diverged/lr5-seed1.jsonl"]
    assert report.groups[0].cause == "lr_too_high"  # the largest group first


def test_the_learning_rate_separates_diverged_runs_from_healthy_ones(fleet):
    report = sweep(fleet, jobs=2, use_cache=False)
    lr = next(s for s in report.separating if s.name == "lr")
    assert lr.failed_counts == {"0.1": 1, "5": 2} and lr.healthy_counts == {"0.1": 3}
    assert lr.score == pytest.approx(2 / 3, abs=1e-4)
    assert report.separating[0].name == "lr"
    # the same optimizer everywhere separates nothing
    assert "optimizer" not in {s.name for s in report.separating}


def _row(status, **settings) -> RunOutcome:
    return RunOutcome(path=f"r{len(settings)}", status=status, hyperparameters=settings)


def test_a_random_search_is_compared_by_distribution_and_run_names_are_not_settings():
    failed = [_row("likely", lr=lr, name=f"run-{i}") for i, lr in enumerate((0.5, 0.8, 0.9, 1.2))]
    healthy = [_row("healthy", lr=lr, name=f"ok-{i}") for i, lr in enumerate((0.001, 0.002, 0.01, 0.02, 0.6))]
    separating = separating_settings(failed + healthy + [_row("possible", lr=3.0, name="maybe")])
    assert [s.name for s in separating] == ["lr"]
    assert separating[0].measure == "distribution"
    assert separating[0].score == pytest.approx(0.8)  # every failed lr is above 4 of the 5 healthy ones
    assert separating[0].failed == "0.5 to 1.2, median 0.85 (4 runs)"


def test_nothing_separates_without_both_failed_and_healthy_runs():
    assert separating_settings([_row("likely", lr=1.0), _row("likely", lr=2.0)]) == []


# ---------------------------------------------------------------------- command line


def test_json_output_has_the_documented_shape(fleet, capsys):
    code, out, err = _sweep_cli(capsys, fleet, "--format", "json", "--jobs", "2")
    report = json.loads(out)
    assert code == 1
    assert {"runs", "groups", "separating"} <= set(report)
    assert len(report["runs"]) == len(EXPECTED)
    for run in report["runs"]:
        assert {"path", "status", "top_cause", "certainty", "steps", "final_loss", "reason"} <= set(run)
    nan_run = next(r for r in report["runs"] if r["path"].endswith("nan/run.jsonl"))
    assert nan_run["final_loss"] == "NaN"  # a non-finite loss is a value, written as JSON can hold it
    assert err == ""  # quiet in JSON mode and when not a terminal


def test_text_output_has_a_row_per_run_the_reason_of_unreadable_runs_groups_and_separating(fleet, capsys):
    code, out, _ = _sweep_cli(capsys, fleet, "--jobs", "2")
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"diag sweep: 7 runs under {fleet}: 3 with a likely cause, 3 healthy, 1 could not be read"
    assert any(line.startswith(str(fleet / "multi")) and " healthy " in line for line in lines)
    assert f"  {fleet / 'broken/killed.jsonl'}: line 1: the trace holds only an incomplete record" in out
    assert "Runs by top cause:" in lines and any(line.startswith("  lr_too_high ") for line in lines)
    assert any(line.startswith("  lr ") and "failed: 5 (2), 0.1 (1)  |  healthy: 0.1 (3)" in line for line in lines)


def test_markdown_and_csv_hold_the_same_rows(fleet, capsys):
    _, markdown, _ = _sweep_cli(capsys, fleet, "--format", "markdown")
    assert f"| `{fleet / 'diverged/lr5-seed1.jsonl'}` | likely cause | lr_too_high | 0.92 | 60 |" in markdown
    _, text, _ = _sweep_cli(capsys, fleet, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(EXPECTED)
    by_path = {os.path.relpath(r["path"], fleet): r for r in rows}
    assert by_path["diverged/lr5-seed0.jsonl"]["top_cause"] == "lr_too_high"
    assert by_path["diverged/lr5-seed0.jsonl"]["hp.lr"] == "5.0"
    assert by_path["broken/killed.jsonl"]["status"] == "unreadable"


def test_exit_code_is_0_when_no_run_has_a_likely_cause(fleet, tmp_path, capsys):
    shutil.copytree(fleet / "healthy", tmp_path / "ok")
    code, out, _ = _sweep_cli(capsys, tmp_path / "ok")
    assert code == 0 and "2 healthy" in out.splitlines()[0]


def test_exit_code_is_2_when_root_holds_no_run_or_does_not_exist(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty/notes.txt").write_text("no runs here")
    code, out, err = _sweep_cli(capsys, tmp_path / "empty")
    assert code == 2 and out == "" and "no runs found" in err
    code, _, err = _sweep_cli(capsys, tmp_path / "missing")
    assert code == 2 and "no such file or folder" in err and "Traceback" not in err


def test_the_examples_folder_sweeps_as_the_readme_shows(capsys):
    code, out, _ = _sweep_cli(capsys, EXAMPLES)
    assert code == 1
    assert any(line.startswith(str(EXAMPLES / "lr_too_high.jsonl")) and "lr_too_high" in line
               for line in out.splitlines())


# ---------------------------------------------------------------------- cache


def test_a_second_sweep_comes_from_the_cache_and_equals_the_first(fleet, private_cache):
    first_stats, second_stats = SweepStats(), SweepStats()
    first = sweep(fleet, jobs=2, stats=first_stats)
    second = sweep(fleet, jobs=2, stats=second_stats)
    assert (first_stats.diagnosed, first_stats.cached) == (7, 0)
    assert (second_stats.diagnosed, second_stats.cached) == (0, 7)
    assert second.to_json() == first.to_json()
    assert (private_cache / CACHE_FILE).is_file()


def test_a_changed_run_is_diagnosed_again_and_a_touched_one_is_not(fleet, tmp_path):
    root = tmp_path / "fleet"
    shutil.copytree(fleet, root)
    sweep(root, jobs=1)
    touched = root / "healthy/seed0.jsonl"
    os.utime(touched, (1, 1))  # same bytes, new time: hashed again, still a hit
    shutil.copy(root / "diverged/lr5-seed0.jsonl", root / "healthy/seed1.jsonl")  # new bytes
    stats = SweepStats()
    report = sweep(root, jobs=1, stats=stats)
    assert (stats.diagnosed, stats.cached) == (1, 6)
    assert _under(root, report)["healthy/seed1.jsonl"].top_cause == "lr_too_high"


def test_no_cache_diagnoses_everything_and_writes_nothing(fleet, private_cache):
    stats = SweepStats()
    sweep(fleet, jobs=1, use_cache=False, stats=stats)
    assert stats.diagnosed == 7 and not private_cache.exists()


def test_other_rules_are_another_cache_key(fleet, tmp_path):
    sweep(fleet, jobs=1)
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "extra.yaml").write_text("apiVersion: diag/v1\ncauses: []\nrules: []\n")
    stats = SweepStats()
    sweep(fleet, jobs=1, rule_dirs=[str(rules)], stats=stats)
    assert stats.diagnosed == 7


def test_a_corrupt_cache_is_set_aside_rebuilt_and_the_sweep_still_right(fleet, private_cache):
    expected = sweep(fleet, jobs=1, use_cache=False).to_json()
    private_cache.mkdir(exist_ok=True)  # the knowledge base's compiled form may already live there
    (private_cache / CACHE_FILE).write_bytes(b"this is not a database" * 100)
    stats = SweepStats()
    assert sweep(fleet, jobs=1, stats=stats).to_json() == expected
    assert "set aside" in stats.cache_warnings[0]
    assert (private_cache / "sweep.corrupt").is_file()
    again = SweepStats()
    assert sweep(fleet, jobs=1, stats=again).to_json() == expected and again.cached == 7


def test_a_cache_folder_that_cannot_be_created_warns_once_and_the_sweep_goes_on(fleet, tmp_path, monkeypatch,
                                                                                   capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("DIAG_CACHE_DIR", str(blocker / "cache"))
    code, out, err = _sweep_cli(capsys, fleet, "--jobs", "1")
    assert code == 1 and "3 with a likely cause" in out
    assert err.count("warning: cannot use the cache") == 1


# ---------------------------------------------------------------------- progress


def test_a_progress_bar_shows_on_a_terminal_and_not_in_json_mode(fleet, tmp_path):
    import pty
    import subprocess
    import sys

    def stderr_on_a_terminal(*args) -> str:
        leader, follower = pty.openpty()
        env = {**os.environ, "COLUMNS": "100", "TERM": "xterm"}
        proc = subprocess.run([sys.executable, "-m", "diag", "sweep", str(fleet), "--no-cache", *args],
                              stdout=subprocess.PIPE, stderr=follower, env=env, timeout=300)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal is closed: all was read
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        assert proc.returncode == 1
        return b"".join(chunks).decode(errors="replace")

    shown = stderr_on_a_terminal("--jobs", "1")
    assert "diagnosing" in shown and "7 runs: 7 diagnosed, 0 from the cache" in shown
    assert stderr_on_a_terminal("--format", "json") == ""


def test_the_readme_sweep_example_prints_what_it_shows(capsys):
    import re

    readme = (EXAMPLES.parent / "README.md").read_text()
    block = re.search(r"```text\n\$ diag sweep examples\n(.*?)```", readme, re.S).group(1)
    old_cwd = os.getcwd()
    os.chdir(EXAMPLES.parent)
    try:
        code, out, _ = _sweep_cli(capsys, "examples", "--no-cache")
    finally:
        os.chdir(old_cwd)
    assert code == 1
    printed = out.splitlines()
    compared = 0
    for line in block.splitlines():
        shown = line.split("...")[0].rstrip() if "..." in line else line
        if shown.strip():
            assert any(p.startswith(shown) for p in printed) if "..." in line else shown in printed, line
            compared += 1
    assert compared >= 5, "the README's sweep block shows no output to compare"


def test_a_cache_another_sweep_holds_locked_is_read_and_not_set_aside(fleet, private_cache):
    import sqlite3

    sweep(fleet, jobs=1)  # fills the cache
    changed = fleet.parent / "changed-fleet"
    shutil.copytree(fleet, changed)
    holder = sqlite3.connect(private_cache / CACHE_FILE, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another sweep is writing: reads work, writes wait and give up
    try:
        stats = SweepStats()
        report = sweep(changed, jobs=1, stats=stats)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (stats.cached, stats.diagnosed) == (7, 0)  # the same bytes under another folder: all hits
    assert len(report.runs) == 7 and (private_cache / CACHE_FILE).is_file()
    assert not (private_cache / "sweep.corrupt").exists()
    assert ["locked" in warning for warning in stats.cache_warnings] == [True]


def test_a_broken_rule_folder_stops_the_sweep_with_exit_2_before_any_run(fleet, tmp_path, capsys):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.yaml").write_text("apiVersion: diag/v1\nrules:\n  - id: broken\n    when: [\n")
    code, out, err = _sweep_cli(capsys, fleet, "--rules", rules, "--jobs", "1")
    assert code == 2 and out == ""
    assert "the knowledge base has errors" in err and "bad.yaml" in err and "Traceback" not in err


_SWEEP_AND_COUNT = ("import json, sys; from diag.sweep import SweepStats, sweep; stats = SweepStats(); "
                    "report = sweep(sys.argv[1], jobs=1, stats=stats); print(json.dumps({'cached': stats.cached, "
                    "'diagnosed': stats.diagnosed, 'warnings': stats.cache_warnings, 'report': report.to_json()}))")


def _sweep_with_a_read_only_cache(root: Path, cache: Path) -> dict:
    """A sweep of ``root`` in a child process that cannot write ``cache``: a mode of 0555 stops a normal
    user; root writes through any mode, so for root the folder is bind-mounted read-only in a private
    mount namespace (``unshare -m``: the mount exists for that child only)."""
    import subprocess
    import sys

    command = [sys.executable, "-c", _SWEEP_AND_COUNT, str(root)]
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("as root a read-only cache needs a read-only mount, and unshare is not installed")
        remount = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
        command = ["unshare", "-m", "sh", "-c", remount, str(cache), *command]
    else:
        for path in (cache, *cache.iterdir()):
            path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "DIAG_CACHE_DIR": str(cache), "PYTHONPATH": str(EXAMPLES.parent)})
    finally:
        for path in (cache, *cache.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
    if done.returncode != 0 and done.stderr.startswith("unshare:"):
        pytest.skip(f"as root a read-only cache needs a private read-only mount: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_read_only_cache_folder_is_read_and_never_breaks_the_sweep(fleet, private_cache, tmp_path):
    sweep(fleet, jobs=1)  # fills the cache
    before = (private_cache / CACHE_FILE).read_bytes()
    changed = tmp_path / "changed-fleet"
    shutil.copytree(fleet, changed)
    from tests.numpy_training import train_softmax_regression

    train_softmax_regression(changed / "healthy/seed1.jsonl", steps=60, lr=5.0, seed=1)  # now it diverges
    result = _sweep_with_a_read_only_cache(changed, private_cache)
    # Six runs kept their bytes (hits, though under another folder); the changed one is diagnosed
    # and could not be saved: one warning, and the same table as a sweep without any cache.
    assert (result["cached"], result["diagnosed"]) == (6, 1)
    assert len(result["warnings"]) == 1 and "read-only" in result["warnings"][0], result["warnings"]
    assert result["report"] == sweep(changed, jobs=1, use_cache=False).to_json()
    rows = _under(changed, sweep(changed, jobs=1, use_cache=False))
    assert rows["healthy/seed1.jsonl"].top_cause == "lr_too_high"
    assert (private_cache / CACHE_FILE).read_bytes() == before  # nothing was written


# ---------------------------------------------------------------------- foreign logs in a fleet


@pytest.fixture(scope="module")
def mixed_fleet(tmp_path_factory) -> Path:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    pytest.importorskip("lightning", reason="the lightning extra is not installed")
    pytest.importorskip("transformers", reason="the huggingface extra is not installed")
    from tests.sweep_fleet import make_mixed_fleet

    return make_mixed_fleet(tmp_path_factory.mktemp("mixed"))


def test_a_sweep_reads_real_tensorboard_lightning_and_hf_logs_beside_our_traces(mixed_fleet, capsys):
    from tests.sweep_fleet import FOREIGN_EXPECTED

    report = sweep(mixed_fleet, jobs=2)
    rows = _under(mixed_fleet, report)
    assert set(rows) == set(EXPECTED) | set(FOREIGN_EXPECTED)
    for path, (status, causes) in FOREIGN_EXPECTED.items():
        assert rows[path].status == status and rows[path].top_cause in causes, (path, rows[path])
    for path, (status, cause) in EXPECTED.items():  # our traces read as in a fleet of traces alone
        assert (rows[path].status, rows[path].top_cause) == (status, cause), path
    # The second sweep reads every row, foreign ones included, from the cache.
    stats = SweepStats()
    assert sweep(mixed_fleet, jobs=2, stats=stats).to_json() == report.to_json()
    assert (stats.cached, stats.diagnosed) == (len(rows), 0)
    code, out, _ = _sweep_cli(capsys, mixed_fleet, "--format", "csv")
    assert code == 1 and "lightning_logs/version_0/metrics.csv" in out and "tensorboard/healthy" in out
