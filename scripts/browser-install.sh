#!/usr/bin/env bash
# Install what the headless-browser check of the HTML report needs
# (tests/integration/test_report_browser.py, docs/REPORT.md):
#
#   * Debian's `chromium` package, only when /usr/bin/chromium is missing (needs root,
#     as CI runs);
#   * the Python driver, playwright, at the version pinned in pyproject.toml, into the
#     project's virtualenv when it is not importable there yet.
#
# playwright drives the system chromium through `executable_path`; its own browser
# download (`playwright install`) is never used: the browser comes from Debian.
#
# The last line on stdout is the chromium executable.  Progress goes to stderr.
#
# Environment:
#   CALICO_RR_CHROMIUM   an existing chromium executable to use instead (nothing installed)
#   VENV                 the virtualenv (default: .venv in the repository)
set -euo pipefail

log() { printf '[browser-install] %s\n' "$*" >&2; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-${ROOT}/.venv}"
CHROMIUM="${CALICO_RR_CHROMIUM:-/usr/bin/chromium}"

if [[ ! -x "${CHROMIUM}" ]]; then
    if [[ -n "${CALICO_RR_CHROMIUM:-}" ]]; then
        log "CALICO_RR_CHROMIUM=${CALICO_RR_CHROMIUM} is not an executable"
        exit 1
    fi
    if [[ "$(id -u)" != 0 ]]; then
        log "${CHROMIUM} is missing and installing it needs root (apt-get install chromium)"
        exit 1
    fi
    log "installing Debian's chromium (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends chromium >&2
fi
log "chromium: $("${CHROMIUM}" --version 2>/dev/null || echo unknown)"

if [[ -x "${VENV}/bin/python" ]] && ! "${VENV}/bin/python" -c 'import playwright' 2>/dev/null; then
    PIN="$(grep -o '"playwright==[^"]*"' "${ROOT}/pyproject.toml" | tr -d '"' | head -n 1)"
    if [[ -z "${PIN}" ]]; then
        log "no playwright pin found in pyproject.toml"
        exit 1
    fi
    log "installing ${PIN} into ${VENV}"
    "${VENV}/bin/pip" install --quiet "${PIN}" >&2
fi

echo "${CHROMIUM}"
