"""radtune.captioning"""

from importlib.metadata import PackageNotFoundError, version

from radtune.common.quiet import quiet_third_party

# `python -m radtune.<task>.train` imports this package before the training stack, whose bitsandbytes logs a
# line at import time that tells a user nothing: drop it (and only such lines) first.
quiet_third_party()

try:
    __version__ = version("radtune-captioning")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
