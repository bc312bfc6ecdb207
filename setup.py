"""The one compiled part of agentplatform: the audio resampler's polyphase FIR.

Everything else about the package is in pyproject.toml. The extension is optional: on a
machine without a C compiler the install still succeeds (setuptools prints a warning)
and ``agentplatform.audio.resample`` falls back to its NumPy path, saying so in the log.
"""

import sys

from setuptools import Extension, setup

# Contracting a*b+c into one fused multiply-add would change the float64 sums between
# builds for different CPUs; off, every build sums the same way.
FLAGS = [] if sys.platform == "win32" else ["-O3", "-ffp-contract=off"]

setup(
    ext_modules=[
        Extension(
            "agentplatform.audio._polyphase",
            sources=["agentplatform/audio/_polyphase.c"],
            extra_compile_args=FLAGS,
            optional=True,
        )
    ]
)
