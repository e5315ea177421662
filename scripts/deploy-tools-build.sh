#!/usr/bin/env bash
# Build (or reuse) the `helm` and `kustomize` binaries that render the deployment
# artifacts in tests (tests/integration/test_deploy_manifests.py) and `make deploy-tools`.
# Both come from the Go module proxy (no GitHub releases, no get.helm.sh needed).
#
# Binaries are cached under versioned names, so a version bump rebuilds:
#   $CACHE/bin/helm-<version>   $CACHE/bin/kustomize-<version>
# The last line on stdout is that directory; progress and timings go to stderr.
#
# Environment:
#   CALICO_RR_CACHE              cache root (default: $HOME/.cache/calico-rr).
#   CALICO_RR_HELM_VERSION       helm.sh/helm/v3 version (default below).
#   CALICO_RR_KUSTOMIZE_VERSION  sigs.k8s.io/kustomize/kustomize/v5 version (default below).
set -euo pipefail

HELM_VERSION="${CALICO_RR_HELM_VERSION:-v3.22.0}"
KUSTOMIZE_VERSION="${CALICO_RR_KUSTOMIZE_VERSION:-v5.8.2}"

log() { printf '[deploy-tools-build] %s\n' "$*" >&2; }

CACHE_ROOT="${CALICO_RR_CACHE:-${HOME}/.cache/calico-rr}"
OUT_DIR="${CACHE_ROOT}/bin"
HELM="${OUT_DIR}/helm-${HELM_VERSION}"
KUSTOMIZE="${OUT_DIR}/kustomize-${KUSTOMIZE_VERSION}"
mkdir -p "${OUT_DIR}"

have_all() { [[ -x "${HELM}" && -x "${KUSTOMIZE}" ]]; }

if have_all; then
    log "reusing ${HELM} and ${KUSTOMIZE}"
    echo "${OUT_DIR}"
    exit 0
fi

# One build at a time per cache directory (CI and a developer may race).
exec 9>"${OUT_DIR}/.deploy-tools.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if have_all; then
    log "reusing binaries built by a concurrent run"
    echo "${OUT_DIR}"
    exit 0
fi

command -v go >/dev/null 2>&1 || { log "go is not installed"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/calico-rr-tools-build.XXXXXX")"
cleanup() { rm -rf "${WORK}"; }
trap cleanup EXIT

export CGO_ENABLED=0
# A Go older than a module's `go` line fetches the right toolchain from the module
# proxy (golang.org/toolchain) instead of failing.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
TIMINGS="${OUT_DIR}/build-times.txt"

now() { date +%s; }

# go_install NAME PACKAGE VERSION TARGET [LDFLAGS]
go_install() {
    local name="$1" package="$2" version="$3" target="$4" ldflags="${5:-}" start
    start="$(now)"
    log "${name} ${version}: downloading modules and compiling (go install ${package}@${version})"
    mkdir -p "${WORK}/${name}"
    # `go install pkg@version` builds in module mode with the module's own go.mod
    # (its exact dependency versions), outside any workspace.
    (cd "${WORK}" && GOBIN="${WORK}/${name}" GOWORK=off \
        go install -trimpath -ldflags "-s -w ${ldflags}" "${package}@${version}" >&2)
    mv "${WORK}/${name}/${name}" "${target}.tmp"
    mv "${target}.tmp" "${target}"
    echo "${name} ${version} (go $(go env GOVERSION)): $(($(now) - start))s" >>"${TIMINGS}"
    log "${name} built in $(($(now) - start))s"
}

helm_ldflags() {
    # Stamped as helm's own Makefile does: its version (`helm version`), and the
    # Kubernetes version `helm template` / `helm lint` assume without a cluster
    # (1.<client-go minor>; unstamped it is 1.20, which fails our kubeVersion).
    local gomod minor
    log "helm ${HELM_VERSION}: resolving its go.mod"
    gomod="$(cd "${WORK}" && go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" \
        | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "${gomod}" ]] || { log "could not find go.mod of helm ${HELM_VERSION}"; return 1; }
    minor="$(sed -n 's#^[[:space:]]*k8s\.io/client-go v0\.\([0-9]*\)\..*#\1#p' "${gomod}")"
    [[ -n "${minor}" ]] || { log "no k8s.io/client-go in ${gomod}"; return 1; }
    local v
    for v in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
        printf -- '-X %s.k8sVersionMajor=1 -X %s.k8sVersionMinor=%s ' "${v}" "${v}" "${minor}"
    done
    printf -- '-X helm.sh/helm/v3/internal/version.version=%s' "${HELM_VERSION}"
}

if [[ ! -x "${HELM}" ]]; then
    flags="$(helm_ldflags)"  # a failure here stops the script (set -e)
    go_install helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION}" "${HELM}" "${flags}"
fi
if [[ ! -x "${KUSTOMIZE}" ]]; then
    go_install kustomize sigs.k8s.io/kustomize/kustomize/v5 "${KUSTOMIZE_VERSION}" "${KUSTOMIZE}"
fi

have_all || { log "binaries missing in ${OUT_DIR}"; exit 1; }
"${HELM}" version --short >&2
"${KUSTOMIZE}" version >&2
log "helm ${HELM_VERSION} and kustomize ${KUSTOMIZE_VERSION} ready in ${OUT_DIR}"
echo "${OUT_DIR}"
