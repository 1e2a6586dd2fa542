"""What shapes each optimizer step besides Adam itself: the learning-rate schedule, gradient
clipping and weight averaging (``train.schedule``, ``warmup``, ``grad_clip``, ``swa_start``, or
a model's overrides)."""
import math

import torch
from torch.optim.swa_utils import AveragedModel, get_swa_multi_avg_fn


class LearningRate:
    """Sets the optimizer's learning rate before each step.

    ``constant`` leaves ``lr`` as it is (the seed's).  ``cosine`` rises linearly over the first
    ``warmup`` fraction of ``total_steps`` and then follows a half cosine down to zero at the
    last step: large steps once the start is stable, small ones to settle at the end.
    """

    def __init__(self, optimizer, settings, total_steps):
        self.optimizer, self.base = optimizer, settings["lr"]
        self.schedule, self.total = settings["schedule"], total_steps
        self.warmup_steps = settings["warmup"] * total_steps
        self.done = 0

    def rate(self, step):
        """The learning rate of (0-based) step ``step``."""
        if self.schedule == "constant":
            return self.base
        if step < self.warmup_steps:
            return self.base * (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(self.total - self.warmup_steps, 1)
        return self.base * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    def step(self):
        """Call once before each ``optimizer.step()``."""
        if self.schedule != "constant":
            lr = self.rate(self.done)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        self.done += 1


@torch.no_grad()
def clip_gradients(parameters, max_norm):
    """Scale all gradients so that their global L2 norm is at most ``max_norm`` (as
    ``torch.nn.utils.clip_grad_norm_``, which does not take the sparse gradients that models
    trained on the CPU produce); return the norm before clipping."""
    parameters = [p for p in parameters if p.grad is not None]
    for p in parameters:
        if p.grad.is_sparse:  # the values' norm is the gradient's once each row is there once
            p.grad = unique_rows(p.grad)
    grads = [p.grad._values() if p.grad.is_sparse else p.grad for p in parameters]
    if not grads:
        return 0.0
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = max_norm / (norm.item() + 1e-6)
    if scale < 1:
        for g in grads:
            g.mul_(scale)
    return norm.item()


def unique_rows(grad):
    """A row-sparse gradient with each row once, in increasing order: ``grad`` itself when its
    rows already are, else ``grad.coalesce()``.  An embedding's gradient repeats a row once per
    occurrence; the bag-of-words input's holds each row once, in order, but autograd's
    accumulation drops its coalesced flag, and coalescing it anyway (a sort) took a third of a
    bigram GRU's epoch when clipping."""
    if grad.is_coalesced():
        return grad
    rows = grad._indices()
    if rows.shape[0] == 1 and bool((rows[0, 1:] > rows[0, :-1]).all()):
        return grad
    return grad.coalesce()


def average_of(model):
    """Stochastic weight averaging (Izmailov et al. 2018, ``train.swa_start``): a copy of
    ``model`` whose ``update_parameters(model)`` makes its weights the mean of every state it
    was given.  Once training has fitted the train split, each epoch's weights wander around a
    good solution; their mean sits nearer its middle and scores more steadily than any one of
    them.  The mean is updated in place (torch's in-place foreach form, which AveragedModel
    uses by itself only on accelerators): the large input matrix is never held a third time."""
    return AveragedModel(model, multi_avg_fn=get_swa_multi_avg_fn())
