"""Start a built-in member (``convnet``, ``article``) from the weights of another saved member.

Transfer between datasets without ImageNet: train a member on one fundus set (IDRiD, an
in-house archive), then start a member of the same architecture on another set from its
``model.keras`` with ``weights = "<that member>/model.keras"``. The whole network is
copied — trunk and head — and then trained on the new set with the spec's own schedule
(its regression cuts are fitted again on the new validation rows).

Layers are paired in order (the ``article`` network's layers carry no fixed names), each
pair of the same kind with weights of the same shapes. The input size may differ (global
pooling); the trunk may not: a different depth, width, block kind or batch norm is refused
with one sentence. A head of another kind or class count (softmax ↔ regression) is left
freshly initialised and said so, since the trunk is what carries over.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from members.infra.errors import UserError

HEAD_LAYERS = ("probs", "ordinal_head", "regression_head")


def _weighted(model) -> list:
    """Layers that own weights, in build order (nested models flattened)."""
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.weights:  # a nested model
            out.extend(_weighted(layer))
        elif layer.weights:
            out.append(layer)
    return out


def _shapes(layer) -> list[tuple]:
    return [tuple(w.shape) for w in layer.weights]


def load_source(path: str):
    """The saved member at ``path`` (``safe_mode=True``), or a UserError saying what the file is not."""
    import keras

    import members.model.architecture  # noqa: F401  (registers the heads, for loading)

    file = Path(path)
    if not zipfile.is_zipfile(file):
        raise UserError(f"Weights file {file} is not a Keras .keras archive; pass the model.keras of a saved member "
                        "(members/<name>/model.keras) of the same architecture, or weights = \"none\".")
    try:
        return keras.saving.load_model(str(file), safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001  (a damaged archive, an unknown layer)
        reason = " ".join(str(exc).split()).split(". ")[0][:200]
        raise UserError(f"Weights file {file} cannot be loaded as a member ({reason}); pass the model.keras of a "
                        "saved member of the same architecture, or weights = \"none\".") from None


def transfer_weights(model, path: str, log=None) -> dict:
    """Copy the weights of the member saved at ``path`` into ``model``, layer by layer in order.

    Returns:
        ``{"copied": n, "fresh_head": [layer names left initialised]}``.

    Raises:
        UserError: the saved member's trunk differs from ``model``'s (kind, count or shapes).
    """
    source = load_source(path)
    ours = [layer for layer in _weighted(model) if layer.name not in HEAD_LAYERS]
    theirs = [layer for layer in _weighted(source) if layer.name not in HEAD_LAYERS]
    name = Path(path).name if Path(path).name != "model.keras" else f"{Path(path).parent.name}/model.keras"
    if len(ours) != len(theirs):
        raise UserError(f"Weights file {path} holds a network of {len(theirs)} weighted layers below the head, but "
                        f"this member has {len(ours)}; start from a member of the same architecture, depth, width, "
                        "block and batch norm (the input size may differ), or use weights = \"none\".")
    for mine, saved in zip(ours, theirs):
        if type(mine) is not type(saved) or _shapes(mine) != _shapes(saved):
            raise UserError(f"Weights file {path} does not fit this member: its layer {saved.name!r} "
                            f"({type(saved).__name__} {_shapes(saved)}) meets {mine.name!r} "
                            f"({type(mine).__name__} {_shapes(mine)}); start from a member of the same architecture, "
                            "depth, width, block and batch norm, or use weights = \"none\".")
    for mine, saved in zip(ours, theirs):
        mine.set_weights(saved.get_weights())
    fresh, heads = [], 0
    for layer in model.layers:
        if layer.name not in HEAD_LAYERS:
            continue
        try:
            saved = source.get_layer(layer.name)
        except ValueError:
            saved = None
        if saved is not None and type(saved) is type(layer) and _shapes(saved) == _shapes(layer):
            layer.set_weights(saved.get_weights())
            heads += 1
        else:
            fresh.append(layer.name)
    if fresh and log is not None:
        log(f"{name}: its head differs from this member's ({', '.join(fresh)}); the trunk is copied and the head "
            "starts fresh")
    return {"copied": len(ours) + heads, "fresh_head": fresh}
