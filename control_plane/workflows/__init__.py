"""What the durable step workflows (IP switches, resizes) share: step rows, the runner that
claims due rows under leases, and agent commands followed by a step."""
