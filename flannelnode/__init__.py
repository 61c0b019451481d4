"""flannelnode: flannel release binaries in, ready-to-boot Kubernetes node artifacts out."""

__version__ = "0.1.0"
