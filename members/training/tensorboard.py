"""TensorBoard logs of a member's epochs, in the layout Keras' ``TensorBoard`` callback writes.

``<member>/logs/train`` and ``<member>/logs/validation`` hold event files with the scalars
``epoch_loss``, ``epoch_accuracy`` (and ``epoch_learning_rate``; on validation also
``epoch_balanced_accuracy``, ``epoch_qwk``, ``epoch_macro_f1``), one step per epoch, so
``tensorboard --logdir <workdir>/members`` compares members side by side. The trainer's loop
is its own, so the writers are ``tf.summary`` file writers rather than the callback; the
scalars are written with ``tf.summary.write`` and the scalar plugin's metadata (what
``tf.summary.scalar`` does), so writing needs no ``tensorboard`` package — viewing does.

Example:
    >>> log = TensorBoardLog(Path("work/members/small"))      # doctest: +SKIP
    >>> log.epoch(row)                                         # doctest: +SKIP
"""

from __future__ import annotations

import math
from pathlib import Path

LOG_DIR = "logs"
TRAIN_KEYS = {"loss": "epoch_loss", "accuracy": "epoch_accuracy", "lr": "epoch_learning_rate"}
VAL_KEYS = {"val_loss": "epoch_loss", "val_accuracy": "epoch_accuracy", "val_balanced_accuracy": "epoch_balanced_accuracy",
            "val_qwk": "epoch_qwk", "val_macro_f1": "epoch_macro_f1"}


class TensorBoardLog:
    """Two ``tf.summary`` writers (train, validation) under ``<member_dir>/logs``."""

    def __init__(self, member_dir: Path) -> None:
        import tensorflow as tf

        root = Path(member_dir) / LOG_DIR
        self.writers = {"train": tf.summary.create_file_writer(str(root / "train")),
                        "validation": tf.summary.create_file_writer(str(root / "validation"))}

    def epoch(self, row: dict) -> None:
        """Write one history row's scalars at step ``row["epoch"]`` and flush."""
        import tensorflow as tf
        from tensorflow.core.framework import summary_pb2

        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()
        for split, keys in (("train", TRAIN_KEYS), ("validation", VAL_KEYS)):
            with self.writers[split].as_default(step=int(row["epoch"])):
                for key, tag in keys.items():
                    value = row.get(key)
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=metadata)
            self.writers[split].flush()
