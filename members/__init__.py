"""Everything about one CNN member, in four groups (the README's "How the code is organised"):

- ``members.data`` — labels, folders and MedMNIST files in; the prepared split; one image to a tensor.
- ``members.model`` — the member spec and its presets (``members/presets/*.toml``), architectures, backbones.
- ``members.training`` — one member's trainer and its seams, k-fold and snapshot members, parallel training.
- ``members.infra`` — crash-safe writes, locks, folder transactions, the user-error type, field checks.

``members.scoring`` (the seven metrics of one set of predictions) is a leaf every group may use.
"""

import os as _os

if _os.environ.get("CNN_ENSEMBLE_QUIET") == "1":  # set by the CLI: workers keep TensorFlow's start-up lines quiet too
    from members.infra.quiet import install as _install

    _install()
