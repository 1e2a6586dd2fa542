"""A one-layer GRU over a padded batch on the CPU, in fewer and larger operations than nn.GRU's.

PyTorch has no oneDNN kernel for the GRU (its CPU LSTM has one), so ``nn.GRU`` steps through
time with autograd recording every gate operation, and its backward pass replays them one by
one: about ten small kernels a time step.  :class:`GRUScan` computes the same function with
PyTorch's own formulas (``r, z = σ(x_rz + W_h·h + b_h)``, ``n = tanh(x_n + r ⊙ (W_hn·h +
b_hn))``, ``h' = n + z ⊙ (h - n)``): the forward pass as seven operations a step into
preallocated tensors (PyTorch's own vectorised sigmoid and tanh), the backward pass as one numba
kernel a step (every gate's gradient in a single pass, from the values the forward pass kept)
plus one matrix product, and the weight gradient as a single product over all steps.  The
input projection ``W_i·x + b_i`` of every step is one ``F.linear`` outside, for autograd.  tests/test_gru_scan.py checks outputs and gradients
against ``nn.GRU``; README.md ("Durations") has the timings.
"""
import numba
import torch
import torch.nn.functional as F

# (grad_h, grad_output, saved, h_prev, grad_gates_x, grad_gates_h): one time step, see below.
BACKWARD_STEP = ("void(float32[:, ::1], float32[:, ::1], float32[:, ::1], float32[:, ::1], "
                 "float32[:, ::1], float32[:, ::1])")


@numba.njit(BACKWARD_STEP, parallel=True, cache=True, error_model="numpy", boundscheck=False)
def backward_step(grad_h, grad_output, saved, h_prev, grad_gates_x, grad_gates_h):
    """Back through one step: on entry ``grad_h`` is the gradient reaching this step's state from
    the next steps, ``grad_output`` the one from this step's output; ``saved`` holds the step's
    ``r | z | n | W_hn·h + b_hn``.  Writes the gradients of the step's input gates and of its
    ``W_h·h + b_h``, and leaves in ``grad_h`` the part of the previous state's gradient that
    does not pass through ``W_h`` (the caller adds that product)."""
    batch, hidden = grad_h.shape
    for b in numba.prange(batch):
        for j in range(hidden):
            grad = grad_h[b, j] + grad_output[b, j]
            reset, update = saved[b, j], saved[b, hidden + j]
            candidate, hidden_n = saved[b, 2 * hidden + j], saved[b, 3 * hidden + j]
            grad_candidate = grad * (1 - update) * (1 - candidate * candidate)
            grad_reset = grad_candidate * hidden_n * reset * (1 - reset)
            grad_update = grad * (h_prev[b, j] - candidate) * update * (1 - update)
            grad_gates_x[b, j] = grad_gates_h[b, j] = grad_reset
            grad_gates_x[b, hidden + j] = grad_gates_h[b, hidden + j] = grad_update
            grad_gates_x[b, 2 * hidden + j] = grad_candidate
            grad_gates_h[b, 2 * hidden + j] = grad_candidate * reset
            grad_h[b, j] = grad * update


class GRUScan(torch.autograd.Function):
    """Hidden states ``(T, B, H)`` of a GRU from a zero state, given the input gates
    ``gates_x = W_i·x + b_i`` ``(T, B, 3H)``, ``weight_hh`` ``(3H, H)`` and ``bias_hh``."""

    @staticmethod
    def forward(ctx, gates_x, weight_hh, bias_hh):
        steps, batch, gates = gates_x.shape
        hidden = gates // 3
        states = gates_x.new_empty(steps + 1, batch, hidden)  # states[t] is h before step t
        states[0] = 0
        saved = gates_x.new_empty(steps, batch, 4 * hidden)  # r | z | n | W_hn·h + b_hn a step
        hidden_gates = gates_x.new_empty(batch, gates)  # W_h·h + b_h
        weight_t = weight_hh.t()
        for t in range(steps):
            step_saved, step_x = saved[t], gates_x[t]
            torch.addmm(bias_hh, states[t], weight_t, out=hidden_gates)
            reset_update = torch.add(step_x[:, :2 * hidden], hidden_gates[:, :2 * hidden],
                                     out=step_saved[:, :2 * hidden]).sigmoid_()
            candidate = torch.addcmul(step_x[:, 2 * hidden:], reset_update[:, :hidden],
                                      hidden_gates[:, 2 * hidden:],
                                      out=step_saved[:, 2 * hidden:3 * hidden]).tanh_()
            step_saved[:, 3 * hidden:] = hidden_gates[:, 2 * hidden:]
            torch.lerp(candidate, states[t], reset_update[:, hidden:], out=states[t + 1])
        ctx.save_for_backward(states, saved, weight_hh)
        return states[1:]

    @staticmethod
    def backward(ctx, grad_states):
        states, saved, weight_hh = ctx.saved_tensors
        steps, batch, hidden = grad_states.shape
        grad_states = grad_states.contiguous()
        grad_gates_x = saved.new_empty(steps, batch, 3 * hidden)
        grad_gates_h = saved.new_empty(steps, batch, 3 * hidden)
        grad_h = saved.new_zeros(batch, hidden)
        grad_h_, grad_states_, saved_, states_, grad_gates_x_, grad_gates_h_ = (
            tensor.numpy() for tensor in
            (grad_h, grad_states, saved, states, grad_gates_x, grad_gates_h))
        for t in range(steps - 1, -1, -1):
            backward_step(grad_h_, grad_states_[t], saved_[t], states_[t], grad_gates_x_[t],
                          grad_gates_h_[t])
            grad_h.addmm_(grad_gates_h[t], weight_hh)
        grad_gates_h = grad_gates_h.view(steps * batch, 3 * hidden)
        grad_weight_hh = grad_gates_h.t() @ states[:-1].reshape(steps * batch, hidden)
        return grad_gates_x, grad_weight_hh, grad_gates_h.sum(0)


def usable(gru, x):
    """Whether :func:`gru_layer` can run ``gru`` over ``x``: one float32 layer on the CPU."""
    return (x.device.type == "cpu" and x.dtype == torch.float32 and gru.num_layers == 1
            and gru.bias and not gru.bidirectional and not gru.batch_first)


def gru_layer(gru, x):
    """What ``gru(x)[0]`` computes for a one-layer, time-major ``nn.GRU`` and ``x`` (T, B, E)."""
    gates_x = F.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)
    return GRUScan.apply(gates_x, gru.weight_hh_l0, gru.bias_hh_l0)
