# Rocky Linux 9 base for the qemu target: the GenericCloud image by URL, checked against the
# CHECKSUM file Rocky publishes beside it. Its cloud-init reads our NoCloud seed like Debian's.
base_url      = "https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2"
base_checksum = "file:https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2.CHECKSUM"
disk_size     = "10G"
