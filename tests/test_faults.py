"""What real runs meet, each made for real: a second ``jaxvae train`` on a folder in use (two processes), SIGTERM and
kill -9 mid-run (real signals), Ctrl-C and SIGHUP as a checkpoint is written, a full disk while a checkpoint, a
picture or a state dict is written (a real tmpfs), a checkpoint cut short on disk, a step larger than memory, SIGTERM
while ``jaxvae evaluate`` waits for one long computation, Ctrl-C and SIGTERM while the command loads. Each ends in
one line, keeps what the run had, and the run continues with ``--resume`` bit for bit. A reader that closed the pipe
ends the command silently. The forms in which Orbax's writer reports a failure, its threads' complaints after one, a
GPU's out-of-memory error, and a reader's listing raced by the writer, through stand-ins."""

import errno
import gc
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
import pytest

import jaxvae.__main__ as entry
from conftest import SMALL_RUN, records
from jaxvae.errors import STOP_SIGNALS
from jaxvae.run import checkpoint, commands, plots
from jaxvae.run.cli import main
from jaxvae.run.files import LOCK
from jaxvae.run.training import claim_out_dir, reported, resume_hint, unfinished_run
from jaxvae.train_step import TrainState


def continues(out, epoch: int) -> str:
    """What a stopped run's line ends with: its last complete checkpoint and the command that continues it."""
    where = f"the last complete checkpoint (epoch {epoch}) is in {out / 'checkpoints'}"
    return f"{where}: continue with the same command and --resume"


def one_line(err: str) -> str:
    """The last line on stderr, which must say it all: no traceback before it."""
    assert "Traceback" not in err, err[-3000:]
    return err.strip().splitlines()[-1]


def start_training(out, *flags) -> subprocess.Popen:
    """``jaxvae train --out OUT SMALL_RUN FLAGS`` in a process of its own, once it has saved a checkpoint after the
    ones ``out`` already had."""
    before = checkpoint.latest_epoch(out / "checkpoints") or 0
    command = [sys.executable, "-m", "jaxvae", "train", "--out", str(out), *SMALL_RUN, *flags]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while (checkpoint.latest_epoch(out / "checkpoints") or 0) <= before:
        assert process.poll() is None and time.monotonic() < deadline, "no new checkpoint"
        time.sleep(0.1)
    return process


def test_a_second_writer_sigterm_and_kill_9(small_run, tmp_path, capsys):
    """A second ``train`` on a folder in use is refused and touches nothing, while ``evaluate`` reads it; SIGTERM
    stops the run in one line, status 143; kill -9 leaves no stale lock; each time ``--resume`` continues, no step
    logged twice, the first two epochs those of small_run, which was never stopped, bit for bit."""
    out = tmp_path / "run"
    first = start_training(out, "--epochs", "1000")
    config = (out / "config.json").read_bytes()
    for flags in ([], ["--resume"]):  # a second writer, fresh or resuming
        assert main(["train", "--out", str(out), "--epochs", "3", *SMALL_RUN, *flags]) == 2
        line = one_line(capsys.readouterr().err)
        assert f"--out {out} is in use by jaxvae train (pid {first.pid} on host " in line
    assert (out / "config.json").read_bytes() == config and first.poll() is None
    assert main(["evaluate", "--run", str(out), "--iw-samples", "1"]) == 0  # a reader takes no lock
    assert first.poll() is None
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    done = checkpoint.latest_epoch(out / "checkpoints")
    assert first.returncode == 143 and one_line(err) == f"jaxvae train: stopped by SIGTERM; {continues(out, done)}"
    second = start_training(out, "--epochs", "1000", "--resume")
    time.sleep(0.3)  # into the next epoch
    second.kill()
    second.communicate()
    done = checkpoint.latest_epoch(out / "checkpoints")
    assert main(["train", "--out", str(out), "--resume", "--epochs", str(done + 1), *SMALL_RUN]) == 0
    assert [r["step"] for r in records(out)] == list(range(1, 8 * (done + 1) + 1))
    ours, never_stopped = ((f / "metrics.jsonl").read_text().splitlines() for f in (out, small_run))
    assert ours[: len(never_stopped)] == never_stopped


def test_a_lock_alone_does_not_hold_a_folder(tmp_path):
    """A run killed after taking the lock and before writing leaves the lock file alone, its flock released by the
    OS: the folder is free for a new run."""
    (tmp_path / LOCK).write_text("jaxvae train (pid 1 on host gone, since then)\n")
    with claim_out_dir(tmp_path, resume=False):
        assert "pid 1 " not in (tmp_path / LOCK).read_text()  # now this process's


