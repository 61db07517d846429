"""Bench and classify on several processes: `torchrun --nproc_per_node N -m cxrg bench|classify ...` or
`accelerate launch -m cxrg bench|classify ...` (see docs/scale.md).

The work is split by image: the images that still have something to do (after the resume base) are dealt
round-robin to the processes (rank r takes the r-th, (r+N)-th, ...), so one image's inversion stays shared
by its prompts and models. Each process writes the rows it computes to its own shard,
RUN/shards/<stem>.rank{r}-of-{N}.csv (atomic rewrites, as the one-process file), touches
RUN/shards/<stem>.rank{r}-of-{N}.alive while it works and writes ....done when its shard is complete. Rank 0
(the only holder of the run-folder lock) waits for every .done, merges the shards into RUN/<stem>.csv, removes
the shards and writes the summary and reports once, from the merged rows: the statistics are those of a
one-process run because they are computed by the same code on the same rows.

Resume rule: before any process starts scoring, rank 0 folds every shard left in RUN/shards/ (by a killed
run with any number of processes) into RUN/<stem>.csv, a shard's row replacing the file's (a shard is
always newer than the file: the file changes only at those two merges, or in a one-process run, which
folds the shards in first). That file is then the resume base for every process, whatever N is now.

With one process (WORLD_SIZE unset or 1) none of this happens, except that shards left by a killed
multi-process run are folded in first, so their rows are kept.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cxrg.errors import CxrgError, UsageError
from cxrg.runs import atomic_write_csv, atomic_write_json

FOLDER = "shards"
STALL_SECONDS = 300.0
"""Rank 0 gives up on a process whose heartbeat file has not changed for this long (a process killed
without its launcher stopping the others); $CXRG_SHARD_STALL_SECONDS overrides it."""
START_TIMEOUT = timedelta(hours=6)
"""How long the processes wait for rank 0 to prepare the run folder (folding shards in, building
MS-CXR-loc): the timeout of the gloo group used for that one barrier."""
JOIN_SECONDS = 120.0
"""How long a process waits for all WORLD_SIZE processes to meet (the gloo rendezvous at the start, before
anything is prepared): a launcher starts them together, so only a WORLD_SIZE set by hand with no peer takes
this long, and then fails with one line; $CXRG_SHARD_START_SECONDS overrides it."""

LAUNCH_HINT = ("start the processes with torchrun or accelerate launch (docs/scale.md), or unset WORLD_SIZE "
               "and RANK to run one process")

Rows = dict[Any, dict[str, str]]


@dataclass
class Ranks:
    """This process's place among the processes of one run (one process when not launched)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    sync: Callable[[str], None] | None = field(default=None, repr=False)
    """How the processes wait for each other (default: a torch.distributed gloo barrier); tests that play
    every rank in one process pass a function that returns at once."""
    group: Any = field(default=None, repr=False)

    @classmethod
    def from_environment(cls) -> Ranks:
        """From the variables torchrun and accelerate launch set (WORLD_SIZE, RANK, LOCAL_RANK)."""
        world = _env_int("WORLD_SIZE", 1)
        if world <= 1:
            return cls()
        rank = _env_int("RANK", 0)
        local = _env_int("LOCAL_RANK", rank)
        if not 0 <= rank < world:
            raise UsageError(f"RANK={rank} is outside WORLD_SIZE={world}",
                             hint="start the processes with torchrun or accelerate launch")
        return cls(rank, world, local)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.world > 1

    def label(self) -> str:
        return f"process {self.rank} of {self.world}"

    def device(self, requested: str | None) -> str:
        """The device this process loads its models on: `auto` is cuda when there is one, else cpu; with
        several processes, `cuda` is this process's local GPU, cuda:LOCAL_RANK. An explicit cuda:K is kept."""
        requested = requested or "cpu"
        if requested == "auto":
            import torch

            requested = "cuda" if torch.cuda.is_available() else "cpu"
        if requested == "cuda" and self.sharded:
            return f"cuda:{self.local_rank}"
        return requested

    def connect(self) -> None:
        """Meet the other processes (a gloo group) within start_seconds(), or fail with one line: the
        WORLD_SIZE/RANK variables were set by hand, or the other processes never started. Call it first,
        before preparing anything. The wait runs on a helper thread, so Ctrl-C and SIGTERM stop it."""
        if not self.sharded or self.sync is not None or self.group is not None:
            return
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
        if missing:
            raise UsageError(f"WORLD_SIZE={self.world} and RANK={self.rank} are set without "
                             f"{' and '.join(missing)}: not a launched run", hint=LAUNCH_HINT)
        import torch.distributed as dist

        limit = start_seconds()
        address = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"

        def join() -> Any:
            if not dist.is_initialized():
                dist.init_process_group("gloo", timeout=timedelta(seconds=limit))
            return dist.new_group(backend="gloo", timeout=START_TIMEOUT)  # the long wait for rank 0's folder

        try:
            self.group = _interruptible(join, limit + 10.0, "the other processes to join")
        except TimeoutError as exc:
            raise CxrgError(f"{self.label()}: the other {self.world - 1} process(es) did not join within "
                            f"{limit:g} s at {address} ({exc})",
                            hint=LAUNCH_HINT + "; $CXRG_SHARD_START_SECONDS sets the wait") from None

    def barrier(self, what: str) -> None:
        """Wait until every process got here; one line if another process ended instead."""
        if not self.sharded:
            return
        if self.sync is not None:
            self.sync(what)
            return
        import torch.distributed as dist

        self.connect()
        try:
            _interruptible(lambda: dist.barrier(group=self.group), START_TIMEOUT.total_seconds() + 60, what)
        except TimeoutError as exc:  # a peer that died closes its socket: gloo raises here
            raise CxrgError(f"{self.label()}: another process of this run ended before {what} (its message "
                            f"is above; {exc})") from None

    def close(self) -> None:
        if self.sharded and self.sync is None:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                with contextlib.suppress(Exception):
                    dist.destroy_process_group()


