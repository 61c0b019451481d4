# Rocky Linux 9 bases for every target: -var-file=images/variants/rocky-9.pkrvars.hcl
# (Packer warns, and only warns, about the variables a given template does not declare.)
# provision.sh installs flannelnode from our RPMs with dnf when rpms/ holds them, docker-ce from
# download.docker.com (Rocky ships no docker engine), and cloud-init.

# docker target: pulled from the registry (the Debian default is a local import)
base_image = "rockylinux:9"
pull       = true

# qemu target: the GenericCloud image by URL and the project's published checksum
base_url      = "https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2"
base_checksum = "file:https://dl.rockylinux.org/pub/rocky/9/images/x86_64/Rocky-9-GenericCloud-Base.latest.x86_64.qcow2.CHECKSUM"
disk_size     = "10G"

# amazon-ebs target: the Rocky Enterprise Software Foundation's official AMIs
source_ami_name  = "Rocky-9-EC2-Base-9.*"
source_ami_owner = "792107900819"
ssh_username     = "rocky"
become           = "sudo"
