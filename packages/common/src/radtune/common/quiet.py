"""Third-party messages that tell a radtune user nothing they can act on, silenced in this one place.

Each entry names one logger or one warning (category, message and the module that raises it) and says why it
appears and why dropping it is safe; nothing else is touched. Warnings that matter stay visible: TRL's "may not
learn to stop", data problems, transformers' and radtune's own messages about the user's settings. Radtune's own
deprecated calls are fixed where they are made, not silenced here.

Entry points call `quiet_third_party()` before their heavy imports (the `radtune` command does; a training module
does it through its task package's `__init__`, which `python -m radtune.<task>.train` imports first).
"""

from __future__ import annotations

import logging
import warnings

# (logger, message prefix)
LOG_NOISE: tuple[tuple[str, str], ...] = (
    # bitsandbytes >= 0.49 on a CPU with AVX512-BF16 tries, when it is imported (peft and TRL import it), to fetch
    # an optional CPU 4-bit kernel from the Hub; without it 4-bit layers use bitsandbytes' own CPU code.
    ("bitsandbytes.backends.cpu.ops", "Failed to load CPU gemm_4bit_forward"),
    # The same fetch, offline (HF_HUB_OFFLINE=1).
    ("kernels._internals.hf_hub", "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes'"),
)
# (category, message regex, module regex): arguments of `warnings.filterwarnings`.
WARNING_NOISE: tuple[tuple[type[Warning], str, str], ...] = (
    # peft's get_peft_model reads transformers' deprecated `is_gradient_checkpointing` alias (peft_model.py).
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated", r"transformers\.modeling_utils"),
)


class _DropMessages(logging.Filter):
    """Drops the records of one logger whose message starts with one of `prefixes`."""

    def __init__(self, prefixes: tuple[str, ...]):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


def quiet_third_party() -> None:
    """Silence `LOG_NOISE` and `WARNING_NOISE`. Cheap (imports nothing), idempotent, and must run before the
    libraries are imported: the bitsandbytes message comes at import time."""
    for name, prefix in LOG_NOISE:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and prefix in f.prefixes for f in logger.filters):
            logger.addFilter(_DropMessages((prefix,)))
    for category, message, module in WARNING_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
