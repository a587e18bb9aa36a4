#!/bin/sh
# Install the MailFleet agent on a Debian 12 / Ubuntu 22.04+ VPS and start it.
#
#   install.sh --url URL [--root PREFIX] [--config FILE]   (the script the control plane serves)
#   install-agent.sh --package SPEC [--config FILE]        (pip from a package index instead)
#
# The control plane serves this script at URL/agent/install.sh with its agent wheelhouse listed
# at the end (SHA-256 and name of each file): every file is fetched from URL/agent/wheels/NAME,
# checked against its SHA-256 before use, and the agent is installed from them alone
# (pip --no-index) into a virtualenv at PREFIX/opt/mailfleet-agent. Docker with Compose and
# restic >= 0.14 are installed from the distribution when missing (a restic the control plane
# serves when the distribution's is older). The agent runs under systemd where systemd runs,
# else detached, with its pid in PREFIX/run/mailfleet-agent.pid.
#
# --root PREFIX: a machine whose root is PREFIX on a shared filesystem (the local provider's
# VPSs): nothing is installed from the distribution (it would change the host), what is there
# is used, and what is missing is said. FILE is an agent.toml (`mailfleet server join-config
# ID`); without it PREFIX/etc/mailfleet/agent.toml must exist. Safe to run again: files already
# fetched are kept, an unchanged install is left alone, a changed one is upgraded in place and
# the agent restarted; its identity under PREFIX/var/lib/mailfleet-agent is kept.
set -eu

AGENT_VERSION=""
PACKAGE=""
URL=""
ROOT="/"
CONFIG=""

say() { echo "install-agent.sh: $*"; }
die() { echo "install-agent.sh: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --package) PACKAGE="$2"; shift 2 ;;
    --url) URL="${2%/}"; shift 2 ;;
    --root) ROOT="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    *) echo "install-agent.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

manifest() {
  grep -v '^#' <<'MANIFEST' || true
# @MANIFEST@
MANIFEST
}

[ "$(id -u)" -eq 0 ] || die "run as root"
[ -d "$ROOT" ] || die "--root $ROOT: not a directory"
R=$(cd "$ROOT" && pwd -P)
[ "$R" = / ] && R=""
if [ -z "$PACKAGE" ]; then
  [ -n "$AGENT_VERSION" ] && [ -n "$(manifest)" ] \
    || die "no wheelhouse listed: run the script the control plane serves (URL/agent/install.sh)"
  [ -n "$URL" ] || die "--url (the control plane's address) is required"
fi

restic_ok() {
  version=$(restic version 2>/dev/null | sed -n 's/^restic \([0-9]*\)\.\([0-9]*\).*/\1 \2/p')
  [ -n "$version" ] || return 1
  set -- $version
  [ "$1" -gt 0 ] || [ "$2" -ge 14 ]
}
compose_ok() { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; }

# What the agent needs on the machine: Python with venv, nftables (SNAT, warmup caps, pauses),
# Docker with Compose (MailU) and restic (backups).
missing=""
python3 -c 'import venv' 2>/dev/null || missing="$missing python3 python3-venv"
command -v nft >/dev/null || missing="$missing nftables"
command -v docker >/dev/null || missing="$missing docker.io"
compose_ok || missing="$missing compose"
restic_ok || missing="$missing restic"
if [ -n "$missing" ] && [ -n "$R" ]; then
  say "--root $ROOT shares this host's system: not installing$missing (using what is there)"
elif [ -n "$missing" ]; then
  apt-get update -qq
  # Debian 12 has Compose v1 only (docker-compose); Ubuntu 22.04+ has the v2 plugin.
  compose=docker-compose
  apt-cache show docker-compose-v2 >/dev/null 2>&1 && compose=docker-compose-v2
  packages=$(echo "$missing" | sed "s/ compose/ $compose/")
  say "installing$packages"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $packages
  systemctl enable --now docker >/dev/null 2>&1 || true
fi

CACHE="$R/var/cache/mailfleet-agent"
fetch() {  # NAME SHA256: URL/agent/wheels/NAME into $CACHE, checked; kept if already there
  case "$1" in ""|*[!A-Za-z0-9._+-]*) die "bad file name in the wheelhouse list: $1" ;; esac
  if [ -f "$CACHE/$1" ] && [ "$(sha256sum < "$CACHE/$1" | cut -d' ' -f1)" = "$2" ]; then
    return 0
  fi
  python3 - "$URL/agent/wheels/$1" "$CACHE/$1.part" <<'PY' || die "cannot fetch $1"
import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=120) as answer, open(sys.argv[2], "wb") as out:
    shutil.copyfileobj(answer, out)
PY
  got=$(sha256sum < "$CACHE/$1.part" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    rm -f "$CACHE/$1.part"
    die "$1: SHA-256 $got, expected $2; nothing installed"
  fi
  mv -f "$CACHE/$1.part" "$CACHE/$1"
}

