#!/bin/sh
# Validate a flannelnode image: the LAST provisioner of every Packer target (docker, qemu,
# amazon-ebs) on every base (Debian, EL). It runs as root inside the image just built, after
# provision.sh, and checks what needs no etcd and no boot:
#
#   file:<path>       every payload file present, with its mode, owner and sha256
#   elf:<path>        flanneld is an ELF whose e_machine is the image's arch
#   unit:<name>       the units provision.sh enables are enabled
#   docker-dropin     the docker drop-in generator yields flannel's drop-in for this docker
#   no-private-key    no PEM private key block in any text file (keys reach nodes by user-data)
#   machine-id        /etc/machine-id empty (each node gets its own at first boot)
#   ssh-host-keys     no /etc/ssh/ssh_host_* (each node makes its own)
#   cloud-init-state  no cloud-init instance state or logs (the node's first boot is cloud-init's)
#   authorized-keys   no authorized_keys in any home (the build's key gone; cloud-init adds the node's)
#
# One line per check on stdout, `validate: ok <check>` or `validate: FAIL <check>: <why>`, then
# `validate: <n> passed, <m> failed`. Exit 1 when any check failed, so Packer fails the build and
# keeps no image; images.py records the lines in build/images/<target>.json. Exit 2: bad usage.
#
# The check list comes from images.py (flannelnode/validation.py), derived from the payload
# manifest, one line per item:
#   file <path> <mode> <user>:<group> <sha256>
#   elf <path>
#   unit <name>
# base64-encoded in FLANNELNODE_CHECKS (what the templates pass), or as a file with --checks.
#
# Usage: validate.sh [--root DIR] [--checks FILE] [--arch ARCH]
#   --root DIR    check the tree at DIR instead of / (tests)
#   --arch ARCH   the image's arch (flannel's names: amd64, arm64, ...); default: dpkg's or uname's
#
# It leaves no trace: it writes only under a mktemp directory it removes, and, when it runs as
# the script Packer uploaded (/tmp/script_*.sh), removes itself too. No python: a base may have none.
set -u

prog=validate

if [ "$(id -u)" != 0 ]; then
	# Packer's ssh user on qemu/amazon-ebs bases that log in as a user (admin, rocky)
	exec sudo -n env FLANNELNODE_CHECKS="${FLANNELNODE_CHECKS:-}" sh "$0" "$@"
fi

usage() {
	printf '%s: %s\nusage: validate.sh [--root DIR] [--checks FILE] [--arch ARCH]\n' "$prog" "$1" >&2
	exit 2
}

root=
checks_file=
arch=
while [ $# -gt 0 ]; do
	case $1 in
	--root | --checks | --arch)
		[ $# -ge 2 ] || usage "$1 needs a value"
		case $1 in
		--root) root=${2%/} ;;
		--checks) checks_file=$2 ;;
		--arch) arch=$2 ;;
		esac
		shift 2
		;;
	*) usage "unknown argument $1" ;;
	esac
done
[ -z "$root" ] || [ -d "$root" ] || usage "--root $root is not a directory"

work=$(mktemp -d) || exit 1
cleanup() {
	rm -rf "$work"
	case $0 in
	/tmp/script_*.sh) rm -f "$0" ;; # Packer's upload of this script
	esac
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "$checks_file" ]; then
	[ -r "$checks_file" ] || usage "--checks $checks_file is not readable"
	cp "$checks_file" "$work/checks"
elif [ -n "${FLANNELNODE_CHECKS:-}" ]; then
	printf '%s' "$FLANNELNODE_CHECKS" | base64 -d >"$work/checks" 2>/dev/null ||
		usage "FLANNELNODE_CHECKS is not base64 (it is what images.py passes through the template)"
else
	usage "no check list: set FLANNELNODE_CHECKS (base64) or give --checks FILE"
fi
grep -q '^file ' "$work/checks" || usage "the check list names no payload file"

passed=0
failed=0
ok() {
	printf '%s: ok %s\n' "$prog" "$1"
	passed=$((passed + 1))
}
fail() {
	printf '%s: FAIL %s: %s\n' "$prog" "$1" "$2"
	failed=$((failed + 1))
}

# a mode without leading zeros: the manifest says 0755, stat says 755
bare_mode() {
	m=$1
	while [ "${#m}" -gt 1 ] && [ "${m#0}" != "$m" ]; do m=${m#0}; done
	printf '%s' "$m"
}

# -- the image's arch, in flannel's names
if [ -z "$arch" ]; then
	if [ -z "$root" ] && command -v dpkg >/dev/null 2>&1; then
		arch=$(dpkg --print-architecture)
	else
		arch=$(uname -m)
	fi
fi
case $arch in
amd64 | x86_64) arch=amd64 machine=62 ;;
arm64 | aarch64) arch=arm64 machine=183 ;;
arm | armhf | armv7l) arch=arm machine=40 ;;
ppc64le | ppc64el) arch=ppc64le machine=21 ;;
s390x) arch=s390x machine=22 ;;
mips64le | mips64el | mips64) arch=mips64le machine=8 ;;
riscv64) arch=riscv64 machine=243 ;;
*) usage "unknown arch $arch" ;;
esac

