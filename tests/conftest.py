"""Shared test settings.

Hypothesis profiles: ``dev`` (default, quick), ``ci`` (more examples; .ci/run
selects it) and ``long`` (for a hunt).  Choose with HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("dev", max_examples=30, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("ci", max_examples=80, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("long", max_examples=400, **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
