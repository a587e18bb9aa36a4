"""What every server, IP and backup costs, allocated per workspace, projected, budgeted.

The parts: ``prices`` (the catalog, with history), ``meter`` (the ledger: spans of
server-hours and IP-hours, daily readings of backup storage, bandwidth and each shared
server's split weights — kept apart from the rows they meter, so a deleted server is still
billed), ``rating`` (ledger × prices → unrounded daily cost lines, allocated per
workspace), ``report`` (sums, month to date, projection), ``budgets``, ``invoices``
(reconciliation against a provider's invoice) and ``statements``.
"""
