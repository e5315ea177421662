"""Test helpers that need real external parts (see docs/CONTROLPLANE.md)."""

from calico_rr.testing.controlplane import (
    ControlPlane,
    ControlPlaneError,
    apply_crds,
    build_binaries,
    request,
)

__all__ = [
    "ControlPlane",
    "ControlPlaneError",
    "apply_crds",
    "build_binaries",
    "request",
]
