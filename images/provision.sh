#!/bin/sh
# Provision a flannelnode image: the one script every Packer target runs (docker, qemu, amazon-ebs)
# on every base (Debian, Rocky). It runs as root inside the image being built, never on a node.
#
# 1. install the payload: on RPM-based bases our RPMs through dnf/yum when FLANNELNODE_RPMS names
#    a directory of them, in one transaction with the docker engine from the engine's repository,
#    added first (the RPM requires /usr/bin/dockerd), gpgcheck on; elsewhere the payload tarball
#    unpacked into /
# 2. install a docker engine when the base still has none, and cloud-init
# 3. enable flanneld and docker
# 4. remove what must not be shared between nodes: machine-id, ssh host keys, cloud-init state,
#    package caches, logs, the build's temporary ssh key (as amazon-eks-ami does before an AMI)
#
# Environment (set by the templates):
#   FLANNELNODE_PAYLOAD       the payload tarball (flannelnode-payload.tar) uploaded by Packer
#   FLANNELNODE_RPMS          optional: a directory of flannelnode RPMs, used on EL bases when it
#                             holds any (the tarball is the fallback everywhere)
#   FLANNELNODE_ENGINE_REPO   optional: the docker engine's .repo for EL bases without docker: an
#                             https:// URL (default: docker-ce's) or the absolute path of a .repo
#                             file in the image (a local mirror for air-gapped sites). A repo that
#                             turns gpgcheck off is refused. (FLANNELNODE_DOCKER_REPO: older name)
#   FLANNELNODE_BUILD_USER    optional: remove this user's authorized_keys at the end (the
#                             build-time ssh key of the qemu and amazon-ebs targets)
set -eu

payload=${FLANNELNODE_PAYLOAD:-/tmp/flannelnode-payload.tar}
rpms=${FLANNELNODE_RPMS:-}
engine_repo=${FLANNELNODE_ENGINE_REPO:-${FLANNELNODE_DOCKER_REPO:-https://download.docker.com/linux/centos/docker-ce.repo}}
engine_packages="docker-ce docker-ce-cli containerd.io"
build_user=${FLANNELNODE_BUILD_USER:-}

say() {
	printf 'provision: %s\n' "$*"
}

die() {
	printf 'provision: ERROR: %s\n' "$*" >&2
	exit 1
}

[ "$(id -u)" = 0 ] || die "must run as root (the templates use sudo where the user is not root)"
[ -r /etc/os-release ] || die "/etc/os-release is missing: unknown base"

# shellcheck disable=SC1091 # the base's own file
. /etc/os-release
case " ${ID:-} ${ID_LIKE:-} " in
*" debian "*) family=deb ;;
*" rhel "* | *" fedora "* | *" centos "*) family=rpm ;;
*) die "unsupported base ${ID:-unknown}: flannelnode provisions Debian and EL (rpm) bases" ;;
esac
say "base: ${PRETTY_NAME:-$ID} ($family)"

export DEBIAN_FRONTEND=noninteractive
apt_updated=

pkg_install() {
	if [ "$family" = deb ]; then
		if [ -z "$apt_updated" ]; then
			# no Translation-* indexes: minutes under TCG for nothing a node needs
			apt-get update -q -o Acquire::Languages=none
			apt_updated=1
		fi
		apt-get install -y -q --no-install-recommends "$@"
	elif command -v dnf >/dev/null 2>&1; then
		dnf install -y -q "$@"
	else
		yum install -y -q "$@"
	fi
}

# The engine's repository, before anything that needs dockerd is installed; its packages are
# signed, and a .repo that says otherwise is refused.
add_engine_repo() {
	mkdir -p /etc/yum.repos.d
	case "$engine_repo" in
	https://* | http://*)
		say "adding the engine repository $engine_repo"
		if command -v dnf >/dev/null 2>&1; then
			dnf install -y -q dnf-plugins-core
			dnf config-manager --add-repo "$engine_repo"
		else
			yum install -y -q yum-utils
			yum-config-manager --add-repo "$engine_repo"
		fi
		;;
	/*)
		[ -r "$engine_repo" ] || die "engine repository file $engine_repo is missing (FLANNELNODE_ENGINE_REPO)"
		say "adding the local engine repository $engine_repo"
		cp "$engine_repo" /etc/yum.repos.d/
		;;
	*) die "FLANNELNODE_ENGINE_REPO=$engine_repo: give an https:// URL or the absolute path of a .repo file" ;;
	esac
	added=/etc/yum.repos.d/${engine_repo##*/}
	[ -r "$added" ] || die "the engine repository did not land in $added"
	if grep -Eq '^[[:space:]]*gpgcheck[[:space:]]*=[[:space:]]*(0|false|no)' "$added"; then
		die "$added turns gpgcheck off: the engine must be installed signed; fix the .repo file"
	fi
}

