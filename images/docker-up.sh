#!/bin/sh
# Start the Docker engine if none answers, and wait (bounded) until it does. Idempotent: a running
# engine is left alone. Builder-side only (make images / make test call it); never runs on nodes.
#   DOCKERD_LOG   where dockerd writes (default /var/log/dockerd.log)
#   DOCKER_WAIT   seconds to wait for `docker info` (default 30)
set -eu

log=${DOCKERD_LOG:-/var/log/dockerd.log}
wait=${DOCKER_WAIT:-30}

if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
	echo "docker-up: docker is not installed: run 'apt-get install -y docker.io'" >&2
	exit 1
fi
if docker info >/dev/null 2>&1; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "docker-up: no Docker engine answers and starting one needs root (sudo $0)" >&2
	exit 1
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
	echo "docker-up: starting dockerd (log: $log)" >&2
	setsid dockerd >"$log" 2>&1 </dev/null &
fi
i=0
while [ "$i" -lt "$((wait * 5))" ]; do
	if docker info >/dev/null 2>&1; then
		exit 0
	fi
	sleep 0.2
	i=$((i + 1))
done
echo "docker-up: dockerd did not answer within ${wait}s; last lines of $log:" >&2
tail -n 20 "$log" >&2 || true
exit 1
