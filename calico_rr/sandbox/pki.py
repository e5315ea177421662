"""Throwaway certificates for the sandbox's servers, made with the ``openssl``
command: a CA and the server and client certificates it signs (7 days, P-256)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from calico_rr.sandbox.process import ControlPlaneError

_OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = calico-rr-test

[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid

[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
"""


def openssl(pki: Path, *args: str) -> None:
    """Run ``openssl args`` in the directory ``pki``; ControlPlaneError on failure."""
    done = subprocess.run(["openssl", *args], cwd=pki, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{done.stderr}")


def make_ca(pki: Path, extra_sections: str = "") -> None:
    """A throwaway CA in ``pki`` (``ca.crt``, ``ca.key``) plus ``openssl.cnf``, whose
    extension sections (``server_ext``, ``client_ext``, then ``extra_sections``)
    :func:`issue_cert` names."""
    (pki / "openssl.cnf").write_text(_OPENSSL_CONFIG + extra_sections)
    openssl(
        pki,
        "req", "-x509", "-new", "-nodes", "-config", "openssl.cnf",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "7", "-sha256",
        "-subj", "/CN=calico-rr-test-ca", "-extensions", "ca_ext",
    )  # fmt: skip


def issue_cert(pki: Path, name: str, subject: str, extensions: str, serial: int) -> None:
    """``name.crt`` / ``name.key`` in ``pki``, signed by :func:`make_ca`'s CA, with the
    extension section ``extensions`` of its ``openssl.cnf``."""
    openssl(
        pki,
        "req", "-new", "-nodes", "-config", "openssl.cnf",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
    )  # fmt: skip
    openssl(
        pki,
        "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-set_serial", str(serial), "-days", "7", "-sha256",
        "-extfile", "openssl.cnf", "-extensions", extensions, "-out", f"{name}.crt",
    )  # fmt: skip
