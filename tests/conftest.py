"""Shared test settings.

Hypothesis profiles: ``dev`` (default, quick), ``ci`` (more examples; .ci/run
selects it) and ``long`` (for a hunt).  Choose with HYPOTHESIS_PROFILE.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("dev", max_examples=30, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("ci", max_examples=80, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("long", max_examples=400, **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def _package_logger_restored() -> Iterator[None]:
    """A command run in-process (``CliRunner``) configures the ``calico_rr`` logger
    (``setup_logging``: a handler on that run's stderr, no propagation); put it
    back after each test, or a later test's log record goes to a closed stream
    and never reaches ``caplog``."""
    logger = logging.getLogger("calico_rr")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved
