"""Which device the engine runs on.

"auto" (the default) is the first CUDA GPU where torch sees one, else the CPU: a worker on a GPU machine
should use it without being told. Songs differ between devices as they do between precisions (other
kernels, other rounding), so a fleet that mixes GPU and CPU workers should set BILLIONSONGS_DEVICE.
"""

import os

import torch

CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: "str | torch.device | None" = None) -> torch.device:
    """`name` ("auto", "cpu", "cuda" or "cuda:N"; default $BILLIONSONGS_DEVICE, else "auto") as a device."""
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or os.environ.get("BILLIONSONGS_DEVICE") or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in CHOICES[1:]:
        raise ValueError(f"device must be one of {', '.join(CHOICES)} (or cuda:N), not {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU here (this torch build: "
                         f"{torch.__version__}); use --device cpu")
    return torch.device(name)
