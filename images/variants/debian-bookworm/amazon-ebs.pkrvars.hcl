# Debian 12 base for the amazon-ebs target: the official AMIs of the Debian cloud team (owner
# 136693071363), whose default user is "admin".
source_ami_name  = "debian-12-amd64-*"
source_ami_owner = "136693071363"
ssh_username     = "admin"
become           = "sudo"
