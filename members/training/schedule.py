"""The optimizer and the learning rate of every epoch: warm-up, the schedule, the fine-tuning factor.

Pure functions of the spec (no TensorFlow until :func:`make_optimizer` is called), so the plan of a
run is testable without building a model:

- :func:`lr_at` — the planned rate of one epoch: a linear warm-up, then ``exponential`` (the
  article's: ``lr × lr_decay`` each epoch) or ``cosine`` (half a cosine from ``lr`` to ~0); a frozen
  backbone's rate is multiplied by ``finetune_lr_factor`` once it is unfrozen.
- :func:`epoch_plan` — ``(phase, input size, rate)`` of every epoch before the retraining rounds:
  one stage per size of the resize schedule, then the undersampled fine-tuning epochs.
- :func:`retrain_lr` — the rate of the retraining rounds.
- :func:`make_optimizer` — SGD with Nesterov momentum (the article's), Adam or AdamW.
"""

from __future__ import annotations

import math

from members.model.spec import MemberSpec


def lr_at(spec: MemberSpec, g: int, total: int) -> float:
    """The planned learning rate of epoch ``g`` (0-based) of ``total``."""
    s = spec
    w = s.warmup_epochs
    if g < w:
        lr = s.lr * (g + 1) / (w + 1)
    elif s.lr_schedule == "cosine":
        lr = s.lr * 0.5 * (1 + math.cos(math.pi * (g - w) / max(total - w, 1)))
    else:
        lr = s.lr * s.lr_decay ** (g - w)
    if s.is_backbone and s.freeze_epochs and s.weights != "none" and g >= s.freeze_epochs:
        lr *= s.finetune_lr_factor
    return lr


def epoch_plan(spec: MemberSpec) -> list[tuple[str, int, float]]:
    """(phase, input size, learning rate) of every epoch before the retraining rounds."""
    s, plan, g = spec, [], 0
    total = s.epochs * len(s.stage_sizes) + s.undersample_epochs
    for size in s.stage_sizes:
        for _ in range(s.epochs):
            plan.append(("train", size, lr_at(s, g, total)))
            g += 1
    for _ in range(s.undersample_epochs):
        plan.append(("undersample", s.input_size, s.undersample_lr_factor * lr_at(s, g, total)))
        g += 1
    return plan


def retrain_lr(spec: MemberSpec, plan: list[tuple[str, int, float]]) -> float:
    """The rate of the retraining rounds: where the schedule ended (cosine) or would go on (exponential), times the factor."""
    s = spec
    return (plan[-1][2] if s.lr_schedule == "cosine" else s.lr * s.lr_decay ** len(plan)) * s.retrain_lr_factor


def make_optimizer(spec: MemberSpec, lr: float):
    """The spec's Keras optimizer at rate ``lr`` (global gradient-norm clipping when ``clipnorm`` > 0)."""
    import keras

    s = spec
    clip = s.clipnorm or None
    if s.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=s.weight_decay, global_clipnorm=clip)
    if s.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr, global_clipnorm=clip)
    return keras.optimizers.SGD(learning_rate=lr, momentum=s.momentum, nesterov=s.nesterov, global_clipnorm=clip)
