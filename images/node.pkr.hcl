# flannelnode node images: one source per target, shared variables, one build block.
# Built by `build.py images` (flannelnode/images.py; the targets are defined in
# flannelnode/targets.py), one `packer build -only=<type>.<name>` per target and arch, e.g.
# -only=docker.node. Packer 1.6.6 takes the source as type.name (not source.type.name), and for a
# name it does not know it builds nothing and exits 0: images.py checks that the source built.
#
# Every variable has a default, also those the build always sets: Packer 1.6.6 wants each variable
# the template uses set, whatever -only selects. A base OS other than the templates' defaults comes
# from its var file, images/variants/<variant>/<target>.pkrvars.hcl.
#
# Packer 1.6.6 (Debian 12) has the docker, qemu and amazon builders built in. A current Packer
# needs the plugins:
#   packer { required_plugins {
#     docker = { source = "github.com/hashicorp/docker", version = ">= 1.0.0" }
#     qemu   = { source = "github.com/hashicorp/qemu", version = ">= 1.0.0" }
#     amazon = { source = "github.com/hashicorp/amazon", version = ">= 1.0.0" } } }
# (1.6.6 rejects a required_plugins block, so it is stated here and not in the packer block.)

packer {
  required_version = ">= 1.6.6"
}

# -- every target

variable "upload_dir" {
  type        = string
  default     = "/nonexistent"
  description = "a directory holding flannelnode-payload.tar and, for EL bases, rpms/*.rpm"
}

variable "provision_script" {
  type    = string
  default = "images/provision.sh"
}

variable "engine_repo" {
  type        = string
  default     = "https://download.docker.com/linux/centos/docker-ce.repo"
  description = "EL bases: the docker engine's .repo, an https:// URL or a .repo file's path in the image (air-gapped mirror); gpgcheck must stay on"
}

# -- qemu and amazon-ebs: the login user over ssh (docker needs none: it runs as root)

variable "ssh_username" {
  type        = string
  default     = "root"
  description = "the login user of the base; the variant's var file names it (admin on Debian's AMIs)"
}

variable "become" {
  type        = string
  default     = ""
  description = "\"sudo\" when ssh_username is not root"
}

# -- docker

variable "base_image" {
  type        = string
  default     = "flannelnode/base-debian:bookworm"
  description = "the base image: the local debootstrap import (make base) or e.g. rockylinux:9"
}

variable "pull" {
  type        = bool
  default     = false
  description = "pull base_image from a registry; false for the local debootstrap base"
}

variable "repository" {
  type    = string
  default = "flannelnode/node"
}

variable "tag" {
  type    = string
  default = "latest"
}

# -- qemu

variable "base_url" {
  type        = string
  default     = "build/base/debian-bookworm.qcow2"
  description = "the base qcow2: a local path (build/base/...) or a URL"
}

variable "base_checksum" {
  type        = string
  default     = "none"
  description = "sha256:<hex>, or file:<url of a CHECKSUM file>"
}

variable "accelerator" {
  type        = string
  default     = "tcg"
  description = "kvm where /dev/kvm boots a stock kernel; tcg otherwise (some hosts expose a /dev/kvm that hangs a stock kernel)"
}

variable "cpus" {
  type    = number
  default = 2
}

variable "memory" {
  type    = number
  default = 1024
}

variable "disk_size" {
  type    = string
  default = "4G"
}

variable "ssh_private_key_file" {
  type        = string
  default     = ""
  description = "the per-build key whose public half is in the seed's user-data"
}

variable "seed_dir" {
  type        = string
  default     = "/nonexistent"
  description = "a directory holding the NoCloud user-data and meta-data"
}

variable "output_directory" {
  type    = string
  default = "output-qemu"
}

variable "vm_name" {
  type    = string
  default = "flannelnode-node.qcow2"
}

variable "serial_log" {
  type        = string
  default     = "/dev/null"
  description = "where the guest's serial console goes (boot diagnostics)"
}

variable "timeout" {
  type        = string
  default     = "10m"
  description = "how long Packer waits for ssh"
}

# -- amazon-ebs

variable "region" {
  type    = string
  default = "eu-west-1"
}

variable "instance_type" {
  type    = string
  default = "t3.small"
}

variable "ami_arch" {
  type        = string
  default     = "x86_64"
  description = "x86_64 or arm64 (with an arm64 instance_type and payload)"
}

variable "source_ami_name" {
  type        = string
  default     = "debian-12-amd64-*"
  description = "name filter of the base AMI (the variant's var file sets it)"
}

variable "source_ami_owner" {
  type    = string
  default = "136693071363" # Debian
}

variable "ami_prefix" {
  type    = string
  default = "flannelnode-node"
}

variable "flannel_version" {
  type    = string
  default = "unknown"
}

