#!/bin/sh
# mk-docker-opts.sh: turn flanneld's subnet file into docker daemon options.
#
# flannelnode's own POSIX sh implementation, flag-compatible with flannel's dist/mk-docker-opts.sh.
# Differences, all deliberate:
#   - the subnet file is parsed as KEY=VALUE lines, never sourced, and its values are checked;
#   - nothing is inherited from the environment (flannel's appends the old value of the combined
#     key, so a re-run over its own output grows the options on every restart);
#   - the output is written atomically and is byte-for-byte the same on every run;
#   - a missing subnet file or variable is an error, not an empty option set;
#   - -d naming the subnet file itself is refused;
#   - -m works (flannel's getopts string forgets it), and the combined value has no padding spaces.

set -eu

prog=mk-docker-opts.sh

usage() {
	cat <<EOF
usage: $prog [-f FLANNEL-ENV-FILE] [-d DOCKER-ENV-FILE] [-i] [-c] [-m] [-k COMBINED-KEY] [-h]

Generate docker daemon options from flanneld's subnet file.
  -f  flanneld's subnet file to read (default /run/flannel/subnet.env)
  -d  docker environment file to write (default /run/docker_opts.env); never the -f file
  -i  write only the individual variables, e.g. DOCKER_OPT_MTU="--mtu=1450"
  -c  write only the combined variable
  -k  name of the combined variable (default DOCKER_OPTS)
  -m  do not write --ip-masq
  -h  show this help
Without -i or -c both forms are written.
EOF
}

die() {
	printf '%s: %s\n' "$prog" "$1" >&2
	exit "${2:-1}"
}

# Absolute path of $1 with its directory resolved (symlinks, '.', '..'); empty if the directory is
# missing.
canonical() {
	_dir=$(dirname -- "$1")
	_base=$(basename -- "$1")
	_dir=$(cd -P -- "$_dir" 2>/dev/null && pwd -P) || return 0
	printf '%s/%s\n' "${_dir%/}" "$_base"
}

flannel_env=/run/flannel/subnet.env
docker_env=/run/docker_opts.env
combined_key=DOCKER_OPTS
indiv_opts=false
combined_opts=false
ipmasq=true

while getopts 'f:d:k:icmh' opt; do
	case $opt in
	f) flannel_env=$OPTARG ;;
	d) docker_env=$OPTARG ;;
	k) combined_key=$OPTARG ;;
	i) indiv_opts=true ;;
	c) combined_opts=true ;;
	m) ipmasq=false ;;
	h)
		usage
		exit 0
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || die "unexpected argument '$1' (see -h)" 2

if [ "$indiv_opts" = false ] && [ "$combined_opts" = false ]; then
	indiv_opts=true
	combined_opts=true
fi

case $combined_key in
'' | [0-9]* | *[!A-Za-z0-9_]*)
	die "-k '$combined_key' is not a valid variable name (letters, digits, _; not starting with a digit)" 2
	;;
esac
[ -n "$flannel_env" ] || die "-f needs a file name" 2
[ -n "$docker_env" ] || die "-d needs a file name" 2

# Writing the options into flanneld's own subnet file (as many tutorials do) destroys the variables
# flanneld and this script read, and every restart appends the options again.
same=false
docker_canonical=$(canonical "$docker_env")
if [ -n "$docker_canonical" ] && [ "$docker_canonical" = "$(canonical "$flannel_env")" ]; then
	same=true
elif [ -e "$docker_env" ] && [ -e "$flannel_env" ]; then
	# -ef (same device and inode) is in POSIX.1-2024 and in dash, bash and busybox sh.
	# shellcheck disable=SC3013
	if [ "$docker_env" -ef "$flannel_env" ]; then
		same=true
	fi
fi
if [ "$same" = true ]; then
	die "refusing -d '$docker_env': it is the flannel subnet file given by -f; writing docker options into it would overwrite flanneld's own variables (FLANNEL_SUBNET, FLANNEL_MTU, ...) and duplicate the options on every restart. Write to a separate file, e.g. -d /run/flannel/docker" 2
