"""Keep TensorFlow's start-up noise off stderr (``--verbose`` shows it).

TensorFlow's C++ libraries print lines such as ``WARNING: All log messages before
absl::InitializeLog() ...``, the oneDNN notice and ``Could not find cuda drivers`` while
they load, before any log level applies. :func:`install` sets the usual variables
(``TF_CPP_MIN_LOG_LEVEL``) and a finder that runs the first ``import tensorflow`` with file
descriptor 2 pointed at a temporary file; the captured text is dropped when the import
works and written back to stderr when it fails. It also sets ``CNN_ENSEMBLE_QUIET=1`` so
that worker processes (``train-members``) install it too when they import ``members``.

Example:
    >>> install(verbose=True)  # doctest: +SKIP

(the CLI calls it; ``--verbose`` leaves everything on)
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
import warnings

ENV = "CNN_ENSEMBLE_QUIET"
_PACKAGE = "tensorflow"


@contextlib.contextmanager
def stderr_captured():
    """Point fd 2 at a temp file; on an error write what was captured back to stderr (not on Ctrl-C or SIGTERM:
    the start-up lines say nothing about an interruption)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:
            os.dup2(saved, 2)
            tmp.seek(0)
            sys.stderr.write(tmp.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def library_warnings_off():
    """Within the block, Python warnings (Keras's, TensorFlow's, NumPy's) are not shown: a call the toolkit makes to
    probe a user's model (``import-member``) says what it finds in its own sentence, and a raw ``UserWarning``
    with its ``warnings.warn(`` line before that sentence only confused it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        with stderr_captured():
            self.inner.exec_module(module)
        _after_import()


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != _PACKAGE:
            return None
        sys.meta_path.remove(self)  # once is enough: the package is imported only once
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _after_import() -> None:
    with contextlib.suppress(Exception):
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    with contextlib.suppress(Exception):
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")


def install(verbose: bool = False) -> None:
    """Quiet TensorFlow for this process and its children, unless ``verbose``."""
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        os.environ[ENV] = "0"
        # an earlier quiet install (at ``import members`` in a quiet parent's worker) is undone
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ[ENV] = "1"
    # Pillow warns of a large image below its refusal limit in a raw traceback-like line; prepare and predict
    # decode such an image (it is a big photograph) and refuse the ones over the limit in their own words
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
    if _PACKAGE not in sys.modules and not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