def _interruptible(work: Callable[[], Any], seconds: float, what: str) -> Any:
    """`work()` on a helper thread while this thread waits in short steps, so that signal handlers (Ctrl-C,
    the launcher's SIGTERM) run during a wait inside torch.distributed; TimeoutError (naming the cause) when
    `work` raises or does not end within `seconds`. A stop raises cxrg.runs.Interrupted (exit 130)."""
    from cxrg.runs import Interrupted

    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 (reported to the waiting thread)
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="cxrg-distributed-wait", daemon=True)
    thread.start()
    deadline = time.monotonic() + seconds
    try:
        while thread.is_alive() and time.monotonic() < deadline:
            thread.join(0.2)
    except KeyboardInterrupt:
        raise Interrupted(f"stopped while waiting for {what}") from None
    if thread.is_alive():
        raise TimeoutError(f"no answer in {seconds:g} s")
    if "error" in outcome:
        exc = outcome["error"]
        raise TimeoutError(f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}")
    return outcome.get("value")


def start_seconds() -> float:
    from cxrg.config import env_number

    return env_number("CXRG_SHARD_START_SECONDS", JOIN_SECONDS)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"${name} is not a whole number: {text!r}") from None


def stall_seconds() -> float:
    from cxrg.config import env_number

    return env_number("CXRG_SHARD_STALL_SECONDS", STALL_SECONDS)


def folder(run_path: Path) -> Path:
    return Path(run_path) / FOLDER


def shard_path(run_path: Path, stem: str, rank: int, world: int, suffix: str = ".csv") -> Path:
    return folder(run_path) / f"{stem}.rank{rank}-of-{world}{suffix}"


def _shard_order(path: Path) -> tuple[int, int, str]:
    try:
        rank_part, world_part = path.stem.rsplit(".rank", 1)[1].split("-of-")
        return int(world_part), int(rank_part), path.name
    except (IndexError, ValueError):
        return (1 << 30, 0, path.name)


def shard_files(run_path: Path, stem: str) -> list[Path]:
    """Every shard of `stem` in the run folder (any number of processes), in (N, rank) order."""
    root = folder(run_path)
    if not root.is_dir():
        return []
    return sorted(root.glob(f"{stem}.rank*-of-*.csv"), key=_shard_order)


def remove_shards(run_path: Path, stem: str) -> None:
    """Remove `stem`'s shards and markers (and the shards folder when that leaves it empty)."""
    root = folder(run_path)
    if not root.is_dir():
        return
    for path in root.glob(f"{stem}.rank*-of-*"):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        root.rmdir()


def fold_in(run_path: Path, file_name: str, fields: Sequence[str], read: Callable[[Path], Rows],
            order: Callable[[Rows], list[dict[str, str]]] | None = None) -> int:
    """Merge the shards left in RUN/shards/ into RUN/<file_name> (a shard's row replaces the file's), write
    it atomically, then remove the shards; the number of shard rows folded in. Run it again after a crash
    in between and it gives the same file."""
    stem = Path(file_name).stem
    shards = shard_files(run_path, stem)
    if not shards:
        remove_shards(run_path, stem)  # stray markers
        return 0
    target = Path(run_path) / file_name
    rows = read(target)
    count = 0
    for shard in shards:
        found = read(shard)
        count += len(found)
        rows.update(found)
    atomic_write_csv(target, fields, order(rows) if order else rows.values())
    remove_shards(run_path, stem)
    return count


def mine(units: Sequence[Any], ranks: Ranks) -> list[Any]:
    """This process's share of `units` (images with work left), dealt round-robin."""
    return list(units[ranks.rank::ranks.world])


