"""HTTP API: app factory, authentication, error shape. Routes live with their domain."""
