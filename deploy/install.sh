#!/usr/bin/env bash
# Install edge-agent as a systemd service, or remove it. Safe to run again (upgrades in place).
#
#   sudo deploy/install.sh                      install or upgrade from this checkout, enable and (re)start
#   sudo deploy/install.sh --source dist/edge_agent-0.1.0-py3-none-any.whl
#   sudo deploy/install.sh -- --no-index --find-links /media/usb/wheels     (offline gateway)
#   sudo deploy/install.sh --uninstall          remove the service and the venv; keep config and state
#   sudo deploy/install.sh --uninstall --purge  also remove /etc/edge-agent, /var/lib/edge-agent, the user
#   deploy/install.sh --dry-run [...]           print what would be done, change nothing
#   sudo deploy/install.sh --root /tmp/img      install under /tmp/img (an image, a test): no systemd steps
#   other options: --prefix DIR (default /opt/edge-agent), --python PY, --config FILE, --no-start,
#                  --user NAME (service user, default edge-agent), --extras LIST (default train)
#
# The service install can learn normal: the `train` extra (onnx, to export models) is installed, so
# `edge-agent record` and `edge-agent train` work as the service user out of the box.
#
# Layout: venv in /opt/edge-agent/venv, config in /etc/edge-agent/config.toml (never overwritten),
# secrets in /etc/edge-agent/credentials/ (passed with LoadCredential=), state in /var/lib/edge-agent
# (StateDirectory=, created by systemd), unit in /etc/systemd/system/edge-agent.service.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX=/opt/edge-agent
CONF_DIR=/etc/edge-agent
STATE_DIR=/var/lib/edge-agent
UNIT_DIR=/etc/systemd/system
UNIT=edge-agent.service
SERVICE_USER=edge-agent
CREDENTIALS=(mqtt-password opcua-password)

DRY_RUN=0 UNINSTALL=0 PURGE=0 START=1
ROOT=""
EXTRAS=train
PYTHON=python3
SOURCE="$(dirname "$HERE")"
CONFIG="$HERE/config.toml"
PIP_EXTRA=()

usage() { sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }

while (($#)); do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        --no-start) START=0 ;;
        --prefix) PREFIX="${2:?--prefix needs a directory}"; shift ;;
        --python) PYTHON="${2:?--python needs a path}"; shift ;;
        --source) SOURCE="${2:?--source needs a directory or a wheel}"; shift ;;
        --config) CONFIG="${2:?--config needs a file}"; shift ;;
        --root) ROOT="${2:?--root needs a directory}"; shift ;;
        --user) SERVICE_USER="${2:?--user needs a name}"; shift ;;
        --extras) EXTRAS="${2?--extras needs a list, e.g. train,plot (empty for none)}"; shift ;;
        -h | --help) usage; exit 0 ;;
        --) shift; PIP_EXTRA=("$@"); break ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done
((PURGE == 0 || UNINSTALL == 1)) || die "--purge only goes with --uninstall"

