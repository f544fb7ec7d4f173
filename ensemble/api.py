"""The workflow from Python: ``prepare``, ``train_member``, ``vote``, ``predict``, ``explain``, ``import_member``,
and ``compare``, ``score``, ``diversity`` for arrays.

Each verb is the CLI command of the same name, with the same checks and the same files
in the workdir; errors are :class:`members.infra.errors.UserError` with the CLI's sentence (its advice
names options: ``--keep-collapsed`` is the keyword ``keep_collapsed=True``, ``--epochs 1`` is ``epochs=1``).
The CLI's own spellings are taken too (``bootstrap=`` for ``n_boot=``, ``method=`` for ``methods=``,
``nominal=True`` for ``ordinal=False``, ``exclude_label=`` for ``exclude=``); NumPy numbers and strings count
as Python's; a text where a list of names is read may be one name or ``"a,b"`` as on the command line; a
keyword no verb takes, a DataFrame where a path is read, or a value of the wrong kind is refused in one sentence.

Example:
    >>> from ensemble.api import prepare, train_member, vote, predict      # doctest: +SKIP
    >>> prepare("work", images="fundus/")                                 # doctest: +SKIP
    >>> train_member("work", "small", name="a", epochs=2)                 # doctest: +SKIP
    >>> train_member("work", "wide", name="b")                            # doctest: +SKIP
    >>> report = vote("work", methods=["soft", "stack"])                  # doctest: +SKIP
    >>> predict("work", ["eye.jpeg"]).classes                             # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import functools
import inspect
import io
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from members.infra.errors import UserError

__all__ = ["prepare", "train_member", "vote", "predict", "explain", "import_member", "compare", "score", "diversity"]

PathLike = str | os.PathLike

# The CLI's spelling of an option where it is not the keyword: --method is methods=, --bootstrap n_boot=, ...
ALIASES = {
    "prepare": {"exclude_label": "exclude"},
    "vote": {"method": "methods", "bootstrap": "n_boot", "coverage": "target_coverage"},
}
# what a verb's **options are, for the message that names a keyword it does not take
TAKES = {"train_member": "any field of members.model.spec.MemberSpec (help(MemberSpec) lists them)",
         "prepare": "the options of members.data.dataset.prepare_csv"}
# CLI options with no keyword, and what to do instead
NO_KEYWORD = {
    "json": "the function returns the result itself (a dict or an object with .to_json())",
    "from_file": "read the list yourself and pass the paths, e.g. images=open('list.txt').read().split()",
    "verbose": "TensorFlow's logging is left as the notebook set it",
}


def _plain(value: Any) -> Any:
    """NumPy scalars as Python's (``np.int64(2)`` -> ``2``, ``np.str_('a')`` -> ``'a'``), in lists and tuples too."""
    if isinstance(value, np.generic):
        return value.item()
    if type(value) in (list, tuple):
        return type(value)(_plain(v) for v in value)
    return value