@pytest.mark.parametrize("races", [checkpoint.LISTING_ATTEMPTS - 1, checkpoint.LISTING_ATTEMPTS])
def test_a_reader_lists_again_when_a_writer_removed_a_checkpoint_under_it(small_run, monkeypatch, races):
    """Orbax's listing raises FileNotFoundError when a running ``train`` removes an old checkpoint under it: a reader
    (``evaluate``) lists again, ``LISTING_ATTEMPTS`` times in all; then the error is its own."""
    listing, raced = ocp.CheckpointManager, iter(range(races))

    def racing(*args, **kwargs):
        if next(raced, None) is not None:
            raise FileNotFoundError("a checkpoint removed while listed")
        return listing(*args, **kwargs)

    monkeypatch.setattr(ocp, "CheckpointManager", racing)
    with checkpoint.Checkpoints(small_run / "checkpoints") as saved:
        if races == checkpoint.LISTING_ATTEMPTS:
            pytest.raises(FileNotFoundError, getattr, saved, "manager")
        else:
            assert saved.manager.latest_step() == 2


@pytest.fixture
def handlers():
    """Sets signal handlers (a dict: signal -> handler) for the test; each signal's own is back after it."""
    previous = {}
    yield lambda given: previous.update({s: signal.signal(s, h) for s, h in given.items() if s not in previous})
    for s, handler in previous.items():
        signal.signal(s, handler)


@pytest.mark.parametrize("stop", [(signal.SIGINT, 130, "interrupted"), (signal.SIGHUP, 129, "stopped by SIGHUP")])
def test_a_stop_signal_during_a_save_waits_for_the_checkpoint(small_run, tmp_path, monkeypatch, capsys, handlers, stop):
    """Ctrl-C, or a closed terminal's SIGHUP, as epoch 1's checkpoint starts to be written: the checkpoint is written
    whole first, then the run stops in one line, and ``--resume`` continues to small_run's records, bit for bit."""
    signum, status, how = stop
    # as in a terminal's foreground: a suite started in the background (&, nohup) inherits them ignored, and jaxvae
    # leaves an ignored signal ignored
    handlers({signal.SIGINT: signal.default_int_handler, signal.SIGHUP: signal.SIG_DFL})
    save = ocp.CheckpointManager.save

    def signalled(manager, *args, **kwargs):
        signal.raise_signal(signum)
        return save(manager, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", signalled)
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "2", *SMALL_RUN]) == status
    assert one_line(capsys.readouterr().err) == f"jaxvae train: {how}; {continues(out, 1)}"
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["1"]
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--epochs", "2", "--resume", *SMALL_RUN]) == 0
    assert (out / "metrics.jsonl").read_bytes() == (small_run / "metrics.jsonl").read_bytes()


def test_a_stop_after_an_ignored_signal_during_a_save_is_not_lost(handlers):
    """Under nohup, SIGHUP is ignored: a SIGTERM after one, both while a checkpoint is written, still stops the run
    once the checkpoint is whole."""
    handlers({signal.SIGHUP: signal.SIG_IGN, signal.SIGTERM: signal.default_int_handler})  # SIGTERM as Ctrl-C
    with pytest.raises(KeyboardInterrupt), checkpoint._signals_held():  # as around a save
        signal.raise_signal(signal.SIGHUP)
        signal.raise_signal(signal.SIGTERM)
        written = True  # the save ended: no signal acted inside the block
    assert written


def test_a_stop_signal_ignored_when_the_command_starts_stays_ignored(monkeypatch, handlers):
    """``nohup jaxvae train`` starts with SIGHUP ignored: the run goes on when its terminal closes. SIGTERM is the run's
    clean stop while the command runs; afterwards both are as they were."""
    given = {signal.SIGHUP: signal.SIG_IGN, signal.SIGTERM: signal.SIG_DFL}
    while_running = {}

    def dispatch(args):
        while_running.update({s: signal.getsignal(s) for s in given})
        return 0

    monkeypatch.setattr("jaxvae.run.cli._dispatch", dispatch)
    handlers(given)
    assert main(["train"]) == 0
    after = {s: signal.getsignal(s) for s in given}
    assert while_running[signal.SIGHUP] == signal.SIG_IGN and while_running[signal.SIGTERM] not in given.values()
    assert after == given


LOADING = """import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal's foreground
signum, out = int(sys.argv[1]), sys.argv[2]


class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name == "jax":
            os.kill(os.getpid(), signum)
        return None


sys.meta_path.insert(0, SignalOnImport())
sys.argv = ["jaxvae", "train", "--out", out]
from jaxvae.__main__ import main

sys.exit(main())
"""  # the jaxvae command, sent a signal (argv[1]) as it starts to import JAX


