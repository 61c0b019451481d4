# flannelnode: `make images` builds the node artifacts, `make test` runs the tests.
# Both install what they need first (`make deps`): Debian packages, a .venv, idempotently.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= node.toml
BUILD ?= build
BUILDPY := $(PY) build.py --config $(CONFIG) --build-dir $(BUILD)
STAMP := $(VENV)/.installed
# Python's default is to cache bytecode; some CI images turn it off, which recompiles every module
# at every step (~0.1 s each). __pycache__ is ignored by git.
unexport PYTHONDONTWRITEBYTECODE

# Debian packages the steps and the tests use for real (the README says what each is for).
APT_PACKAGES := ca-certificates git openssl gcc dash shellcheck systemd \
	etcd-server etcd-client cloud-init cloud-image-utils \
	rpm createrepo-c dnf gnupg rpmlint busybox-static cpio \
	docker.io packer debootstrap qemu-system-x86 qemu-utils genisoimage e2fsprogs fdisk \
	openssh-client socat iproute2 iptables \
	qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross skopeo

# Common knobs, passed to build.py through the environment (see node.toml for all settings).
export FLANNEL_VERSION FLANNEL_ASSET FLANNEL_ARCHES ARCH FLANNEL_MIRROR FLANNEL_TARBALL \
	FLANNEL_LOCAL FLANNELNODE_CACHE

# Reproducible by default: the last commit's time (unset outside a git checkout).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null)
ifneq ($(SOURCE_DATE_EPOCH),)
export SOURCE_DATE_EPOCH
endif
export RPM_RELEASE FLANNELNODE_GPG_KEY FLANNELNODE_REPO_URL FLANNELNODE_QEMU_ACCEL \
	FLANNELNODE_DEBIAN_MIRROR

# empty: images.targets of the config, else the default list (docker,qemu), which skips, loudly,
# a target this host cannot build; a target named here that cannot be built is an error
IMAGES ?=
# the base the images start from (images.base): `build.py targets` lists them
BASE ?=
# Packer variables per target, space-separated TARGET.VAR=VALUE ([images.packer.TARGET])
PACKER_VARS ?=
# etcd client TLS files on this host, for the user-data (all three, or none)
ETCD_CA ?=
ETCD_CERT ?=
ETCD_KEY ?=

.PHONY: help deps apt binfmt venv docker-up fetch lock lint payload rpm repo base images userdata \
	manifest verify test test-quick mutate bench check clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sort | \
		awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: CONFIG=node.toml BUILD=build ARCH=amd64,arm64 FLANNEL_VERSION="
	@echo "             FLANNEL_MIRROR=URL FLANNEL_TARBALL=PATH UNSIGNED=1"
	@echo "             IMAGES=$$($(PYTHON) build.py targets --names) BASE=$$($(PYTHON) build.py targets --bases)"
	@echo "             PACKER_VARS=\"amazon-ebs.region=eu-central-1 qemu.disk_size=8G\" (build.py targets)"

deps: apt binfmt venv ## install Debian packages and the .venv (idempotent, fast when done)

apt:
	@missing=$$(dpkg-query -W -f='$${Package} $${Status}\n' $(APT_PACKAGES) 2>/dev/null | \
		awk '$$NF == "installed" {ok[$$1]=1} END {split("$(APT_PACKAGES)", want, " "); \
		for (i in want) if (!(want[i] in ok)) printf "%s ", want[i]}'); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi

# arm64 binaries run on this host through qemu-user-static: a kernel-wide binfmt_misc entry with
# the F flag (README, "Node images"); images/binfmt.sh is idempotent, this test only saves a sudo
binfmt: apt
	@grep -qs '^flags: .*F' /proc/sys/fs/binfmt_misc/qemu-aarch64 || \
		$$([ "$$(id -u)" = 0 ] || echo sudo) images/binfmt.sh aarch64

venv: $(STAMP)

$(STAMP): pyproject.toml
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --config-settings editable_mode=compat -e '.[test]'
	@touch $@

fetch: deps ## download and verify flannel release assets (release.lock is the trust root)
	$(BUILDPY) fetch

lock: deps ## pin a new release: make lock FLANNEL_VERSION=vX.Y.Z (trust on first use)
	@[ -n "$(FLANNEL_VERSION)" ] || { echo "usage: make lock FLANNEL_VERSION=vX.Y.Z" >&2; exit 2; }
	$(BUILDPY) lock --version $(FLANNEL_VERSION)

lint: deps ## check the network config against flannel's own rules
	$(BUILDPY) lint

payload: fetch ## stage the node file tree, tarball and manifest per arch
	$(BUILDPY) payload

rpm: payload ## one RPM per arch in build/rpm/ (reproducible with SOURCE_DATE_EPOCH)
	$(BUILDPY) rpm

repo: rpm ## sign the RPMs into a yum repo in build/repo/ (FLANNELNODE_GPG_KEY=, or UNSIGNED=1)
	$(BUILDPY) repo $(if $(UNSIGNED),--unsigned)

docker-up: apt
	@images/docker-up.sh

base: deps docker-up ## Debian bookworm base images (per ARCH) and qcow2 from the Debian mirror
	$(BUILDPY) base $(if $(IMAGES),--target $(IMAGES)) $(if $(ARCH),--arch $(ARCH))

# The main job, in one process so that a no-op run is fast. The repo needs a signing key and the
# user-data the etcd TLS files: without them those two steps are skipped, loudly.
images: deps docker-up ## the main job: fetch, payload, RPMs, repo, images, user-data, manifest
	$(BUILDPY) all $(if $(IMAGES),--target $(IMAGES)) $(if $(UNSIGNED),--unsigned) \
		$(if $(BASE),--base $(BASE)) $(foreach v,$(PACKER_VARS),--packer-var $(v)) \
		$(if $(ETCD_CA),--etcd-ca $(ETCD_CA) --etcd-cert $(ETCD_CERT) --etcd-key $(ETCD_KEY))

userdata: deps ## cloud-init user-data: make userdata ETCD_CA=ca.pem ETCD_CERT=c.pem ETCD_KEY=k.pem
	$(BUILDPY) userdata --etcd-ca $(ETCD_CA) --etcd-cert $(ETCD_CERT) --etcd-key $(ETCD_KEY)

manifest: deps ## write build/manifest.json from what the steps recorded
	$(BUILDPY) manifest

verify: deps docker-up ## boot the built docker image against a real etcd and check it (testinfra)
	$(PY) -m verify --config $(CONFIG) --build-dir $(BUILD)

test: deps docker-up ## run the test suite (real etcd, docker, packer, qemu, rpm; local HTTP only)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest

test-quick: deps docker-up ## the suite without the slow qcow2 build-and-boot test (~4 min less)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -m "not slow"

MODULES ?=

mutate: deps docker-up ## mutation score (cosmic-ray) of the fast modules; MODULES=flannelnode/lock.py
	nice -n 19 $(PY) -m mutation.run $(MODULES)

BENCHES ?= fetch payload rpm repo seed images vm

bench: deps ## print performance figures (medians over several runs); BENCHES=fetch to pick
	@for b in $(BENCHES); do echo "== bench/$$b.py"; $(PY) bench/$$b.py || exit 1; done

check: deps ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean: ## remove build/ (the download cache in ~/.cache/flannelnode stays)
	rm -rf $(BUILD)
