"""``diag sweep --scheduler`` on a real Dask ``LocalCluster`` of two worker processes."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest.importorskip("distributed", reason="the dask extra is not installed (pip install 'diag[dask]')")

from distributed import Client, LocalCluster  # noqa: E402

from diag.cli import main  # noqa: E402
from diag.sweep import sweep  # noqa: E402
from diag.sweep.report import render_text  # noqa: E402
from tests.sweep_fleet import make_fleet  # noqa: E402


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    return make_fleet(tmp_path_factory.mktemp("fleet"))


@pytest.fixture(scope="module")
def cluster():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIAG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DIAG_RULES_PATH", raising=False)


def _loaded_knowledge_bases() -> int:
    from diag.sweep.outcome import _KB_BY_DIRS

    return len(_KB_BY_DIRS)


def test_the_table_on_a_dask_cluster_is_the_local_table(fleet, cluster):
    on_dask = sweep(fleet, scheduler=cluster.scheduler_address, use_cache=False)
    local = sweep(fleet, jobs=2, use_cache=False)
    assert on_dask.to_json() == local.to_json()
    assert render_text(on_dask) == render_text(local)
    assert {row.status for row in on_dask.runs} == {"likely", "healthy", "unreadable"}
    with Client(cluster) as client:  # both worker processes diagnosed runs (each loaded the rules)
        assert sorted(client.run(_loaded_knowledge_bases).values()) == [1, 1]


def test_foreign_logs_beside_traces_give_the_local_table_on_a_dask_cluster(tmp_path, cluster):
    """Real TensorBoard, Lightning and Hugging Face logs are imported on the workers as locally."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    pytest.importorskip("lightning", reason="the lightning extra is not installed")
    pytest.importorskip("transformers", reason="the huggingface extra is not installed")
    from tests.sweep_fleet import FOREIGN_EXPECTED, make_mixed_fleet

    root = make_mixed_fleet(tmp_path / "mixed")
    on_dask = sweep(root, scheduler=cluster.scheduler_address, use_cache=False)
    local = sweep(root, jobs=1, use_cache=False)
    assert on_dask.to_json() == local.to_json() and render_text(on_dask) == render_text(local)
    foreign = {row.path: row for row in on_dask.runs if row.kind == "foreign"}
    assert sorted(foreign) == sorted(str(root / path) for path in FOREIGN_EXPECTED)
    for path, (status, causes) in FOREIGN_EXPECTED.items():
        assert foreign[str(root / path)].status == status and foreign[str(root / path)].top_cause in causes


def test_the_command_line_on_a_dask_cluster_prints_the_local_table(fleet, cluster, capsys):
    local_code = main(["sweep", str(fleet), "--no-cache", "--jobs", "2"])
    local_out = capsys.readouterr().out
    code = main(["sweep", str(fleet), "--no-cache", "--scheduler", cluster.scheduler_address])
    out = capsys.readouterr().out
    assert (code, out) == (local_code, local_out) and code == 1


def test_a_scheduler_that_cannot_be_reached_is_exit_2_with_the_address(fleet, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(["sweep", str(fleet), "--no-cache", "--scheduler", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err and "Traceback" not in err


def test_the_readme_local_cluster_example_runs_as_written():
    """The README's LocalCluster commands (its extra already installed), on a free port."""
    import re
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    readme = (repo / "README.md").read_text()
    block = re.search(r"\*\*On a Dask cluster\.\*\*.*?```bash\n(.*?)```", readme, re.S).group(1)
    lines = [line for line in block.splitlines() if "pip install" not in line]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = "\n".join(lines).replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    script = script.replace("8786", str(port))
    out = subprocess.run(["bash", "-c", script], cwd=repo, capture_output=True, text=True, timeout=300)
    local = subprocess.run([sys.executable, "-m", "diag", "sweep", "examples", "--no-cache"], cwd=repo,
                           capture_output=True, text=True, timeout=300)
    assert local.returncode == 1
    assert out.stdout == local.stdout, out.stderr[-3000:]
