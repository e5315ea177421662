#!/usr/bin/env bash
# The whole suite, as `make test` and CI (.ci/run) run it: lint, types, the unit
# tests, then the integration tests.
#
# The parts the integration tests need (kube-apiserver, etcd and kubectl; Calico's
# confd and calicoctl; helm and kustomize; BIRD and chromium from Debian; the
# operator image) are built or installed in the background meanwhile, at the
# lowest CPU priority, by the same scripts the test fixtures run.  On a fresh
# machine that is about ten minutes of compiling, which would otherwise start
# only when the first integration test asks for it.  The integration tests start
# once it is done; a part that failed to build is built again by its fixture,
# which fails the test with the script's error (nothing is skipped).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${VENV:-.venv}/bin"

log="$(mktemp "${TMPDIR:-/tmp}/calico-rr-parts.XXXXXX")"
prepare() {
    local script status=0
    # apt-get takes one lock: the Debian installs run one after the other
    for script in lab-install.sh browser-install.sh controlplane-build.sh calico-build.sh \
        deploy-tools-build.sh image-build.sh; do
        VENV="${VENV:-.venv}" nice -n 19 bash "scripts/${script}" >/dev/null || {
            echo "test.sh: scripts/${script} failed (exit $?)" >&2
            status=1
        }
    done
    return "${status}"
}
set -m  # the background job gets its own process group, killed as one on exit
prepare >"${log}" 2>&1 &
parts=$!
set +m
trap 'kill -- "-${parts}" 2>/dev/null; rm -f "${log}"' EXIT

status=0
"${BIN}/ruff" check calico_rr tests bench || status=1
"${BIN}/mypy" || status=1
"${BIN}/pytest" -m "not integration" || status=1

echo "test.sh: waiting for the integration tests' parts (scripts/*-build.sh, *-install.sh)"
if wait "${parts}"; then
    echo "test.sh: parts ready ${SECONDS} s after the start"
else
    echo "test.sh: some parts failed to build or install; their tests will say why:" >&2
    grep -E "failed|error" "${log}" | tail -20 >&2
fi
# Two streams side by side: the lab tests (real BIRD and confd in network
# namespaces, one lab at a time: they share the host's neighbour limits) and the
# rest (API servers, etcd, the image).  Both mostly wait on daemons, so on two
# cores the pair takes about the longer one's time instead of the sum
# (docs/PERFORMANCE.md, "The test suite's own time").  The lab stream's report
# is printed after the other's.
labs=(tests/integration/test_lab_*.py)
lab_log="$(mktemp "${TMPDIR:-/tmp}/calico-rr-labs.XXXXXX")"
"${BIN}/pytest" -m integration "${labs[@]}" >"${lab_log}" 2>&1 &
lab_stream=$!
trap 'kill -- "-${parts}" 2>/dev/null; kill "${lab_stream}" 2>/dev/null; rm -f "${log}" "${lab_log}"' EXIT
"${BIN}/pytest" -m integration --ignore-glob='tests/integration/test_lab_*' || status=1
wait "${lab_stream}" || status=1
echo "test.sh: the lab tests (run beside the others):"
cat "${lab_log}"
rm -f "${lab_log}"
exit "${status}"
