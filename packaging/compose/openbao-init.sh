#!/bin/sh
# Initialise the compose's OpenBao once and leave a token for the replicas in
# $TOKEN_DIR/token (mode 0600); the recovery key and root token stay in $TOKEN_DIR/init.json
# (break glass: keep a copy elsewhere). Run again, it finds OpenBao initialised and stops.
set -eu
: "${BAO_ADDR:=http://openbao:8200}"
: "${TOKEN_DIR:=/vault-token}"
export BAO_ADDR
umask 077

tries=0
while :; do
  # bao status: 0 unsealed, 2 sealed or uninitialised, 1 unreachable
  code=0
  bao status >/dev/null 2>&1 || code=$?
  [ "$code" -ne 1 ] && break
  tries=$((tries + 1))
  [ "$tries" -ge 300 ] && { echo "OpenBao at $BAO_ADDR did not answer in 60 s" >&2; exit 1; }
  sleep 0.2
done

if bao status -format=json | grep -q '"initialized": true'; then
  [ -s "$TOKEN_DIR/token" ] && { echo "OpenBao already initialised"; exit 0; }
  echo "OpenBao is initialised but $TOKEN_DIR/token is missing: put a token there" >&2
  exit 1
fi

bao operator init -format=json -recovery-shares=1 -recovery-threshold=1 > "$TOKEN_DIR/init.json"
python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["root_token"])' \
  "$TOKEN_DIR/init.json" > "$TOKEN_DIR/token.tmp"
mv "$TOKEN_DIR/token.tmp" "$TOKEN_DIR/token"
echo "OpenBao initialised; token for the replicas in $TOKEN_DIR/token"
