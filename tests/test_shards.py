"""Shards of a multi-process run: each names its process; a duplicate or a missing one is reported.

Two real processes train with ``torch.distributed`` (gloo on the CPU, DistributedDataParallel, the
loop of PyTorch's DDP tutorial), each recording its shard into one folder.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap

import pytest

from diag.trace import load_trace

torch = pytest.importorskip("torch")

WORKER = textwrap.dedent('''
    import sys
    import torch, torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel as DDP
    from diag.adapters.torch import TorchRecorder
    from diag.trace import TraceWriter

    rank, world, rendezvous, folder = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = DDP(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(rank)
    with TorchRecorder(model, opt, TraceWriter.for_process(folder, rank), capture_crashes=False,
                       task="classification", num_classes=2) as rec:
        for step in range(3):
            x, y = torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            rec.record(loss, labels=y)
    # Both ranks reach the end before either tears gloo down: a rank that destroys the group while
    # the other is still connected can abort the other in gloo's threads on a loaded machine.
    dist.barrier()
    dist.destroy_process_group()
''')


@pytest.fixture(scope="module")
def shard_folder(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shards")
    script = tmp / "worker.py"
    script.write_text(WORKER)
    folder = tmp / "run"
    procs = [subprocess.Popen([sys.executable, str(script), str(rank), "2", str(tmp / "rendezvous"), str(folder)],
                              stderr=subprocess.PIPE, text=True) for rank in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    return folder


def _shard_messages(trace):
    return [p.message for p in trace.problems if p.field == "process_index"]


def test_each_shard_header_names_its_process_and_the_process_count(shard_folder):
    trace = load_trace(shard_folder)
    assert sorted((h.process_index, h.world_size) for h in trace.headers) == [(0, 2), (1, 2)]
    assert _shard_messages(trace) == []


def test_two_shards_claiming_the_same_process_are_reported_when_merged(shard_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(shard_folder, folder)
    shutil.copy(folder / "run.p0.jsonl", folder / "run.p0.retry.jsonl")  # a restarted process's shard
    (message,) = _shard_messages(load_trace(folder))
    assert message.startswith("process 0 is claimed by 2 shards (run.p0.jsonl, run.p0.retry.jsonl)")


def test_a_missing_shard_is_reported_when_merged(shard_folder, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(shard_folder, folder)
    (folder / "run.p1.jsonl").unlink()
    (message,) = _shard_messages(load_trace(folder))
    assert message.startswith("process 1 of 2 has no shard")