@pytest.mark.parametrize("stop", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "stopped by SIGTERM")])
def test_a_stop_signal_while_the_command_loads_ends_it_in_one_line(tmp_path, monkeypatch, stop):
    """Ctrl-C or SIGTERM while ``jaxvae`` imports JAX: one line, 128 + the signal, no run folder; without the entry's
    handlers SIGTERM kills it without a word, and Ctrl-C is a traceback or, swallowed by a callback, ignored. Once
    the CLI has loaded, the handlers it found are back."""
    signum, how = stop
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", LOADING, str(int(signum)), str(out)], capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (128 + signum, f"jaxvae: {how} while loading, before doing anything\n")
    assert not out.exists()
    found = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    monkeypatch.setattr("jaxvae.run.cli.main", lambda: {s: signal.getsignal(s) for s in STOP_SIGNALS})
    assert entry.main() == found


WATCHED = """import sys
from jaxvae.run import cli, commands

estimate = commands.estimate_log_px


def marked(log_px, *args, **kwargs):
    def dispatched(*inputs):
        result = log_px(*inputs)  # traced, compiled and dispatched: what is left is to wait for it
        print("dispatched", file=sys.stderr, flush=True)
        return result

    return estimate(dispatched, *args, **kwargs)


commands.estimate_log_px = marked
sys.exit(cli.main())
"""  # the jaxvae command, saying on stderr when the IWAE estimate's first dispatch is under way


