from __future__ import annotations

from control_plane.api_keys.tokens import generate_key, hash_key, key_hint, key_scope


def test_keys_carry_their_scope_and_a_checksum() -> None:
    admin, tenant = generate_key("admin"), generate_key("tenant")
    assert admin.startswith("mf_admin_") and tenant.startswith("mf_live_")
    assert key_scope(admin) == "admin"
    assert key_scope(tenant) == "tenant"
    assert generate_key("tenant") != tenant


def test_tampered_or_truncated_keys_are_malformed() -> None:
    key = generate_key("tenant")
    flipped = key[:-1] + ("A" if key[-1] != "A" else "B")
    body_changed = key[:10] + ("x" if key[10] != "x" else "y") + key[11:]
    for bad in (
        flipped,
        body_changed,
        key[:-1],
        key + "0",
        "mf_live_",
        "",
        key.replace("mf_live_", "mf_test_"),
    ):
        assert key_scope(bad) is None, bad


def test_only_a_hash_and_a_hint_are_kept() -> None:
    key = generate_key("admin")
    digest = hash_key(key)
    assert len(digest) == 64 and key not in digest
    assert key_hint(key) == f"mf_admin_…{key[-4:]}"
