"""The agent gateway: grpc.aio listeners for enrollment and the per-agent stream."""
