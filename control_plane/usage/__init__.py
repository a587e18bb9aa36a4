"""Usage history: a server's series at any step from the right tier, summaries, exports, and
fleet and tenant totals (issue 16)."""
