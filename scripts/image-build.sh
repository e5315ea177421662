#!/usr/bin/env bash
# Build (or reuse) the operator image without a Docker daemon: an OCI image layout
# that tests/integration/test_image.py unpacks and runs, and that `skopeo copy
# oci:<dir>:<tag> docker://...` can push (docs/INSTALL.md, "The image").
#
#   * a Debian root filesystem made by mmdebstrap from Debian's packages: variant
#     "essential" (Essential:yes packages: libc, coreutils, dash, ...) plus python3,
#     merged /usr, no docs/man pages/locales; Debian's python3 is 3.11 on bookworm,
#     the Python constraints.txt is resolved for;
#   * the exact wheels of constraints.txt (the runtime dependencies, not the
#     `plots` extra: no matplotlib/numpy) and calico-rr's own wheel, installed by
#     pip running inside the root filesystem (the image's own Python checks the
#     wheel tags and compiles the bytecode; pip itself is run from its wheel file
#     and does not stay in the image);
#   * user 65532 (nonroot), ENTRYPOINT ["/usr/local/bin/calico-rr", "run"],
#     WORKDIR/HOME /tmp, port 8080, and the OCI labels source/version/revision;
#   * packed by umoci into one gzip layer.
#
# The image is cached per content: this script, constraints.txt, pyproject.toml,
# README.md, every file of calico_rr/ and the git revision, under
#   $CACHE/image/oci-<key>/oci          (the OCI layout; tag = the package version)
#   $CACHE/image/oci-<key>/image.json   (tag, sizes, build time, labels)
# with the Debian base tarball, the .deb files and the wheels cached beside it.
# The last line on stdout is the image reference `<layout dir>:<tag>`; progress goes
# to stderr.  Needs root (mmdebstrap --mode=root, chroot, file owners in the layer);
# installs mmdebstrap and umoci with apt-get when they are missing.
#
# Environment:
#   CALICO_RR_CACHE             cache root (default: $HOME/.cache/calico-rr).
#   CALICO_RR_IMAGE_SUITE       Debian suite (default: bookworm, Python 3.11).
#   CALICO_RR_DEBIAN_MIRROR     Debian mirror (default: http://deb.debian.org/debian).
#   CALICO_RR_DEBIAN_SECURITY   security mirror (default: http://deb.debian.org/debian-security).
#   CALICO_RR_IMAGE_SOURCE      org.opencontainers.image.source (default: git's origin URL).
#   CALICO_RR_IMAGE_BASE_DAYS   rebuild the cached Debian base after this many days
#                               (default 7, so security updates come in).
set -euo pipefail

SUITE="${CALICO_RR_IMAGE_SUITE:-bookworm}"
MIRROR="${CALICO_RR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY="${CALICO_RR_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}"
BASE_DAYS="${CALICO_RR_IMAGE_BASE_DAYS:-7}"
# The pip that installs the wheels inside the root filesystem (run from its wheel
# file; it is not installed in the image).
PIP_VERSION=26.3
UID_GID=65532

log() { printf '[image-build] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

REPO="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${CALICO_RR_CACHE:-${HOME}/.cache/calico-rr}/image"
PYTHON="${REPO}/.venv/bin/python"
[[ -x "${PYTHON}" ]] || PYTHON=python3
mkdir -p "${CACHE}"

[[ "$(id -u)" == 0 ]] || die "run as root: mmdebstrap --mode=root, chroot and the layer's file owners need it"

CHROOT="$(command -v chroot)"  # /usr/sbin: off the clean PATH used below
ARCH="$(dpkg --print-architecture)"
case "${ARCH}" in
    amd64) PYARCH=x86_64 ;;
    arm64) PYARCH=aarch64 ;;
    *) die "unsupported architecture ${ARCH}" ;;
esac