def _verb(takes: Callable[[], Iterable[str]] | None = None):
    """A verb of the API: its arguments as Python values (:func:`_plain`), the CLI's spellings turned into keywords
    (:data:`ALIASES`), and a keyword it does not take (``takes``: those its ``**options`` pass on) refused in one
    sentence naming the closest, instead of Python's TypeError."""

    def wrap(func):
        params = inspect.signature(func).parameters.items()
        own = [n for n, p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        # the arguments passed by position (workdir; predict's images) are not listed as its keywords
        positional = {n for n, p in params if p.kind == p.POSITIONAL_OR_KEYWORD and p.default is p.empty}

        @functools.wraps(func)
        def verb(*args, **kwargs):
            known = [*own, *(takes() if takes else ())]
            aliases = ALIASES.get(func.__name__, {})
            options = {}
            for key, value in kwargs.items():
                target = aliases.get(key, key)
                if target != key and target in kwargs:
                    raise UserError(f"{func.__name__} got both {key}= and {target}=, two spellings of one option; "
                                    f"pass {target}= alone.")
                if target not in known:
                    close = difflib.get_close_matches(key, [*known, *aliases], n=1)
                    why = (f": {NO_KEYWORD[key]}" if key in NO_KEYWORD else
                           f"; did you mean {close[0]}=?" if close else "")
                    listed = list(dict.fromkeys(k for k in known if k not in positional))
                    raise UserError(f"{func.__name__} takes no keyword {key}={why} (" + (
                        f"its keywords: {', '.join(listed)}" if len(listed) <= 20 else
                        f"its keywords: {', '.join(k for k in own if k not in positional)}, and "
                        f"{TAKES.get(func.__name__, 'the options it passes on')}") + ").")
                options[target] = _plain(value)
            return func(*(_plain(a) for a in args), **options)

        return verb

    return wrap


def _is_table(value: Any) -> bool:
    """Whether ``value`` is a pandas DataFrame or a dict: a table, where a path or a list is read."""
    return isinstance(value, dict) or (hasattr(value, "columns") and hasattr(value, "iloc"))


def _path(verb: str, name: str, value: Any, *, csv: bool = False) -> Any:
    """``value`` when it is a path (or None); a table, a list or anything else is refused in one sentence."""
    if value is None or (isinstance(value, os.PathLike) or (isinstance(value, str) and value)):
        return value
    if csv and _is_table(value):
        raise UserError(f"{verb} takes {name} as the path of a CSV file; got a {type(value).__name__}: save it first "
                        f"(df.to_csv('{name}.csv', index=False)) and pass that path, {name}='{name}.csv'.")
    if _is_table(value):
        raise UserError(f"{verb} takes {name} as a path, a str or pathlib.Path; got a {type(value).__name__}.")
    what = "an empty string" if isinstance(value, str) else f"a {type(value).__name__} ({_show(value)})"
    one = " (one path, not a list)" if isinstance(value, (list, tuple, np.ndarray)) else ""
    raise UserError(f"{verb} takes {name} as a path{one}, a str or pathlib.Path; got {what}.")


def _flag(verb: str, name: str, value: Any) -> bool:
    """``value`` when it is True or False (a NumPy bool too); 'no', 0 or None for a switch is refused."""
    if not isinstance(value, bool):
        raise UserError(f"{verb} takes {name} as True or False; got {_show(value)} ({type(value).__name__}): pass "
                        f"{name}=True to turn it on.")
    return value


def _member_name(verb: str, name: Any) -> str:
    """A member name: a non-empty string (a Path or a number is refused, not turned into a folder name)."""
    if not isinstance(name, str) or not name.strip():
        raise UserError(f"{verb} takes name as a member name, a non-empty string such as 'a'; got {_show(name)} "
                        f"({type(name).__name__}).")
    return name


def _texts(verb: str, name: str, values: Any, *, numbers: bool = False) -> list[str] | None:
    """``"a"``, ``"a,b"`` (as on the command line) or a list of texts as a list of names; None stays None.
    ``numbers``: integers are taken too, as their text (labels: ``exclude=[5]``)."""
    if values is None:
        return None
    def whole(v: Any) -> bool:
        return numbers and isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))

    if isinstance(values, str):
        return [v.strip() for v in values.split(",") if v.strip()]
    if whole(values):
        values = [values]  # one integer label: exclude=5 (DDR's ungradable)
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if isinstance(values, (list, tuple)) and all(isinstance(v, (str, np.str_)) or whole(v) for v in values):
        return [str(v) for v in values]  # integer labels are matched as the CSV writes them
    raise UserError(f"{verb} takes {name} as a list of names, or one text 'a,b' as on the command line; got "
                    f"{_show(values)} ({type(values).__name__}).")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _taken(func: Callable, options: dict, source: str) -> dict:
    """The ``options`` that ``func`` takes. The CLI passes every option, at its default when not given (a CSV's
    columns and split shares to an npz, which keeps its own split); an option ``func`` does not take is dropped at
    its default and refused in one sentence at any other value (``source`` says what the data is)."""
    from members.data.dataset import prepare_csv

    names = inspect.signature(func).parameters
    if any(p.kind is p.VAR_KEYWORD for p in names.values()):
        return options
    defaults = {k: p.default for k, p in inspect.signature(prepare_csv).parameters.items()}
    for key, value in options.items():
        if key not in names and value is not None and value != defaults.get(key):
            raise UserError(f"--{key.replace('_', '-')} does not apply to {source}: drop it "
                            f"({key}={_show(value)}).")
    return {k: v for k, v in options.items() if k in names}


