"""Choosing the training device: ``auto`` takes CUDA, then Apple MPS, then the CPU."""
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