@contextlib.contextmanager
def heartbeat(run_path: Path, stem: str, ranks: Ranks, every: float | None = None) -> Iterator[None]:
    """Touch RUN/shards/<stem>.rank{r}-of-{N}.alive every few seconds while the block runs (a thread)."""
    path = shard_path(run_path, stem, ranks.rank, ranks.world, ".alive")
    path.parent.mkdir(parents=True, exist_ok=True)
    every = every if every is not None else min(5.0, stall_seconds() / 4)
    stop = threading.Event()

    def beat() -> None:
        while True:
            with contextlib.suppress(OSError):
                path.touch()
            if stop.wait(every):
                return

    thread = threading.Thread(target=beat, name=f"cxrg-heartbeat-{ranks.rank}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=every + 1)


def mark_done(run_path: Path, stem: str, ranks: Ranks, rows: int) -> None:
    """This process's shard is complete (written after its last flush)."""
    atomic_write_json(shard_path(run_path, stem, ranks.rank, ranks.world, ".done"),
                      {"rank": ranks.rank, "world": ranks.world, "rows": rows})


def wait_for_shards(run_path: Path, stem: str, ranks: Ranks, stall: float | None = None,
                    poll: float = 0.5, note: Callable[[str], None] | None = None) -> None:
    """Rank 0: return when every process has marked its shard done. A process whose heartbeat stops
    changing for `stall` seconds (default stall_seconds()) before it is done fails the run with one line;
    the finished shards stay where they are for the rerun."""
    stall = stall if stall is not None else stall_seconds()
    pending = set(range(ranks.world))
    seen: dict[int, float | None] = {}
    since: dict[int, float] = {r: time.monotonic() for r in pending}
    told = False
    while True:
        for r in sorted(pending):
            if shard_path(run_path, stem, r, ranks.world, ".done").is_file():
                pending.discard(r)
                continue
            try:
                mtime: float | None = shard_path(run_path, stem, r, ranks.world, ".alive").stat().st_mtime
            except OSError:
                mtime = None
            if mtime != seen.get(r):
                seen[r], since[r] = mtime, time.monotonic()
            elif time.monotonic() - since[r] > stall:
                raise CxrgError(
                    f"process {r} of {ranks.world} stopped before finishing its shard (no sign of life for "
                    f"{stall:g} s)", where=str(folder(run_path)),
                    hint="the finished shards are kept; rerun the same command (any number of processes) "
                         "to resume")
        if not pending:
            return
        if not told and note is not None:
            note(f"waiting for {len(pending)} other process(es) to finish their shards")
            told = True
        time.sleep(poll)


def wait_or_stop(run_path: Path, stem: str, ranks: Ranks, logger: Any) -> None:
    """wait_for_shards, with a stop (Ctrl-C, or the launcher's SIGTERM when another process failed) made
    one line that says the shards are kept."""
    from cxrg.runs import Interrupted

    try:
        wait_for_shards(run_path, stem, ranks, note=lambda text: logger.info("%s", text))
    except KeyboardInterrupt:
        logger.warning("stopped while waiting for the other processes")
        raise Interrupted(f"stopped while waiting for the other processes (Ctrl-C, or the launcher ended "
                          f"the run because one of them failed): the finished shards are kept in "
                          f"{folder(run_path)}; rerun the same command (any number of processes) to resume"
                          ) from None


def collect(run_path: Path, stem: str, ranks: Ranks, read: Callable[[Path], Rows]) -> Rows:
    """The rows of this run's N shards (rank 0, after wait_for_shards)."""
    rows: Rows = {}
    for r in range(ranks.world):
        rows.update(read(shard_path(run_path, stem, r, ranks.world)))
    return rows


def check_complete(expected: Sequence[Any], rows: Mapping[Any, Any], run_path: Path) -> None:
    """Counts add up: every row this run owes is in the merged rows."""
    missing = [key for key in expected if key not in rows]
    if missing:
        raise CxrgError(f"the merged shards lack {len(missing)} of {len(expected)} rows (first: "
                        f"{missing[0]})", where=str(folder(run_path)),
                        hint="rerun the same command to compute them")


def finish(run_path: Path, stem: str, ranks: Ranks, written: int, read: Callable[[Path], Rows],
           owed: Sequence[Any], logger: Any) -> Rows | None:
    """After this process's last flush: mark its shard done. Other ranks get None; rank 0 waits for every
    shard, checks that the merged rows hold every row the run owes, and returns them (the caller writes its
    file in its own order, then remove_shards)."""
    mark_done(run_path, stem, ranks, written)
    if not ranks.main:
        return None
    wait_or_stop(run_path, stem, ranks, logger)
    merged = collect(run_path, stem, ranks, read)
    check_complete(owed, merged, run_path)
    return merged


class RankRun:
    """What a process other than rank 0 sees of the run folder: its path and a log of its own,
    RUN/log.rank{r}-of-{N}.txt (rank 0 holds the folder's lock, config.json and log.txt)."""

    def __init__(self, path: Path, command: str, ranks: Ranks) -> None:
        import logging

        self.path = Path(path)
        self.command = command
        self.ranks = ranks
        self.resumed = True
        self.logger = logging.getLogger(f"cxrg.run.{self.path.resolve()}.rank{ranks.rank}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        if not self.logger.handlers:
            handler = logging.FileHandler(self.path / f"log.rank{ranks.rank}-of-{ranks.world}.txt",
                                          encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            self.logger.addHandler(handler)

    def file(self, name: str) -> Path:
        return self.path / name

    def close(self) -> None:
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)

    def release(self) -> None:
        pass
