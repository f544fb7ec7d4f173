"""Command line of the CNN ensemble toolkit: prepare, train members, vote, predict.

Each command parses its options and calls one library function. TensorFlow is imported
lazily inside the commands that need it, so ``python cli.py --help`` starts at once.
Results go to stdout; progress and logs to stderr. A user error prints one plain
sentence and exits 1 (bad options exit 2, typer's convention), never a traceback.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ensemble.constants import CALIBRATIONS, METHODS, SELECT_BY, THR, THRESHOLD_MODES
from members.model.spec import BACKENDS, CACHES, CLASS_WEIGHTS, HEADS, OPTIMIZERS, PREPROCESSING, STRATEGIES

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
_columns = os.environ.get("COLUMNS", "").strip()
if not (_columns.isascii() and _columns.isdigit() and int(_columns) >= 20):
    os.environ.pop("COLUMNS", None)  # COLUMNS=0 (or junk) made Rich print nothing at all, errors included
if not sys.stdout.isatty() and "COLUMNS" not in os.environ:
    os.environ["COLUMNS"] = "200"  # piped or captured: render tables and --help wide instead of cutting them at 80


def _bare_flags() -> None:
    """Show flags bare in ``--help``: Typer 0.29 prints every flag with a type (``--force <bool>``, even ``--help
    <bool>``), as though it took a value, and ``--force true`` is then refused as an extra argument."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "bare_flags", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) and not getattr(self, "count", False) else shown(self, ctx)

    display_type_rich.bare_flags = True
    option.display_type_rich = display_type_rich


_bare_flags()


class _Commands(typer.core.TyperGroup):
    """The command group, refusing an empty argument (``-w ''``): Typer turns it into the path ``.``, so a workdir,
    an --out or an --images given as an unset shell variable meant the current folder. Ctrl-C before a command
    runs (while the options are read) says so too; Typer ended it with exit 130 and nothing on stderr."""

    def make_context(self, *args, **kwargs):
        from members.infra.interrupts import forget

        forget()  # a new run (CliRunner runs several in one process): nothing committed yet
        with _said_if_interrupted():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with _said_if_interrupted():
            return super().invoke(ctx)

    def parse_args(self, ctx, args):
        for i, arg in enumerate(args):
            inline = arg.startswith("-") and arg.endswith("=") and "=" not in arg[:-1]  # --members= or -w=
            if not arg.strip() or inline:
                after = (f"for {arg[:-1]}" if inline else f"after {args[i - 1]}" if i and args[i - 1].startswith("-")
                         else f"as argument {i + 1}")
                raise typer.BadParameter(f"an empty value {after} (an unset shell variable?); pass a real value.",
                                         ctx=ctx)
        return super().parse_args(ctx, args)


@contextlib.contextmanager
def _said_if_interrupted():
    try:
        yield
    except KeyboardInterrupt as exc:
        _stderr(_interruption(exc))
        raise typer.Exit(code=130) from None


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train several CNN members, combine them by voting or stacking, and report honestly whether the ensemble beats the single models.",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cnn-ensemble")
    except PackageNotFoundError:  # a plain checkout: read pyproject.toml beside this file
        import tomllib

        with open(Path(__file__).with_name("pyproject.toml"), "rb") as f:
            return tomllib.load(f)["project"]["version"]