fi

[ -e "$flannel_env" ] || die "flannel subnet file '$flannel_env' does not exist (is flanneld running and done writing it?)"
[ -f "$flannel_env" ] || die "flannel subnet file '$flannel_env' is not a regular file"
[ -r "$flannel_env" ] || die "flannel subnet file '$flannel_env' is not readable"

subnet=
mtu=
ipmasq_value=
# KEY=VALUE lines as flanneld writes them; one pair of surrounding quotes is tolerated, the last
# assignment wins (as when the file is sourced), anything else is ignored.
cr=$(printf '\r')
while IFS= read -r line || [ -n "$line" ]; do
	line=${line%"$cr"}
	case $line in
	FLANNEL_SUBNET=* | FLANNEL_MTU=* | FLANNEL_IPMASQ=*) ;;
	*) continue ;;
	esac
	key=${line%%=*}
	value=${line#*=}
	case $value in
	\"*\")
		value=${value#\"}
		value=${value%\"}
		;;
	\'*\')
		value=${value#\'}
		value=${value%\'}
		;;
	esac
	case $key in
	FLANNEL_SUBNET) subnet=$value ;;
	FLANNEL_MTU) mtu=$value ;;
	FLANNEL_IPMASQ) ipmasq_value=$value ;;
	esac
done <"$flannel_env"

[ -n "$subnet" ] || die "'$flannel_env' does not set FLANNEL_SUBNET (flanneld writes it once it holds a lease)"
[ -n "$mtu" ] || die "'$flannel_env' does not set FLANNEL_MTU"
# The values end up inside double quotes in a file systemd and shells read: allow only what a
# subnet and an MTU can contain.
case $subnet in
*/* ) ;;
*) die "FLANNEL_SUBNET '$subnet' in '$flannel_env' is not an address/prefix-length" ;;
esac
case $subnet in
*[!0-9A-Fa-f.:/]*) die "FLANNEL_SUBNET '$subnet' in '$flannel_env' is not an address/prefix-length" ;;
esac
case $mtu in
*[!0-9]*) die "FLANNEL_MTU '$mtu' in '$flannel_env' is not a number" ;;
esac

# Individual variables in the order flannel's script lists them (alphabetical).
opt_bip="--bip=$subnet"
opt_ipmasq=
if [ "$ipmasq" = true ] && [ "$ipmasq_value" = true ]; then
	# flanneld masquerades itself; docker doing it as well would NAT pod-to-pod traffic.
	opt_ipmasq=--ip-masq=false
fi
opt_mtu="--mtu=$mtu"

dir=$(dirname -- "$docker_env")
[ ! -d "$docker_env" ] || die "-d '$docker_env' is a directory, not a file"
[ -d "$dir" ] || die "directory '$dir' for the docker environment file does not exist"
tmp=$(mktemp "$dir/.${docker_env##*/}.XXXXXX") || die "cannot create a temporary file in '$dir'"
trap 'rm -f "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

{
	if [ "$indiv_opts" = true ]; then
		printf 'DOCKER_OPT_BIP="%s"\n' "$opt_bip"
		[ -z "$opt_ipmasq" ] || printf 'DOCKER_OPT_IPMASQ="%s"\n' "$opt_ipmasq"
		printf 'DOCKER_OPT_MTU="%s"\n' "$opt_mtu"
	fi
	if [ "$combined_opts" = true ]; then
		printf '%s="%s%s %s"\n' "$combined_key" "$opt_bip" "${opt_ipmasq:+ $opt_ipmasq}" "$opt_mtu"
	fi
} >"$tmp" || die "cannot write '$tmp'"
chmod 0644 "$tmp" || die "cannot set the mode of '$tmp'"
mv -f -- "$tmp" "$docker_env" || die "cannot move '$tmp' to '$docker_env'"
trap - EXIT