install -d -m 0755 "$R/etc/mailfleet" "$R/opt" "$R/run" "$R/var/log"
install -d -m 0700 "$R/var/lib/mailfleet-agent"
if [ -n "$CONFIG" ]; then
  install -m 0600 "$CONFIG" "$R/etc/mailfleet/agent.toml"
fi
[ -f "$R/etc/mailfleet/agent.toml" ] || die "no $R/etc/mailfleet/agent.toml"
# A local VPS installed over SSH: its sshd names the VPS's cgroup (as start-agent.sh reads it).
if [ -n "${MAILFLEET_VPS_CGROUP:-}" ] && ! grep -q '^vps_cgroup' "$R/etc/mailfleet/agent.toml"; then
  rm -f "$R/etc/mailfleet/agent.toml.new"  # a leftover keeps its mode: never reuse one
  (umask 077; { printf 'vps_cgroup = "%s"\n' "$MAILFLEET_VPS_CGROUP"
    cat "$R/etc/mailfleet/agent.toml"; } > "$R/etc/mailfleet/agent.toml.new")
  mv -f "$R/etc/mailfleet/agent.toml.new" "$R/etc/mailfleet/agent.toml"
fi

VENV="$R/opt/mailfleet-agent"
STAMP="$VENV/.mailfleet-wheelhouse"
changed=1
if [ -n "$PACKAGE" ]; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --upgrade "$PACKAGE"
else
  install -d -m 0755 "$CACHE"
  wanted=$(manifest | sha256sum | cut -d' ' -f1)
  # restic is fetched only where it is needed: none >= 0.14 here, and not a shared host.
  need_restic=0
  if [ -z "$R" ] && ! restic_ok; then need_restic=1; fi
  manifest | while read -r sha name; do
    [ "$name" != restic ] || [ "$need_restic" = 1 ] || continue
    fetch "$name" "$sha"
  done
  for file in "$CACHE"/*; do  # an earlier version's files must not be chosen by pip
    manifest | cut -c67- | grep -qxF "${file##*/}" || rm -f "$file"
  done
  if [ "$(cat "$STAMP" 2>/dev/null)" = "$wanted" ] && [ -x "$VENV/bin/mailfleet-agent" ]; then
    changed=0
    say "mailfleet-agent $AGENT_VERSION already installed in $VENV"
  else
    reinstall=""
    if [ -x "$VENV/bin/python" ]; then reinstall="--force-reinstall"; else
      python3 -m venv --without-pip "$VENV"
    fi
    # pip from its wheel in the list, run by the virtualenv's Python (so it installs there);
    # only the fetched files: no index, and no pip configuration of this machine.
    pip_wheel=$(manifest | cut -c67- | grep '^pip-.*\.whl$') || die "no pip wheel in the list"
    PIP_CONFIG_FILE=/dev/null "$VENV/bin/python" "$CACHE/$pip_wheel/pip" install --quiet \
      --no-index --disable-pip-version-check --find-links "$CACHE" $reinstall \
      "mailfleet-agent==$AGENT_VERSION"
    echo "$wanted" > "$STAMP"
    say "mailfleet-agent $AGENT_VERSION installed in $VENV"
  fi
  if [ "$need_restic" = 1 ] && manifest | grep -q '  restic$'; then
    install -m 0755 "$CACHE/restic" /usr/local/bin/restic
    say "restic from the control plane installed in /usr/local/bin"
  fi
fi
restic_ok || say "warning: no restic >= 0.14 on this machine; backups will fail"
compose_ok || say "warning: no Docker Compose on this machine; MailU cannot run"

if [ -z "$R" ] && [ -d /run/systemd/system ]; then
  "$VENV/bin/mailfleet-agent" systemd-unit > /etc/systemd/system/mailfleet-agent.service
  systemctl daemon-reload
  systemctl enable --now mailfleet-agent.service
  [ "$changed" = 0 ] || systemctl restart mailfleet-agent.service
  echo "mailfleet-agent installed; follow it with: journalctl -u mailfleet-agent -f"
  exit 0
fi

# No systemd (or a shared host's --root): the agent runs detached, in a session of its own.
PIDFILE="$R/run/mailfleet-agent.pid"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  if [ "$changed" = 0 ]; then
    echo "mailfleet-agent already running (pid $(cat "$PIDFILE"))"
    exit 0
  fi
  old=$(cat "$PIDFILE")
  kill "$old"
  for _ in $(seq 1 200); do kill -0 "$old" 2>/dev/null || break; sleep 0.1; done
fi
setsid "$VENV/bin/mailfleet-agent" run --root "${R:-/}" \
  </dev/null >>"$R/var/log/mailfleet-agent.log" 2>&1 &
echo $! > "$PIDFILE"
echo "mailfleet-agent started (pid $!); its log: $R/var/log/mailfleet-agent.log"
