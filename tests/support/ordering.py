"""Known-slow tests start first, one at the head of each xdist worker's share.

``--dist worksteal`` hands each worker a contiguous share of the collection, then lets an
idle worker steal the tail half of the other's queue. A 100-second test near the end of a
queue is what keeps one worker busy while the other sits idle, so the slow tests (measured
in full runs; figures below) are dealt out longest-first to the worker whose share is
lighter, and placed at the head of that share. Everything else keeps its collected order
(which groups tests by their session-scoped database parameter and by module, so fixtures
are not set up twice).
"""

from __future__ import annotations

import os

import pytest

# Seconds per call in a full `make test` run on the 2-core machine (2026-12-01, --durations).
# A stale figure only costs balance, never a test; keys name a test function (each of its
# parametrizations counts the figure; the names are unique in the suite).
KNOWN_SECONDS: dict[str, float] = {
    "test_fuzzing_the_api_finds_no_server_errors": 102,
    "test_the_lifecycle_of_an_install_on_a_real_engine": 36,
    "test_a_taken_port_or_an_absent_address_fails_the_start_and_leaves_nothing": 15,
    "test_a_restore_onto_a_new_address_keeps_the_files_rendered_for_it": 20,
    "test_compose_accepts_every_combination_the_agent_renders": 10,
    "test_scheduled_and_manual_backups_then_an_in_place_restore_and_rollback": 47,
    "test_a_port_down_is_escalated_until_acknowledged_and_resolves_itself": 40,
    "test_recover_harness": 33,
    "test_health_sweep_notification_latency": 31,
    "test_partition_leaves_no_gap_and_no_duplicate_in_the_metric_series": 30,
    "test_an_agent_killed_mid_install_is_restarted_and_the_install_finishes": 29,
    # and first_run's second start; ~10 s more since make run's VPSs install the agent package
    "test_the_quick_start_works_as_written": 55,
    "test_a_bare_local_vps_installs_the_served_agent_package_and_enrolls": 30,
    "test_embedded_defaults_from_first_start_to_stop": 15,
    "test_console_harness": 25,
    "test_gateway_certificate_is_renewed_while_agents_stay_connected": 60,
    "test_a_second_shell_needs_no_settings_and_local_vpss_outlive_serve": 23,
    "test_adopted_machines_reach_ready_over_ssh_and_one_is_recovered_onto_another": 35,
    "test_local_and_hostwinds_vpss_get_their_agents_over_ssh_and_become_ready": 30,
    "test_register_warm_pause_allowance_remove": 22,
    "test_agent_fleet_harness": 32,
    "test_database_and_vault_come_back_as_they_were": 21,
    "test_point_in_time_restore_in_place_keeps_the_previous_state_until_finished": 21,
    "test_start_list_and_show_match_the_api": 21,
    "test_silences_created_listed_and_expired": 20,
    "test_a_destroyed_vps_is_recovered_onto_a_new_one_from_its_backup": 40,
    "test_mailu_is_installed_with_secrets_from_vault_and_a_taken_port_fails_the_step": 50,
    "test_health_sweep_full_cycle": 17,
    "test_certificates_rotate_under_load_without_losing_commands": 17,
    "test_a_missing_database_is_named_and_never_created": 16,
    "test_provision_harness": 15,
    "test_recommendations_and_a_dry_run_resize": 14,
    "test_health_sweep_harness": 14,
    "test_pause_resume_and_todays_cap_are_enforced_on_the_vps": 14,
}


def known_seconds(item: pytest.Item) -> float:
    """The measured figure for this test, or 0 for one not among the slow."""
    return KNOWN_SECONDS.get(getattr(item, "originalname", item.name), 0.0)


def database_rank(item: pytest.Item) -> int:
    """PostgreSQL first, then no database, then SQLite: a worker's head keeps each session
    database (set up again whenever the parameter changes) in one stretch."""
    callspec = getattr(item, "callspec", None)
    backend = callspec.params.get("database_url") if callspec is not None else None
    return {"postgresql": 0, None: 1}.get(backend, 2)


def share_sizes(count: int, workers: int) -> list[int]:
    """How many tests worksteal's first distribution gives each worker, in order (each
    takes ``len(pending) // workers_left`` of what is left)."""
    sizes: list[int] = []
    left = count
    for i in range(workers):
        sizes.append(left // (workers - i))
        left -= sizes[-1]
    return sizes


def deal(items: list[pytest.Item], workers: int) -> list[pytest.Item]:
    """The collection reordered so each worker's share starts with its slow tests, longest
    first, the slow tests dealt out to balance the shares' known seconds."""
    slow = sorted(
        (item for item in items if known_seconds(item) > 0), key=known_seconds, reverse=True
    )
    if workers <= 1 or not slow:
        return slow + [item for item in items if known_seconds(item) == 0]
    heads: list[list[pytest.Item]] = [[] for _ in range(workers)]
    loads = [0.0] * workers
    for item in slow:
        lightest = loads.index(min(loads))
        heads[lightest].append(item)
        loads[lightest] += known_seconds(item)
    rest = iter(item for item in items if known_seconds(item) == 0)
    ordered: list[pytest.Item] = []
    for head, size in zip(heads, share_sizes(len(items), workers), strict=True):
        ordered += sorted(head, key=database_rank)
        ordered += [item for _, item in zip(range(size - len(head)), rest, strict=False)]
    ordered += list(rest)
    return ordered


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Runs after the deselections (trylast), on each worker alike: the order depends only
    on the collection and the worker count, so every worker collects the same list."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    items[:] = deal(items, workers)
