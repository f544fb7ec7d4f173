"""Shared helpers of the benchmarks: arguments, machine facts, timing, demo data, tables, JSON.

Every benchmark is a script (``python bench/<name>.py [--quick] [--json PATH] [--repeats N]``)
that prints a table on stdout and writes its figures to ``bench/results/<name>.json``.
Importing this module puts the repository root on ``sys.path`` so the scripts run from
anywhere without installing the package. Every script ends with ``run_script(main)``: bad input
(a :class:`~members.infra.errors.UserError`, a path that is not there) is one sentence on stderr
and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from members.infra import atomic  # noqa: E402  (after the sys.path insert)
from members.infra.errors import UserError  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATA_ROOT = Path(os.environ.get("BENCH_DATA", Path(tempfile.gettempdir()) / "cnn-ensemble-bench"))


def parse_args(description: str, *, name: str, repeats: int = 3,
               extra: Callable[[argparse.ArgumentParser], None] | None = None) -> argparse.Namespace:
    """The common command line: ``--quick``, ``--json PATH``, ``--repeats``.

    The default result file is ``bench/results/<name>.json``, and ``<name>-quick.json`` with
    ``--quick``: a smoke run never replaces the full run's figures.

    Args:
        description: the script's one-line purpose (``--help``).
        name: the result file's stem.
        repeats: default number of repeats (medians are taken over them); ``--quick`` makes it
            1 unless ``--repeats`` is given.
        extra: optional callable adding the script's own options to the parser.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, finishes in under a minute")
    parser.add_argument("--json", type=Path, default=None,
                        help=f"where to write the figures (default bench/results/{name}.json, {name}-quick.json with --quick)")
    parser.add_argument("--repeats", type=int, default=None,
                        help=f"repeats per measurement (medians; default {repeats}, --quick 1)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    if args.json is None:
        args.json = RESULTS / f"{name}{'-quick' if args.quick else ''}.json"
    if args.repeats is None:
        args.repeats = 1 if args.quick else repeats
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1; got {args.repeats}")
    return args


def run_script(main: Callable[..., int | None], *args: Any) -> NoReturn:
    """Run a benchmark's ``main`` as the CLI runs a command, then exit with its code.

    A :class:`UserError` becomes ``Error: <its sentence>`` on stderr and exit code 1; an OSError
    (a path that is not there, a file where a folder is wanted, a full disk) one sentence naming
    the path, exit code 1; Ctrl-C exit code 130. Nothing of it is a traceback.
    """
    try:
        code = main(*args)
    except UserError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        code = 1
    except OSError as exc:
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"Error: {exc.strerror or exc}{where}; check that path (a workdir is a folder made by "
              "`python cli.py prepare`), then run the command again.", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        code = 130
    raise SystemExit(code or 0)


def shown_path(path: Path) -> str:
    """``path`` relative to the repository root when it lies inside it (help texts, messages), else as it is."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def add_set_workdir_arguments(parser: argparse.ArgumentParser, default: str, retrains: str) -> None:
    """``--workdir`` and ``--force`` of a benchmark that prepares one of the sets (:mod:`bench.sets`) and trains in
    it: ``default`` names its own workdir, ``retrains`` the members ``--force`` trains again there."""
    parser.add_argument("--workdir", type=Path, default=None,
                        help=f"default: {default}; a workdir that holds another dataset is refused unless --force")
    parser.add_argument("--force", action="store_true",
                        help="prepare --workdir from the set even when it holds another dataset, and retrain "
                             f"{retrains} (what was trained or voted there stops counting)")


def add_set_result_argument(parser: argparse.ArgumentParser, default: str) -> None:
    """``--json`` of a set benchmark whose default result file holds committed figures (:func:`guard_set_output`)."""
    parser.add_argument("--json", type=Path, default=None,
                        help=f"default: {default} (committed figures: refused when they are another workdir's; "
                             "name it here to write elsewhere or to replace them)")


def workdir_from(build_parser: Callable[[], argparse.ArgumentParser], prefix: str) -> Callable[[list[str]], Path]:
    """``workdir_of(argv)`` of a set benchmark whose own workdir is ``bench/work/<prefix>-<dataset>``."""
    def workdir_of(argv: list[str]) -> Path:
        args, _ = build_parser().parse_known_args(argv)
        return args.workdir or ROOT / "bench" / "work" / f"{prefix}-{args.dataset}"
    return workdir_of


def add_workdir_arguments(parser: argparse.ArgumentParser, default: Path, option: str = "--json") -> None:
    """What every benchmark over prepared workdirs takes: the workdirs, ``--seed``, and where its result goes
    (``option``; ``default`` is the committed figures' file, see :func:`guard_default_output`)."""
    parser.add_argument("workdirs", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(option, type=Path, default=None,
                        help=f"default: {os.path.relpath(default, ROOT)} (committed figures: refused when it holds other "
                             "workdirs' figures; name it here to replace them)")


def checked_workdir_arguments(args: argparse.Namespace, default: Path,
                              option: str = "--json") -> tuple[list[Path], Path]:
    """:func:`add_workdir_arguments`' values checked before any work: ``(resolved workdirs, result path)``."""
    from members.infra.validate import check_seed

    check_seed(args.seed, "--seed")
    resolved = check_workdirs(args.workdirs)
    return resolved, guard_default_output(getattr(args, option.lstrip("-")), default, resolved, option)


def check_workdirs(workdirs: Iterable[Path]) -> list[Path]:
    """Each workdir resolved; one that is missing or no folder is refused in one sentence, before any work."""
    out = []
    for work in workdirs:
        if not Path(work).is_dir():
            what = "is a file" if Path(work).exists() else "does not exist"
            raise UserError(f"Workdir {work} {what}; pass a folder prepared by `python cli.py prepare` "
                            "(and trained by bench/accuracy.py or train-member where members are read).")
        out.append(Path(work).resolve())
    return out


def recorded_workdirs(result: Any) -> set[str] | None:
    """The resolved workdirs a result file of a workdir benchmark was written from, or None when unknown.

    Files written since the workdirs are recorded hold ``workdir_paths``; older ones only name their
    workdirs (``clustered``: by the path as typed, relative to the repository root; ``appearance``:
    ``scored`` by folder name; ``cuts`` and ``mix``: ``<folder name>/<member>``), read as the bench's
    own ``bench/work/<name>``.
    """
    if not isinstance(result, dict):
        return None
    if isinstance(result.get("workdir_paths"), list):
        return {str(p) for p in result["workdir_paths"]}
    names: set[str] = set()
    if isinstance(result.get("workdirs"), dict):  # clustered: keyed by the path as it was typed
        return {str((ROOT / key).resolve()) for key in result["workdirs"]}
    if isinstance(result.get("scored"), dict):  # appearance
        names = set(result["scored"])
    elif isinstance(result.get("members"), dict):  # cuts, mix
        names = {key.split("/")[0] for key in result["members"] if "/" in key}
    return {str((ROOT / "bench" / "work" / name).resolve()) for name in names} or None


def guard_default_output(path: Path | None, default: Path, workdirs: Sequence[Path], option: str) -> Path:
    """Where a workdir benchmark writes: ``path`` when given, else ``default`` unless that holds other workdirs' figures.

    The default result files are committed figures of real runs: a run on other workdirs (a demo set, another
    seed's members) must not replace them unnoticed, so it is refused, before any work, naming the option
    that writes elsewhere (or, given the default path itself, replaces them on purpose).
    """
    if path is not None:
        return path
    if default.exists():
        try:
            then = recorded_workdirs(atomic.read_json(default))
        except UserError:
            then = None
        now = {str(Path(w).resolve()) for w in workdirs}
        if then != now:
            shown = ", ".join(sorted(shown_path(Path(w)) for w in then)) if then else "unknown workdirs"
            raise UserError(f"{shown_path(default)} holds the committed figures of other workdirs ({shown}), "
                            f"not of {', '.join(shown_path(Path(w)) for w in workdirs)}; pass {option} PATH to "
                            f"write this run's figures elsewhere, or {option} {shown_path(default)} to replace them.")
    return default


def _bench_work_tail(path: Path) -> tuple[str, ...] | None:
    """``("bench", "work", name, …)`` of a path inside some clone's ``bench/work`` (a bench's own workdirs), else None."""
    parts = path.parts
    starts = [j for j in range(len(parts) - 2) if parts[j:j + 2] == ("bench", "work")]
    return parts[starts[-1]:] if starts else None


def recorded_set_workdir(result: Any, workdir_of: Callable[[list[str]], Path]) -> Path | None:
    """The workdir a set benchmark's result file was written from, or None when unknown.

    Its ``workdir`` key where it has one; else the ``--workdir`` of its recorded ``command`` (``workdir_of``
    its arguments: the script's own default where the command named none), relative to the repository root.
    """
    if not isinstance(result, dict):
        return None
    bench = result.get("benchmark") if isinstance(result.get("benchmark"), dict) else {}
    for holder in (result, bench):
        if isinstance(holder.get("workdir"), str):
            return Path(holder["workdir"])
    command = bench.get("command") or result.get("command")
    if not isinstance(command, str):
        return None
    try:
        argv = shlex.split(command)[2:]  # after "python bench/<script>.py"
        return ROOT / workdir_of(argv)
    except (ValueError, SystemExit):  # a command the parser of today no longer takes
        return None


def _same_workdir(a: Path, b: Path) -> bool:
    """The same folder, or the same place under two clones' ``bench/work``."""
    a, b = Path(a).resolve(), Path(b).resolve()
    return a == b or (_bench_work_tail(a) is not None and _bench_work_tail(a) == _bench_work_tail(b))


def guard_set_output(path: Path | None, default: Path, workdir: Path, own: Path,
                     workdir_of: Callable[[list[str]], Path], option: str = "--json") -> Path:
    """Where a benchmark that trains on one of the sets writes: ``path`` when given, else ``default`` unless this
    run's ``workdir`` is not the script's ``own`` default workdir for its arguments and ``default`` holds the
    committed figures of a run on another workdir (:func:`recorded_set_workdir`).

    Like :func:`guard_default_output`, before any work: a run on a user's own workdir must not replace the
    documented figures unnoticed, while the documented command run as it is (in its own workdir, in any clone)
    reproduces them in place.
    """
    if path is not None or not default.exists() or _same_workdir(workdir, own):
        return path or default
    try:
        then = recorded_set_workdir(atomic.read_json(default), workdir_of)
    except UserError:
        then = None
    now = Path(workdir).resolve()
    if then is not None and _same_workdir(then, now):
        return default
    shown = shown_path(then) if then is not None else "an unknown workdir"
    raise UserError(f"{shown_path(default)} holds the committed figures of a run on {shown}, not on "
                    f"{shown_path(now)}; pass {option} PATH to write this run's figures elsewhere, or "
                    f"{option} {shown_path(default)} to replace them.")


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    """Date, host, CPU count, load, Python/TensorFlow/Keras versions: the context of every figure."""
    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": load_average(),
    }
    try:
        info["memory_gb"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        info["memory_gb"] = None
    for module in ("tensorflow", "keras", "numpy"):
        mod = sys.modules.get(module)
        if mod is not None:
            info[module] = getattr(mod, "__version__", None)
    return info


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def current_rss_mb() -> float | None:
    """Resident memory now, in MiB (psutil when installed, else ``/proc/self/statm``)."""
    try:
        import psutil

        return round(psutil.Process().memory_info().rss / 2**20, 1)
    except ImportError:
        try:
            pages = int(Path("/proc/self/statm").read_text().split()[1])
            return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
        except (OSError, ValueError, IndexError):
            return None


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system, every thread)."""
    t = os.times()
    return t.user + t.system


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``fn()`` and its result."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall seconds and CPU seconds (all threads of this process) taken by ``fn()``, and its result.

    On a shared machine the CPU time per item is the steadier figure: wall time depends on
    what else runs, CPU time much less so.
    """
    cpu0, start = cpu_seconds(), time.perf_counter()
    result = fn()
    return time.perf_counter() - start, cpu_seconds() - cpu0, result


def median_time(fn: Callable[[], Any], repeats: int, *, warmup: int = 0) -> tuple[float, list[float]]:
    """Median seconds of ``repeats`` calls of ``fn`` (after ``warmup`` untimed calls), and every time."""
    for _ in range(warmup):
        fn()
    times = [timed(fn)[0] for _ in range(repeats)]
    return statistics.median(times), times


def median(values: Sequence[float]) -> float | None:
    """Median of ``values``, None when empty."""
    return statistics.median(values) if values else None


def demo_images(images: int, size: int, *, seed: int = 0) -> tuple[list[str], Any]:
    """``(paths, labels)`` of ``images`` synthetic demo photographs (``write_demo_data``) of ``size`` px.

    Sets live in ``$BENCH_DATA`` (default ``<tmp>/cnn-ensemble-bench``) as ``demo_<size>_<n>_s<seed>``
    and are written once: a set of at least ``images`` photographs of that size is reused (its first
    ``images`` rows), so a quick run after a full one writes nothing. The labels file is written last,
    so its presence means a complete set.
    """
    import pandas as pd

    from members.data.synthetic import LABELS_NAME, write_demo_data

    folder = None
    for candidate in sorted(DATA_ROOT.glob(f"demo_{size}_*_s{seed}")):
        try:
            n = int(candidate.name.split("_")[2])
        except (IndexError, ValueError):
            continue
        if n >= images and (candidate / LABELS_NAME).exists():
            folder = candidate
            break
    if folder is None:
        folder = DATA_ROOT / f"demo_{size}_{images}_s{seed}"
        print(f"writing {images} synthetic {size} px images to {folder} (once)...", file=sys.stderr, flush=True)
        write_demo_data(folder, images=images, size=size, seed=seed, progress=False)
    table = pd.read_csv(folder / LABELS_NAME).head(images)
    paths = [str(folder / "images" / f"{name}.jpeg") for name in table["image"]]
    return paths, table["level"].to_numpy("int64")


def write_result(path: Path, result: dict[str, Any]) -> Path:
    """Write the figures as JSON (atomically) and say where on stderr."""
    atomic.write_json(path, result)
    print(f"wrote {path}", file=sys.stderr)
    return path


def verdict(passed: bool | None) -> str:
    """Rich markup for a target check: pass, FAIL, or n/a when the figure is missing."""
    return {True: "[green]pass[/green]", False: "[red]FAIL[/red]"}.get(passed, "[yellow]n/a[/yellow]")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A rich table on stdout; floats shown with sensible precision."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    console = Console()
    if not console.is_terminal:
        console = Console(width=140)  # redirected output: wide enough for one line per row
    console.print(table)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (set before importing it)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
