# Two entry points for a fresh clone (see README):  make demo  |  make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test unit integration controlplane calico deploy-tools bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The main job on an embedded default: a local kube-apiserver + etcd (built once
# from the Go module proxy, then cached), 1000 synthetic nodes in 3 zones on the
# full mesh, the operator migrating them to route reflectors, verified, a join,
# a zone failure and the re-convergence; then calico-rr-demo-report.html about it.
demo: $(STAMP)
	$(BIN)/calico-rr demo

# The whole suite: lint, types, unit + property tests, then the integration tests;
# the binaries those need are built (or reused from the cache) in the background
# meanwhile (scripts/test.sh).
test: $(STAMP)
	VENV=$(VENV) scripts/test.sh

# Real kube-apiserver + etcd, built from the Go module proxy and cached outside the
# repo (scripts/controlplane-build.sh; KUBEBUILDER_ASSETS is honoured).
controlplane:
	scripts/controlplane-build.sh

# Calico's confd and calicoctl (+ confd's templates, Calico's v1 CRDs), built from the
# Go module proxy and cached outside the repo (scripts/calico-build.sh; docs/CALICO.md).
calico:
	scripts/calico-build.sh

# helm and kustomize, built from the Go module proxy and cached outside the repo
# (scripts/deploy-tools-build.sh; ~4 minutes once).  Install guide: docs/INSTALL.md.
deploy-tools:
	scripts/deploy-tools-build.sh

integration: $(STAMP)
	$(BIN)/pytest -m integration

unit: $(STAMP)
	$(BIN)/pytest -m "not integration and not slow"

bench: $(STAMP)
	$(BIN)/pytest bench --benchmark-only --benchmark-columns=min,median,max,rounds

clean:
	rm -rf $(VENV)