def test_a_stop_signal_ends_an_evaluation_blocked_in_a_long_computation(small_run, monkeypatch, capsys):
    """``jaxvae evaluate`` with 10^9 draws per image (hours in one dispatch): SIGTERM ends it in one line, status 143,
    within a second, not hours. From jax 0.10 on, Python runs no handler while it waits for the result: the watch ends
    the process. jax 0.8's wait runs the handler itself: the clean stop, after which the process ends at once instead of
    waiting at exit for the computation. A stop the main thread handles itself ends the watch: this process, which
    makes one, lives on past the watch's grace."""
    command = [sys.executable, "-c", WATCHED, "evaluate", "--run", str(small_run), "--iw-samples", str(10**9)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "dispatched" not in process.stderr.readline():
            assert process.poll() is None, process.stderr.read()[-3000:]
        time.sleep(1)  # into the wait for the dispatch's result, a few bytecodes on
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 143 and out == ""
    assert one_line(err).startswith("jaxvae evaluate: stopped by SIGTERM")  # + " while blocked in a computation"
    estimate = commands.estimate_log_px

    def stopped(*args, **kwargs):
        signal.raise_signal(signal.SIGTERM)  # handled at once: the main thread is not blocked
        return estimate(*args, **kwargs)

    monkeypatch.setattr(commands, "estimate_log_px", stopped)
    assert main(["evaluate", "--run", str(small_run), "--iw-samples", "1"]) == 143
    assert one_line(capsys.readouterr().err) == "jaxvae evaluate: stopped by SIGTERM"
    time.sleep(2)  # past the watch's grace (1 s): had it not ended, it would end this process


def test_a_reader_that_left_ends_the_command_silently(small_run, tmp_path):
    """``jaxvae sample ... | head`` whose reader closed the pipe before the command wrote: no error line and no
    traceback, status 141, as SIGPIPE ends a C tool; the picture is the one a read command writes."""
    read, write = os.pipe()
    os.close(read)
    command = [sys.executable, "-m", "jaxvae", "sample", "--run", str(small_run), "--out", str(tmp_path / "s.png")]
    try:
        result = subprocess.run(command, stdout=write, stderr=subprocess.PIPE, text=True)
    finally:
        os.close(write)
    assert result.returncode == 141, result.stderr[-3000:]
    assert "jaxvae" not in result.stderr and "Traceback" not in result.stderr  # (JAX may warn of its platforms there)
    assert main(["sample", "--run", str(small_run), "--out", str(tmp_path / "read.png")]) == 0
    assert (tmp_path / "s.png").read_bytes() == (tmp_path / "read.png").read_bytes()


@pytest.fixture
def small_disk(tmp_path):
    """A 3.6 MB tmpfs: room for one checkpoint of the small run (2.4 MB), not two."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3600k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"mounting a tmpfs needs root (CI runs as root): {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_stops_the_run_in_one_line_and_resume_continues(small_run, small_disk, capsys):
    out = small_disk / "run"
    assert main(["train", "--out", str(out), "--epochs", "2", *SMALL_RUN]) == 1
    expected = f"jaxvae train: error: {out / 'checkpoints' / '2'}: No space left on device; {continues(out, 1)}"
    assert one_line(capsys.readouterr().err) == expected
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["1"]  # no temporary folder left behind
    with open(small_disk / "filler", "wb", buffering=0) as filler:  # the last bytes of the disk taken
        with pytest.raises(OSError):
            while True:
                filler.write(bytes(65536))
    commands = [["sample", "--out", str(small_disk / "s.png")]]
    commands += [["export", "--to", str(small_disk / "w.pt")]] if importlib.util.find_spec("torch") else []
    for command in commands:  # a picture or a state dict that does not fit: one line, and no file left
        assert main([*command, "--run", str(small_run)]) == 1
        assert one_line(capsys.readouterr().err).endswith(": No space left on device"), command
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "run"]
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space is back
    assert main(["train", "--out", str(out), "--epochs", "2", "--resume", *SMALL_RUN]) == 0
    assert (out / "metrics.jsonl").read_bytes() == (small_run / "metrics.jsonl").read_bytes()


def test_a_report_a_full_disk_stopped_is_written_by_resume(small_run, tmp_path, monkeypatch, capsys):
    """A disk that fills after the last epoch, while the plots are drawn (each evaluated epoch's test loss among
    them): one line, every checkpoint and record kept, and the same command with --resume writes the report, training
    nothing; then it has nothing left to do. The epoch's log line gives its test record."""
    out = tmp_path / "run"
    shutil.copytree(small_run, out)  # its report is of 2 epochs: not the one of 3
    assert not reported(tmp_path, 2) and reported(out, 2) and not reported(out, 3)  # none; the copy's, of 2 epochs
    command, drawn = ["train", "--out", str(out), "--resume", "--epochs", "3", *SMALL_RUN], []

    def full(values, steps_per_epoch, path, tests):
        drawn.append(tests)
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(plots, "training_loss", full)
    assert main(command) == 1
    picture, err = out / "plots" / "training_loss.png", capsys.readouterr().err
    assert one_line(err) == f"jaxvae train: error: {picture}: No space left on device; {continues(out, 3)}"
    monkeypatch.undo()
    logged = (out / "metrics.jsonl").read_bytes()
    last = {k: records(out, "test")[-1][k] for k in ("loss", "reconstruction", "kl")}  # epoch 3's, written before
    assert drawn == [{r["epoch"]: r["loss"] for r in records(out, "test")}] and len(drawn[0]) == 3
    assert "epoch 3/3: test loss {loss:.4f} (reconstruction {reconstruction:.4f}, KL {kl:.4f})\n".format(**last) in err
    assert main(command) == 0 and (out / "metrics.jsonl").read_bytes() == logged
    written = capsys.readouterr()
    assert written.out == f"done: {out} (test loss {last['loss']:.4f}); plots in {out / 'plots'}\n"
    assert "has trained its 3 epochs, but its report was never written: writing it" in written.err
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["epochs_completed"], summary["steps"], summary["final_test"]) == (3, 24, last)
    assert all((out / plot).is_file() for plot in summary["plots"])
    assert main(command) == 2 and "has trained 3 epochs already" in one_line(capsys.readouterr().err)


