"""Optimizers and learning-rate schedules with PyTorch's semantics (``torch.optim``).

    opt = optim.SGD(optim.weight_decay_groups(model, 5e-4), lr=0.1, momentum=0.9, nesterov=True)
    sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    ... model.backward(...); opt.step(); opt.zero_grad() ... ; sched.step()
"""
from . import lr_scheduler
from .optimizer import Optimizer, weight_decay_groups
from .sgd import SGD
from .adam import Adam, AdamW
