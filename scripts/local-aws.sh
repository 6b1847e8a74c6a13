#!/usr/bin/env bash
# A local AWS for trying stacksetd without an AWS account: the project's pinned, patched moto (the one the
# end-to-end tests use, tests/moto/README.md), seeded with an organization.
#
#   scripts/local-aws.sh [start]   set up moto (scripts/setup-moto.sh), start it in the background on
#                                  127.0.0.1:$LOCAL_AWS_PORT (default 5000), seed an organization, write
#                                  $LOCAL_AWS_DIR/env and $LOCAL_AWS_DIR/desired.yaml, print the next commands
#   scripts/local-aws.sh stop      stop it
#   scripts/local-aws.sh env       print the env file (its path, then its content)
#
# LOCAL_AWS_DIR (default target/local-aws in the repository) holds moto.pid, moto.log, env, desired.yaml and
# org.json (what was seeded). moto runs detached (tests/moto/launcher.py --no-stdin-watch, stdin on /dev/null,
# under nohup) until `stop`; its state lives in memory, so every start seeds a fresh organization.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PORT=${LOCAL_AWS_PORT:-5000}
DIR=${LOCAL_AWS_DIR:-$REPO/target/local-aws}
case $DIR in
/*) ;;
*) DIR=$PWD/$DIR ;;
esac
PYTHON=$REPO/.venv/bin/python
PID_FILE=$DIR/moto.pid
LOG=$DIR/moto.log
ENV_FILE=$DIR/env
DESIRED=$DIR/desired.yaml
ENDPOINT=http://127.0.0.1:$PORT
# How long moto may take to import and answer (it is slow on a busy machine).
READY_TIMEOUT_SECONDS=120

say() { echo "local-aws: $*" >&2; }

# A path as the user can type it from here: relative when below the current directory, shell-quoted.
shown() {
    local path=$1
    if [[ $path == "$PWD"/* ]]; then
        path=${path#"$PWD"/}
    fi
    printf '%q' "$path"
}

# This script as the user can type it, with LOCAL_AWS_DIR when it is not the default (stop needs it).
self() {
    local prefix=""
    if [[ $DIR != "$REPO/target/local-aws" ]]; then
        prefix="LOCAL_AWS_DIR=$(printf '%q' "$DIR") "
    fi
    echo "$prefix$(shown "$REPO/scripts/local-aws.sh")"
}

# The pid of the running launcher, or nothing. A pid file whose process is gone (or is no launcher: the pid was
# reused) is stale.
running_pid() {
    [[ -f $PID_FILE ]] || return 0
    local pid
    pid=$(<"$PID_FILE")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        ps -p "$pid" -o args= 2>/dev/null | grep -q 'tests/moto/launcher.py'; then
        echo "$pid"
    fi
}

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
}

start() {
    if [[ ! $PORT =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
        say "LOCAL_AWS_PORT=$PORT is not a port (1-65535)"
        exit 1
    fi
    local pid
    pid=$(running_pid)
    if [[ -n $pid ]]; then
        say "a local AWS is already running (pid $pid, log $(shown "$LOG"))."
        say "its environment: . $(shown "$ENV_FILE"); stop it with: $(self) stop"
        exit 1
    fi
    if [[ -f $PID_FILE ]]; then
        say "removing a stale $(shown "$PID_FILE") (pid $(<"$PID_FILE") is not running)"
        rm -f "$PID_FILE"
    fi

    if [[ ! -x $PYTHON ]] && ! command -v python3 >/dev/null; then
        say "python3 is needed to install moto into $(shown "$REPO/.venv"): install it (e.g. apt-get install" \
            "python3-venv)"
        exit 1
    fi
    "$REPO/scripts/setup-moto.sh"

    # As werkzeug binds (SO_REUSEADDR): a port in TIME_WAIT is free, one with a listener is not.
    if ! "$PYTHON" -c '
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
' "$PORT" 2>/dev/null; then
        say "127.0.0.1:$PORT is taken by another program: choose another port, e.g."
        say "  LOCAL_AWS_PORT=$((PORT == 65535 ? 5001 : PORT + 1)) $(self)"
        exit 1
    fi

    mkdir -p "$DIR"
    rm -f "$ENV_FILE" "$DESIRED" "$DIR/org.json"
    : >"$LOG"
    # Detached: stdin on /dev/null (so --no-stdin-watch), output to the log, immune to the terminal's hangup.
    # nohup and the subshell exec, so $! is the launcher's own pid.
    (cd "$REPO" && exec nohup "$PYTHON" tests/moto/launcher.py --port "$PORT" --no-stdin-watch \
        </dev/null >>"$LOG" 2>&1) &
    pid=$!
    echo "$pid" >"$PID_FILE"
    # Until seeded, a failure stops moto again: nothing half-started is left behind.
    STARTED_PID=$pid
    trap failed_start EXIT

    local waited=0
    until grep -q '^READY ' "$LOG"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            say "moto exited before it was ready; the end of $(shown "$LOG"):"
            tail -n 20 "$LOG" >&2
            exit 1
        fi
        if ((waited >= READY_TIMEOUT_SECONDS * 5)); then
            say "moto did not answer within ${READY_TIMEOUT_SECONDS}s; see $(shown "$LOG")"
            exit 1
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    if ! grep -qx "READY $PORT" "$LOG"; then
        say "moto is listening elsewhere than 127.0.0.1:$PORT: $(grep '^READY ' "$LOG")"
        exit 1
    fi

    # Only the endpoint and the test credentials reach the seed: no profile, config file or proxy of the host's.
    env -u AWS_PROFILE -u AWS_DEFAULT_PROFILE -u AWS_SESSION_TOKEN -u AWS_ENDPOINT_URL \
        AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
        NO_PROXY=127.0.0.1,localhost no_proxy=127.0.0.1,localhost \
        "$PYTHON" "$REPO/scripts/local_aws_seed.py" --endpoint "$ENDPOINT" \
        --config "$REPO/config/aimably-data-only.yaml" \
        --template "$REPO/config/templates/aimably-data-only.json" --out "$DIR"

    cat >"$ENV_FILE.partial" <<EOF
# The local AWS of scripts/local-aws.sh (pid $pid, 127.0.0.1:$PORT): source this file (. $(printf '%q' "$ENV_FILE")).
# The default credential chain reads the keys from here first; a profile or session token would get in its way.
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN
export AWS_ENDPOINT_URL=$ENDPOINT
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
EOF
    mv "$ENV_FILE.partial" "$ENV_FILE"
    trap - EXIT

    local stacksetd=stacksetd note=""
    if ! command -v stacksetd >/dev/null; then
        # cargo runs the binary in the current directory, so the paths above stay right.
        local cargo_run="cargo run --release --"
        if [[ $PWD != "$REPO" ]]; then
            cargo_run="cargo run --release --manifest-path $(printf '%q' "$REPO/Cargo.toml") --"
        fi
        note="(stacksetd is not on your PATH: \`$cargo_run\` stands in for it, e.g.
 \`$cargo_run --desired $(shown "$DESIRED") plan\`; or install it: \`cargo install --path $(shown "$REPO")\`)"
    fi
    local desired
    desired=$(shown "$DESIRED")
    cat <<EOF

local AWS on $ENDPOINT (pid $pid, log $(shown "$LOG")). Next:

. $(shown "$ENV_FILE")
$stacksetd --desired $desired plan
$stacksetd --desired $desired reconcile --once
$stacksetd --desired $desired run      # then open http://127.0.0.1:9464/
$(self) stop
EOF
    if [[ -n $note ]]; then
        echo
        echo "$note"
    fi
}

# The EXIT trap of a start that did not finish: stop the launcher it started.
failed_start() {
    kill -TERM "$STARTED_PID" 2>/dev/null || true
    wait "$STARTED_PID" 2>/dev/null || true
    rm -f "$PID_FILE"
    say "start failed; moto stopped"
}

stop() {
    if [[ ! -f $PID_FILE ]]; then
        say "no local AWS is running (no $(shown "$PID_FILE"))"
        return 0
    fi
    local pid
    pid=$(running_pid)
    if [[ -z $pid ]]; then
        say "no local AWS is running (pid $(<"$PID_FILE") is gone); removing $(shown "$PID_FILE")"
        rm -f "$PID_FILE"
        return 0
    fi
    kill -TERM "$pid"
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= 50)); then
            say "pid $pid did not stop within 10 s of SIGTERM: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.2
        waited=$((waited + 1))
    done
    rm -f "$PID_FILE"
    echo "local AWS stopped (pid $pid)"
}

print_env() {
    if [[ ! -f $ENV_FILE ]]; then
        say "no $(shown "$ENV_FILE"): start the local AWS first ($(self))"
        exit 1
    fi
    echo "# $ENV_FILE"
    cat "$ENV_FILE"
    if [[ -z $(running_pid) ]]; then
        say "note: the local AWS is not running (start it with $(self))"
    fi
}

case ${1:-start} in
start) start ;;
stop) stop ;;
env) print_env ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
