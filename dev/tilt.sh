#!/usr/bin/env bash
# dev/tilt.sh: run the Tilt this project builds from its Go module, on a machine without Docker.
#
#   dev/tilt.sh ARGS...        e.g. dev/tilt.sh ci -- --demo, dev/tilt.sh up --stream -- --demo
#
# - Builds Tilt once (dev/check-tiltfile.sh --build: v0.37.7, cached) and runs it.
# - Puts the cached control-plane binaries (helm for the Tiltfile's helm(), kubectl) on PATH.
# - A Tilt built from its module has no web UI assets, and its `--web-mode=local` (which this
#   adds to `up` and `ci` unless a --web-mode is given, with a free --webdev-port) runs `yarn install` and a webpack dev
#   server in Tilt's read-only module directory, and exits when that fails. A `yarn` stand-in
#   on PATH (it does nothing, and `yarn run` waits until Tilt exits) lets Tilt start: its API, `tilt
#   get/logs/wait`, the buttons through the API and the HUD port all work, but the port serves
#   no UI page ("Error talking to asset server"). MESHLOOP_TILT=/path/to/tilt runs another
#   build (one with its web UI built in: pass --web-mode=precompiled).
# - TILT_DISABLE_ANALYTICS=1 unless set.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TILT=${MESHLOOP_TILT:-$("$ROOT/dev/check-tiltfile.sh" --build)}

shim=$(dirname "$TILT")/../no-web-ui
if [[ ! -x $shim/yarn ]]; then
	mkdir -p "$shim"
	# shellcheck disable=SC2016 # $1 and $PPID are the stand-in's own
	printf '#!/bin/sh\n# Stands in for yarn in Tilt web-mode local: no UI is built or served.\ncase "$1" in run) exec tail --pid="$PPID" -f /dev/null ;; esac\nexit 0\n' >"$shim/yarn.partial"
	chmod +x "$shim/yarn.partial"
	mv "$shim/yarn.partial" "$shim/yarn"
fi
cp_bin=$("$ROOT/dev/localcluster" bin)
export PATH="$shim:$cp_bin:$PATH"
export TILT_DISABLE_ANALYTICS=${TILT_DISABLE_ANALYTICS:-1}

if [[ ${1:-} == up || ${1:-} == ci ]]; then
	web_mode_given=0 webdev_port_given=0
	for a in "${@:2}"; do
		[[ $a == -- ]] && break
		[[ $a == --web-mode* ]] && web_mode_given=1
		[[ $a == --webdev-port* ]] && webdev_port_given=1
	done
	if ((!web_mode_given)); then
		set -- "$1" --web-mode=local "${@:2}"
		# Tilt checks that the dev server's port is free (default 46764, inside the range the
		# kernel hands out to other sockets); the stand-in binds nothing, so any free port does.
		if ((!webdev_port_given)); then
			port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])')
			set -- "$1" "--webdev-port=$port" "${@:2}"
		fi
	fi
fi
exec "$TILT" "$@"
