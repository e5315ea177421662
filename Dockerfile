# The calico-rr operator image.
#
#   docker build -t calico-rr:0.1.0 .
#
# Without a Docker daemon, scripts/image-build.sh builds the same operator image
# (Debian bookworm's python3 instead of this base; docs/INSTALL.md) as an OCI layout;
# tests/integration/test_image.py runs that one.
#
# Runs `calico-rr run` as a numeric non-root user (65532, the runAsUser of
# deploy/operator.yaml and the Helm chart) and writes nothing at run time, so the
# pod's root filesystem can be read-only (only /tmp is an emptyDir).
#
# The base is pinned by exact tag.  Pin its digest too in the release pipeline
# (python:3.11.14-slim-bookworm@sha256:...): no registry is reachable from the
# machines this repo is developed and tested on, so the digest cannot be recorded
# here.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/calico-rr
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY calico_rr ./calico_rr
# Exactly the versions of constraints.txt (--no-deps: nothing else comes in; `pip
# check` proves the set complete), then the package itself, not editable and
# without the `plots` extra: the operator never draws, so no matplotlib/numpy.  pip
# compiles the bytecode now, since nothing can be written at run time.  pip and
# setuptools are not needed to run, so they leave the venv.
RUN /opt/calico-rr/bin/pip install --no-deps -r constraints.txt \
 && /opt/calico-rr/bin/pip install --no-deps . \
 && /opt/calico-rr/bin/pip check \
 && /opt/calico-rr/bin/python -m pip uninstall --yes pip setuptools \
 && /opt/calico-rr/bin/calico-rr --help >/dev/null

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="calico-rr" \
      org.opencontainers.image.description="Route-reflector operator for Calico BGP at scale" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/calico-rr /opt/calico-rr
ENV PATH=/opt/calico-rr/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["calico-rr", "run"]
