"""The real SIP peers tests call on (sipp, baresip): present, or a skip with the
reason — or, under ``make test`` (``AGENTPLATFORM_REQUIRE_SERVICES=1``), a failure,
so CI cannot pass with the SIP claims untested against an independent implementation."""

from __future__ import annotations

import shutil

from tests.services import unavailable

PACKAGES = {"sipp": "sip-tester", "baresip": "baresip"}


def require_program(name: str) -> None:
    """Skip (or fail under make test) unless ``name`` is on the PATH."""
    if shutil.which(name) is None:
        unavailable(name, f"not installed (apt-get install {PACKAGES.get(name, name)}; `make test` installs it)")
