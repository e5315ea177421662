#!/usr/bin/env bash
# Build (or reuse) the kube-apiserver, etcd and kubectl binaries used by the
# integration tests (calico_rr/sandbox/controlplane.py; kubectl for the commands the
# docs show, tests/integration/test_kubectl.py).  See docs/CONTROLPLANE.md.
#
# The last line on stdout is the directory holding `kube-apiserver`, `etcd` and
# `kubectl`.
# Everything else (progress, timings) goes to stderr.
#
# Environment:
#   KUBEBUILDER_ASSETS   a directory already holding both binaries: used as is.
#   CALICO_RR_CACHE      cache root (default: $HOME/.cache/calico-rr).
#   CALICO_RR_K8S_VERSION   k8s.io/kubernetes version to build (default below).
#   CALICO_RR_ETCD_VERSION  go.etcd.io/etcd/server/v3 version to build (default below).
#   CALICO_RR_ETCD_SOURCE   "go" (build from the Go module proxy, falling back to
#                           Debian's etcd-server) or "apt" (Debian only).  Default: go.
set -euo pipefail

K8S_VERSION="${CALICO_RR_K8S_VERSION:-v1.35.4}"
ETCD_VERSION="${CALICO_RR_ETCD_VERSION:-v3.6.16}"
ETCD_SOURCE="${CALICO_RR_ETCD_SOURCE:-go}"

log() { printf '[controlplane-build] %s\n' "$*" >&2; }

has_bins() { [[ -x "$1/kube-apiserver" && -x "$1/etcd" && -x "$1/kubectl" ]]; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && has_bins "${KUBEBUILDER_ASSETS}"; then
    log "using KUBEBUILDER_ASSETS=${KUBEBUILDER_ASSETS}"
    echo "${KUBEBUILDER_ASSETS}"
    exit 0
fi

CACHE_ROOT="${CALICO_RR_CACHE:-${HOME}/.cache/calico-rr}"
OUT_DIR="${CACHE_ROOT}/bin/${K8S_VERSION}"
mkdir -p "${OUT_DIR}"

if has_bins "${OUT_DIR}"; then
    log "reusing cached binaries in ${OUT_DIR}"
    echo "${OUT_DIR}"
    exit 0
fi

# One build at a time per cache directory (CI and a developer may race).
exec 9>"${OUT_DIR}/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if has_bins "${OUT_DIR}"; then
    log "reusing binaries built by a concurrent run in ${OUT_DIR}"
    echo "${OUT_DIR}"
    exit 0
fi

command -v go >/dev/null 2>&1 || { log "go is not installed"; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/calico-rr-cp-build.XXXXXX")"
cleanup() { rm -rf "${WORK}"; }
trap cleanup EXIT

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOTOOLCHAIN=local
TIMINGS="${OUT_DIR}/build-times.txt"

now() { date +%s; }

# The module workspace both Kubernetes commands are built in (once per run).
prepare_k8s_module() {
    local mod_json gomod staging minor
    [[ -f "${WORK}/kube/go.sum" ]] && { cd "${WORK}/kube"; return 0; }
    log "kubernetes ${K8S_VERSION}: resolving k8s.io/kubernetes go.mod"
    mkdir -p "${WORK}/kube" && cd "${WORK}/kube"
    go mod init calico-rr.local/controlplane-build >/dev/null 2>&1
    mod_json="$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}")"
    gomod="$(printf '%s\n' "${mod_json}" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "${gomod}" ]] || { log "could not find go.mod of k8s.io/kubernetes@${K8S_VERSION}"; exit 1; }
    # Every `k8s.io/<name> => ./staging/src/k8s.io/<name>` becomes a pin to v0.Y.Z.
    staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "${gomod}" | sort -u)"
    [[ -n "${staging}" ]] || { log "no staging replaces found in ${gomod}"; exit 1; }
    minor="v0.${K8S_VERSION#v1.}"
    {
        echo "module calico-rr.local/controlplane-build"
        echo
        echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
        echo
        echo "require k8s.io/kubernetes ${K8S_VERSION}"
        echo
        echo "replace ("
        while read -r m; do echo "	${m} => ${m} ${minor}"; done <<<"${staging}"
        echo ")"
    } >go.mod
    log "pinned $(wc -l <<<"${staging}") staging modules to ${minor}"
    log "kubernetes ${K8S_VERSION}: downloading modules"
    printf 'package tools\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver"\n\t_ "k8s.io/kubernetes/cmd/kubectl"\n)\n' >tools.go
    go mod tidy >&2 2>&1 || go get "k8s.io/kubernetes/cmd/kube-apiserver@${K8S_VERSION}" \
        "k8s.io/kubernetes/cmd/kubectl@${K8S_VERSION}" >&2
    rm -f tools.go
}

