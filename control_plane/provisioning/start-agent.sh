#!/bin/sh
# Start a preinstalled MailFleet agent on a machine that has one (the local provider's VPSs,
# which share this host's installation), after its agent.toml was written over SSH.
#
#   start-agent.sh AGENT_COMMAND
#
# $MAILFLEET_LOCAL_ROOT is the machine's root directory (set by the VPS's sshd); the agent
# runs in the background, in a session of its own, so it outlives the SSH connection.
# $MAILFLEET_VPS_CGROUP, when set, is told to the agent as vps_cgroup.
set -eu
umask 077

AGENT="${1:?usage: start-agent.sh AGENT_COMMAND}"
ROOT="${MAILFLEET_LOCAL_ROOT:-/}"
CONFIG="$ROOT/etc/mailfleet/agent.toml"

[ -x "$AGENT" ] || { echo "start-agent.sh: $AGENT is not an executable" >&2; exit 1; }
[ -f "$CONFIG" ] || { echo "start-agent.sh: no $CONFIG" >&2; exit 1; }
if [ -n "${MAILFLEET_VPS_CGROUP:-}" ] && ! grep -q '^vps_cgroup' "$CONFIG"; then
  rm -f "$CONFIG.new"
  { printf 'vps_cgroup = "%s"\n' "$MAILFLEET_VPS_CGROUP"; cat "$CONFIG"; } > "$CONFIG.new"
  mv -f "$CONFIG.new" "$CONFIG"
fi
# Run again (a step repeated after a crash): one agent, never two on the same state.
PIDFILE="$ROOT/run/mailfleet-agent.pid"
if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "mailfleet-agent already running (pid $(cat "$PIDFILE"))"
  exit 0
fi
mkdir -p "$ROOT/var/log" "$ROOT/run"
setsid "$AGENT" run --root "$ROOT" </dev/null >>"$ROOT/var/log/mailfleet-agent.log" 2>&1 &
echo $! > "$PIDFILE"
echo "mailfleet-agent started (pid $!)"
