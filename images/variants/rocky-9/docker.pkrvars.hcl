# Rocky Linux 9 base for the docker target (images --base rocky-9; Packer: -var-file=<this>).
# Pulled from a registry, unlike the Debian default (a local debootstrap import). provision.sh
# installs our RPMs with dnf when rpms/ holds them, docker-ce from download.docker.com (Rocky ships
# no docker engine) and cloud-init.
base_image = "rockylinux:9"
pull       = true
