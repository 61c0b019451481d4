#!/bin/sh
# make-disk.sh ROOT UUID SIZE_MIB OUT.qcow2: a BIOS-bootable disk from a root tree, unprivileged:
# an MBR with one partition at 1 MiB, the ext4 filesystem written straight from ROOT by
# mkfs.ext4 -d (no mount, no loop device), GRUB's boot.img and core.img (from vm-setup.sh) in the
# MBR and the gap, then converted to qcow2.
set -eu

root=$1
uuid=$2
size_mib=$3
out=$4
raw=$out.raw

trap 'rm -f "$raw"' EXIT
rm -f "$raw"
truncate -s "${size_mib}M" "$raw"
printf 'label: dos\nstart=2048, type=83, bootable\n' | sfdisk -q "$raw"
mkfs.ext4 -q -F -U "$uuid" -L root -E offset=1048576 -d "$root" "$raw" "$((size_mib - 1))M"
grub=$root/boot/grub/i386-pc
# the first 440 bytes only: the partition table sfdisk wrote stays
dd if="$grub/boot.img" of="$raw" bs=440 count=1 conv=notrunc status=none
dd if="$grub/core.img" of="$raw" bs=512 seek=1 conv=notrunc status=none
qemu-img convert -O qcow2 "$raw" "$out"