# build_k8s_command NAME: k8s.io/kubernetes/cmd/NAME into OUT_DIR.
build_k8s_command() {
    local name="$1" start
    start="$(now)"
    prepare_k8s_module
    log "${name} ${K8S_VERSION}: compiling"
    # Stamp the version (`/version`, kubectl's skew warnings) as kube's own build does.
    local vpkg="k8s.io/component-base/version" major minor_num
    major="${K8S_VERSION#v}"; major="${major%%.*}"
    minor_num="${K8S_VERSION#v*.}"; minor_num="${minor_num%%.*}"
    go build -trimpath -o "${OUT_DIR}/${name}.tmp" -ldflags "-s -w \
        -X ${vpkg}.gitVersion=${K8S_VERSION} -X ${vpkg}.gitMajor=${major} \
        -X ${vpkg}.gitMinor=${minor_num} -X ${vpkg}.gitTreeState=clean \
        -X ${vpkg}.buildDate=1970-01-01T00:00:00Z" \
        "k8s.io/kubernetes/cmd/${name}" >&2
    mv "${OUT_DIR}/${name}.tmp" "${OUT_DIR}/${name}"
    echo "${name} ${K8S_VERSION} (go $(go env GOVERSION)): $(($(now) - start))s" >>"${TIMINGS}"
    log "${name} built in $(($(now) - start))s"
}

build_etcd_go() {
    local start
    start="$(now)"
    log "etcd ${ETCD_VERSION}: downloading modules of go.etcd.io/etcd/server/v3"
    mkdir -p "${WORK}/etcd" && cd "${WORK}/etcd"
    go mod init calico-rr.local/etcd-build >/dev/null 2>&1
    printf 'package tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
    go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}" >&2 || return 1
    go mod tidy >&2 || return 1
    rm -f tools.go
    log "etcd ${ETCD_VERSION}: compiling"
    go build -trimpath -ldflags "-s -w" -o "${OUT_DIR}/etcd.tmp" go.etcd.io/etcd/server/v3 >&2 \
        || return 1
    mv "${OUT_DIR}/etcd.tmp" "${OUT_DIR}/etcd"
    echo "etcd ${ETCD_VERSION} (go $(go env GOVERSION)): $(($(now) - start))s" >>"${TIMINGS}"
    log "etcd built in $(($(now) - start))s"
}

install_etcd_apt() {
    local start
    start="$(now)"
    if [[ ! -x /usr/bin/etcd ]]; then
        log "installing Debian etcd-server"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq etcd-server >&2
    fi
    # The Debian package starts a system etcd on 2379; our tests use free ports,
    # but there is no need for it to run.
    if command -v systemctl >/dev/null 2>&1; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
    cp /usr/bin/etcd "${OUT_DIR}/etcd"
    echo "$(/usr/bin/etcd --version 2>/dev/null | head -n1) (Debian): $(($(now) - start))s" >>"${TIMINGS}"
}

for cmd in kube-apiserver kubectl; do
    [[ -x "${OUT_DIR}/${cmd}" ]] || build_k8s_command "${cmd}"
done
if [[ ! -x "${OUT_DIR}/etcd" ]]; then
    if [[ "${ETCD_SOURCE}" == "go" ]] && (build_etcd_go); then
        :
    else
        [[ "${ETCD_SOURCE}" == "go" ]] && log "etcd Go build failed; falling back to Debian etcd-server"
        install_etcd_apt
    fi
fi

has_bins "${OUT_DIR}" || { log "binaries missing in ${OUT_DIR}"; exit 1; }
log "binaries ready in ${OUT_DIR}"
echo "${OUT_DIR}"
