#!/usr/bin/env bash
# Build (or reuse) Calico's own `confd` and `calicoctl`, plus the data that goes with
# them (confd's conf.d + templates, Calico's crd.projectcalico.org/v1 CRDs), from the
# Go module proxy.  Used by calico_rr/adapters/calico_bin.py (tests, `calico-rr lab`)
# and `make calico`.  See docs/CALICO.md.
#
# The last line on stdout is a directory laid out like this:
#   confd  calicoctl            the binaries
#   VERSION                     key=value lines: module, version, commit, branch, ...
#   confdir/conf.d/*.toml       confd's template resources (confd -confdir DIR)
#   confdir/templates/*         confd's templates
#   crds/*.yaml                 Calico's crd.projectcalico.org/v1 CRDs for this version
# Everything else (progress, timings) goes to stderr.
#
# Environment:
#   CALICO_RR_CALICO_BIN      a directory already laid out as above (prebuilt): used as is.
#   CALICO_RR_CACHE           cache root (default: $HOME/.cache/calico-rr).
#   CALICO_RR_CALICO_VERSION  github.com/projectcalico/calico version (default below;
#                             the only one the module proxy serves).
#   CALICO_RR_CALICO_API      Calico's nested `api` module, which the proxy does not
#                             serve (default: ../shared/calico/projectcalico-api beside
#                             the repo).
#   CALICO_RR_CALICO_BRANCH   Calico branch recorded in VERSION (default: derived from
#                             the calico/node image the module's manifests name).
set -euo pipefail

CALICO_MODULE="github.com/projectcalico/calico"
CALICO_VERSION="${CALICO_RR_CALICO_VERSION:-v1.11.0-cni-plugin.0.20250813170300-a0db560f0520}"
CONFD_PKG="${CALICO_MODULE}/confd"
CALICOCTL_PKG="${CALICO_MODULE}/calicoctl/calicoctl"

log() { printf '[calico-build] %s\n' "$*" >&2; }

complete_dir() {
    [[ -x "$1/confd" && -x "$1/calicoctl" && -f "$1/VERSION" \
        && -d "$1/confdir/conf.d" && -d "$1/confdir/templates" && -d "$1/crds" ]]
}

if [[ -n "${CALICO_RR_CALICO_BIN:-}" ]]; then
    if complete_dir "${CALICO_RR_CALICO_BIN}"; then
        log "using CALICO_RR_CALICO_BIN=${CALICO_RR_CALICO_BIN}"
        echo "${CALICO_RR_CALICO_BIN}"
        exit 0
    fi
    log "CALICO_RR_CALICO_BIN=${CALICO_RR_CALICO_BIN} must hold confd, calicoctl, VERSION," \
        "confdir/conf.d, confdir/templates and crds/ (the layout this script builds)"
    exit 1
fi

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
API_DIR="${CALICO_RR_CALICO_API:-${REPO_ROOT}/../shared/calico/projectcalico-api}"
CACHE_ROOT="${CALICO_RR_CACHE:-${HOME}/.cache/calico-rr}"
OUT_DIR="${CACHE_ROOT}/calico/${CALICO_VERSION}"
mkdir -p "${OUT_DIR}"

if complete_dir "${OUT_DIR}"; then
    log "reusing cached Calico binaries in ${OUT_DIR}"
    echo "${OUT_DIR}"
    exit 0
fi

# One build at a time per cache directory (CI and a developer may race).
exec 9>"${OUT_DIR}/.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi
if complete_dir "${OUT_DIR}"; then
    log "reusing binaries built by a concurrent run in ${OUT_DIR}"
    echo "${OUT_DIR}"
    exit 0
fi

command -v go >/dev/null 2>&1 || { log "go is not installed"; exit 1; }
[[ -f "${API_DIR}/go.mod" ]] || {
    log "Calico's api module not found at ${API_DIR} (set CALICO_RR_CALICO_API)"
    exit 1
}
API_DIR="$(cd "${API_DIR}" && pwd)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/calico-rr-calico-build.XXXXXX")"
cleanup() { rm -rf "${WORK}"; }
trap cleanup EXIT

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export GOTOOLCHAIN=local
export GOWORK=off
TIMINGS="${OUT_DIR}/build-times.txt"

now() { date +%s; }
START="$(now)"

