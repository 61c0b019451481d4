#!/bin/sh
# binfmt.sh [QEMU_ARCH...]: let this host run foreign-arch binaries (default: aarch64) through
# Debian's qemu-user-static, as chroots (debootstrap) and containers (docker run of an arm64
# image) need. Idempotent and quick when done; run as root by `make binfmt`.
#
# What it changes on the host, kernel-wide: binfmt_misc is mounted at /proc/sys/fs/binfmt_misc
# if it is not, and an entry qemu-<arch> is registered from qemu-user-static's
# /usr/lib/binfmt.d/qemu-<arch>.conf. The entry carries the F (fix-binary) flag: the kernel opens
# the interpreter once, at registration, so it works inside chroots and containers that hold no
# qemu of their own. An entry of that name without F (or disabled) is replaced.
# Remove it with: echo -1 > /proc/sys/fs/binfmt_misc/qemu-aarch64
# (systemd-binfmt does this job on hosts that run systemd; this host may not.)
set -eu

dir=/proc/sys/fs/binfmt_misc
confs=/usr/lib/binfmt.d
[ "$#" -gt 0 ] || set -- aarch64

if [ ! -e "$dir/register" ]; then
	if ! mount -t binfmt_misc binfmt_misc "$dir" 2>/dev/null; then
		echo "binfmt.sh: cannot mount binfmt_misc at $dir (needs root, and a kernel with" \
			"CONFIG_BINFMT_MISC; inside a container the host must do it)" >&2
		exit 1
	fi
fi

for arch in "$@"; do
	name=qemu-$arch
	conf=$confs/$name.conf
	if [ ! -r "$conf" ]; then
		echo "binfmt.sh: $conf is missing: apt-get install -y qemu-user-static (make deps)" >&2
		exit 1
	fi
	entry=$(grep -v -e '^#' -e '^$' "$conf" | head -n 1)
	# :name:type:offset:magic:mask:interpreter:flags
	interpreter=$(printf '%s\n' "$entry" | cut -d: -f7)
	if [ ! -x "$interpreter" ]; then
		echo "binfmt.sh: $conf names $interpreter, which is not executable:" \
			"apt-get install --reinstall qemu-user-static" >&2
		exit 1
	fi
	case $(printf '%s\n' "$entry" | cut -d: -f8) in
	*F*) ;;
	*) entry=${entry}F ;;
	esac
	if [ -e "$dir/$name" ]; then
		if grep -qx enabled "$dir/$name" && grep -q '^flags: .*F' "$dir/$name"; then
			continue
		fi
		echo "binfmt.sh: replacing $name (disabled or without the F flag)"
		echo -1 >"$dir/$name"
	fi
	printf '%s' "$entry" >"$dir/register"
	if ! grep -q '^flags: .*F' "$dir/$name" 2>/dev/null; then
		echo "binfmt.sh: registering $name from $conf did not take" >&2
		exit 1
	fi
	echo "binfmt.sh: registered $name ($interpreter, flags $(sed -n 's/^flags: //p' "$dir/$name"))"
done