# every repository gpgchecked, whatever the base's dnf.conf says
el_install() {
	if command -v dnf >/dev/null 2>&1; then
		dnf install -y -q --setopt=gpgcheck=1 "$@"
	else
		yum install -y -q --setopt=gpgcheck=1 "$@"
	fi
}

# -- 1. the payload
set -- "${rpms:-/nonexistent}"/*.rpm
if [ "$family" = rpm ] && [ -e "$1" ]; then
	if command -v dockerd >/dev/null 2>&1; then
		say "installing flannel-node from $rpms (docker engine present)"
	else
		add_engine_repo
		say "installing flannel-node from $rpms with $engine_packages"
		# shellcheck disable=SC2086 # the package names split on purpose
		set -- "$@" $engine_packages
	fi
	el_install "$@"
else
	[ -r "$payload" ] || die "payload tarball $payload is missing"
	say "unpacking $payload into /"
	# as root, tar keeps the payload's owners (root) and exact modes
	tar -xf "$payload" -C /
fi

# The kernel modules and sysctls the payload ships (modules-load.d, sysctl.d), now, as the RPM's
# %post does (a node applies them at every boot anyway). A container build cannot load modules:
# its host's kernel decides.
/usr/lib/systemd/systemd-modules-load 2>/dev/null ||
	say "kernel modules not loaded here (a container build?); nodes load them at boot"
/usr/lib/systemd/systemd-sysctl 2>/dev/null || say "sysctls not applied here; nodes apply them at boot"

# -- 2. a docker engine and cloud-init
if command -v dockerd >/dev/null 2>&1; then
	say "docker engine present: $(dockerd --version)"
elif [ "$family" = deb ]; then
	say "installing docker.io from the distribution"
	pkg_install docker.io iptables ca-certificates
else
	add_engine_repo
	say "installing $engine_packages"
	# shellcheck disable=SC2086 # the package names split on purpose
	el_install $engine_packages
fi
if ! command -v cloud-init >/dev/null 2>&1; then
	say "installing cloud-init"
	pkg_install cloud-init
fi
# cloud-init's locale module sets LANG=en_US.UTF-8 at first boot with update-locale, which fails
# (and `cloud-init status` reports an error on every node) unless that locale exists. Debian's
# locale-gen ignores its arguments, so the locale is generated here, once, from /etc/locale.gen.
if [ "$family" = deb ]; then
	command -v locale-gen >/dev/null 2>&1 || pkg_install locales
	sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
	grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >>/etc/locale.gen
	locale-gen
	# and made the system default: cloud-init regenerates every locale (locale-gen, half a minute
	# of CPU on a small node, while docker starts) when /etc/default/locale sets no LANG
	update-locale LANG=en_US.UTF-8
fi

# -- 3. enable the services (works without a running systemd: it only places symlinks)
systemctl enable flanneld.service docker.service
if [ -e /usr/lib/systemd/system/containerd.service ] || [ -e /lib/systemd/system/containerd.service ]; then
	systemctl enable containerd.service
fi

# -- 4. nothing node-specific may be shared by every node booted from this image
say "cleaning node-specific state"
if [ "$family" = deb ]; then
	apt-get clean
	rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
else
	if command -v dnf >/dev/null 2>&1; then dnf clean all -q; else yum clean all -q; fi
	rm -rf /var/cache/dnf/* /var/cache/yum/*
fi
if command -v cloud-init >/dev/null 2>&1; then
	cloud-init clean --logs
fi
rm -f /etc/ssh/ssh_host_*
# empty, not absent: systemd then generates a fresh id at each node's first boot
: >/etc/machine-id
if [ -f /var/lib/dbus/machine-id ] && [ ! -L /var/lib/dbus/machine-id ]; then
	rm -f /var/lib/dbus/machine-id
fi
rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
find /var/log -type f -exec truncate -s 0 {} +
rm -rf /var/log/journal/* /tmp/* /var/tmp/* /root/.bash_history
if [ -n "$build_user" ]; then
	home=$(getent passwd "$build_user" | cut -d: -f6)
	say "removing the build-time ssh key of $build_user"
	rm -f "$home/.ssh/authorized_keys"
fi
# on disk before Packer powers the VM off: a slow TCG shutdown that hits Packer's timeout must not
# leave a disk whose changes sit only in the journal (GRUB does not replay it)
sync
say "done"
