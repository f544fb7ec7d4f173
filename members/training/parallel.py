"""Train several members at once: local processes (loky), a Dask cluster, Ray, or in-process.

Every member is one call of :func:`run_job`, a module-level function sent to a worker:
through joblib for ``loky`` (processes on this machine) and ``ray`` (when installed), as
one ``distributed`` future per member for ``dask`` (a cluster at ``scheduler``, or a
``LocalCluster`` started and closed here), in this process for ``sequential``. The parent
resolves and validates every spec first (a bad preset or field fails that member only),
gives a repeated preset distinct names (``small``, ``small-2``) and seeds (base seed +
index), keeps members already complete with the same spec and data, and trains the rest.
Each worker limits TensorFlow to its share of the cores before TensorFlow starts, trains
without progress bars, keeps its log in ``members/<name>/train.log`` and returns a
:class:`MemberRun`; an exception becomes a failed record, so one member failing never
loses the others. A worker that dies mid member leaves it incomplete (no ``metrics.json``):
Dask retries it on another worker, and running the same command again resumes it after
its last finished epoch while the complete members are kept.

Example:
    >>> outcome = train_members("work", ["small", "small", "wide"], jobs=2)  # doctest: +SKIP
    >>> [run.name for run in outcome.results]                                 # doctest: +SKIP
    ['small', 'small-2', 'wide']
"""

from __future__ import annotations

import os
import socket
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from members.infra import atomic
from members.infra.errors import UserError
from members.infra.lock import LockBusy
from members.model.spec import BACKENDS, MemberSpec, resolve_overrides, resolve_spec

LOG_NAME = "train.log"
WAIT_FOR_WORKERS = 60  # seconds an external Dask scheduler may take to show its first worker
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


@dataclass(frozen=True)
class PlannedMember:
    """One member to train: its resolved spec, or the error that stopped it before training."""

    name: str
    preset: str
    spec: MemberSpec | None
    error: str | None = None


@dataclass
class MemberRun:
    """What training one member gave: ``metrics`` (metrics.json) when done, ``error`` when failed."""

    name: str
    preset: str
    seed: int | None
    seconds: float
    metrics: dict | None = field(default=None, repr=False)
    error: str | None = None
    cpu_seconds: float | None = None
    host: str = ""
    threads: int | None = None
    kept: bool = False
    log: list[str] = field(default_factory=list, repr=False)
    log_file: bool = True  # its lines are in the member's train.log (not for a run refused by another's lock)
    fold: int | None = None  # the copy, for one fold of a k-fold member (members/training/folds.py)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> str:
        """``done``, ``kept`` (already complete with the same spec and data) or ``failed``."""
        return "failed" if self.error else "kept" if self.kept else "done"

    def score(self, split: str, metric: str = "qwk") -> float | None:
        """A metric of the finished member on ``val`` or ``test`` (None when absent)."""
        return ((self.metrics or {}).get(split) or {}).get(metric)


@dataclass
class TrainOutcome:
    """Every member's :class:`MemberRun`, in the order given, and the wall time of the whole run."""

    results: list[MemberRun]
    seconds: float
    backend: str
    jobs: int

    @property
    def failed(self) -> list[tuple[str, str]]:
        """``(name, "ExceptionType: message")`` of each member that did not finish."""
        return [(r.name, r.error) for r in self.results if not r.ok]


@dataclass(frozen=True)
class _Job:
    workdir: str
    name: str
    preset: str
    spec: MemberSpec
    threads: int | Mapping[str, int] | None  # None: leave TensorFlow's defaults (in-process runs)
    echo: bool  # print log lines on the worker's stderr (the parent's, for local workers)
    show_progress: bool | None
    force: bool = False  # replace a complete member trained with another spec
    fold: tuple[int, int] | None = None  # (copy, K): one fold of a k-fold member (members/training/folds.py)


# ----- planning (parent) ---------------------------------------------------------------------
def _error_text(exc: BaseException) -> str:
    """``"ExceptionType: first line of the message"``."""
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}".rstrip(": ")


def _holds_lock(folder: Path) -> bool:
    """Whether this process holds ``folder``'s member lock."""
    from members.infra.lock import MemberLock

    holder = MemberLock(folder)._holder()
    return holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()


