#!/bin/sh
# Make the compose file's secrets once: the database password and OpenBao's unseal key.
# Files are readable inside the containers (mode 0644), the directory by you only (0700).
set -eu
cd "$(dirname "$0")"
umask 077
mkdir -p secrets
chmod 0700 secrets
[ -s secrets/postgres_password ] || head -c 24 /dev/urandom | base64 | tr -d '/+=\n' > secrets/postgres_password
[ -s secrets/openbao_unseal_key ] || head -c 32 /dev/urandom > secrets/openbao_unseal_key
chmod 0644 secrets/postgres_password secrets/openbao_unseal_key
echo "secrets in $(pwd)/secrets (keep a copy of openbao_unseal_key: without it the vault is lost)"
