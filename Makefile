# flannelnode: `make images` builds the node artifacts, `make test` runs the tests.
# Both install what they need first (`make deps`): Debian packages, a .venv, idempotently.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUILD := build
STAMP := $(VENV)/.installed

# Debian packages the steps and the tests use for real (see shared LAB-NOTES for why each).
APT_PACKAGES := ca-certificates git openssl gcc dash shellcheck systemd \
	etcd-server etcd-client cloud-init cloud-image-utils \
	rpm createrepo-c dnf gnupg rpmlint busybox-static cpio

# Common knobs, passed to build.py through the environment (see node.toml for all settings).
export FLANNEL_VERSION FLANNEL_ASSET FLANNEL_ARCHES ARCH FLANNEL_MIRROR FLANNEL_TARBALL \
	FLANNEL_LOCAL FLANNELNODE_CACHE

# Reproducible by default: the last commit's time (unset outside a git checkout).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
ifneq ($(SOURCE_DATE_EPOCH),)
export SOURCE_DATE_EPOCH
endif
export RPM_RELEASE FLANNELNODE_GPG_KEY FLANNELNODE_REPO_URL

.PHONY: help deps apt venv fetch lock lint payload rpm repo images test bench check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: FLANNEL_VERSION= ARCH=amd64,arm64 FLANNEL_MIRROR=URL FLANNEL_TARBALL=PATH"

deps: apt venv ## install Debian packages and the .venv (idempotent, fast when done)

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e '.[test]'
	@touch $@

fetch: deps ## download and verify flannel release assets (release.lock is the trust root)
	$(PY) build.py fetch

lock: deps ## pin a new release: make lock FLANNEL_VERSION=vX.Y.Z (trust on first use)
	@[ -n "$(FLANNEL_VERSION)" ] || { echo "usage: make lock FLANNEL_VERSION=vX.Y.Z" >&2; exit 2; }
	$(PY) build.py lock --version $(FLANNEL_VERSION)

lint: deps ## check the network config against flannel's own rules
	$(PY) build.py lint

payload: fetch ## stage the node file tree, tarball and manifest per arch
	$(PY) build.py payload

rpm: payload ## one RPM per arch in build/rpm/ (reproducible with SOURCE_DATE_EPOCH)
	$(PY) build.py rpm

repo: rpm ## sign the RPMs into a yum repo in build/repo/ (FLANNELNODE_GPG_KEY=, or UNSIGNED=1)
	$(PY) build.py repo $(if $(UNSIGNED),--unsigned)

images: payload ## the main job: every artifact (steps land here as they are built)

test: deps ## run the test suite (real etcd, shellcheck, systemd-analyze, local HTTP only)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

BENCHES ?= fetch payload rpm seed

bench: deps ## print performance figures (medians over several runs); BENCHES=fetch to pick
	@for b in $(BENCHES); do echo "== bench/$$b.py"; $(PY) bench/$$b.py || exit 1; done

check: deps ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean: ## remove build/ (the download cache in ~/.cache/flannelnode stays)
	rm -rf $(BUILD)