def _release_dead_locks(folders: Iterable[Path], wait: float = 10.0) -> None:
    """Delete the locks of the member (or fold copy) ``folders`` whose holder, a worker on this host that was just
    ended, is gone (waiting up to ``wait`` seconds for it to exit); a lock held by a live process or another host is
    left alone."""
    from members.infra.lock import MemberLock

    deadline = time.monotonic() + wait
    for folder in folders:
        lock = MemberLock(folder)
        while lock.path.exists():
            holder = lock._remove_if_stale()  # None once deleted (or when nobody holds it)
            if holder is None or holder.get("host") != socket.gethostname() or time.monotonic() > deadline:
                break
            time.sleep(0.1)


def _job_folder(job: _Job) -> Path:
    """The folder whose lock ``job``'s worker holds: the member's, or its fold copy's."""
    from members.training.folds import fold_dir
    from members.training.trainer import member_dir

    return member_dir(job.workdir, job.name) if job.fold is None else fold_dir(job.workdir, job.name, job.fold[0])


def _lost(job: _Job, exc: BaseException, seconds: float = 0.0) -> MemberRun:
    """The record of a member whose worker died or whose pool broke (``seconds``: the run's time until then)."""
    return MemberRun(job.name, job.preset, job.spec.seed, seconds, error=(
        f"{_error_text(exc)} (the member is incomplete: run the same command again to resume it)"))


def _complete(workdir: Path, member: PlannedMember, fingerprint: str):
    """What ``members/<name>`` already holds (:class:`members.training.guard.ExistingMember`)."""
    from members.training.guard import existing_member

    return existing_member(workdir / "members" / member.name, member.spec, fingerprint)


def _default_names(presets: list[str]) -> list[str]:
    """``small``, ``small-2``, ``small-3``...: the preset's file stem, numbered from its second use."""
    stems = {Path(p).stem for p in presets}
    names: list[str] = []
    for preset in presets:
        stem = name = Path(preset).stem
        n = 1
        while name in names or (n > 1 and name in stems):
            n += 1
            name = f"{stem}-{n}"
        names.append(name)
    return names


def plan_members(presets: list[str], *, names: list[str] | None = None, overrides: Mapping[str, Any] | None = None,
                 sets: Iterable[str] = (), seed: int | None = None) -> list[PlannedMember]:
    """Resolve the spec of every member; a bad preset or field fails that member only.

    Args:
        presets: preset name or TOML file of each member; a preset may repeat.
        names: member names in the order of ``presets`` (default: the preset, then ``-2``, ``-3``...).
        overrides: spec fields for every member (``None`` values are ignored).
        sets: ``FIELD=VALUE`` strings for every member (see :func:`members.model.spec.resolve_overrides`).
        seed: base seed; member ``i`` gets ``seed + i`` (default base: the member's own spec seed).

    Raises:
        UserError: no preset, names that do not match the presets, malformed ``sets``, or a field given both
            in ``overrides`` and in ``sets``.
    """
    from members.training.trainer import member_dir

    presets = list(presets)
    if not presets:
        raise UserError("No member to train: pass at least one --preset (e.g. --preset small --preset wide).")
    if names:
        names = list(names)
        if len(names) != len(presets):
            raise UserError(f"Number of --name and --preset must be equal; got {len(names)} names, {len(presets)} presets. "
                            "Give one name per preset, or no --name for automatic names.")
        repeated = sorted(n for n, c in Counter(names).items() if c > 1)
        if repeated:
            raise UserError(f"Member names must be unique; {', '.join(map(repr, repeated))} appears more than once. Received: names={names}")
    if seed is not None:
        from members.infra.validate import check_seed

        check_seed(seed, "--seed")
        check_seed(seed + len(presets) - 1, "--seed + the number of members - 1")
    names = names or _default_names(presets)
    for name in names:
        member_dir(".", name)  # refuses names that are not plain folder names
    changes = resolve_overrides(overrides, sets)  # malformed or doubled changes fail the whole call
    planned = []
    for i, (preset, name) in enumerate(zip(presets, names)):
        try:
            spec = resolve_spec(preset, changes)
            spec = spec.replace(seed=(spec.seed if seed is None else seed) + i)
            from members.model.spec import check_trainable

            check_trainable(spec)
            planned.append(PlannedMember(name, Path(preset).stem, spec))
        except UserError as exc:  # the user's sentence, without a class name
            planned.append(PlannedMember(name, Path(preset).stem, None, str(exc)))
        except (TypeError, ValueError) as exc:
            planned.append(PlannedMember(name, Path(preset).stem, None, _error_text(exc)))
    if planned and all(p.spec is None for p in planned) and len({p.error for p in planned}) == 1:
        raise UserError(planned[0].error)  # the same mistake for every member (--set bogus=1): one sentence
    return planned