VERSION="$("${PYTHON}" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "${REPO}/pyproject.toml")"
REVISION="$(git -C "${REPO}" rev-parse HEAD 2>/dev/null || echo unknown)"
if [[ "${REVISION}" != unknown && -n "$(git -C "${REPO}" status --porcelain -- calico_rr pyproject.toml constraints.txt README.md 2>/dev/null)" ]]; then
    REVISION="${REVISION}-dirty"  # built from uncommitted changes: say so
fi
SOURCE="${CALICO_RR_IMAGE_SOURCE:-$(git -C "${REPO}" config --get remote.origin.url 2>/dev/null || echo "file://${REPO}")}"

# What the image is made of: the same inputs give the same cache entry.
source_key() {
    {
        printf '%s\n' "${SUITE}" "${MIRROR}" "${SECURITY}" "${ARCH}" "${REVISION}" "${SOURCE}"
        cd "${REPO}"
        find calico_rr -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z |
            xargs -0 sha256sum
        sha256sum scripts/image-build.sh constraints.txt pyproject.toml README.md
    } | sha256sum | cut -c1-16
}
KEY="$(source_key)"
OUT="${CACHE}/oci-${KEY}"
REF="${OUT}/oci:${VERSION}"

if [[ -f "${OUT}/image.json" ]]; then
    log "reusing ${OUT}"
    echo "${REF}"
    exit 0
fi

# One build at a time per cache directory (a test and a developer may race).
exec 9>"${CACHE}/.lock"
flock 9
if [[ -f "${OUT}/image.json" ]]; then
    log "reusing the image built by a concurrent run"
    echo "${REF}"
    exit 0
fi

