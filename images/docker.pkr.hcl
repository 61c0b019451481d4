# flannelnode container node image: systemd as PID 1, its own dockerd (Docker-in-Docker).
# Built by `build.py images` (flannelnode/images.py), which passes every variable below.
#
# Packer 1.6.6 (Debian 12) has the docker builder built in. A current Packer needs the plugin:
#   packer { required_plugins { docker = { source = "github.com/hashicorp/docker", version = ">= 1.0.0" } } }
# (1.6.6 rejects a required_plugins block, so it is stated here and not in the packer block.)

packer {
  required_version = ">= 1.6.6"
}

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

variable "repository" {
  type    = string
  default = "flannelnode/node"
}

variable "tag" {
  type    = string
  default = "latest"
}

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

build {
  sources = ["source.docker.node"]

  provisioner "shell" {
    inline = ["mkdir -p /tmp/flannelnode"]
  }

  # the trailing slash uploads the directory's contents, not the directory
  provisioner "file" {
    source      = "${var.upload_dir}/"
    destination = "/tmp/flannelnode"
  }

  provisioner "shell" {
    script = var.provision_script
    environment_vars = [
      "FLANNELNODE_PAYLOAD=/tmp/flannelnode/flannelnode-payload.tar",
      "FLANNELNODE_RPMS=/tmp/flannelnode/rpms",
      "FLANNELNODE_ENGINE_REPO=${var.engine_repo}",
    ]
  }

  # The last step of every build: images/validate.sh checks the image as it will ship (payload
  # files, modes and sha256, ELF arch, units, no key, machine-id, host keys or cloud-init state);
  # a failed check fails the build. The check list comes from images.py with the payload.
  provisioner "shell" {
    script           = "${path.root}/validate.sh"
    environment_vars = ["FLANNELNODE_CHECKS=${base64encode(file("${var.upload_dir}/validate.list"))}"]
  }

  post-processor "docker-tag" {
    repository = var.repository
    tags       = [var.tag]
  }
}