def _print_version(value: bool) -> None:
    if value:
        print(f"cnn-ensemble {_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option("--verbose", help="Show TensorFlow's start-up and log lines on stderr.")] = False,
    version: Annotated[Optional[bool], typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """Train several CNN members, combine them by voting or stacking, and report honestly whether the ensemble beats the single models."""
    from members.infra.quiet import install

    install(verbose=verbose)


def _print_json(data) -> None:
    import json

    from members.scoring import nan_to_none

    print(json.dumps(nan_to_none(data), indent=2, ensure_ascii=False))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _exit_now_if_hdf5_broke(code: int) -> None:
    """End the process at once after a failed HDF5 write (see ``members.infra.errors.hdf5_write_failed``):
    HDF5's own shutdown would retry the write and crash. Streams are flushed; locks were released on the way up."""
    from members.infra.errors import must_exit_hard

    if must_exit_hard():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _interruption(exc: KeyboardInterrupt, command: str = "") -> str:
    """The line for Ctrl-C or SIGTERM: what was committed before it (a commit is never cut in half), the rows
    predict kept, the epochs a training run kept, or else that nothing finished was changed."""
    from members.infra.interrupts import committed

    note = getattr(exc, "note", "") or committed()
    if note:
        return f"Interrupted. {note}"
    if command.startswith("train_member"):  # train-member, train-members: epochs to resume
        return "Interrupted. Finished epochs are kept: run the same command again to resume."
    return "Interrupted. Nothing finished was changed (what this run had begun is discarded): run the same command again."


def user_errors(func):
    """Turn a UserError into one plain sentence on stderr and exit code 1; Ctrl-C into exit 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from members.infra.errors import UserError
        from members.infra.interrupts import forget

        forget()  # nothing committed yet by this command
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            _stderr(f"Error: {exc}")
            raise typer.Exit(code=1) from None
        except KeyboardInterrupt as exc:
            _stderr(_interruption(exc, func.__name__))
            raise typer.Exit(code=130) from None
        except BrokenPipeError:  # `... | head`: the reader left; nothing is wrong with the work
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (no second error while Python flushes stdout)
            except OSError:
                pass
            raise typer.Exit(code=0) from None
        except OSError as exc:  # a full disk, a missing permission... outside the atomic writes
            import errno

            where = f" ({exc.filename})" if exc.filename else ""
            if exc.errno == errno.ENAMETOOLONG:
                _stderr(f"Error: a file name is too long{where}; choose a shorter --name or path, then run the "
                        "command again.")
            elif exc.errno in (errno.EEXIST, errno.ENOTDIR):
                _stderr(f"Error: {exc.strerror or exc}{where}: a file stands where this command needs a folder; "
                        "move that file away (or choose another name or path), then run the command again.")
            elif exc.filename and os.path.exists(exc.filename) and not os.access(exc.filename, os.R_OK):
                _stderr(f"Error: {exc.strerror or exc}{where}: no read permission for it; fix it with `chmod u+r "
                        f"{exc.filename}` or run the command as its owner, then run the command again.")
            elif exc.filename:  # the one cause (no space, no write permission, a read-only file system) and its fix
                from members.infra.errors import write_refusal

                _stderr(f"Error: {write_refusal(exc.filename, exc)}")
            else:
                fix = ("free some disk space" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "fix the permissions"
                       if exc.errno in (errno.EACCES, errno.EPERM) else "fix the cause")
                _stderr(f"Error: {exc.strerror or exc}; files already written are complete: {fix}, then run the "
                        "command again.")
            raise typer.Exit(code=1) from None

    return wrapper


WorkdirOpt = Annotated[Path, typer.Option("--workdir", "-w", help="The workdir (prepared by `prepare`).")]
NewWorkdirOpt = Annotated[Path, typer.Option("--workdir", "-w", help="The workdir to write (created if missing).")]


def _choices(name: str, values: tuple[str, ...], doc: str) -> type[Enum]:
    """A ``str`` Enum of the library's own ``values``: typer lists them in ``--help`` and refuses any other."""
    choice = Enum(name, [(value, value) for value in values], type=str)
    choice.__doc__ = doc
    return choice


def _metavar(values: tuple[str, ...]) -> str:
    """``<a|b|c>``, as ``--help`` shows an Enum's choices, for a text option the spec validates itself."""
    return f"<{'|'.join(values)}>"


# Built from the library's tuples (members.model.spec and ensemble.constants import nothing heavy).
Method = _choices("Method", ("all", *METHODS), "``vote --method``: ensemble.constants.METHODS, or all.")
Thresholds = _choices("Thresholds", THRESHOLD_MODES, "``vote --thresholds``: ensemble.constants.THRESHOLD_MODES.")
SelectBy = _choices("SelectBy", SELECT_BY, "``vote --select-by``: ensemble.constants.SELECT_BY.")
Calibrate = _choices("Calibrate", CALIBRATIONS, "``vote --calibrate``: ensemble.constants.CALIBRATIONS.")
CacheMode = _choices("CacheMode", CACHES, "``train-member --cache``: members.model.spec.CACHES.")
Backend = _choices("Backend", BACKENDS, "``--backend``: members.model.spec.BACKENDS.")
METHOD_HELP = f"{', '.join(METHODS)}, each also with {THR} where vote fitted grade thresholds"


@app.command("demo-data")
@user_errors
def demo_data(
    out: Annotated[Path, typer.Argument(help="Output folder: OUT/images/*.jpeg and OUT/trainLabels.csv.")],
    images: Annotated[int, typer.Option(help="Number of images (both eyes of each patient).")] = 800,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed writes the same files.")] = 0,
    balanced: Annotated[bool, typer.Option("--balanced", help="Equal grade counts instead of the EyePACS mix.")] = False,
) -> None:
    """Write a synthetic fundus set in the Kaggle EyePACS layout (image,level)."""
    from members.data.synthetic import MIN_PER_GRADE, NUM_GRADES, too_few, write_demo_data

    summary = write_demo_data(out, images=images, size=size, seed=seed, balanced=balanced)
    counts = ", ".join(f"grade {g}: {n}" for g, n in sorted(summary.counts.items()))
    print(f"wrote {summary.images} images ({summary.size}px) to {summary.out} in {summary.seconds:.1f}s — {counts}")
    few = too_few([summary.counts.get(g, 0) for g in range(NUM_GRADES)])
    if few:
        print(f"Note: grade{'s' if len(few) > 1 else ''} {', '.join(map(str, few))} "
              f"{'have' if len(few) > 1 else 'has'} fewer than {MIN_PER_GRADE} images (three patients), too few for "
              f"prepare to put one in each of train, val and test; pass --images {NUM_GRADES * MIN_PER_GRADE} or more "
              "for a set prepare can split.", file=sys.stderr)


@app.command()
@user_errors
def prepare(
    workdir: NewWorkdirOpt,
    labels: Annotated[Optional[Path], typer.Option(help="Labels CSV (Kaggle trainLabels.csv: image,level); without it --images is a folder per class.")] = None,
    images: Annotated[Optional[Path], typer.Option(help="Folder with the images named in the CSV, or (alone) with one sub-folder per class, optionally under train/ val/ test/.")] = None,
    npz: Annotated[Optional[Path], typer.Option(help="A MedMNIST-style .npz (train/val/test images and labels).")] = None,
    medmnist: Annotated[Optional[str], typer.Option(help="Download a MedMNIST dataset by name (e.g. retinamnist).")] = None,
    size: Annotated[Optional[int], typer.Option(help="MedMNIST image size: 28, 64, 128 or 224 (with --medmnist; default 28).")] = None,
    image_column: Annotated[str, typer.Option(help="CSV column holding image names.")] = "image",
    label_column: Annotated[str, typer.Option(help="CSV column holding the labels: integers 0..k-1 or class names.")] = "level",
    classes: Annotated[Optional[list[str]], typer.Option(help="Class names in order, comma-separated (default: alphabetical); repeat it, one name each, for names that hold a comma.")] = None,
    ordinal: Annotated[Optional[bool], typer.Option("--ordinal/--nominal", help="Ordered grades or unordered classes (default: ordinal for integer labels, nominal for names).")] = None,
    group_column: Annotated[Optional[str], typer.Option(help="CSV column with the patient id: a patient's images stay in one split.")] = None,
    group_pattern: Annotated[Optional[str], typer.Option(help="Regex with one capture group giving the patient id from the image path, e.g. '(\\d+)_(?:left|right)'.")] = None,
    val_fraction: Annotated[float, typer.Option(help="Share of rows for validation.")] = 0.15,
    test_fraction: Annotated[float, typer.Option(help="Share of rows for test.")] = 0.15,
    seed: Annotated[int, typer.Option(help="Seed of the split.")] = 0,
    exclude_label: Annotated[Optional[list[str]], typer.Option("--exclude-label", help="Leave out the rows with this label (repeatable), e.g. 5 for DDR's ungradable images or an 'ungradable' class folder; they are listed in data_report.csv.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a workdir prepared from other data.")] = False,
) -> None:
    """Check every row, drop bad ones with a reason, and write the train/val/test split.

    A CSV may have a `split` column (train or training, val or valid or validation, test or
    testing; an empty cell counts as train, another value drops the row): that split is kept,
    and a missing val or test is carved from train. A headerless list of `<image> <label>`
    lines (DDR's train.txt) is read as such."""
    from ensemble.api import prepare as prepare_workdir

    result = prepare_workdir(workdir, labels=labels, images=images, npz=npz, medmnist=medmnist, size=size,
                             image_column=image_column, label_column=label_column, classes=classes, ordinal=ordinal,
                             group_column=group_column, group_pattern=group_pattern, val_fraction=val_fraction,
                             test_fraction=test_fraction, seed=seed, exclude=exclude_label, force=force)
    per_split = "; ".join(f"{split} {sum(c.values())}" for split, c in result.counts.items())
    dropped = sum(result.skipped.values())
    grouping = (" (a patient's images kept in one split)" if result.grouped else
                f" (the given split puts {result.groups_across_splits} patients in two splits)"
                if result.groups_across_splits else " (not grouped by patient)")
    print(f"prepared {workdir}: kept {result.kept} ({per_split}), dropped {dropped}{grouping}")


@app.command()
@user_errors
def presets(
    json_: Annotated[bool, typer.Option("--json", help="Print the presets as JSON on stdout instead of a table.")] = False,
    workdir: Annotated[Optional[Path], typer.Option(help="List the members trained in this workdir instead of the presets (with --json: their rows), marking † (test accuracy below the majority class's), collapsed and stale (trained on an earlier prepare) members.")] = None,
) -> None:
    """List the built-in member presets with input size, depth, width and parameter count."""
    from rich.console import Console
    from rich.table import Table

    from members.model.spec import list_presets, load_preset, preset_params, schedule_label

    if workdir is not None:
        _trained_members(workdir, json_)
        return

    columns = ("preset", "input", "architecture", "depth", "width", "pooling", "head", "params", "description")
    rows, specs = [], []
    for name in list_presets():
        spec = load_preset(name)
        specs.append(spec.to_dict())
        params = preset_params(name, spec)  # counted once per preset spec; no weights download
        depth = ("16 conv" if spec.architecture == "article" else "-" if spec.is_backbone
                 else f"{spec.depth}×{spec.convs_per_block}")
        width = "16–128" if spec.architecture == "article" else "-" if spec.is_backbone else str(spec.width)
        rows.append((name, schedule_label(spec), spec.architecture, depth, width, spec.pooling, spec.head, params,
                     spec.description))
    if json_:  # the table's display texts, and the resolved spec's values (input_size, depth, resize_schedule, ...)
        _print_json([{**dict(zip(columns, row)), "spec": spec} for row, spec in zip(rows, specs)])
        return
    table = Table(title="member presets (parameters for 5 classes)")
    for col in columns:
        table.add_column(col, justify="right" if col in ("depth", "width", "params") else "left",
                         no_wrap=col != "description", min_width=len(col))
    for row in rows:
        table.add_row(*row[:7], f"{row[7]:,}", row[8])
    Console().print(table)


def _trained_members(workdir: Path, json_: bool) -> None:
    """The members of ``workdir``: test figures beside the majority baseline, collapsed and † marks."""
    import json as _json

    from rich.console import Console
    from rich.table import Table

    from members.infra.errors import UserError
    from members.scoring import member_headline
    from members.training.collapse import is_stale, member_marks

    folder = Path(workdir) / "members"
    if not folder.is_dir():
        raise UserError(f"{workdir} has no members/ folder; train members first (python cli.py train-member --workdir {workdir}).")
    try:
        fingerprint = _json.loads((Path(workdir) / "dataset.json").read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError):
        fingerprint = None
    rows = []
    for metrics_path in sorted(folder.glob("*/metrics.json")):
        if metrics_path.parent.name.startswith("."):  # a replacement being trained, not a member (vote skips it)
            continue
        try:
            m = _json.loads(metrics_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        t = m.get("test") or {}
        base = (m.get("majority") or {}).get("test") or {}
        headline = member_headline(m)
        rows.append({"member": metrics_path.parent.name, "preset": m.get("preset"), "input": m.get("input_size"),
                     "head": m.get("head"), "test_accuracy": t.get("accuracy"), "majority_accuracy": base.get("accuracy"),
                     "test_balanced_accuracy": t.get("balanced_accuracy"),
                     "test_qwk": t.get("qwk") if headline[0] == "qwk" else None,  # QWK assumes ordered grades
                     "test_macro_f1": t.get("macro_f1"), "nominal": headline[0] == "macro_f1", "score": headline[1],
                     "collapsed": bool(m.get("collapsed")), "below_majority": bool((m.get("below_majority") or {}).get("test")),
                     "stale": is_stale(m, fingerprint),
                     "marks": member_marks(m, fingerprint)})
    if json_:
        _print_json(rows)
        return
    def f(v):
        return "-" if v is None else f"{v:.3f}"

    table = Table(title=f"members of {workdir} († test accuracy below the majority class's)")
    nominal = any(r["nominal"] for r in rows)  # nominal classes: macro-F1, as they are chosen by; QWK needs an order
    key, label = (("test_macro_f1", "test macro-F1") if nominal
                  else ("test_qwk", f"test {rows[0]['score'] if rows else 'QWK'}"))
    for col in ("member", "preset", "input", "head", "test acc", "majority acc", "test bal-acc", label, "collapsed"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["member"] + (" †" if r["below_majority"] else "") + (" (stale)" if r["stale"] else ""),
                      str(r["preset"]), "-" if r["input"] is None else str(r["input"]),
                      "-" if r["head"] is None else str(r["head"]),
                      f(r["test_accuracy"]), f(r["majority_accuracy"]), f(r["test_balanced_accuracy"]), f(r[key]),
                      "yes" if r["collapsed"] else "no")
    Console().print(table)


@app.command("train-member")
@user_errors
def train_member_cmd(
    workdir: WorkdirOpt,
    preset: Annotated[str, typer.Option(help="Built-in preset (see `presets`) or a TOML spec file.")] = "small",
    name: Annotated[Optional[str], typer.Option(help="Member name (folder under members/); default: the preset.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per resize stage.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Batch size (per device).")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="Input size in pixels (final stage).")] = None,
    resize_schedule: Annotated[Optional[str], typer.Option(help="Progressive resizing stages, e.g. 64,128.")] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"Initial learning rate (of the spec's optimizer: {', '.join(OPTIMIZERS)}).")] = None,
    lr_decay: Annotated[Optional[float], typer.Option(help="Per-epoch learning-rate multiplier.")] = None,
    depth: Annotated[Optional[int], typer.Option(help="Convolution blocks.")] = None,
    width: Annotated[Optional[int], typer.Option(help="Filters of the first block (doubling per block).")] = None,
    l2: Annotated[Optional[float], typer.Option(help="L2 penalty on kernels.")] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Dropout rate of the dense head.")] = None,
    head: Annotated[Optional[str], typer.Option(metavar=_metavar(HEADS), help="Output head.")] = None,
    class_weight: Annotated[Optional[str], typer.Option(metavar=_metavar(CLASS_WEIGHTS), help="Class weighting of the loss (auto: sqrt with natural sampling, none when batches are rebalanced).")] = None,
    undersample_epochs: Annotated[Optional[int], typer.Option(help="Fine-tuning epochs on an undersampled subset.")] = None,
    retrain_rounds: Annotated[Optional[int], typer.Option(help="Rounds of retraining on mispredicted images.")] = None,
    preprocessing: Annotated[Optional[str], typer.Option(metavar=_metavar(PREPROCESSING), help="ben: Graham's local-colour subtraction.")] = None,
    tta: Annotated[Optional[bool], typer.Option("--tta/--no-tta", help="Average flips at evaluation.")] = None,
    cache: Annotated[Optional[CacheMode], typer.Option(help="Where decoded images are cached.")] = None,
    mixed_precision: Annotated[Optional[bool], typer.Option("--mixed-precision/--no-mixed-precision", help="mixed_float16 (GPU).")] = None,
    jit_compile: Annotated[Optional[bool], typer.Option("--jit-compile/--no-jit-compile", help="XLA compilation.")] = None,
    strategy: Annotated[Optional[str], typer.Option(metavar=_metavar(STRATEGIES), help="mirrored: all visible GPUs.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="Write Keras TensorBoard logs into the member folder (logs/).")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Any spec field, FIELD=VALUE (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a complete member trained with another spec (trained beside it, swapped in when complete).")] = False,
    folds: Annotated[Optional[int], typer.Option(help="Train K copies, each on K-1 folds of train+val (a k-fold member with out-of-fold predictions).")] = None,
    jobs: Annotated[Optional[int], typer.Option(help="With --folds: fold copies trained at once (default 1).", show_default=False)] = None,
    backend: Annotated[Optional[Backend], typer.Option(help="With --folds and --jobs > 1: how the fold copies are run (default loky).", show_default=False)] = None,
) -> None:
    """Train one member with the article's full technique set and write its artifacts.

    Every spec option left out keeps the preset's value (`presets` lists them; --set changes any other field).
    """
    from members.model.spec import resolve_spec
    from members.training.trainer import train_member

    overrides = dict(
        epochs=epochs, batch_size=batch_size, input_size=input_size, resize_schedule=resize_schedule, lr=lr,
        lr_decay=lr_decay, depth=depth, width=width, l2=l2, dropout=dropout, head=head, class_weight=class_weight,
        undersample_epochs=undersample_epochs, retrain_rounds=retrain_rounds, preprocessing=preprocessing, tta=tta,
        cache=cache.value if cache else None, mixed_precision=mixed_precision, jit_compile=jit_compile,
        strategy=strategy, seed=seed, tensorboard=tensorboard or None,
    )
    spec = resolve_spec(preset, overrides, set_ or [])
    from members.data.classes import refuse_asked_grade_head
    from members.data.dataset import load_dataset
    from members.model.spec import resolve_overrides

    refuse_asked_grade_head(resolve_overrides(overrides, set_ or []), load_dataset(workdir).ordinal)
    member = name or Path(preset).stem
    if folds is None and (jobs is not None or backend is not None):
        from members.infra.errors import UserError

        raise UserError(f"{'--jobs' if jobs is not None else '--backend'} sets how the fold copies of a k-fold member "
                        "train and needs --folds K; to train several members at once, use train-members --jobs N.")
    if folds is not None:  # k-fold member: members/training/folds.py
        from members.training.folds import train_folded

        result = train_folded(workdir, spec, name=member, k=folds, preset=Path(preset).stem, jobs=1 if jobs is None else jobs,
                              backend=(backend or Backend.loky).value, force=force)
    else:
        result = train_member(workdir, spec, name=member, preset=Path(preset).stem, force=force)
    m = result.metrics
    from members.scoring import member_headline

    key, label = member_headline(m)
    print(
        f"{member}: test accuracy {m['test'].get('accuracy', float('nan')):.3f}, balanced accuracy "
        f"{m['test'].get('balanced_accuracy', float('nan')):.3f}, {label} {m['test'].get(key, float('nan')):.3f} "
        f"(val {label} {m['val'].get(key, float('nan')):.3f}); {m['params']:,} parameters, {m['train_seconds']:.0f}s, "
        f"{m['images_per_second']:.0f} images/s, input wait {m['input_wait_share']:.0%} → {result.member_dir}"
    )
    _say_marks(member, m)