# systemd as PID 1 and its own dockerd (Docker-in-Docker)
source "docker" "node" {
  image  = var.base_image
  pull   = var.pull
  commit = true
  # Packer commits with its own --entrypoint=/bin/sh; restore what a systemd node needs.
  # STOPSIGNAL cannot be set here (docker refuses it in --change): run with --stop-signal SIGRTMIN+3.
  changes = [
    "ENTRYPOINT [\"/lib/systemd/systemd\"]",
    "CMD []",
    "ENV container=docker",
    "VOLUME /var/lib/docker",
    "LABEL org.flannelnode.image=node",
  ]
}

# A qcow2 for KVM/OpenStack hosts, from a bootable base qcow2 (make base, or the Rocky 9
# GenericCloud image of images/variants/rocky-9/qemu.pkrvars.hcl).
# SSH: images.py generates a key pair per build and hands its public half to the base's cloud-init
# through a NoCloud seed CD (cd_files, label cidata); provision.sh removes it at the end.
source "qemu" "node" {
  disk_image       = true
  iso_url          = var.base_url
  iso_checksum     = var.base_checksum
  use_backing_file = false
  format           = "qcow2"
  disk_size        = var.disk_size
  disk_interface   = "virtio"
  net_device       = "virtio-net"
  accelerator      = var.accelerator
  cpus             = var.cpus
  memory           = var.memory
  headless         = true
  qemuargs = [
    ["-cpu", "max"],
    ["-serial", "file:${var.serial_log}"],
  ]

  cd_files = ["${var.seed_dir}/user-data", "${var.seed_dir}/meta-data"]
  cd_label = "cidata"

  communicator         = "ssh"
  ssh_username         = var.ssh_username
  ssh_private_key_file = var.ssh_private_key_file
  ssh_timeout          = var.timeout
  shutdown_command     = "${var.become} poweroff"
  shutdown_timeout     = "5m"

  output_directory = var.output_directory
  vm_name          = var.vm_name
}

# An AMI. Built only with AWS credentials (found as the AWS SDK finds them). Packer creates a
# temporary EC2 key pair for the build and deletes it; provision.sh also removes the build user's
# authorized_keys so the AMI carries no key at all (cloud-init adds the node's).
source "amazon-ebs" "node" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = var.ssh_username
  ami_name      = "${var.ami_prefix}-${var.flannel_version}-{{timestamp}}"
  # the root volume of the AMI (and of every node launched from it) is encrypted, with the account's
  # default EBS key unless kms_key_id says otherwise
  encrypt_boot = true
  # IMDSv2 with hop limit 1 (metadata_options, imds_support = "v2.0") is NOT set here: Packer 1.6.6's
  # amazon builder rejects both ("An argument named imds_support is not expected here"); see README
  source_ami_filter {
    filters = {
      name                = var.source_ami_name
      architecture        = var.ami_arch
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [var.source_ami_owner]
    most_recent = true
  }
  tags = {
    Name              = var.ami_prefix
    "flannel-version" = var.flannel_version
    "built-by"        = "flannelnode"
  }
}

build {
  sources = ["source.docker.node", "source.qemu.node", "source.amazon-ebs.node"]

  provisioner "shell" {
    inline = ["${var.become} mkdir -p /tmp/flannelnode", "${var.become} chown ${var.ssh_username} /tmp/flannelnode"]
  }

  # the trailing slash uploads the directory's contents, not the directory
  provisioner "file" {
    source      = "${var.upload_dir}/"
    destination = "/tmp/flannelnode"
  }

  provisioner "shell" {
    script          = var.provision_script
    execute_command = "chmod +x {{ .Path }}; ${var.become} env {{ .Vars }} {{ .Path }}"
    environment_vars = [
      "FLANNELNODE_PAYLOAD=/tmp/flannelnode/flannelnode-payload.tar",
      "FLANNELNODE_RPMS=/tmp/flannelnode/rpms",
      "FLANNELNODE_ENGINE_REPO=${var.engine_repo}",
      # the build's ssh login, whose authorized_keys provision.sh removes (docker has none)
      "FLANNELNODE_BUILD_USER=${source.type == "docker" ? "" : var.ssh_username}",
    ]
  }

  # The last step of every build: images/validate.sh checks the image as it will ship (payload
  # files, modes and sha256, ELF arch, units, no key, machine-id, host keys or cloud-init state);
  # a failed check fails the build. The check list comes from images.py with the payload.
  provisioner "shell" {
    script           = "${path.root}/validate.sh"
    execute_command  = "chmod +x {{ .Path }}; ${var.become} env {{ .Vars }} {{ .Path }}"
    environment_vars = ["FLANNELNODE_CHECKS=${base64encode(file("${var.upload_dir}/validate.list"))}"]
  }

  post-processor "docker-tag" {
    only       = ["docker.node"]
    repository = var.repository
    tags       = [var.tag]
  }
}