def _prepare_keywords() -> list[str]:
    from members.data import dataset

    return [n for f in (dataset.prepare_csv, dataset.prepare_folders, dataset.prepare_npz)
            for n in inspect.signature(f).parameters if n not in ("workdir", "labels_csv", "images_dir", "npz_path")]


@_verb(_prepare_keywords)
def prepare(workdir: PathLike, *, labels: PathLike | None = None, images: PathLike | None = None,
            npz: PathLike | None = None, medmnist: str | None = None, size: int | None = None,
            nominal: bool | None = None, **options: Any):
    """Prepare a workdir from a labels CSV + images folder, a folder per class, an npz or a MedMNIST download.

    Args:
        workdir: the folder to prepare.
        labels: a labels CSV (with ``images``); omit it for a folder-per-class ``images``.
        images: the image folder.
        npz: a MedMNIST-style ``.npz`` instead.
        medmnist: a MedMNIST data set to download instead (e.g. ``"retinamnist"``), at ``size`` px (default 28).
        nominal: ``--nominal``: ``nominal=True`` is ``ordinal=False``.
        **options: keyword options of :func:`members.data.dataset.prepare_csv` (``ordinal``,
            ``classes`` (a list or ``"a,b"``), ``exclude`` (or ``exclude_label``), ``group_column``,
            ``group_pattern``, ``seed``, ``force``, ...).

    Returns:
        A :class:`members.data.dataset.PrepareResult`.
    """
    from members.data import dataset as ds
    from members.data.classes import ORDINAL_MEDMNIST, parse_classes_option

    workdir = _path("prepare", "workdir", workdir)
    labels, npz = _path("prepare", "labels", labels, csv=True), _path("prepare", "npz", npz)
    images = _path("prepare", "images", images)
    for name, value in (("medmnist", medmnist), ("group_column", options.get("group_column")),
                        ("group_pattern", options.get("group_pattern")), ("image_column", options.get("image_column")),
                        ("label_column", options.get("label_column"))):
        if value is not None and not isinstance(value, str):
            raise UserError(f"prepare takes {name} as a text; got {_show(value)} ({type(value).__name__}).")
    if nominal is not None:
        if options.get("ordinal") is not None:
            raise UserError("prepare got both nominal= and ordinal=, two spellings of one option; pass ordinal= alone.")
        options["ordinal"] = not _flag("prepare", "nominal", nominal)
    for name in ("ordinal", "force", "progress"):
        if options.get(name) is not None:
            _flag("prepare", name, options[name])
    given = options.get("classes")
    if isinstance(given, (list, tuple)) and len(given) == 1 and isinstance(given[0], str):
        given = given[0]  # `--classes a,b` once: names split at commas; repeated, each value is one name (`a, b`)
    if isinstance(given, str):
        options["classes"] = parse_classes_option(given)
    options["classes"] = _texts("prepare", "classes", options.get("classes"))
    exclude = _texts("prepare", "exclude", options.pop("exclude", None), numbers=True) or []
    group = options.get("group_column") or options.get("group_pattern")
    sources = [s for s in (labels or images, npz, medmnist) if s]
    if len(sources) != 1:
        raise UserError("Give exactly one data source: --labels CSV --images DIR, --images DIR (a folder per class), "
                        "--npz FILE, or --medmnist NAME.")
    if size is not None and not medmnist:  # it was ignored: an npz has the size it was saved with
        kept = "an npz keeps the size it was saved with" if npz else "a CSV or folder set keeps its images as they are"
        raise UserError(f"--size chooses the size of a --medmnist download; {kept}: drop --size {size}.")
    if npz or medmnist:
        if exclude:
            raise UserError("--exclude-label applies to a CSV or a class-folder set; an npz keeps its official split "
                            "and labels: drop it.")
        if group:
            raise UserError("--group-column and --group-pattern apply to a CSV or a class-folder set; an npz keeps its "
                            "official split: drop them.")
        path = npz or ds.fetch_medmnist(medmnist, size=28 if size is None else size)
        if options.get("ordinal") is None and medmnist and not options.get("classes"):
            options["ordinal"] = medmnist.lower() in ORDINAL_MEDMNIST
        return ds.prepare_npz(workdir, path, **_taken(ds.prepare_npz, options,
                                                      "an npz, which keeps its official split and labels"))
    if not labels:
        if options.get("group_column"):
            raise UserError("--group-column needs a labels CSV; for a folder per class use --group-pattern on the "
                            "image paths instead.")
        return ds.prepare_folders(workdir, images, exclude=exclude, **_taken(
            ds.prepare_folders, options, "a folder per class, whose labels are its folder names"))
    if not images:
        raise UserError("--labels needs --images: pass the folder holding the images named in the CSV.")
    return ds.prepare_csv(workdir, labels, images, exclude=exclude, **options)