# -- the module and its go.mod -------------------------------------------------------
cd "${WORK}"
go mod init calico-rr.local/calico-build >/dev/null 2>&1
log "${CALICO_MODULE}@${CALICO_VERSION}: downloading"
MOD_JSON="$(go mod download -json "${CALICO_MODULE}@${CALICO_VERSION}")"
json_field() { printf '%s\n' "${MOD_JSON}" | sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p"; }
GOMOD="$(json_field GoMod)"
SRC="$(json_field Dir)"
[[ -f "${GOMOD}" && -d "${SRC}" ]] || { log "could not download ${CALICO_MODULE}@${CALICO_VERSION}"; exit 1; }

# Calico's replace directives, block form and one-line form, one `old => new` per line.
REPLACES="$(awk '
    /^replace[[:space:]]*\($/ { inblock = 1; next }
    inblock && /^\)/          { inblock = 0; next }
    inblock                   { print; next }
    /^replace[[:space:]]/     { sub(/^replace[[:space:]]+/, ""); print }
' "${GOMOD}" | sed 's#//.*##; s/^[[:space:]]*//; s/[[:space:]]*$//' | grep -v '^$' || true)"
grep -q '^github.com/projectcalico/api[[:space:]]*=>' <<<"${REPLACES}" || {
    log "no replace for github.com/projectcalico/api in ${GOMOD}"
    exit 1
}
# The api replace points at the shared copy; any other local path cannot be resolved.
REPLACES="$(sed "s#^github.com/projectcalico/api[[:space:]]*=>.*#github.com/projectcalico/api => ${API_DIR}#" <<<"${REPLACES}")"
if grep -v '^github.com/projectcalico/api ' <<<"${REPLACES}" | grep -q '=>[[:space:]]*\.'; then
    log "unexpected local-path replace in ${GOMOD}:"
    grep -v '^github.com/projectcalico/api ' <<<"${REPLACES}" | grep '=>[[:space:]]*\.' >&2
    exit 1
fi
{
    echo "module calico-rr.local/calico-build"
    echo
    echo "go $(go env GOVERSION | sed 's/^go//; s/^\([0-9]*\.[0-9]*\).*/\1/')"
    echo
    echo "require ${CALICO_MODULE} ${CALICO_VERSION}"
    echo
    echo "replace ("
    while read -r r; do echo "	${r}"; done <<<"${REPLACES}"
    echo ")"
} >go.mod
log "copied $(wc -l <<<"${REPLACES}") replace directives (api => ${API_DIR})"

# -- what the module says about itself -------------------------------------------------
# A pseudo-version ends in the commit's first 12 hex digits.
COMMIT="$(sed -n 's/.*-\([0-9a-f]\{12\}\)$/\1/p' <<<"${CALICO_VERSION}")"
# The release the branch's manifests were last stamped with (calico/node:vX.Y.Z).
MANIFESTS="$(grep -ho 'calico/node:v[0-9][0-9.]*' "${SRC}/manifests/calico.yaml" 2>/dev/null \
    | head -n1 | sed 's#.*:##' || true)"
if [[ -n "${CALICO_RR_CALICO_BRANCH:-}" ]]; then
    BRANCH="${CALICO_RR_CALICO_BRANCH}"
elif [[ -n "${MANIFESTS}" ]]; then
    BRANCH="release-$(sed 's/^\(v[0-9]*\.[0-9]*\).*/\1/' <<<"${MANIFESTS}")"
else
    BRANCH="unknown"
fi
# calicoctl compares the part before the first "-" with ClusterInformation's version.
STAMP="${MANIFESTS:-v0.0.0}-g${COMMIT:-unknown}"
log "Calico ${BRANCH} at ${COMMIT:-?} (manifests ${MANIFESTS:-?}); stamping ${STAMP}"

# -- compile ---------------------------------------------------------------------------
log "confd + calicoctl: downloading modules"
go get "${CONFD_PKG}@${CALICO_VERSION}" "${CALICOCTL_PKG}@${CALICO_VERSION}" >&2

build() {  # build NAME PACKAGE LDFLAGS
    local name="$1" pkg="$2" ldflags="$3" start
    start="$(now)"
    log "${name}: compiling ${pkg}"
    go build -trimpath -ldflags "-s -w ${ldflags}" -o "${OUT_DIR}/${name}.tmp" "${pkg}" >&2
    mv "${OUT_DIR}/${name}.tmp" "${OUT_DIR}/${name}"
    log "${name} built in $(($(now) - start))s"
}
build confd "${CONFD_PKG}" "-X ${CONFD_PKG}/pkg/buildinfo.GitVersion=${STAMP}"
CMDS="${CALICO_MODULE}/calicoctl/calicoctl/commands"
build calicoctl "${CALICOCTL_PKG}" \
    "-X ${CMDS}.VERSION=${STAMP} -X ${CMDS}.GIT_REVISION=${COMMIT} -X ${CMDS}/common.VERSION=${STAMP}"

# -- data ------------------------------------------------------------------------------
copy_tree() {  # copy_tree FROM TO: replace TO with a writable copy of FROM
    [[ -d "$1" ]] || { log "missing $1 in the module"; exit 1; }
    rm -rf "$2.tmp" "$2"
    mkdir -p "$(dirname "$2")"
    cp -r "$1" "$2.tmp"
    chmod -R u+w "$2.tmp"
    mv "$2.tmp" "$2"
}
rm -rf "${OUT_DIR}/confdir"
copy_tree "${SRC}/confd/etc/calico/confd/conf.d" "${OUT_DIR}/confdir/conf.d"
copy_tree "${SRC}/confd/etc/calico/confd/templates" "${OUT_DIR}/confdir/templates"
copy_tree "${SRC}/libcalico-go/config/crd" "${OUT_DIR}/crds"
cp "${SRC}/LICENSE.md" "${OUT_DIR}/LICENSE.md"
chmod u+w "${OUT_DIR}/LICENSE.md"

# VERSION last: its presence marks a complete directory.
{
    echo "module=${CALICO_MODULE}"
    echo "version=${CALICO_VERSION}"
    echo "commit=${COMMIT}"
    echo "branch=${BRANCH}"
    echo "manifests=${MANIFESTS}"
    echo "stamp=${STAMP}"
    echo "go=$(go env GOVERSION)"
} >"${OUT_DIR}/VERSION.tmp"
mv "${OUT_DIR}/VERSION.tmp" "${OUT_DIR}/VERSION"

echo "confd+calicoctl ${CALICO_VERSION} (go $(go env GOVERSION)): $(($(now) - START))s" >>"${TIMINGS}"
complete_dir "${OUT_DIR}" || { log "incomplete ${OUT_DIR}"; exit 1; }
"${OUT_DIR}/confd" -version >&2
log "Calico ${BRANCH} binaries ready in ${OUT_DIR} ($(($(now) - START))s)"
echo "${OUT_DIR}"
