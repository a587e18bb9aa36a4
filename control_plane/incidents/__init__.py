"""Incidents: failing signals (health checks, later IP listings, budgets, forecasts) become
incidents keyed by (subject, check), grouped, inhibited, silenced, escalated and resolved."""
