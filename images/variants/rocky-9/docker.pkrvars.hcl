# Rocky Linux 9 base for the docker target (-var-file=images/variants/rocky-9/docker.pkrvars.hcl).
# Pulled from a registry, unlike the Debian default (a local debootstrap import). provision.sh
# installs our RPMs with dnf when rpms/ holds them, docker-ce from download.docker.com (Rocky ships
# no docker engine) and cloud-init.
base_image = "rockylinux:9"
pull       = true
