"""Outbound mail's network on the VPS: which address tcp/25 leaves from (SNAT) and how many
new connections each address may open today (caps, pause), with nftables.

- ``ruleset``: the desired state and the one nftables transaction that makes it so (pure).
- ``nft``: running ``nft`` with a deadline.
- ``state``: the desired state on disk, re-applied when the agent starts (a reboot empties
  the kernel's ruleset).
- ``commands``: the ``network.snat.*`` and ``network.limits.*`` command handlers.
"""
