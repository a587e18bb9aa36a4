"""What was sent: per day, sending IP and sender domain, read from Postfix's log by the agent."""
