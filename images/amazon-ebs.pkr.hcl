# flannelnode AMI. `packer validate` runs in the tests; `build.py images --target amazon-ebs` builds
# it only when AWS credentials are present (AWS_ACCESS_KEY_ID/AWS_PROFILE/an instance role).
# Packer creates a temporary EC2 key pair for the build and deletes it; provision.sh also removes
# the build user's authorized_keys so the AMI carries no key at all (cloud-init adds the node's).
#
# Packer 1.6.6 (Debian 12) has the amazon builders built in. A current Packer needs the plugin:
#   packer { required_plugins { amazon = { source = "github.com/hashicorp/amazon", version = ">= 1.0.0" } } }
# (1.6.6 rejects a required_plugins block, so it is stated here and not in the packer block.)

packer {
  required_version = ">= 1.6.6"
}

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
  description = "name filter of the base AMI (Debian 12 by the Debian cloud team by default)"
}

variable "source_ami_owner" {
  type    = string
  default = "136693071363" # Debian
}

variable "ssh_username" {
  type    = string
  default = "admin"
}

variable "become" {
  type    = string
  default = "sudo"
}

variable "ami_prefix" {
  type    = string
  default = "flannelnode-node"
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

variable "flannel_version" {
  type    = string
  default = "unknown"
}

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
  sources = ["source.amazon-ebs.node"]

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
