"""The files of a run folder: ``config.json``, ``metrics.jsonl``, ``summary.json``, ``checkpoints/``, ``plots/``,
and the lock its one writer holds."""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import time
from pathlib import Path

from jaxvae.errors import UserError, refuse_file_on_path
from jaxvae.train_step import METRIC_NAMES

try:
    import fcntl  # POSIX (Linux, macOS): on Windows a run folder is not locked
except ImportError:
    fcntl = None

CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CHECKPOINTS = "checkpoints"
PLOTS = "plots"
ENSEMBLE = "ensemble.json"  # marks an ensemble's folder: its members and the lists they came from
MEMBERS = "members"  # the members' run folders, inside an ensemble's
LOCK = ".jaxvae.lock"  # flock-ed by the process that writes the run; says who, for the refusal of a second writer


def new_run_dir(root: Path = Path("runs")) -> Path:
    """A folder name under ``root`` that does not exist yet, from the current time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, n = root / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def check_writable(path: Path, flag: str, folder: bool) -> None:
    """Refuse, in one line, an output path that cannot be written: ``path`` is the folder to fill (``folder``) or
    the file to write. Probes by creating what is missing and a scratch file, then removes all it created, so
    nothing is left behind either way (``/proc``, read-only file systems and paths below a regular file fail
    here, before any data is loaded or anything compiled)."""
    target = path if folder else path.parent
    refuse_file_on_path(path, flag, folder)
    created = [p for p in (target, *target.parents) if not p.exists()]
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / f".jaxvae-write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UserError(f"{flag} {path} cannot be written ({exc.strerror or exc}); choose another {flag}") from None
    finally:
        for p in created:  # innermost first
            try:
                p.rmdir()
            except OSError:
                pass


def _locked(handle, shared: bool = False) -> bool:
    """Whether this process got the lock on ``handle``: a writer's, or ``shared``, a look that other looks (every
    process of a run looks at once) do not block."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(handle, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _in_use(out: Path, holder: str) -> UserError:
    return UserError(
        f"--out {out} is in use by {holder.strip() or 'another process'}; wait for it to finish or choose another "
        "--out (nothing was changed)"
    )


def refuse_held(out: Path) -> None:
    """Refuse, without writing anything, a run folder whose lock another process holds."""
    if (out / LOCK).is_file():
        with (out / LOCK).open(errors="replace") as handle:  # its words are for a message: any bytes will do
            if not _locked(handle, shared=True):
                raise _in_use(out, handle.read())


@contextlib.contextmanager
def hold(out: Path):
    """Hold the run folder ``out`` as its one writer: an advisory ``flock`` on ``OUT/.jaxvae.lock``, which the OS
    releases when the process ends however it ends, so a crash leaves no stale lock. A second writer is refused in
    one line naming the holder; readers (``evaluate``, ``sample``, ``export``) take no lock. A folder it made
    that holds nothing else at the end (a run refused before writing) is removed."""
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with (out / LOCK).open("a+", errors="replace") as handle:
            if not _locked(handle):
                handle.seek(0)
                raise _in_use(out, handle.read())
            handle.truncate(0)
            handle.write(f"jaxvae train (pid {os.getpid()} on host {socket.gethostname()}, since {time.ctime()})\n")
            handle.flush()
            yield
    finally:
        if created and [p.name for p in out.iterdir()] == [LOCK]:
            (out / LOCK).unlink()
            out.rmdir()


def write_atomically(path: Path, data: str | bytes) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a file; a write that fails (a full
    disk) leaves the file as it was and no temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, value) -> None:
    write_atomically(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def read_json(path: Path, what: str, fields: dict[str, type] | None = None) -> dict:
    """A JSON object whose ``fields`` (name -> type) are there with their types; a file missing, unreadable or
    damaged is refused in one line ending in ``what``."""
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path.parent} has no {path.name}: not a jaxvae run folder ({what})") from None
    except (OSError, ValueError) as exc:
        raise UserError(f"{path} is damaged ({exc}); {what}") from None
    fields = fields or {}
    if not isinstance(record, dict) or not all(isinstance(record.get(k), kind) for k, kind in fields.items()):
        shape = ", ".join(f"{k} ({kind.__name__})" for k, kind in fields.items()) or "named fields"
        raise UserError(f"{path} is damaged (not a JSON object with {shape}); {what}")
    return record


def read_ensemble(folder: Path, what: str) -> dict:
    """An ensemble's ``ensemble.json``: its ``members`` (folder names inside ``members/``) and the ``lists`` (flag ->
    values) they came from; a file damaged, or naming a folder outside ``members/``, is refused in one line."""
    path = folder / ENSEMBLE
    record = read_json(path, what, {"members": list, "lists": dict})
    names_ok = all(isinstance(n, str) and n not in ("", ".", "..") and Path(n).name == n for n in record["members"])
    lists_ok = all(isinstance(v, list) and v for v in record["lists"].values())
    if not (record["members"] and names_ok and record["lists"] and lists_ok):
        raise UserError(f"{path} is damaged (members must be folder names, lists lists of values, none empty); {what}")
    return record


def terms(metrics) -> dict:
    """A record's loss, reconstruction and KL from metrics ``(3,)``; null where not finite (JSON has no NaN)."""
    return {name: float(v) if math.isfinite(v) else None for name, v in zip(METRIC_NAMES, metrics)}


def _before(record: dict, step: int, epoch: int) -> bool:
    """Whether a record was written up to the checkpoint of ``step`` and ``epoch``."""
    return record["epoch"] <= epoch if record.get("split") == "test" else record["step"] <= step


class MetricsLog:
    """``metrics.jsonl``: one line per training step and one per test evaluation, appended as they come.

    ``enabled=False`` (every process of a multi-process run but the first) drops what is appended.
    """

    def __init__(self, path: Path, enabled: bool = True):
        self.path = path
        self.enabled = enabled

    def records(self) -> list[tuple[str, dict]]:
        """Each line with its record, but a last line torn by a kill mid-write; any other line that is not a record
        (the file damaged by something else) is refused in one line."""
        lines = self.path.read_text(errors="replace").splitlines() if self.path.exists() else []
        kept = []
        for n, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and all(type(record.get(k)) is int for k in ("step", "epoch")):
                kept.append((line, record))
            elif n < len(lines):
                raise UserError(
                    f"{self.path} is damaged at line {n} ({line[:40]!r} is not a step or test record); repair or "
                    "delete that line, or start a new --out"
                )
        return kept

    def truncate_after(self, step: int, epoch: int) -> int:
        """Drop the lines a resumed run will write again (past the checkpoint's step and epoch); at step 0 (a run
        started afresh) every line, whatever it holds. Returns how many of the steps up to ``step`` it still logs."""
        if not self.path.exists():
            return 0
        kept = [] if step == 0 else [(line, r) for line, r in self.records() if _before(r, step, epoch)]
        write_atomically(self.path, "".join(line + "\n" for line, _ in kept))
        return len({r["step"] for _, r in kept if "split" not in r})

    def append(self, records: list[dict]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        return [record for _, record in self.records()]
