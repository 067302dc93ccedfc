"""Values the pinned trainer accepts where its option list does not say (sd-scripts v0.10.1,
library/train_util.py get_optimizer and get_scheduler_fix), and the choices its option list does say.
"""
from __future__ import annotations

import difflib
import re

from kohaku_prep import interface

# get_optimizer's own names, compared lower-cased
BUILTIN_OPTIMIZERS = (
    "AdamW", "AdamW8bit", "PagedAdamW", "PagedAdamW8bit", "PagedAdamW32bit", "Lion", "Lion8bit", "PagedLion8bit",
    "SGDNesterov", "SGDNesterov8bit", "DAdaptation", "DAdaptAdamPreprint", "DAdaptAdaGrad", "DAdaptAdam",
    "DAdaptAdan", "DAdaptAdanIP", "DAdaptLion", "DAdaptSGD", "Prodigy", "Adafactor", "RAdamScheduleFree",
    "AdamWScheduleFree", "SGDScheduleFree",
)
# the built-in names that import bitsandbytes
BITSANDBYTES_OPTIMIZERS = ("AdamW8bit", "PagedAdamW", "PagedAdamW8bit", "PagedAdamW32bit", "Lion8bit", "PagedLion8bit",
                           "SGDNesterov8bit")
# any other name without a dot is looked up, case-sensitive, in torch.optim (torch 2.14.1 of the train extra)
TORCH_OPTIMIZERS = ("ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "LBFGS", "Muon", "NAdam",
                    "RAdam", "RMSprop", "Rprop", "SGD", "SparseAdam")
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")

# get_scheduler_fix's names that run with what the training TOML gives them (warmup and training steps,
# no --lr_scheduler_args): the others need settings this tool does not write
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
              "inverse_sqrt")
NO_WARMUP_SCHEDULERS = ("constant",)  # the trainer raises when given warmup steps


def optimizer_problem(name: str) -> str | None:
    """Why the trainer would not find optimizer `name`, else None."""
    if name.lower() in {o.lower() for o in BUILTIN_OPTIMIZERS} or name in TORCH_OPTIMIZERS or _DOTTED.match(name):
        return None
    known = {o.lower(): o for o in TORCH_OPTIMIZERS + BUILTIN_OPTIMIZERS}
    near = difflib.get_close_matches(name.lower(), list(known), n=1)
    hint = f"did you mean '{known[near[0]]}'? " if near else ""
    return (f"'{name}' is not an optimizer sd-scripts knows: {hint}one of its own ({', '.join(BUILTIN_OPTIMIZERS)}), "
            "a torch.optim class by name, or a dotted import path such as bitsandbytes.optim.AdEMAMix8bit")


def uses_bitsandbytes(name: str) -> bool:
    return name.lower() in {o.lower() for o in BITSANDBYTES_OPTIMIZERS} or name.startswith("bitsandbytes.")


def is_8bit(name: str) -> bool:
    """Keeps about one byte of optimizer state a parameter."""
    return uses_bitsandbytes(name) and "8bit" in name.lower()


def choices(option: str) -> list:
    """The choices the trainer's option list gives `option` (None, meaning unset, left out)."""
    return [c for c in interface.options()[option]["choices"] or [] if c is not None]