START="$(date +%s)"
missing=()
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v umoci >/dev/null 2>&1 || missing+=(umoci)
if ((${#missing[@]})); then
    log "installing ${missing[*]} from Debian"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2 ||
        { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2; }
fi

WORK="$(mktemp -d "${CACHE}/tmp.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT

# -- 1. the Debian base (cached; its .deb files too) -----------------------------------
DEBS="${CACHE}/debs-${SUITE}-${ARCH}"
# The merged-usr hook installs usr-is-merged instead of usrmerge (which would pull in
# perl); the dpkg path-excludes keep docs, man pages and locales out.
BASE_RECIPE=(
    --mode=root --variant=essential --include=python3 --format=tar
    --architectures="${ARCH}"
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
    --dpkgopt='path-exclude=/usr/share/doc/*'
    --dpkgopt='path-include=/usr/share/doc/*/copyright'
    --dpkgopt='path-exclude=/usr/share/man/*'
    --dpkgopt='path-exclude=/usr/share/info/*'
    --dpkgopt='path-exclude=/usr/share/locale/*'
)
SOURCES=(
    "deb ${MIRROR} ${SUITE} main"
    "deb ${MIRROR} ${SUITE}-updates main"
    "deb ${SECURITY} ${SUITE}-security main"
)
BASE_KEY="$(printf '%s\n' "${BASE_RECIPE[@]}" "${SOURCES[@]}" | sha256sum | cut -c1-16)"
BASE="${CACHE}/base-${SUITE}-${ARCH}-${BASE_KEY}.tar"
if [[ -f "${BASE}" ]] && [[ -z "$(find "${BASE}" -mtime "+${BASE_DAYS}")" ]]; then
    log "reusing the Debian base ${BASE}"
else
    mkdir -p "${DEBS}"
    log "mmdebstrap ${SUITE} (essential + python3) -> ${BASE}"
    # The .deb files are kept between runs (sync-in/sync-out), so a rebuild downloads
    # only what changed in the archive.
    mmdebstrap "${BASE_RECIPE[@]}" --skip=essential/unlink \
        --setup-hook='mkdir -p "$1"/var/cache/apt/archives/' \
        --setup-hook="sync-in ${DEBS} /var/cache/apt/archives/" \
        --customize-hook="sync-out /var/cache/apt/archives ${DEBS}" \
        "${SUITE}" "${WORK}/base.tar" "${SOURCES[@]}" >&2
    rm -f "${CACHE}/base-${SUITE}-${ARCH}-"*.tar
    mv "${WORK}/base.tar" "${BASE}"
fi

# -- 2. the wheels of constraints.txt (cached) ------------------------------------------
WHEELS="${CACHE}/wheels-$(cat "${REPO}/constraints.txt" <(echo "${PIP_VERSION} ${PYARCH}") | sha256sum | cut -c1-16)"
if [[ ! -f "${WHEELS}/.complete" ]]; then
    log "downloading the wheels of constraints.txt -> ${WHEELS}"
    rm -rf "${WHEELS}"
    # The tags CPython 3.11 on glibc 2.17..2.36 accepts; pip inside the root
    # filesystem checks them again against the image's real Python.
    platforms=()
    for minor in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${minor}_${PYARCH}"); done
    platforms+=(--platform "manylinux2014_${PYARCH}" --platform "linux_${PYARCH}")
    "${PYTHON}" -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        "${platforms[@]}" -r "${REPO}/constraints.txt" "pip==${PIP_VERSION}" \
        -d "${WHEELS}.tmp" >&2
    mv "${WHEELS}.tmp" "${WHEELS}"
    touch "${WHEELS}/.complete"
fi

# -- 3. calico-rr's wheel, built from a copy (nothing is written into the repo) -------
mkdir -p "${WORK}/src" "${WORK}/dist"
tar -C "${REPO}" --exclude=__pycache__ --exclude='*.pyc' \
    -cf - pyproject.toml README.md calico_rr | tar -C "${WORK}/src" -xf -
"${PYTHON}" -m pip wheel --quiet --no-deps "${WORK}/src" -w "${WORK}/dist" >&2
WHEEL="$(cd "${WORK}/dist" && ls calico_rr-*.whl)"

# -- 4. the root filesystem, in an umoci bundle ----------------------------------------
log "assembling the root filesystem"
umoci init --layout "${WORK}/oci"
umoci new --image "${WORK}/oci:${VERSION}"
umoci unpack --image "${WORK}/oci:${VERSION}" "${WORK}/bundle" >&2
ROOTFS="${WORK}/bundle/rootfs"
tar -C "${ROOTFS}" -xf "${BASE}"
mkdir -p "${ROOTFS}/tmp/wheels"
cp "${WHEELS}"/*.whl "${WORK}/dist/${WHEEL}" "${REPO}/constraints.txt" "${ROOTFS}/tmp/wheels/"
in_root() {  # a clean environment: nothing of the host's pip configuration leaks in
    env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root LANG=C.UTF-8 "${CHROOT}" "${ROOTFS}" "$@"
}
PIP=(python3 "/tmp/wheels/pip-${PIP_VERSION}-py3-none-any.whl/pip")
# --break-system-packages: pip refuses Debian's externally managed Python otherwise;
# everything goes to /usr/local, which no Debian package touches.
in_root "${PIP[@]}" install --quiet --no-index --find-links /tmp/wheels --no-deps \
    --break-system-packages --root-user-action=ignore --no-cache-dir \
    --disable-pip-version-check -r /tmp/wheels/constraints.txt "/tmp/wheels/${WHEEL}" >&2
in_root "${PIP[@]}" check --disable-pip-version-check >&2
rm -rf "${ROOTFS}/tmp/wheels"
chmod 1777 "${ROOTFS}/tmp"
# The container runtime mounts /dev; the device nodes mmdebstrap made stay out of
# the layer, as in any base image.
find "${ROOTFS}/dev" -mindepth 1 -delete
# A name for the numeric user (ps, whoami); it owns nothing in the image.
grep -q ":${UID_GID}:" "${ROOTFS}/etc/passwd" ||
    echo "nonroot:x:${UID_GID}:${UID_GID}:calico-rr:/tmp:/usr/sbin/nologin" >>"${ROOTFS}/etc/passwd"
grep -q ":${UID_GID}:" "${ROOTFS}/etc/group" ||
    echo "nonroot:x:${UID_GID}:" >>"${ROOTFS}/etc/group"
# The entrypoint starts, as the image's user, and the plotting stack is absent.
env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp "${CHROOT}" --userspec="${UID_GID}:${UID_GID}" \
    "${ROOTFS}" /usr/local/bin/calico-rr run --help >/dev/null
if in_root python3 -c 'import matplotlib' 2>/dev/null; then
    die "matplotlib is in the image: the plots extra must stay out"
fi
ROOTFS_BYTES="$(du -sb "${ROOTFS}" | cut -f1)"

# -- 5. the OCI image --------------------------------------------------------------------
umoci repack --image "${WORK}/oci:${VERSION}" \
    --history.created_by "scripts/image-build.sh (mmdebstrap ${SUITE} + calico-rr ${VERSION})" \
    "${WORK}/bundle" >&2
labels=(
    "org.opencontainers.image.title=calico-rr"
    "org.opencontainers.image.description=Route-reflector operator for Calico BGP at scale"
    "org.opencontainers.image.licenses=Apache-2.0"
    "org.opencontainers.image.source=${SOURCE}"
    "org.opencontainers.image.version=${VERSION}"
    "org.opencontainers.image.revision=${REVISION}"
)
label_args=()
for label in "${labels[@]}"; do label_args+=(--config.label "${label}"); done
umoci config --image "${WORK}/oci:${VERSION}" --no-history \
    --clear=config.env --clear=config.entrypoint --clear=config.cmd \
    --config.user "${UID_GID}:${UID_GID}" \
    --config.entrypoint /usr/local/bin/calico-rr --config.entrypoint run \
    --config.workingdir /tmp --config.exposedports 8080/tcp \
    --config.env PATH=/usr/local/bin:/usr/bin:/bin --config.env HOME=/tmp \
    --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 \
    --config.env LANG=C.UTF-8 \
    "${label_args[@]}" >&2
umoci gc --layout "${WORK}/oci"
rm -rf "${WORK}/bundle"

# The layer is the largest blob; its size as stored (gzip) is what a pull moves.
LAYER_BYTES="$("${PYTHON}" - "${WORK}/oci" "${VERSION}" <<'EOF'
import json, pathlib, sys
layout, tag = pathlib.Path(sys.argv[1]), sys.argv[2]
index = json.loads((layout / "index.json").read_text())
desc = next(m for m in index["manifests"]
            if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
blob = lambda d: layout / "blobs" / d["digest"].replace(":", "/")
manifest = json.loads(blob(desc).read_text())
print(sum(layer["size"] for layer in manifest["layers"]))
EOF
)"
SECONDS_TAKEN=$(($(date +%s) - START))
mkdir -p "${WORK}/out"
mv "${WORK}/oci" "${WORK}/out/oci"
"${PYTHON}" - "${WORK}/out/image.json" <<EOF
import json, sys
json.dump({
    "ref": "${REF}", "tag": "${VERSION}", "revision": "${REVISION}", "suite": "${SUITE}",
    "layer_bytes_gzip": ${LAYER_BYTES}, "rootfs_bytes": ${ROOTFS_BYTES},
    "build_seconds": ${SECONDS_TAKEN},
}, open(sys.argv[1], "w"), indent=2)
EOF
rm -rf "${OUT}"
mv "${WORK}/out" "${OUT}"
log "built ${REF} in ${SECONDS_TAKEN}s: layer $((LAYER_BYTES / 1024 / 1024)) MiB gzip, root filesystem $((ROOTFS_BYTES / 1024 / 1024)) MiB"

# Keep the three newest images; older ones are only disk.
ls -1dt "${CACHE}"/oci-* 2>/dev/null | tail -n +4 | xargs -r rm -rf
echo "${REF}"