@app.command("train-members")
@user_errors
def train_members_cmd(
    workdir: WorkdirOpt,
    preset: Annotated[list[str], typer.Option(help="Preset of each member (repeat: --preset small --preset wide).")],
    name: Annotated[Optional[list[str]], typer.Option(help="Member names, in the order of --preset.")] = None,
    jobs: Annotated[int, typer.Option(help="Members trained at once.")] = 2,
    backend: Annotated[Backend, typer.Option(help="loky (local processes), dask (a dask.distributed cluster), ray, sequential.")] = Backend.loky,
    scheduler: Annotated[Optional[str], typer.Option(help="Dask scheduler address tcp://host:port (default: start a local cluster).")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs per resize stage, for every member.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Base seed; member i gets seed + i.")] = None,
    tensorboard: Annotated[bool, typer.Option("--tensorboard", help="Write Keras TensorBoard logs into each member folder (logs/).")] = False,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Any spec field for every member, FIELD=VALUE.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace complete members trained with another spec (each trained beside the old one, swapped in when complete).")] = False,
    folds: Annotated[Optional[int], typer.Option(help="Train every member as K copies on K-1 folds of train+val, one task per fold.")] = None,
) -> None:
    """Train several members in parallel: local processes or a Dask cluster."""
    from members.training.parallel import train_members

    outcome = train_members(workdir, preset, names=name, jobs=jobs, backend=backend.value, scheduler=scheduler,
                            overrides={"epochs": epochs}, sets=(set_ or []) + (["tensorboard=true"] if tensorboard else []),
                            seed=seed, force=force, folds=folds)
    if outcome.failed:
        raise typer.Exit(code=1)


@app.command()
@user_errors
def vote(
    workdir: WorkdirOpt,
    method: Annotated[Optional[list[Method]], typer.Option(help="Combiner to fit, or all (default); repeat it to fit several, e.g. --method soft --method stack.")] = None,
    members: Annotated[Optional[str], typer.Option(help="Comma-separated member names (default: every complete member).")] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95 % intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    coverage: Annotated[float, typer.Option(help="Target coverage of the review threshold: the share of images predict leaves unreviewed (review 0).")] = 0.9,
    thresholds: Annotated[Thresholds, typer.Option(help="Grade thresholds on the expected grade, fitted for QWK: auto (3+ ordered classes), on, off.")] = Thresholds.auto,
    select_by: Annotated[Optional[SelectBy], typer.Option(help="Val metric that picks the best member and method (log_loss is minimised); default qwk for ordered grades, macro_f1 for nominal classes.")] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print report.json on stdout instead of the table.")] = False,
    keep_collapsed: Annotated[bool, typer.Option("--keep-collapsed", help="Also vote members whose metrics.json says collapsed (one class on val); by default they are skipped.")] = False,
    referable_grade: Annotated[Optional[int], typer.Option(help="Referable DR (positive, on grades other than DR's 0-4) = this grade or worse (ordered grades, 3+ classes; default 2): sensitivity/specificity, roc.png.")] = None,
    sensitivity_target: Annotated[float, typer.Option(help="Sensitivity the referable-DR (or positive-class) threshold must reach on val (on the out-of-fold rows when every member is k-fold).")] = 0.9,
    positive_class: Annotated[Optional[str], typer.Option(help="Two-class tasks: the class (name or index) whose sensitivity, specificity and ROC are reported (default: the rarer class on val; index 1 on a tie).")] = None,
    calibrate: Annotated[Calibrate, typer.Option(help="temperature: one temperature per member and for the combined output, fitted on val (on the out-of-fold rows when every member is k-fold), saved in the combiner JSON, applied by predict.")] = Calibrate.none,
) -> None:
    """Fit combiners on validation (the out-of-fold rows when every member is k-fold), score everything on test, write the report."""
    from rich.console import Console

    from ensemble.vote import run_vote
    from members.infra.errors import UserError

    names = [m.strip() for m in members.split(",") if m.strip()] if members is not None else None
    if names == []:
        raise UserError(f"--members {members!r} names no member; pass comma-separated names (e.g. --members small,wide), "
                        "or leave the option out to vote every complete member.")
    twice = sorted({n for n in names or [] if names.count(n) > 1})
    if twice:
        raise UserError(f"--members lists {', '.join(twice)} more than once; name each member once. Received: "
                        f"members={members!r}")
    import io

    methods = tuple(dict.fromkeys(m.value for m in method)) if method else ("all",)
    report = run_vote(workdir, methods=methods, members=names, n_boot=bootstrap, seed=seed,
                      target_coverage=coverage, thresholds=thresholds.value,
                      select_by=select_by.value if select_by else None, keep_collapsed=keep_collapsed,
                      referable_grade=referable_grade, sensitivity_target=sensitivity_target,
                      positive_class=positive_class, calibrate=calibrate.value, console=Console(file=io.StringIO()) if json_ else Console())
    if json_:
        _print_json(report)


@app.command("import-member")
@user_errors
def import_member_cmd(
    workdir: WorkdirOpt,
    name: Annotated[str, typer.Option(help="Member name (folder under members/).")],
    model: Annotated[Optional[Path], typer.Option(help="A Keras .keras model (loaded with safe_mode), run on val/test here.")] = None,
    val_csv: Annotated[Optional[Path], typer.Option(help="Val probabilities: image,prob_0..prob_{k-1} (or class-name columns), or a member's val.npz.")] = None,
    test_csv: Annotated[Optional[Path], typer.Option(help="Test probabilities, same columns (or a member's test.npz).")] = None,
    image_column: Annotated[Optional[str], typer.Option(help="Image column of the probability CSVs (default: the first of image, path, id_code, image_id, filename, file, name; any case).")] = None,
    input_size: Annotated[Optional[int], typer.Option(help="Input size for a model that accepts any size.")] = None,
    positive_class: Annotated[Optional[str], typer.Option(help="Two-class workdirs: the class (name or index) whose probability a model's one sigmoid unit gives (default: the second class).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing member of that name.")] = False,
) -> None:
    """Add a member trained elsewhere: a Keras model, or its val/test probabilities."""
    from ensemble.importer import import_member

    folder = import_member(workdir, name, model=model, val_csv=val_csv, test_csv=test_csv, input_size=input_size,
                           force=force, image_column=image_column, positive_class=positive_class)
    print(f"imported {name} → {folder}")
    from members.infra.atomic import read_json

    _say_marks(name, read_json(folder / "metrics.json"))


def _say_marks(member: str, metrics: dict) -> None:
    """train-member's (and import-member's) second line: the member's COLLAPSED and † marks, when it has any."""
    from members.training.collapse import member_marks

    marks = member_marks(metrics)
    if marks:
        print(f"{member}: {marks}")


def _inputs(images: Optional[list[str]], from_file: Optional[Path], workdir: Optional[Path] = None) -> list[str]:
    """The image paths given as arguments, as typed (``./x.jpg`` stays ``./x.jpg``: a ``Path`` would drop the ``./``),
    then those of ``--from-file``."""
    from members.infra.errors import UserError

    from ensemble.worklist import read_list

    paths = [str(p) for p in images or []] + read_list(from_file, workdir)
    if not paths:
        raise UserError("No image given; pass image files or folders, or --from-file LIST with one path per line.")
    return paths


RecursiveOpt = Annotated[bool, typer.Option("--recursive", help="Search the sub-folders of a folder given, at any depth (sorted by path; hidden files and folders left out, a folder reached twice through links searched once).")]
FromFileOpt = Annotated[Optional[Path], typer.Option("--from-file", help="A text file with one image path per line (a worklist; - reads stdin; relative paths are relative to the file and written out as absolute paths), added to the images given.")]


@app.command()
@user_errors
def predict(
    workdir: WorkdirOpt,
    images: Annotated[Optional[list[str]], typer.Argument(help="Image files to grade, or folders of them (their sub-folders only with --recursive); written out as typed.")] = None,
    from_file: FromFileOpt = None,
    recursive: RecursiveOpt = False,
    out: Annotated[Optional[Path], typer.Option(help="CSV to write (default: print to stdout). An earlier predictions CSV there (its header, with review or before 2026-12-08 refer) is replaced, and stderr says how many rows it held; any other existing file is refused unless --force. Interrupted, a run keeps its graded rows in <stem>.partial.csv, and the same command resumes from <stem>.partial.npz.")] = None,
    method: Annotated[Optional[str], typer.Option(help=f"Fitted combiner to use: {METHOD_HELP} (default: the best on validation).")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Average over flipped copies.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print the predictions as JSON on stdout instead of CSV.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace --out whatever it holds.")] = False,
) -> None:
    """Ensemble predictions (and member disagreement) for new images.

    One CSV row per input, graded ones first (unreadable ones are also listed on stderr):

    \b
    path        the image
    label       the ensemble's class index (+thr methods: expected grade cut
                at thresholds tuned on val)
    class       that class's grade or name (dataset.json classes)
    label_prob  the ensemble's probability of label (review uses it)
    top_class   the most probable class; differs from label only for +thr
    top_prob    the probability of top_class (the largest prob_*)
    agreement   share of members whose own top class is label (1 = all)
    review      1 = a human grader should look at the image: label_prob
                below the threshold chosen on val, agreement 0, or a grade
                the referable call contradicts (other methods, and --tta on
                members whose cached probabilities were not TTA: under half
                the members agree); vote's referral figures count this rule,
                and review is 1 exactly when note is not empty. It is not a
                referral to an eye specialist: a confident grade 4 has
                review 0 and referable 1. Called refer before 2026-12-08
                (every reader of a predictions CSV takes either)
    prob_0..    the ensemble's probability of each class (calibrated when
                vote ran with --calibrate temperature)
    p_referable P(grade >= the referable cut, default 2): ordered grades only
                (two classes: p_positive and positive, for vote's
                --positive-class)
    referable   1 = referable DR: p_referable at or above the threshold vote
                chose on val for the sensitivity target, whatever the class
                column says (a grade below the cut can be called referable,
                and is then sent for review) (empty for another
                --method than the one it was chosen for, with --tta on
                members whose cached probabilities were not TTA, and for
                ungradable images and images unlike the training images)
    note        why review is 1: "review: ..." (low confidence, members that
                disagree, a grade and a referable call that disagree),
                "not graded: <reason>" (an unreadable input: its row comes
                after the graded ones), "ungradable: ..." (a flat
                black or white image) or "unlike the training images: ..."
                (noise, a document, another kind of picture): both review 1,
                their grade cells left empty
    """
    from ensemble.inference import predict_images

    from members.infra.errors import UserError

    try:
        result = predict_images(workdir, _inputs(images, from_file, workdir), out=out, method=method, tta=tta,
                                print_csv=not json_, force=force, recursive=recursive)
    except UserError as exc:  # nothing graded: a script reading --json still gets every input's reason
        if json_ and getattr(exc, "result", None) is not None:
            _print_json(exc.result.to_json())
        raise
    if json_:
        _print_json(result.to_json())


@app.command()
@user_errors
def explain(
    workdir: WorkdirOpt,
    out: Annotated[Path, typer.Option(help="Folder for one PNG per image (created when missing).")],
    images: Annotated[Optional[list[str]], typer.Argument(help="Image files to explain, or folders of them (their sub-folders only with --recursive); written out as typed.")] = None,
    from_file: FromFileOpt = None,
    recursive: RecursiveOpt = False,
    method: Annotated[Optional[str], typer.Option(help=f"Fitted combiner whose grade and weights are shown: {METHOD_HELP} (default: the best on validation).")] = None,
    tta: Annotated[bool, typer.Option("--tta", help="Score members over flipped copies.")] = False,
) -> None:
    """Grad-CAM heatmaps: where each member and the ensemble looked, titled with grade and probability."""
    from ensemble.explain import explain_images

    explain_images(workdir, _inputs(images, from_file, workdir), out, method=method, tta=tta, recursive=recursive)


@app.command()
@user_errors
def demo(
    workdir: Annotated[Path, typer.Option("--workdir", "-w", help="Where the demo writes everything.")] = Path("demo-work"),
    images: Annotated[int, typer.Option(help="Synthetic images.")] = 800,
    seed: Annotated[int, typer.Option(help="Seed of the data and the members.")] = 0,
    quick: Annotated[bool, typer.Option("--quick", help="A one-minute smoke run (tiny members; those that collapse are said so and voted anyway).")] = False,
) -> None:
    """The main job: synthetic data → prepare → train three members → vote → comparison."""
    from ensemble.demo import run_demo

    run_demo(workdir, images=images, seed=seed, quick=quick)


def _terminate_as_interrupt() -> None:
    """SIGTERM (``timeout``, ``kill``, batch schedulers) stops a command as Ctrl-C does: locks released,
    staging folders removed, worker processes of ``train-members`` ended, exit 130; before, the default
    action ended the process at once and left its workers training."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, OSError):  # not the main thread, or a platform without SIGTERM
        pass


def main() -> None:
    """Console-script entry point (``cnn-ensemble``)."""
    _terminate_as_interrupt()
    try:
        app()
    except SystemExit as done:
        _exit_now_if_hdf5_broke(done.code if isinstance(done.code, int) else 1)
        raise


if __name__ == "__main__":
    main()