# ----- one member (worker) -------------------------------------------------------------------
def limit_threads(threads: int) -> int:
    """Give TensorFlow ``threads`` intra-op threads (inter-op 1 or 2); call before TensorFlow runs an op.

    Sets ``OMP_NUM_THREADS``, ``TF_NUM_INTRAOP_THREADS`` and friends first, so a process
    that has not imported TensorFlow yet starts with the limit. In a reused worker where
    TensorFlow is already running the limit can no longer change and stays as it was.

    Returns:
        The intra-op thread count TensorFlow now uses (0 means TensorFlow's default).
    """
    threads = max(1, int(threads))
    inter = min(2, threads)
    if "tensorflow" not in sys.modules:
        for var in _THREAD_VARS:
            os.environ[var] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = str(inter)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    except RuntimeError:  # TensorFlow already initialised in this (reused) worker
        pass
    return tf.config.threading.get_intra_op_parallelism_threads()


def _share(threads: int | Mapping[str, int], run: MemberRun) -> int:
    """This worker's thread count: an int, or its host's share from a ``{host: threads}`` map (in a Dask worker)."""
    if isinstance(threads, int):
        return threads
    from distributed import get_worker

    worker = get_worker()
    run.host += f", dask worker {worker.address}"
    return threads.get(urlparse(worker.address).hostname or "") or max(1, _cores() // max(1, worker.state.nthreads))


def _log_path(workdir: Path, run: MemberRun) -> Path:
    """Where a run's ``train.log`` is: its member's folder, or its fold's for one copy of a k-fold member."""
    from members.training.folds import fold_dir
    from members.training.trainer import member_dir

    return (member_dir(workdir, run.name) if run.fold is None else fold_dir(workdir, run.name, run.fold)) / LOG_NAME


def run_job(job: _Job) -> MemberRun:
    """Train one member in this process and return its record; never raises for a failed member."""
    from members.training.trainer import member_dir, train_member

    started, cpu_started = time.perf_counter(), time.process_time()
    if job.fold is not None:  # one copy of a k-fold member: its own folder, the same training
        import functools

        from members.training.folds import fold_dir, shown_name, train_fold

        train_member = functools.partial(train_fold, fold=job.fold[0], k=job.fold[1])  # noqa: F811
    log_path = (member_dir(job.workdir, job.name) if job.fold is None else fold_dir(job.workdir, job.name, job.fold[0])) / LOG_NAME
    lines: list[str] = []
    stamped: list[str] = []
    owned = {"previous": None}  # the log file's text when this run took the member's lock (None: not yet)

    def log(line: str, *, echo: bool = True, to_file: bool = False) -> None:
        """One line to stderr and, once this process holds the member's (or copy's) lock, to its train.log, with
        the lines held back before: a run refused by another's lock never writes into (and over) that one's log."""
        lines.append(line)
        stamped.append(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        if owned["previous"] is None and (to_file or _holds_lock(log_path.parent)):
            owned["previous"] = log_path.read_text(encoding="utf-8", errors="replace") if log_path.exists() else ""
        if owned["previous"] is not None:
            atomic.write_text(log_path, owned["previous"] + "".join(stamped))
        if job.echo and echo:
            print(line, file=sys.stderr, flush=True)

    run = MemberRun(job.name, job.preset, job.spec.seed, 0.0, host=f"{socket.gethostname()} pid {os.getpid()}", log=lines,
                    fold=None if job.fold is None else job.fold[0])
    try:
        if job.threads is not None:
            run.threads = limit_threads(_share(job.threads, run))
        who = job.name if job.fold is None else f"{shown_name(job.name)}/fold{job.fold[0]}"
        seed = job.spec.seed + (job.fold[0] if job.fold is not None else 0)  # copy i trains with seed + i
        log(f"[{who}] started (preset {job.preset}, seed {seed}) on {run.host}"
            + (f", {run.threads} TensorFlow threads" if run.threads else ""))
        result = train_member(job.workdir, job.spec, name=job.name, preset=job.preset, log=log,
                              show_progress=job.show_progress, force=job.force)
        run.metrics = result.metrics
    except Exception as exc:  # noqa: BLE001  (a failed member is a record, not a crash)
        run.error = _error_text(exc)
        from members.infra.lock import live_holder

        holder = live_holder(log_path.parent / ".lock")  # refused (or failed) before the lock: whose log is it?
        run.log_file = not isinstance(exc, LockBusy) and (holder is None or holder.get("pid") == os.getpid())
        try:
            log(f"[{job.name}] failed: {run.error}", to_file=run.log_file)
            if not isinstance(exc, UserError):  # an unexpected error: its traceback goes to the log file only
                log(traceback.format_exc().rstrip(), echo=False, to_file=run.log_file)
        except OSError:
            pass
    run.seconds = time.perf_counter() - started
    run.cpu_seconds = time.process_time() - cpu_started  # this worker process, every thread
    return run


PARENT_POLL = 1.0  # seconds between a loky worker's checks that the process that started it is still there
_watching: dict[str, int] = {}  # this worker's watched parent pid (a reused worker starts one watch)


def watch_parent(parent: int, poll: float = PARENT_POLL) -> None:
    """End this worker process as soon as ``parent`` (the run that started it) is gone.

    A ``kill -9`` of ``train-members`` left its loky workers training on, re-parented to init: they held their
    members' locks (a rerun at once failed them as busy) and kept their memory for minutes. A daemon thread
    polls :func:`os.getppid` and ends the process with ``os._exit`` when it changes: its member lock then
    names a dead process and the next run takes it over; its files are whole (every write is atomic) and the
    member resumes after its last finished epoch. (``prctl(PR_SET_PDEATHSIG)`` is not used: it fires when the
    *thread* that started the worker ends, and loky starts workers from its manager thread.)
    """
    import threading

    if _watching.get("parent") == parent:
        return
    _watching["parent"] = parent

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll)
        os._exit(143)  # as SIGTERM would: locks and resume points are left for the next run

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


def _watched(run: Callable[[_Job], MemberRun], parent: int, job: _Job) -> MemberRun:
    """What a loky worker runs: ``run(job)``, in a process that ends when ``parent`` dies (:func:`watch_parent`)."""
    watch_parent(parent)
    return run(job)


# ----- backends (parent) ---------------------------------------------------------------------
def _check_scheduler_address(scheduler: str) -> None:
    """A malformed Dask address is refused before any work (it failed every member as "incomplete: run again")."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(scheduler)
        if scheme in ("tcp", "tls", "ws", "wss", "ucx"):  # network schemes need host:port (inproc:// does not)
            parse_host_port(location)
    except (ValueError, TypeError) as exc:
        raise UserError(f"--scheduler {scheduler!r} is not a Dask scheduler address ({exc}); pass the address "
                        "`dask scheduler` prints, e.g. tcp://host:8786.") from None


def _dask_client(scheduler: str | None, jobs: int):
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="15s", set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise UserError(f"Could not reach the Dask scheduler at {scheduler} ({_error_text(exc)}); start it with "
                            "`dask scheduler` and pass its address, e.g. tcp://host:8786. "
                            f"Received: scheduler={scheduler!r}") from None
        try:
            client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS)
        except TimeoutError:
            client.close()
            raise UserError(f"The Dask scheduler at {scheduler} has no worker after {WAIT_FOR_WORKERS} s; start one on "
                            f"each machine with `dask worker {scheduler} --nthreads 1 --nworkers N`.") from None
        return client, None
    import dask

    # Dask's statistical profiler samples every thread's stack 100 times a second, which costs a
    # TensorFlow member about a third more CPU; a local cluster runs without it.
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster, set_as_default=False), cluster


def _dask_threads(client, log: Callable[[str], None]) -> dict[str, int]:
    """TensorFlow threads of a Dask worker on each host: the host's cores over its member slots (worker threads)."""
    from joblib import cpu_count

    workers = client.scheduler_info(n_workers=-1)["workers"]
    if any(info["nthreads"] > 1 for info in workers.values()):
        log("warning: some Dask workers have several threads, so several members share one process and TensorFlow's "
            "global state (seeds, precision policy); start the workers with `--nthreads 1`")
    cores = {urlparse(addr).hostname: n for addr, n in client.run(cpu_count).items()}
    slots = Counter()
    for addr, info in workers.items():
        slots[urlparse(addr).hostname] += info["nthreads"]
    return {host: max(1, cores.get(host, 1) // n) for host, n in slots.items()}


def _execute(job_list: list[_Job], backend: str, jobs: int, scheduler: str | None,
             log: Callable[[str], None], run: Callable[[_Job], MemberRun] | None = None) -> Iterable[MemberRun]:
    """Yield each member's record as it finishes (``run``: what a worker runs per job, :func:`run_job`)."""
    run = run or run_job
    if _in_process(backend, jobs):
        for job in job_list:
            yield run(job)
    elif backend == "dask":
        yield from _dask_runs(job_list, jobs, scheduler, log)
    elif backend == "loky":
        yield from _loky_runs(job_list, jobs, log, run)
    else:
        from joblib import Parallel, delayed, parallel_config

        calls = (delayed(run)(job) for job in job_list)
        try:
            import ray
            from ray.util.joblib import register_ray
        except ImportError:
            raise UserError("The ray backend needs the ray package, which is not installed; install it with "
                            "`pip install 'ray[default]'`, or use --backend loky or dask.") from None
        if not ray.is_initialized():
            ray.init(address=scheduler, include_dashboard=False)
        register_ray()
        with parallel_config(backend="ray"):
            yield from Parallel(n_jobs=jobs, batch_size=1, return_as="generator")(calls)


def _loky_runs(job_list: list[_Job], jobs: int, log: Callable[[str], None],
               run: Callable[[_Job], MemberRun]) -> Iterable[MemberRun]:
    """Local worker processes. A worker killed (out of memory, ``kill -9``) breaks the whole pool and ends every
    member it ran: those not finished are trained once more in a new pool, each resuming after its last finished
    epoch, so one killed worker does not fail the healthy members beside it; a second break is raised. The
    workers end within a second of this process when it is killed (:func:`watch_parent`)."""
    from joblib import Parallel, delayed, parallel_config

    left = list(job_list)
    for attempt in (1, 2):
        try:
            with parallel_config(backend="loky", inner_max_num_threads=max(1, _cores() // jobs)):
                for done in Parallel(n_jobs=jobs, batch_size=1, pre_dispatch="n_jobs", return_as="generator_unordered")(
                        delayed(_watched)(run, os.getpid(), job) for job in left):
                    left = [j for j in left if (j.name, None if j.fold is None else j.fold[0]) != (done.name, done.fold)]
                    yield done
            return
        except Exception as exc:  # noqa: BLE001  (TerminatedWorkerError: the pool is gone with every member it ran)
            if attempt == 2 or not left or "Terminated" not in type(exc).__name__:
                _release_dead_locks(_job_folder(job) for job in left)  # the ended workers' locks, for the next run
                raise
            log(f"a worker process was killed ({_error_text(exc)[:160]}; out of memory?): the worker pool is gone, "
                f"so the {len(left)} unfinished member(s) train once more in a new pool, each resuming after its "
                "last finished epoch")
            _release_dead_locks(_job_folder(job) for job in left)


def _dask_runs(job_list: list[_Job], jobs: int, scheduler: str | None, log: Callable[[str], None]) -> Iterable[MemberRun]:
    """One future per member (not joblib's dask backend, which runs a one-thread cluster's calls in the
    caller and drops every member when one worker dies for good); a member whose workers all died fails alone."""
    from uuid import uuid4

    from distributed import as_completed

    if not job_list:  # nothing left to train: no cluster to start or reach
        return
    client, cluster = _dask_client(scheduler, jobs)
    try:
        threads = _dask_threads(client, log)
        futures = {client.submit(run_job, replace(job, threads=threads, echo=cluster is not None), pure=False,
                                 key=f"train-member-{job.name}-{uuid4().hex[:8]}"): job for job in job_list}
        for future in as_completed(futures, loop=client.loop):
            try:
                yield future.result()
            except Exception as exc:  # noqa: BLE001  (KilledWorker, CancelledError: this member only)
                yield _lost(futures[future], exc)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _in_process(backend: str, jobs: int) -> bool:
    return backend == "sequential" or (backend == "loky" and jobs == 1)


def _cores() -> int:
    from joblib import cpu_count

    return cpu_count()


# ----- the whole run -------------------------------------------------------------------------
def _metric(runs) -> tuple[str, str]:
    """``(key, label)`` of the score shown (:func:`members.scoring.headline`): macro-F1 for nominal
    classes, kappa for two ordered ones, else QWK."""
    from members.scoring import member_headline

    shown = [member_headline(r.metrics) for r in runs if r.metrics]
    return next((h for h in shown if h[0] == "macro_f1"), shown[0] if shown else ("qwk", "QWK"))


def _line(run: MemberRun, done: int, total: int) -> str:
    key, label = _metric([run])
    if run.kept:
        return (f"[{run.name}] already complete with the same spec and data: kept, val {label} "
                f"{_fmt(run.score('val', key))} (another copy trains under another --name with another --seed) ({done}/{total})")
    if run.ok:
        val, test = run.score("val", key), run.score("test", key)
        shown = f"val {label} {_fmt(val)}" + (f", test {label} {test:.3f}" if test is not None else "")
        return f"[{run.name}] done in {run.seconds:.1f}s — {shown} ({done}/{total})"
    return f"[{run.name}] FAILED after {run.seconds:.1f}s — {run.error} ({done}/{total})"


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _table(outcome: TrainOutcome):
    from rich.table import Table

    table = Table(title=f"{len(outcome.results)} members on {outcome.backend} in {outcome.seconds:.0f}s")
    key, label = _metric(outcome.results)
    numbers = ("seed", "seconds", f"val {label}", f"test {label}", "test acc", "majority acc")
    for col in ("member", "preset", "seed", "status", "seconds", f"val {label}", f"test {label}", "test acc",
                "majority acc", "warnings"):
        table.add_column(col, justify="right" if col in numbers else "left")
    for r in outcome.results:
        m = r.metrics or {}
        below = bool((m.get("below_majority") or {}).get("test"))
        warnings = ", ".join(w for w, on in (("[red]collapsed[/red]", m.get("collapsed")), ("† below majority", below)) if on)
        table.add_row(r.name + (" †" if below else ""), r.preset, "—" if r.seed is None else str(r.seed),
                      "[red]failed[/red]" if r.error else r.status, f"{r.seconds:.1f}", _fmt(r.score("val", key)),
                      _fmt(r.score("test", key)),
                      _fmt(r.score("test", "accuracy")), _fmt(((m.get("majority") or {}).get("test") or {}).get("accuracy")), warnings)
    return table


def train_members(workdir: str | os.PathLike, presets: list[str], *, names: list[str] | None = None, jobs: int = 2,
                  backend: str = "loky", scheduler: str | None = None, overrides: Mapping[str, Any] | None = None,
                  sets: Iterable[str] = (), seed: int | None = None, console=None,
                  log: Callable[[str], None] | None = None, force: bool = False,
                  folds: int | None = None) -> TrainOutcome:
    """Train every listed member, ``jobs`` at a time, on the chosen backend.

    Args:
        workdir: a workdir prepared by ``python cli.py prepare`` (on a cluster: the same path on every machine).
        presets: preset name or TOML file of each member; the same preset twice gives two members.
        names: member names in the order of ``presets`` (default: ``small``, ``small-2``, ...).
        jobs: members trained at once (loky, ray; the size of the local Dask cluster). With ``scheduler``
            the cluster's worker threads decide: start its workers with ``--nthreads 1``.
        backend: ``loky``, ``dask``, ``ray`` or ``sequential``.
        scheduler: Dask scheduler address ``tcp://host:port`` (default: a local cluster), or the Ray address.
        overrides: spec fields for every member (``None`` values are ignored).
        sets: ``FIELD=VALUE`` strings for every member.
        seed: base seed; member ``i`` gets ``seed + i``.
        console: Rich console for the summary table (default: stdout).
        log: callable for progress lines (default: stderr).
        force: replace complete members trained with another spec (the new one is trained beside the
            old one and swapped in once complete); without it such a member fails with the differing fields.
        folds: train every member as K copies on K-1 folds of train+val, one task per fold
            (see :mod:`members.training.folds`); ``None`` trains plain members.

    Returns:
        A :class:`TrainOutcome`; ``outcome.failed`` names each failed member with its error.

    Raises:
        UserError: a bad option, an unprepared workdir, or an unreachable scheduler.

    Example:
        >>> outcome = train_members("work", ["tiny", "tiny"], jobs=2, backend="dask")  # doctest: +SKIP
        >>> outcome.failed                                                              # doctest: +SKIP
        []
    """
    from rich.console import Console

    from members.data.dataset import load_dataset

    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    if backend not in BACKENDS:
        raise UserError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}.")
    if not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"--jobs must be at least 1; got {jobs}.")
    if scheduler and backend not in ("dask", "ray"):
        raise UserError(f"--scheduler is used by --backend dask (or ray) only; got backend {backend!r}. Received: scheduler={scheduler!r}")
    if scheduler and backend == "dask":
        _check_scheduler_address(scheduler)
    if folds is not None:
        from members.training.folds import check_folds, existing_folded

        folds = check_folds(folds)
    workdir = Path(workdir).resolve()
    data = load_dataset(workdir)  # fails fast when the workdir is not prepared
    fingerprint = data.fingerprint
    from members.data.classes import refuse_asked_grade_head
    from members.model.spec import resolve_overrides

    refuse_asked_grade_head(resolve_overrides(overrides, sets), data.ordinal)
    started = time.perf_counter()
    planned = plan_members(presets, names=names, overrides=overrides, sets=sets, seed=seed)
    from members.training.trainer import member_dir

    for p in planned:  # the whole call is refused before any member trains
        member_dir(workdir, p.name, new=True)
    runs: dict[str, MemberRun] = {}

    def finished(run: MemberRun) -> None:
        runs[run.name] = run
        log(_line(run, len(runs), len(planned)))

    from members.training.guard import refusal

    todo, replacing = [], []
    for p in planned:
        if p.spec is None:
            existing = None
        elif folds is None:
            existing = _complete(workdir, p, fingerprint)
        else:  # a k-fold member: complete only with the same K too (members/training/folds.py)
            existing = existing_folded(workdir, p.name, p.spec, folds, fingerprint, p.preset)
        if p.spec is None:
            finished(MemberRun(p.name, p.preset, None, 0.0, error=p.error))
        elif existing.complete and not existing.differences:
            finished(MemberRun(p.name, p.preset, p.spec.seed, 0.0, metrics=existing.metrics, kept=True))
        elif existing.complete and not force:  # a finished member is never overwritten
            why = refusal(p.name, workdir / "members" / p.name, existing.differences,
                          option="--name" if names else "--name for this preset")
            finished(MemberRun(p.name, p.preset, p.spec.seed, 0.0, error=_error_text(why)))
        else:
            todo.append(p)
            if existing.complete:  # --force: trained beside the complete member, swapped in once complete
                replacing.append(p.name)
    if folds is not None:  # k-fold members: one task per fold, then each member assembled (members/training/folds.py)
        from members.training.folds import run_folded

        for run in run_folded(workdir, todo, folds, jobs=jobs, backend=backend, scheduler=scheduler, log=log,
                              replacing=replacing):
            finished(run)
        todo = []
    jobs = min(jobs, max(1, len(todo)))
    local = _in_process(backend, jobs)
    job_list = [_Job(str(workdir), p.name, p.preset, p.spec, None if local else max(1, _cores() // jobs),
                     echo=True, show_progress=None if local else False, force=force) for p in todo]
    where = (f"the Dask cluster at {scheduler}" if backend == "dask" and scheduler
             else "this process, one at a time" if local else f"{backend}, {jobs} at a time")
    if folds is None:
        log(f"training {len(todo)} of {len(planned)} members on {where}")
    try:
        for run in _execute(job_list, backend, jobs, scheduler, log):
            finished(run)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the ended workers cannot release their members' locks
        _release_dead_locks(_job_folder(job) for job in job_list if job.name not in runs)
        raise
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (a loky worker died: the pool and the members it had are gone)
        for job in job_list:
            if job.name not in runs:
                finished(_lost(job, exc, time.perf_counter() - started))
    outcome = TrainOutcome([runs[p.name] for p in planned], time.perf_counter() - started, backend, jobs)
    (console or Console()).print(_table(outcome))
    if outcome.failed:
        logs = [str(path) for r in outcome.results
                if not r.ok and r.log_file and (path := _log_path(workdir, r)).is_file()]
        log(f"{len(outcome.failed)} of {len(planned)} members failed: {', '.join(n for n, _ in outcome.failed)}; "
            + (f"the reasons are above, and in {', '.join(dict.fromkeys(logs))}" if logs else "the reasons are above"))
    return outcome