# --root: every installed path lives under ROOT (the venv keeps working there: it is made in place).
apply_root() {
    [[ -n "$ROOT" ]] || return 0
    [[ "$ROOT" == /* ]] || ROOT="$(pwd)/$ROOT"
    PREFIX="$ROOT$PREFIX" CONF_DIR="$ROOT$CONF_DIR" STATE_DIR="$ROOT$STATE_DIR" UNIT_DIR="$ROOT$UNIT_DIR"
}
apply_root

# Every change goes through run: printed in dry-run mode, executed otherwise.
run() {
    if ((DRY_RUN)); then
        printf '+'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}
note() { echo "== $*"; }
# A dry run shows the systemctl steps even where systemd is not running (a build host, a container).
have_systemd() {
    [[ -z "$ROOT" ]] || return 1 # an image or a test: nothing to enable here
    ((DRY_RUN)) || { [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; }
}

if ((DRY_RUN == 0)) && ((EUID != 0)); then
    die "run as root (sudo), or add --dry-run to see what it would do"
fi

# The same pip command as the Dockerfile and docs/deploy.md: the project with the `train` extra, its
# pinned ranges. A wheel or a checkout takes extras the same way: PATH[train].
install_package() {
    local target="$SOURCE"
    [[ -z "$EXTRAS" ]] || target="$SOURCE[$EXTRAS]"
    run "$PREFIX/venv/bin/python" -m pip install --no-cache-dir "$target" ${PIP_EXTRA[@]+"${PIP_EXTRA[@]}"}
}

# State for the service user (systemd's StateDirectory= makes it too; without systemd nobody would), and
# a models folder an administrator trains into: setgid, so a model written there gets the service group.
state_and_models() {
    note "state in $STATE_DIR (0700); models and recordings: group $SERVICE_USER, setgid"
    if [[ ! -d "$STATE_DIR" ]] || ((DRY_RUN)); then
        run install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
    fi
    # Models and recordings (docs/security.md): `edge-agent train` and `record` write their files 0640 with
    # the group of the folder they write to. These folders are group edge-agent and setgid, so a model an
    # administrator trains as root is readable by the service, and not writable by it.
    for dir in "$STATE_DIR/models" "$STATE_DIR/recordings" "$CONF_DIR/models"; do
        run install -d -m 2750 -o root -g "$SERVICE_USER" "$dir"
    done
}

do_uninstall() {
    note "removing the edge-agent service"
    if have_systemd; then
        run systemctl disable --now "$UNIT" || true
    fi
    if [[ -e "$UNIT_DIR/$UNIT" ]] || ((DRY_RUN)); then
        run rm -f "$UNIT_DIR/$UNIT"
    fi
    if have_systemd; then
        run systemctl daemon-reload
    fi
    run rm -rf "$PREFIX"
    if ((PURGE)); then
        note "purging config, state (buffered messages, certificates, models) and the service user"
        run rm -rf "$CONF_DIR" "$STATE_DIR"
        if getent passwd "$SERVICE_USER" >/dev/null; then
            run userdel "$SERVICE_USER"
        fi
    else
        note "kept $CONF_DIR and $STATE_DIR (add --purge to remove them)"
    fi
}

do_install() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || die "$PYTHON is not Python >= 3.11 (use --python /path/to/python3.11)"
    [[ -e "$SOURCE" ]] || die "no source at $SOURCE"
    [[ -f "$CONFIG" ]] || die "no config at $CONFIG"

    note "service user $SERVICE_USER"
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "edge-agent service" "$SERVICE_USER"
    fi

    note "virtualenv in $PREFIX/venv"
    if [[ ! -x "$PREFIX/venv/bin/python" ]]; then
        run install -d -m 0755 "$PREFIX"
        run "$PYTHON" -m venv "$PREFIX/venv"
    fi
    install_package
    if [[ -f "$HERE/../docs/deploy.md" ]]; then
        run install -D -m 0644 "$HERE/../docs/deploy.md" "$PREFIX/share/doc/deploy.md"
    fi

    note "config in $CONF_DIR"
    run install -d -m 0750 -o root -g "$SERVICE_USER" "$CONF_DIR"
    if [[ ! -e "$CONF_DIR/config.toml" ]]; then
        run install -m 0640 -o root -g "$SERVICE_USER" "$CONFIG" "$CONF_DIR/config.toml"
        # The example is the container's; on a host the health endpoint stays on loopback, which needs
        # no token (docs/status-page.md says how to open it to the network with one).
        run sed -i 's/^host = "0\.0\.0\.0"/host = "127.0.0.1"/' "$CONF_DIR/config.toml"
        run sed -i 's/^token_file = /# token_file = /' "$CONF_DIR/config.toml"
        note "installed an example config: edit its sources and sinks, then systemctl restart edge-agent"
    else
        note "kept the existing $CONF_DIR/config.toml"
    fi
    run install -d -m 0700 -o root -g root "$CONF_DIR/credentials"
    for name in "${CREDENTIALS[@]}"; do
        if [[ ! -e "$CONF_DIR/credentials/$name" ]]; then
            run install -m 0600 -o root -g root /dev/null "$CONF_DIR/credentials/$name"
        fi
    done

    state_and_models
    note "systemd unit $UNIT_DIR/$UNIT"
    run install -d -m 0755 "$UNIT_DIR"
    if [[ "$PREFIX" == /opt/edge-agent ]]; then
        run install -m 0644 "$HERE/$UNIT" "$UNIT_DIR/$UNIT"
    else
        run sh -c "sed 's#/opt/edge-agent#$PREFIX#g' '$HERE/$UNIT' > '$UNIT_DIR/$UNIT'"
    fi
    if have_systemd; then
        run systemctl daemon-reload
        run systemctl enable "$UNIT"
        if ((START)); then
            run systemctl restart "$UNIT"
        fi
        note "done: systemctl status edge-agent; journalctl -u edge-agent -f"
    else
        note "systemd is not running here: unit installed, not enabled"
    fi
}

if ((UNINSTALL)); then do_uninstall; else do_install; fi
