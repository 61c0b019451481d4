#!/bin/sh
# Turn the Debian base container into a VM root tree: kernel, initramfs, GRUB's BIOS core image,
# udev, sshd, cloud-init, and the docker engine: installed here at native speed because under
# QEMU's TCG (no usable KVM on the build hosts) dpkg alone takes minutes. Runs inside a container of the base image (flannelnode/base.py), whose
# filesystem is then exported into an ext4 partition by make-disk.sh. Nothing here needs a loop
# device, a mount or privileges beyond an ordinary container.
set -eu
export DEBIAN_FRONTEND=noninteractive

apt-get update -q
apt-get install -y -q --no-install-recommends \
	linux-image-cloud-amd64 grub-pc-bin udev kmod openssh-server cloud-init cloud-guest-utils \
	ifupdown isc-dhcp-client netbase docker.io

# GRUB for BIOS boot without grub-install (which wants a block device): core.img finds the root
# filesystem by UUID and reads its modules and grub.cfg from /boot/grub; make-disk.sh writes
# boot.img into the MBR and core.img into the gap before the first partition.
uuid=${ROOT_UUID:?}
mkdir -p /boot/grub/i386-pc
cp /usr/lib/grub/i386-pc/*.mod /usr/lib/grub/i386-pc/*.lst /usr/lib/grub/i386-pc/boot.img \
	/boot/grub/i386-pc/
# shellcheck disable=SC2016 # $root is GRUB's variable, not ours
printf 'search.fs_uuid %s root\nset prefix=($root)/boot/grub\n' "$uuid" >/tmp/early.cfg
grub-mkimage -O i386-pc -c /tmp/early.cfg -p /boot/grub -o /boot/grub/i386-pc/core.img \
	biosdisk part_msdos ext2 search_fs_uuid
# /vmlinuz and /initrd.img are the symlinks the kernel package keeps current on upgrades
cat >/boot/grub/grub.cfg <<CFG
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
set timeout=1
menuentry "Debian GNU/Linux" {
	search --no-floppy --fs-uuid --set=root $uuid
	linux /vmlinuz root=UUID=$uuid ro console=tty0 console=ttyS0,115200n8
	initrd /initrd.img
}
CFG
printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$uuid" >/etc/fstab
printf 'localhost\n' >/etc/hostname
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >/etc/hosts

# Host keys are per machine: none in the image, made at boot (cloud-init does it when it runs; this
# covers a boot without a datasource).
rm -f /etc/ssh/ssh_host_*
mkdir -p /etc/systemd/system/ssh.service.d
printf '[Service]\nExecStartPre=/usr/bin/ssh-keygen -A\n' \
	>/etc/systemd/system/ssh.service.d/flannelnode-host-keys.conf

apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /tmp/* /var/log/apt/* /var/log/dpkg.log
: >/etc/machine-id
