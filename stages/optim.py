"""Adam on the CPU: torch.optim.Adam's update in one pass over each tensor, for dense and
row-sparse gradients alike.

The bag-of-words models' input matrix (vocabulary × gates, up to 5 million weights) dominates a
training step.  A batch's gradient touches only the rows of the words it contains, so the model
hands it over as a sparse COO tensor (see model.CsrTimesWeight), and this optimizer applies
*dense* Adam to it: untouched rows take the step of a zero gradient (their moments decay and
the weights still move), exactly as torch.optim.Adam would on the densified gradient.  Its
kernel (kernels.adam_rows) reads each weight and its two moments once and writes them once;
torch.optim.Adam would also need the dense gradient written, zeroed and read, and on first use
imports torch._dynamo, two seconds of every training process.  tests/test_optim.py checks the
updates against torch.optim.Adam's.

LazyAdam (``train.optimizer: lazy_adam``) is torch.optim.SparseAdam's rule instead: a sparse
gradient updates only the rows it holds, their weights and moments, and leaves every other row
as it is (kernels.lazy_adam_rows), so a step costs the rows a batch touches, not the whole
vocabulary.  Dense gradients get Adam's step.  Bias correction counts every step of the
parameter, as SparseAdam's does, and the update is Adam's formula (eps added after the bias
correction; SparseAdam adds it before, a difference of order eps).
"""
import math

import numpy as np
import torch

from stages.kernels import adam_rows, lazy_adam_rows
from stages.steps import unique_rows


def _as_rows(tensor):
    """A 2-D numpy view of a contiguous float32 CPU tensor: (first dimension, the rest)."""
    if tensor.dtype != torch.float32 or not tensor.is_contiguous() or tensor.device.type != "cpu":
        raise TypeError(f"stages.optim.Adam takes contiguous float32 CPU tensors, not "
                        f"{tensor.dtype} {tuple(tensor.shape)} on {tensor.device}")
    array = tensor.detach().numpy()
    if array.ndim < 2:
        return array.reshape(1, -1)
    return array.reshape(len(array), math.prod(array.shape[1:]))


class Adam:
    """torch.optim.Adam (no amsgrad, no maximize) for float32 CPU parameters, whose gradients
    may be dense or, for a 2-D parameter, sparse COO tensors of whole rows (as
    nn.Embedding(sparse=True) produces): zero in the rows they leave out."""

    sparse_kernel = staticmethod(adam_rows)  # the rows a sparse gradient leaves out step with a zero gradient

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.params = list(params)
        self.betas, self.eps, self.weight_decay = betas, eps, weight_decay
        self.param_groups = [{"lr": lr}]  # as torch.optim's, for the learning-rate schedule
        # Per parameter, as torch.optim.Adam: the first and second moments and the steps taken;
        # with 2-D numpy views of the weights and moments, which the kernel updates in place.
        self.state = []
        for p in self.params:
            exp_avg, exp_avg_sq = torch.zeros_like(p), torch.zeros_like(p)
            self.state.append({"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq, "step": 0,
                               "arrays": tuple(map(_as_rows, (p, exp_avg, exp_avg_sq)))})

    def zero_grad(self):
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self):
        beta1, beta2 = self.betas
        lr = self.param_groups[0]["lr"]
        for p, state in zip(self.params, self.state):
            if p.grad is None:
                continue  # as torch.optim.Adam: no gradient, no step
            state["step"] += 1
            if p.grad.is_sparse:
                if p.dim() != 2 or p.grad.sparse_dim() != 1:
                    raise TypeError("stages.optim.Adam takes sparse gradients of whole rows of "
                                    f"a 2-D parameter, not {p.grad.sparse_dim()} sparse "
                                    f"dimension(s) of a {p.dim()}-D one")
                grad = unique_rows(p.grad)
                rows = grad._indices()[0].numpy()
                grad_rows = _as_rows(grad._values().contiguous())
            else:
                grad_rows = _as_rows(p.grad.contiguous())
                rows = np.arange(len(grad_rows))
            kernel = self.sparse_kernel if p.grad.is_sparse else adam_rows
            kernel(*state["arrays"], rows, grad_rows, lr / (1 - beta1 ** state["step"]),
                   math.sqrt(1 - beta2 ** state["step"]), 1 - beta1, beta2, 1 - beta2, self.eps,
                   self.weight_decay)


class LazyAdam(Adam):
    """torch.optim.SparseAdam's rule: a sparse gradient's step updates only the rows it holds
    (their weights and moments); dense gradients take Adam's step.  No weight decay: decaying
    only the rows a batch touches would penalise frequent words more than rare ones, and
    SparseAdam refuses it too."""

    sparse_kernel = staticmethod(lazy_adam_rows)

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(params, lr=lr, betas=betas, eps=eps)
