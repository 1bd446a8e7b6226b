"""Training in several processes with PyTorch DDP: who this process is among them.

`torchrun --nproc-per-node N -m latentzip train ...` (or `latentzip train --procs N`)
starts N copies of the same run; each learns on its own share of every global batch and
DDP averages their gradients, so N processes take the steps one process would take with
the same global batch. Rank 0 alone prints, checkpoints and writes the model. gloo is
the backend on CPU, nccl on CUDA GPUs (one per process, by LOCAL_RANK).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from ..errors import LatentzipError

T = TypeVar("T")

@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0  # rank on this host, which picks the GPU
    device: str = "cpu"  # where collectives put their tensors (nccl's must be on the GPU)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def share(self, items: list[T]) -> list[T]:
        """This rank's part of a global batch (parts differ by one item at most)."""
        return items[self.rank * len(items) // self.world:(self.rank + 1) * len(items) // self.world]

    def agree(self, value: float) -> float:
        """Rank 0's `value` on every rank: decisions by the clock must be the same everywhere."""
        if self.world == 1:
            return value
        box = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(box, src=0)
        return float(box.item())

    def wait(self) -> None:
        if self.world > 1:
            dist.barrier()


def join(device: torch.device) -> Ranks:
    """This process's place in a torchrun job (set up once), or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        try:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        except (RuntimeError, ValueError) as exc:
            raise LatentzipError(f"cannot join the other training processes: {exc}") from None
    return Ranks(dist.get_rank(), dist.get_world_size(), local, f"cuda:{local}" if device.type == "cuda" else "cpu")


def leave() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


GRACE_SECONDS = 10.0  # how long the others may take to stop after one process failed


def launch(procs: int, command: list[str]) -> tuple[int, list[str]]:
    """Run `command` in `procs` processes that join one DDP run on this host, as
    `torchrun --standalone` would. Returns the exit status and what the other processes
    said that rank 0 could not: rank 0's output goes to this stderr as it comes, the
    others' is kept aside, so that an error all of them meet is said once. When one
    process fails, the rest (waiting for it inside a collective, where no signal reaches
    them) are stopped after GRACE_SECONDS; a stop signal stops all of them."""
    if procs < 1:
        raise LatentzipError("--procs must be at least 1")
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    threads = str(max(1, (os.cpu_count() or 1) // procs))
    logs = [tempfile.TemporaryFile() for _ in range(procs)]
    children: list[subprocess.Popen] = []
    try:
        for rank in range(procs):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(procs),
                   "LOCAL_WORLD_SIZE": str(procs), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                   "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}
            children.append(subprocess.Popen(command, env=env, stderr=None if rank == 0 else logs[rank]))
        codes, stopped = _wait(children)
    except BaseException:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait()
        raise
    finally:
        said = [_last_line(log) for log in logs]
        for log in logs:
            log.close()
    failed = [k for k, code in enumerate(codes) if code and k not in stopped]
    notes = [] if 0 in failed else [  # rank 0 said its own error, which the others met too
        f"{said[k].removeprefix('latentzip: ') if said[k] else _ended(codes[k])} (training process {k})"
        for k in failed]
    first = codes[failed[0]] if failed else 0
    return (128 - first if first < 0 else first), list(dict.fromkeys(notes))


def _wait(children: list[subprocess.Popen]) -> tuple[list[int], set[int]]:
    """Every child's exit status, and which ones were stopped because another failed."""
    stopped: set[int] = set()
    failed_at: float | None = None
    while True:
        codes = [child.poll() for child in children]
        if all(code is not None for code in codes):
            return codes, stopped  # type: ignore[return-value]
        if failed_at is None and any(code for code in codes):
            failed_at = time.monotonic()
        if failed_at is not None and time.monotonic() - failed_at > GRACE_SECONDS:
            for k, child in enumerate(children):
                if child.poll() is None:
                    child.kill()
                    stopped.add(k)
        time.sleep(0.1)


def _ended(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"failed (exit status {code})"


def _last_line(log: "tempfile._TemporaryFileWrapper[bytes]") -> str:
    log.seek(0)
    lines = [line for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""
