# The compose file's OpenBao: raft storage on a volume, unsealed at every start by a static
# key (a file given as a compose secret), so a restart needs nobody. Production points the
# replicas at its own Vault/OpenBao cluster instead (MAILFLEET_VAULT_ADDR).
storage "raft" {
  path    = "/openbao/data"
  node_id = "openbao-1"
  # Raft's production timing (elections in ~1 s, not ~5 s), as OpenBao advises.
  performance_multiplier = 1
}

listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true # on the compose network only; never published
}

seal "static" {
  current_key_id = "1"
  current_key    = "file:///run/secrets/openbao_unseal_key"
}

api_addr      = "http://openbao:8200"
cluster_addr  = "http://openbao:8201"
disable_mlock = true
ui            = false
