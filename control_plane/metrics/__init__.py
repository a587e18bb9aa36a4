"""Server metrics: raw samples from agents, 1-minute rollups, and fleet figures for Prometheus."""
