# flannelnode qcow2 node disk for KVM/OpenStack hosts, built from a bootable base qcow2 (make base,
# or the Rocky 9 GenericCloud image: -var-file=images/variants/rocky-9/qemu.pkrvars.hcl).
# Built by `build.py images` (flannelnode/images.py), which passes the per-build variables.
#
# SSH: images.py generates a key pair per build and hands its public half to the base's cloud-init
# through a NoCloud seed CD (cd_files, label cidata); provision.sh removes it at the end.
#
# Packer 1.6.6 (Debian 12) has the qemu builder built in. A current Packer needs the plugin:
#   packer { required_plugins { qemu = { source = "github.com/hashicorp/qemu", version = ">= 1.0.0" } } }
# (1.6.6 rejects a required_plugins block, so it is stated here and not in the packer block.)

packer {
  required_version = ">= 1.6.6"
}

variable "base_url" {
  type        = string
  description = "the base qcow2: a local path (build/base/...) or a URL"
}

variable "base_checksum" {
  type        = string
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

variable "ssh_username" {
  type    = string
  default = "root"
}

variable "ssh_private_key_file" {
  type        = string
  description = "the per-build key whose public half is in the seed's user-data"
}

variable "become" {
  type        = string
  default     = ""
  description = "\"sudo\" when ssh_username is not root"
}

variable "seed_dir" {
  type        = string
  description = "a directory holding the NoCloud user-data and meta-data"
}

variable "upload_dir" {
  type        = string
  description = "a directory holding flannelnode-payload.tar and, for EL bases, rpms/*.rpm"
}

variable "engine_repo" {
  type        = string
  default     = "https://download.docker.com/linux/centos/docker-ce.repo"
  description = "EL bases: the docker engine's .repo, an https:// URL or a .repo file's path in the image (air-gapped mirror); gpgcheck must stay on"
}

variable "provision_script" {
  type    = string
  default = "images/provision.sh"
}

variable "output_directory" {
  type = string
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

build {
  sources = ["source.qemu.node"]

  provisioner "shell" {
    inline = ["${var.become} mkdir -p /tmp/flannelnode", "${var.become} chown ${var.ssh_username} /tmp/flannelnode"]
  }

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
      "FLANNELNODE_BUILD_USER=${var.ssh_username}",
    ]
  }

  # The last step of every build: images/validate.sh checks the image as it will ship (payload
  # files, modes and sha256, ELF arch, units, no key, machine-id, host keys or cloud-init state);
  # a failed check fails the build. The check list comes from images.py with the payload.
  provisioner "shell" {
    script           = "${path.root}/validate.sh"
    environment_vars = ["FLANNELNODE_CHECKS=${base64encode(file("${var.upload_dir}/validate.list"))}"]
  }
}
