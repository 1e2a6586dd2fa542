"""numba kernels of the CPU training step of the bag-of-words models: the input matrix's
sparse gradient (model.CsrTimesWeight) and Adam's update, dense (optim.Adam) or lazy
(optim.LazyAdam).

They are compiled when this module is first imported and cached beside it (``__pycache__``);
later imports load them from there (numba and the kernels: under a second here).  Plain loops,
one pass over the data: numpy or torch would need a temporary array per operation.
"""
import math

import numba
import numpy as np

# (indices, offsets, values, grad_output, vocab_size) -> (rows, product); see below.
SPARSE_PRODUCT = ("Tuple((int64[::1], float32[:, ::1]))"
                  "(int64[::1], int64[::1], float32[::1], float32[:, ::1], int64)")


@numba.njit(SPARSE_PRODUCT, parallel=True, cache=True, error_model="numpy", boundscheck=False)
def csr_transpose_times(indices, offsets, values, grad_output, vocab_size):
    """``Xᵀ·grad_output`` for the CSR rows ``X`` (column ``indices``, row ``offsets``, ``values``)
    of a batch, as (the rows of Xᵀ that hold a non-zero, in order; those rows of the product).
    The other rows of the product are zero."""
    # Xᵀ in CSR form by a counting sort (each column's documents in order), so that every row
    # of the product is summed by one thread, straight from the small grad_output.  Plain loops
    # rather than numpy calls: with parallel=True numba compiles each of those as a parallel
    # loop of its own, which doubled the compile time.
    counts = np.empty(vocab_size, np.int64)
    for column in range(vocab_size):
        counts[column] = 0
    for column in indices:
        counts[column] += 1
    touched_count = 0
    for column in range(vocab_size):
        touched_count += counts[column] > 0
    touched = np.empty(touched_count, np.int64)
    starts = np.empty(touched_count + 1, np.int64)
    free = np.empty(vocab_size, np.int64)  # where a column's next entry goes
    t = total = 0
    for column in range(vocab_size):
        if counts[column]:
            touched[t], starts[t], free[column] = column, total, total
            total += counts[column]
            t += 1
    starts[touched_count] = total
    documents = np.empty(len(indices), np.int64)
    weights = np.empty(len(indices), np.float32)
    for document in range(len(offsets)):
        end = offsets[document + 1] if document + 1 < len(offsets) else len(indices)
        for k in range(offsets[document], end):
            at = free[indices[k]]
            documents[at], weights[at] = document, values[k]
            free[indices[k]] = at + 1
    product = np.empty((touched_count, grad_output.shape[1]), np.float32)
    for t in numba.prange(touched_count):
        row = product[t]
        for j in range(len(row)):
            row[j] = 0
        for at in range(starts[t], starts[t + 1]):
            grad, weight = grad_output[documents[at]], weights[at]
            for j in range(len(row)):
                row[j] += weight * grad[j]
    return touched, product


# (param, exp_avg, exp_avg_sq, rows, grad_rows, then the step's scalars, see Adam.step).
ADAM_ROWS = ("void(float32[:, ::1], float32[:, ::1], float32[:, ::1], int64[::1], float32[:, ::1], "
             "float64, float64, float64, float64, float64, float64, float64)")
CHUNK_ROWS = 64  # rows per parallel task


@numba.njit(inline="always", error_model="numpy")
def _update_row(param, exp_avg, exp_avg_sq, grad, step_size, bias_correction2_sqrt,
                exp_avg_weight, beta2, exp_avg_sq_weight, eps, weight_decay):
    # torch's fused CPU kernel in float32: its operations in its order (it fuses the first
    # moment's multiply-add, so the two agree to rounding).
    for j in range(param.shape[0]):
        weight = param[j]
        g = grad[j] + weight_decay * weight
        m = exp_avg[j] + exp_avg_weight * (g - exp_avg[j])
        v = beta2 * exp_avg_sq[j] + exp_avg_sq_weight * g * g
        exp_avg[j] = m
        exp_avg_sq[j] = v
        param[j] = weight - step_size * m / (math.sqrt(v) / bias_correction2_sqrt + eps)


@numba.njit(ADAM_ROWS, parallel=True, cache=True, error_model="numpy", boundscheck=False)
def adam_rows(param, exp_avg, exp_avg_sq, rows, grad_rows, step_size, bias_correction2_sqrt,
               exp_avg_weight, beta2, exp_avg_sq_weight, eps, weight_decay):
    """One Adam step on a 2-D ``param`` whose gradient is ``grad_rows[k]`` in row ``rows[k]``
    (``rows`` sorted, without repeats) and zero in every other row."""
    # The scalars come in float64, computed as torch computes them, and are used in float32.
    step_size, bias_correction2_sqrt = np.float32(step_size), np.float32(bias_correction2_sqrt)
    exp_avg_weight, exp_avg_sq_weight = np.float32(exp_avg_weight), np.float32(exp_avg_sq_weight)
    beta2, eps, weight_decay = np.float32(beta2), np.float32(eps), np.float32(weight_decay)
    count, width = param.shape
    zero = np.empty(width, np.float32)
    for j in range(width):  # not np.zeros: see csr_transpose_times
        zero[j] = 0
    for chunk in numba.prange((count + CHUNK_ROWS - 1) // CHUNK_ROWS):
        first = chunk * CHUNK_ROWS
        k = np.searchsorted(rows, first)
        for row in range(first, min(first + CHUNK_ROWS, count)):
            if k < len(rows) and rows[k] == row:
                grad = grad_rows[k]
                k += 1
            else:
                grad = zero
            _update_row(param[row], exp_avg[row], exp_avg_sq[row], grad, step_size,
                        bias_correction2_sqrt, exp_avg_weight, beta2, exp_avg_sq_weight, eps,
                        weight_decay)


@numba.njit(ADAM_ROWS, parallel=True, cache=True, error_model="numpy", boundscheck=False)
def lazy_adam_rows(param, exp_avg, exp_avg_sq, rows, grad_rows, step_size, bias_correction2_sqrt,
                   exp_avg_weight, beta2, exp_avg_sq_weight, eps, weight_decay):
    """``adam_rows``'s step on the rows ``rows`` only (sorted, without repeats); every other
    row of ``param`` and its moments is left as it is: the cost grows with the rows a batch
    touches, not with the vocabulary."""
    step_size, bias_correction2_sqrt = np.float32(step_size), np.float32(bias_correction2_sqrt)
    exp_avg_weight, exp_avg_sq_weight = np.float32(exp_avg_weight), np.float32(exp_avg_sq_weight)
    beta2, eps, weight_decay = np.float32(beta2), np.float32(eps), np.float32(weight_decay)
    for k in numba.prange(len(rows)):
        row = rows[k]
        _update_row(param[row], exp_avg[row], exp_avg_sq[row], grad_rows[k], step_size,
                    bias_correction2_sqrt, exp_avg_weight, beta2, exp_avg_sq_weight, eps,
                    weight_decay)
