"""Choosing the training device: ``auto`` takes CUDA, then Apple MPS, then the CPU."""
import functools

import torch

from stages.errors import PipelineError


def choose(name):
    """The torch.device for a ``train.device`` value; an absent explicit device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            built = "with" if torch.backends.cuda.is_built() else "without"
            raise PipelineError(f"params.yaml: train.device is {name}, but no CUDA GPU is visible "
                                f"(torch {torch.__version__} is built {built} CUDA); "
                                "use device: auto or cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PipelineError(f"params.yaml: train.device is {name}, but only "
                                f"{torch.cuda.device_count()} CUDA device(s) are visible; "
                                "use device: auto, cuda or a visible cuda:<index>")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise PipelineError(f"params.yaml: train.device is {name}, but Apple MPS is not available "
                            "here; use device: auto or cpu")
    return device


# glibc's mallopt(3) parameters
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory():
    """Have glibc keep freed memory for reuse instead of handing it back to the kernel.

    Training allocates the same large blocks at every batch: oneDNN's LSTM its workspace, the
    bag-of-words models their sparse input gradient (50 MB a batch over 491k bigram terms).  By
    default glibc serves such blocks with mmap and unmaps them on free, so the next batch
    page-faults the same memory back in, zeroed: ~35,000 page faults a batch for lstm_seq, a
    third of its time spent in the kernel.  Serving them from the heap and not trimming it made
    an lstm_seq epoch 1.4x and a 491k-term GRU epoch 2x faster, with the same numbers (README,
    "Durations").  PyTorch's performance guide suggests preloading jemalloc or tcmalloc for
    the same reason; this needs no preload.
    Returns whether the settings took (False off glibc, e.g. on macOS, where nothing changes)."""
    mallopt = _glibc("mallopt")
    return mallopt is not None and all(mallopt(option, value) == 1 for option, value in
                                       ((M_MMAP_THRESHOLD, 2**30), (M_TRIM_THRESHOLD, 2**30)))


def release_freed_memory():
    """Hand the heap's free pages back to the kernel (glibc's malloc_trim), once an epoch.

    What :func:`keep_freed_memory` keeps fragments: batches of varying lengths leave holes that
    later blocks do not quite fit, so the heap grows by a few per cent an epoch (an lstm_seq
    over 150 words reached 2.0 GB of RSS in 10 epochs, 1.2 GB after the first).  Trimming after
    each epoch bounds the process to about one epoch's growth, for some 40,000 page faults an
    epoch as the next one reuses the pages.  Returns whether anything could be done (False off
    glibc)."""
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is None:
        return False
    malloc_trim(0)
    return True


@functools.lru_cache(maxsize=None)
def _glibc(function):
    """A function of the C library when it is glibc's (it has mallopt), else None."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt  # glibc's: musl and macOS lack mallopt or malloc_trim
        return getattr(libc, function)
    except (OSError, AttributeError, TypeError):
        return None
