"""Fleet figures this replica exports in Prometheus' text format."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from control_plane.metrics.ingest import MetricIngest

disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created doubles scrapes


class GatewayTelemetry:
    """This replica's own figures (streams, deliveries, ingest, wake-ups); the fleet's come
    from the database at scrape time (control_plane/metrics/fleet.py)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.agents_connected = Gauge(
            "mailfleet_agents_connected",
            "Agent streams held by this replica.",
            registry=self.registry,
        )
        self.heartbeats = Counter(
            "mailfleet_agent_heartbeats", "Heartbeats received.", registry=self.registry
        )
        self.metric_batches = Counter(
            "mailfleet_metric_batches",
            "Metric batches stored and acknowledged.",
            registry=self.registry,
        )
        self.metric_samples = Counter(
            "mailfleet_metric_samples", "Metric samples received.", registry=self.registry
        )
        self.commands_sent = Counter(
            "mailfleet_commands_sent",
            "Command deliveries (including re-deliveries).",
            registry=self.registry,
        )
        self.command_round_trip = Histogram(
            "mailfleet_command_round_trip_seconds",
            "From delivery to the agent's final report, for commands delivered by this replica.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.notify_wakeups = Counter(
            "mailfleet_notify_wakeups",
            "LISTEN/NOTIFY notifications received from any replica, by channel.",
            ["channel"],
            registry=self.registry,
        )
        self.command_dispatch = Histogram(
            "mailfleet_command_dispatch_seconds",
            "From a command being queued (on any replica) to this replica sending it to the "
            "agent, first deliveries only.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.ingest_pending_rows = Gauge(
            "mailfleet_ingest_pending_rows",
            "Metric samples received by this replica and not yet committed.",
            registry=self.registry,
        )
        self.ingest_lag = Gauge(
            "mailfleet_ingest_lag_seconds",
            "How long the oldest uncommitted metric samples on this replica have waited.",
            registry=self.registry,
        )
        self.enrollments = Counter(
            "mailfleet_enrollments",
            "Enrollment attempts by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.refused_streams = Counter(
            "mailfleet_agent_streams_refused",
            "Agent streams refused at admission.",
            registry=self.registry,
        )
        self.certificate_expiry = Gauge(
            "mailfleet_gateway_certificate_expiry_seconds",
            "When the certificate the gateway presents expires (unix time); it is renewed "
            "at 70-90 % of its lifetime.",
            registry=self.registry,
        )

        self.periodic_job_seconds = Histogram(
            "mailfleet_periodic_job_seconds",
            "Wall time of each periodic job's round on this replica (its transaction included).",
            ["name"],  # not "job": Prometheus' own target label, which a scrape would rename
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )

    def time_periodic_job(self, job: str, seconds: float) -> None:
        self.periodic_job_seconds.labels(job).observe(seconds)

    def watch_ingest(self, ingest: MetricIngest) -> None:
        """Read the ingest's backlog at scrape time."""
        self.ingest_pending_rows.set_function(lambda: ingest.pending_rows)
        self.ingest_lag.set_function(ingest.lag_seconds)