# Orbax reads a checkpoint's arrays in coroutines; a damaged one leaves some whose error Python can only report as
# unraisable at garbage collection (the jaxvae process exits first: its stderr is the one line).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_checkpoint_cut_short_is_named_with_the_command_that_continues(small_run, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--epochs", "2", *SMALL_RUN]) == 0  # shares small_run's compilation
    largest = max((p for p in (out / "checkpoints" / "2").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes()[: largest.stat().st_size // 2])
    aside = tmp_path / "run" / "damaged-checkpoint-2"
    for command in (["evaluate", "--run", str(out), "--iw-samples", "1"], ["train", "--out", str(out), "--resume",
                    "--epochs", "2", *SMALL_RUN]):  # fmt: skip
        assert main(command) == 2
        line = one_line(capsys.readouterr().err)
        assert f"checkpoint {out / 'checkpoints' / '2'} is damaged" in line
        assert f"to continue from epoch 1's, move it aside (mv {out / 'checkpoints' / '2'} {aside})" in line
    (out / "checkpoints" / "2").rename(aside)  # as the line says; nothing was deleted
    assert main(["train", "--out", str(out), "--resume", "--epochs", "2", *SMALL_RUN]) == 0
    assert (out / "metrics.jsonl").read_bytes() == (small_run / "metrics.jsonl").read_bytes()
    # The failed reads leave Orbax's coroutines behind, which raise as they are collected: collected here, not by
    # chance in a later test, where on Python 3.11 that can break an import under way (a KeyError in importlib)
    gc.collect()


def test_a_step_larger_than_memory_stops_in_one_line(tmp_path, monkeypatch, capsys):
    """XLA's out of memory (10^8 importance samples of each image: petabytes; RESOURCE_EXHAUSTED, or jax 0.8's
    INTERNAL: ... Out of memory) is one line, status 1, naming the flags that ask for less; the folder, which holds no
    checkpoint, takes the same command again. A GPU's form of the error (its buffer report after the first line) and
    jax 0.8's on a CPU, through stand-ins: the line keeps XLA's first line."""
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), *SMALL_RUN, "--objective", "iwae", "--iw-train-samples", "100000000"]) == 1
    line = one_line(capsys.readouterr().err)  # XLA's words and byte count between the parentheses
    assert line.startswith("jaxvae train: error: out of memory (") and "Out of memory allocating" in line
    assert line.endswith(
        f"); a smaller batch or --iw-train-samples needs less; no epoch had finished, so {out} holds no "
        "checkpoint: the same command starts it again"
    )
    assert unfinished_run(out)

    for first in ("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 6291456 bytes.",
                  "INTERNAL: Out of memory allocating 6291456 bytes."):  # fmt: skip

        def out_of_memory(*args, first=first):
            raise jax.errors.JaxRuntimeError(f"{first}\nBufferAssignment OOM Debugging.\nBufferAssignment stats: ...")

        monkeypatch.setattr(commands, "sample_run", out_of_memory)
        assert main(["sample", "--run", str(out), "--out", str(tmp_path / "s.png")]) == 1
        assert one_line(capsys.readouterr().err) == (
            f"jaxvae sample: error: out of memory ({first}); a smaller batch or --iw-train-samples needs less"
        )


@pytest.mark.parametrize("raised", [OSError(errno.ENOSPC, "No space left on device"), ValueError("No space left")])
def test_a_failed_write_names_the_checkpoint(tmp_path, monkeypatch, raised):
    """Orbax's writer may raise a bare OSError (no file name) or wrap one in another exception: the error names the
    checkpoint being written, whose temporary folder is gone."""
    state = TrainState({"w": jnp.zeros(3)}, (), jnp.int32(0))

    def fail(manager, epoch, args):
        (tmp_path / "1.orbax-checkpoint-tmp-0").mkdir()
        raise raised

    monkeypatch.setattr(ocp.CheckpointManager, "save", fail)
    with checkpoint.Checkpoints(tmp_path) as checkpoints, pytest.raises(OSError) as error:
        checkpoints.save(1, state, {"epoch": 1})
    assert (error.value.filename, error.value.strerror) == (str(tmp_path / "1"), "No space left on device")
    assert not list(tmp_path.iterdir())


def test_of_the_unraisable_exceptions_only_the_closed_loops_complaints_are_dropped(monkeypatch):
    """Orbax's writer threads, cut short by a failed write, call into their closed event loops: of the unraisable
    exceptions, those complaints alone are dropped; every other reaches the hook that was there before."""
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", record := seen.append)
    checkpoint._quiet_closed_loops(previous=record)
    raised = [RuntimeError("Event loop is closed"), RuntimeError("Event loop is open"), OSError("Event loop is closed")]
    for exc in raised:
        sys.unraisablehook(SimpleNamespace(exc_value=exc))
    assert [u.exc_value for u in seen] == raised[1:]


def test_the_resume_hint_reads_the_files_alone(small_run, monkeypatch):
    """After a process of a multi-process run is lost, an Orbax manager cannot be made (it syncs the processes):
    the last line's hint lists the finalised checkpoints from the files, a write under way (a temporary folder)
    not among them."""
    monkeypatch.setattr(ocp.CheckpointManager, "__init__", lambda *a, **k: pytest.fail("a manager was made"))
    (small_run / "checkpoints" / "3.orbax-checkpoint-tmp-0").mkdir()
    try:
        assert resume_hint(small_run) == continues(small_run, 2)
    finally:
        (small_run / "checkpoints" / "3.orbax-checkpoint-tmp-0").rmdir()


def test_the_resume_hint_of_a_folder_whose_checkpoints_are_a_file(tmp_path):
    """The hint is printed as a run stops, whatever its folder holds: it never raises (the commands refuse that
    folder, ``tests/test_refusals.py``)."""
    (tmp_path / "checkpoints").write_text("not a folder")
    assert (
        resume_hint(tmp_path)
        == f"no epoch had finished, so {tmp_path} holds no checkpoint: the same command starts it again"
    )