def _spec_keywords() -> list[str]:
    import dataclasses

    from members.model.spec import MemberSpec

    return ["set", *(f.name for f in dataclasses.fields(MemberSpec))]


@_verb(_spec_keywords)
def train_member(workdir: PathLike, preset: str | os.PathLike = "small", *, name: str | None = None, log=None,
                 force: bool = False, folds: int | None = None, jobs: int | None = None, backend: str | None = None,
                 **overrides: Any):
    """Train one member from a preset (or a TOML spec file) with spec fields overridden: ``train-member``.

    Args:
        workdir: a prepared workdir.
        preset: a built-in preset name or a TOML spec file.
        name: the member's folder name (default: the preset's).
        log: a callable for progress lines (default: stderr).
        force: replace a complete member of another spec (``--force``), once the new one is complete.
        folds: train a k-fold (bagged) member of ``folds`` copies with out-of-fold predictions (``--folds``).
        jobs: with ``folds``, copies trained at once (``--jobs``; default 1).
        backend: with ``folds``, how the copies are run (``--backend``; default loky).
        **overrides: any :class:`members.model.spec.MemberSpec` field, e.g. ``epochs=2, input_size=64``; or
            ``set=["epochs=2"]``, ``--set``'s ``FIELD=VALUE`` texts.

    Returns:
        A :class:`members.training.trainer.TrainResult`.
    """
    from members.model.spec import resolve_spec
    from members.training.trainer import train_member as _train

    workdir, preset = _path("train_member", "workdir", workdir), _path("train_member", "preset", preset)
    if name is not None:
        _member_name("train_member", name)
    if log is not None and not callable(log):
        raise UserError(f"train_member takes log as a function of one line of text (e.g. log=print); got "
                        f"{_show(log)} ({type(log).__name__}).")
    force = _flag("train_member", "force", force)
    if folds is None and (jobs is not None or backend is not None):
        raise UserError("jobs sets how many fold copies of a k-fold member train at once and needs folds=K."
                        if jobs is not None else "backend sets how the fold copies of a k-fold member are run and "
                        "needs folds=K.")
    sets = overrides.pop("set", None)  # one FIELD=VALUE text (its value may hold commas: [16,32]), or a list of them
    sets = [sets] if isinstance(sets, str) else _texts("train_member", "set", sets) or []
    spec = resolve_spec(preset, overrides, sets)
    stem = Path(preset).stem
    if folds is not None:
        from members.training.folds import train_folded

        return train_folded(workdir, spec, name=name or stem, k=folds, preset=stem, jobs=1 if jobs is None else jobs,
                            log=log, force=force, **({} if backend is None else {"backend": backend}))
    return _train(workdir, spec, name=name or stem, preset=stem, log=log, force=force)


def _vote_keywords() -> list[str]:
    from ensemble.vote import run_vote

    return [n for n in inspect.signature(run_vote).parameters if n not in ("workdir", "console")]


