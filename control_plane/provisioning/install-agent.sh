#!/bin/sh
# Install the MailFleet agent on a Debian/Ubuntu VPS and start it.
#
#   install-agent.sh [--package SPEC] [--config FILE]
#
# SPEC is what pip installs (default: "mailfleet", from the configured package index; a wheel
# path or URL works too). FILE is an agent.toml (from `mailfleet server join-config ID`);
# without it, /etc/mailfleet/agent.toml must already exist. Safe to run again: it upgrades
# the agent in place and keeps its identity under /var/lib/mailfleet-agent.
set -eu

PACKAGE="mailfleet"
CONFIG=""
PREFIX="/opt/mailfleet-agent"

while [ $# -gt 0 ]; do
  case "$1" in
    --package) PACKAGE="$2"; shift 2 ;;
    --config) CONFIG="$2"; shift 2 ;;
    *) echo "install-agent.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

[ "$(id -u)" -eq 0 ] || { echo "install-agent.sh: run as root" >&2; exit 1; }

# nftables: the agent's SNAT (IP switches), warmup caps and pauses (not on every image).
if ! command -v python3 >/dev/null || ! python3 -c 'import venv' 2>/dev/null \
   || ! command -v nft >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv nftables
fi

install -d -m 0755 /etc/mailfleet
install -d -m 0700 /var/lib/mailfleet-agent
if [ -n "$CONFIG" ]; then
  install -m 0600 "$CONFIG" /etc/mailfleet/agent.toml
fi
[ -f /etc/mailfleet/agent.toml ] || { echo "install-agent.sh: no /etc/mailfleet/agent.toml" >&2; exit 1; }

[ -x "$PREFIX/bin/python" ] || python3 -m venv "$PREFIX"
"$PREFIX/bin/python" -m pip install --quiet --upgrade pip
"$PREFIX/bin/python" -m pip install --quiet --upgrade "$PACKAGE"

"$PREFIX/bin/mailfleet-agent" systemd-unit > /etc/systemd/system/mailfleet-agent.service
systemctl daemon-reload
systemctl enable --now mailfleet-agent.service
echo "mailfleet-agent installed; follow it with: journalctl -u mailfleet-agent -f"
