"""Mail counts from Postfix's log: what left this machine per day, source address and sender
domain (``mail.stats``). Parsing (``parse``), reading the log incrementally across rotations
(``reader``), the counts kept in the state directory (``store``) and the command
(``command``)."""
