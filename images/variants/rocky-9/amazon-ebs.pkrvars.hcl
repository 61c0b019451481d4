# Rocky Linux 9 base for the amazon-ebs target: the official AMIs of the Rocky Enterprise Software
# Foundation (owner 792107900819), whose default user is "rocky".
source_ami_name  = "Rocky-9-EC2-Base-9.*"
source_ami_owner = "792107900819"
ssh_username     = "rocky"
become           = "sudo"