@_verb(_vote_keywords)
def vote(workdir: PathLike, *, methods: Sequence[str] = ("all",), quiet: bool = True, **options: Any) -> dict:
    """Fit the combiners on val, score everything on test, write the report; returns ``report.json``'s dict.

    Args:
        workdir: a workdir with at least two complete members.
        methods: combiner methods (a list, or one name or ``"a,b"`` as on the command line) or ``"all"``.
        quiet: do not print the table (it is still in ``ensemble/report.md``).
        **options: keyword options of :func:`ensemble.vote.run_vote` (``members`` (a list or ``"a,b"``),
            ``n_boot`` (or ``bootstrap``), ``target_coverage`` (or ``coverage``), ``select_by``, ...).
    """
    from rich.console import Console

    from ensemble.vote import run_vote

    workdir = _path("vote", "workdir", workdir)
    console = Console(file=io.StringIO()) if _flag("vote", "quiet", quiet) else None
    if "members" in options:
        options["members"] = _texts("vote", "members", options["members"])
    if "keep_collapsed" in options:
        _flag("vote", "keep_collapsed", options["keep_collapsed"])
    return run_vote(workdir, methods=_names(methods), console=console, **options)


def _names(values: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"soft"`` or ``"soft,stack"`` as one or several names (a string is not a sequence of one-letter names)."""
    return tuple(_texts("vote", "methods", values) or ("all",))


def image_paths(images: Any, verb: str = "predict") -> list[str]:
    """``images`` as a list of path strings: one path, or a sequence of them; arrays, DataFrames and dicts are
    refused in one sentence."""
    if isinstance(images, (str, bytes, os.PathLike)):
        return [os.fsdecode(images)]
    if _is_table(images):
        raise UserError(f"{verb} takes image files or folders (paths); got a {type(images).__name__}, whose items are "
                        "its column names or keys: pass its column of paths (df['path']) or a list of paths.")
    if isinstance(images, np.ndarray):  # a column of paths (df.path.values, df[["path"]].values) is paths; pixels not
        texts = images.dtype.kind in "US" or (images.dtype.kind == "O" and all(
            isinstance(v, (str, bytes, os.PathLike)) for v in images.ravel().tolist()))
        items = images.ravel().tolist() if texts and images.size and (images.ndim <= 1 or images.shape[-1] == 1) \
            else [images]
    else:
        try:
            items = list(images)
        except TypeError:
            items = [images]
    for item in items:
        if not isinstance(item, (str, bytes, os.PathLike)):
            shape = f" of shape {item.shape}" if isinstance(item, np.ndarray) else ""
            raise UserError(f"{verb} takes image files or folders (paths); got a {type(item).__name__}{shape}. Save "
                            "pixel arrays as PNG files first (PIL.Image.fromarray(a).save('eye.png')) and pass their "
                            "paths, so that they go through the same image path as training.")
    return [os.fsdecode(p) for p in items]


@_verb()
def predict(workdir: PathLike, images: PathLike | Sequence[PathLike], *, method: str | None = None, tta: bool = False,
            out: PathLike | None = None, force: bool = False, recursive: bool = False):
    """Grade images (files, or folders of them) with the fitted ensemble; returns a
    :class:`ensemble.inference.PredictionResult`.

    Nothing goes to stdout (the CSV is written only to ``out`` when given; an existing file there
    that is not an earlier predictions CSV is refused unless ``force``).
    """
    from ensemble.inference import predict_images

    return predict_images(_path("predict", "workdir", workdir), image_paths(images), out=_path("predict", "out", out),
                          method=method, tta=_flag("predict", "tta", tta), print_csv=False,
                          force=_flag("predict", "force", force), recursive=_flag("predict", "recursive", recursive))


@_verb()
def explain(workdir: PathLike, images: PathLike | Sequence[PathLike], out: PathLike, *, method: str | None = None,
            tta: bool = False, recursive: bool = False) -> list[Path]:
    """Grad-CAM figures of images (files, or folders of them): ``out/<image stem>.png`` each, as ``explain`` writes.

    Nothing goes to stdout (the command prints each input and its figure there); notes go to stderr.

    Returns:
        The PNGs written, in the order of the readable images.
    """
    from ensemble.explain import explain_images

    return explain_images(_path("explain", "workdir", workdir), image_paths(images, "explain"),
                          _path("explain", "out", out), method=method, tta=_flag("explain", "tta", tta),
                          print_paths=False, recursive=_flag("explain", "recursive", recursive))


@_verb()
def import_member(workdir: PathLike, name: str, *, model: Any = None, val_csv: PathLike | None = None,
                  test_csv: PathLike | None = None, input_size: int | None = None, force: bool = False,
                  image_column: str | None = None, positive_class: str | int | None = None) -> Path:
    """Add a member trained elsewhere: a Keras model (a ``.keras`` file or a ``keras.Model``), or its val and test
    probabilities (CSV files, or a member's ``val.npz``/``test.npz``); returns its folder. See
    :func:`ensemble.importer.import_member`."""
    from ensemble.importer import import_member as _import

    if _is_table(model) or isinstance(model, str):  # else a path or a keras.Model, which the importer checks
        model = _path("import_member", "model", model)
    return _import(_path("import_member", "workdir", workdir), _member_name("import_member", name), model=model,
                   val_csv=_path("import_member", "val_csv", val_csv, csv=True),
                   test_csv=_path("import_member", "test_csv", test_csv, csv=True), input_size=input_size,
                   force=_flag("import_member", "force", force), image_column=image_column,
                   positive_class=positive_class)


@_verb()
def score(labels: Any, probs: Any, *, pred: Any = None, num_classes: int | None = None) -> dict[str, float]:
    """Every metric of the report for one model's predictions: :func:`members.scoring.score`, after checking that
    ``probs`` are probabilities (finite, >= 0, rows summing to 1) and ``labels`` whole class numbers.

    Example:
        >>> s = score([0, 1], [[0.8, 0.2], [0.3, 0.7]])
        >>> s["accuracy"], s["auc"]
        (1.0, 1.0)
    """
    from members import scoring

    try:
        if np.ndim(labels) != 1:
            raise ValueError(f"labels must be 1-D, one class number per row; got shape {np.shape(labels)}.")
        if probs is not None:
            scoring.check_probabilities(probs)
        return scoring.score(labels, probs, pred=pred, num_classes=num_classes)
    except (ValueError, TypeError) as exc:  # text cells, ragged rows, a scalar
        raise UserError(f"score: {exc}") from None


@_verb()
def compare(labels: Any, probs_a: Any, probs_b: Any, *, n_boot: int = 1000, seed: int = 0,
            groups: Any = None, pred_a: Any = None, pred_b: Any = None) -> dict:
    """Score two models' probabilities on the same rows with the report's statistics.

    Args:
        labels: true classes ``(n,)``.
        probs_a: ``(n, k)`` probabilities of model A (e.g. an ensemble's ``predict_proba``).
        probs_b: ``(n, k)`` probabilities of model B (e.g. the best single member).
        n_boot: stratified bootstrap resamples (the same for both: a paired comparison).
        seed: seed of the resamples.
        groups: optional patient id per row; rows of one patient are then resampled together
            (a cluster bootstrap, as ``vote`` does on a split grouped by patient).
        pred_a, pred_b: the models' predicted classes when they are not the argmax of their probabilities (a
            ``+thr`` combiner's ``predict(P)``, whose grades come from cuts of the expected grade, as the report
            scores it); default the argmax. The label metrics and ECE judge these labels.

    Returns:
        ``{"a": metrics, "b": metrics, "difference": metrics of A minus B, "mcnemar_p": float}``
        where each metrics maps ``accuracy``, ``balanced_accuracy``, ``macro_f1``, ``qwk``,
        ``auc``, ``log_loss``, ``ece`` to ``{"value", "ci"}`` — as in ``report.json``.

    Example:
        >>> y = np.array([0, 1, 1, 0]); a = np.eye(2)[y] * 0.8 + 0.1; b = np.full((4, 2), 0.5)
        >>> round(compare(y, a, b, n_boot=20)["a"]["accuracy"]["value"], 2)
        1.0
    """
    from ensemble import stats
    from members.infra.validate import check_seed
    from members.scoring import check_labels, check_probabilities

    try:
        pa, pb = np.asarray(probs_a, dtype=np.float64), np.asarray(probs_b, dtype=np.float64)
        for name, p in (("probs_a", pa), ("probs_b", pb)):
            check_probabilities(p, name)
        labels = check_labels(labels, pa.shape[1])
    except (ValueError, TypeError) as exc:  # text cells, ragged rows, a scalar
        raise UserError(f"compare: {exc}") from None
    if labels.size == 0 or isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise UserError(f"compare needs at least one row and a whole n_boot >= 1; got {labels.size} rows, "
                        f"n_boot={n_boot!r}.")
    if pa.shape != pb.shape or pa.shape[0] != labels.shape[0]:
        raise UserError(f"compare needs two (n, k) probability arrays for the same n labels; got {pa.shape} and "
                        f"{pb.shape} for {labels.shape[0]} labels.")
    if groups is not None and len(groups) != len(labels):
        raise UserError(f"compare got {len(groups)} groups for {len(labels)} labels; pass one patient id per row.")
    seed = check_seed(seed, "compare: seed")
    indices = stats.bootstrap_indices(len(labels), n_boot, seed, stratify=labels, groups=groups)
    try:
        pred_a, pred_b = (pa.argmax(axis=1) if given is None else check_labels(given, pa.shape[1], name=name)
                          for given, name in ((pred_a, "pred_a"), (pred_b, "pred_b")))
    except (ValueError, TypeError) as exc:
        raise UserError(f"compare: {exc}") from None
    if len(pred_a) != len(labels) or len(pred_b) != len(labels):
        raise UserError(f"compare: pred_a and pred_b need one class per label ({len(labels)}); got {len(pred_a)} "
                        f"and {len(pred_b)}.")
    return {
        "a": stats.bootstrap_metrics(labels, pa, pred_a, indices=indices),
        "b": stats.bootstrap_metrics(labels, pb, pred_b, indices=indices),
        "difference": stats.bootstrap_difference(labels, (pa, pred_a), (pb, pred_b), indices=indices),
        "mcnemar_p": stats.mcnemar_exact(labels, pred_a, pred_b),
    }


@_verb()
def diversity(labels: Any, preds: Any) -> dict:
    """Pairwise diversity of models' predicted classes (:func:`ensemble.stats.diversity`), after checking that
    ``labels`` are class numbers and ``preds`` a dict ``{name: predicted classes}`` of one class per label.

    Example:
        >>> d = diversity([0, 1, 1, 0], {"a": [0, 1, 1, 0], "b": [0, 1, 0, 0]})
        >>> d["members"], d["disagreement"][0][1]
        (['a', 'b'], 0.25)
    """
    from ensemble import stats
    from members.infra.validate import MAX_CLASSES
    from members.scoring import check_labels

    if isinstance(labels, dict) and not isinstance(preds, dict):
        raise UserError("diversity takes the labels first and then the dict of predictions; got a dict first: swap "
                        "them, diversity(labels, {name: predicted classes}).")
    if not isinstance(preds, dict) or len(preds) < 2:
        got = f"a dict of {len(preds)} model(s)" if isinstance(preds, dict) else f"a {type(preds).__name__}"
        raise UserError(f"diversity takes preds as a dict of two or more models' predicted classes, {{name: classes}}; "
                        f"got {got}: name each model, e.g. {{'a': pred_a, 'b': pred_b}}.")
    try:
        if np.ndim(labels) != 1:
            raise ValueError(f"labels must be 1-D, one class number per row; got shape {np.shape(labels)}.")
        labels = check_labels(labels, MAX_CLASSES)
        given = {str(name): check_labels(p, MAX_CLASSES, name=f"preds[{name!r}]") for name, p in preds.items()}
    except (ValueError, TypeError) as exc:
        raise UserError(f"diversity: {exc}") from None
    wrong = {name: len(p) for name, p in given.items() if len(p) != len(labels)}
    if wrong:
        raise UserError(f"diversity needs one predicted class per label ({len(labels)}); got "
                        f"{', '.join(f'{n} for {name!r}' for name, n in wrong.items())}.")
    return stats.diversity(labels, given)
