"""Everything about one CNN member: spec, data, pipeline, architecture, training."""

import os as _os

if _os.environ.get("CNN_ENSEMBLE_QUIET") == "1":  # set by the CLI: workers keep TensorFlow's start-up lines quiet too
    from members.quiet import install as _install

    _install()
