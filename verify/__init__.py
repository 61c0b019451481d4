"""verify: boot a built node image and check it the way an operator needs it to work.

Two node containers from the image (systemd as PID 1, each with its own dockerd), a third
whose user-data carries a wrong CA and two "late" nodes whose etcd starts only minutes later boot
together against real etcd servers with TLS, first boot through cloud-init's NoCloud datasource
with user-data from flannelnode.userdata. The checks (pytest-testinfra over docker exec,
verify/test_*.py) then assert the node contract: payload files and modes, units, no key in the
image, etcd seeded once, distinct leases, docker on the lease with flannel's MTU, flanneld
restarts, crashes and stops that leave dockerd and its containers running, a wrong CA that
waits visibly without docker, and late nodes that come up by themselves once their etcd does.

    python -m verify --image IMAGE [--config node.toml] [--build-dir build] [--privileged]
                     [--late-etcd-delay SECONDS]

or from Python: verify.run(image, config, build_dir) -> exit code (0: all checks passed).
"""

from .runner import run

__all__ = ["run"]