# e_machine of an ELF file, by the byte order its header declares; empty if not an ELF
elf_machine() {
	# shellcheck disable=SC2046 # od's numbers split into positional parameters on purpose
	set -- $(od -An -tu1 -N20 "$1" 2>/dev/null)
	[ $# -eq 20 ] && [ "$1 $2 $3 $4" = "127 69 76 70" ] || return 0
	if [ "$6" = 2 ]; then
		printf '%s' $((${19} * 256 + ${20}))
	else
		printf '%s' $((${20} * 256 + ${19}))
	fi
}

# -- payload files, their ELF machine, units
while read -r kind path mode owner sha; do
	case $kind in
	file)
		f=$root$path
		if [ -L "$f" ] || [ ! -f "$f" ]; then
			fail "file:$path" "missing (or not a regular file)"
			continue
		fi
		# shellcheck disable=SC2046
		set -- $(stat -c '%a %U:%G' "$f")
		why=
		[ "$1" = "$(bare_mode "$mode")" ] || why="mode $1, expected $mode"
		[ "$2" = "$owner" ] || why="${why:+$why; }owner $2, expected $owner"
		if [ -z "$why" ]; then
			actual=$(sha256sum "$f" | cut -d' ' -f1)
			[ "$actual" = "$sha" ] || why="sha256 $actual, expected $sha (the payload manifest's)"
		fi
		if [ -n "$why" ]; then fail "file:$path" "$why"; else ok "file:$path"; fi
		;;
	elf)
		got=$(elf_machine "$root$path")
		if [ -z "$got" ]; then
			fail "elf:$path" "not an ELF file"
		elif [ "$got" != "$machine" ]; then
			fail "elf:$path" "e_machine $got, expected $machine: the image is $arch"
		else
			ok "elf:$path"
		fi
		;;
	unit)
		if [ -n "$root" ]; then
			state=$(systemctl --root="$root" is-enabled "$path" 2>&1)
		else
			state=$(systemctl is-enabled "$path" 2>&1)
		fi
		if [ "$state" = enabled ]; then ok "unit:$path"; else fail "unit:$path" "is-enabled: $state"; fi
		;;
	'' | '#'*) ;;
	*) usage "unknown check list line: $kind $path" ;;
	esac
done <"$work/checks"

# -- the docker drop-in, as the generator makes it at every boot
generator=$root/usr/lib/systemd/system-generators/flannelnode-docker-generator
if [ ! -x "$generator" ]; then
	fail docker-dropin "$generator is missing or not executable"
elif ! out=$(FLANNELNODE_ROOT=$root "$generator" "$work/gen" 2>&1); then
	fail docker-dropin "the generator failed: $out"
elif [ ! -f "$work/gen/docker.service.d/flannel.conf" ]; then
	fail docker-dropin "no drop-in generated: is docker installed? $out"
elif grep -q '^ExecStart=/bin/false' "$work/gen/docker.service.d/flannel.conf"; then
	fail docker-dropin "the generator refuses this docker: $out"
else
	ok docker-dropin
fi

# -- no private key: a PEM block (BEGIN line, base64 body, END line) in any text file. Keys that
# binaries embed (libgnutls' self-test key) are not files a node could use; -I skips binaries.
find "$root/" -xdev -type f -size -4096k -exec grep -lIE -e '-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----' {} + \
	>"$work/pem" 2>/dev/null
keys=
while IFS= read -r f; do
	if awk '
		/^-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----\r?$/ { inkey = 1; body = 0; next }
		inkey && /^-----END ([A-Z0-9]+ )*PRIVATE KEY-----\r?$/ { if (body >= 1) found = 1; inkey = 0; next }
		inkey && /^[A-Za-z0-9+\/=]+\r?$/ { body++; next }
		inkey && /^[A-Za-z-]+: / { next }
		inkey && /^\r?$/ { next }
		inkey { inkey = 0 }
		END { exit found ? 0 : 1 }
	' "$f"; then
		keys="$keys ${f#"$root"}"
	fi
done <"$work/pem"
if [ -n "$keys" ]; then fail no-private-key "PEM private key in$keys"; else ok no-private-key; fi

# -- nothing node-specific
if [ -s "$root/etc/machine-id" ]; then
	fail machine-id "/etc/machine-id holds $(head -c 32 "$root/etc/machine-id"): every node would share it"
elif [ -f "$root/var/lib/dbus/machine-id" ] && [ ! -L "$root/var/lib/dbus/machine-id" ] &&
	[ -s "$root/var/lib/dbus/machine-id" ]; then
	fail machine-id "/var/lib/dbus/machine-id holds an id: every node would share it"
else
	ok machine-id
fi

found=
for f in "$root"/etc/ssh/ssh_host_*; do
	if [ -e "$f" ] || [ -L "$f" ]; then found="$found ${f#"$root"}"; fi
done
if [ -n "$found" ]; then fail ssh-host-keys "host keys in the image:$found"; else ok ssh-host-keys; fi

found=
for f in "$root"/var/lib/cloud/instance "$root"/var/lib/cloud/instances/* \
	"$root"/var/lib/cloud/data/* "$root"/var/lib/cloud/sem/*; do
	if [ -e "$f" ] || [ -L "$f" ]; then found="$found ${f#"$root"}"; fi
done
for f in "$root"/var/log/cloud-init.log "$root"/var/log/cloud-init-output.log; do
	if [ -s "$f" ]; then found="$found ${f#"$root"}"; fi
done
if [ -n "$found" ]; then
	fail cloud-init-state "cloud-init ran here and left$found (cloud-init clean --logs removes it)"
else
	ok cloud-init-state
fi

found=
homes=$( (cut -d: -f6 "$root/etc/passwd" 2>/dev/null; echo /root) | sort -u)
for home in $homes; do
	for f in "$root$home/.ssh/authorized_keys" "$root$home/.ssh/authorized_keys2"; do
		if [ -e "$f" ]; then found="$found ${f#"$root"}"; fi
	done
done
if [ -n "$found" ]; then
	fail authorized-keys "ssh keys let someone in:$found (cloud-init adds each node's own)"
else
	ok authorized-keys
fi

printf '%s: %s passed, %s failed\n' "$prog" "$passed" "$failed"
[ "$failed" -eq 0 ]
