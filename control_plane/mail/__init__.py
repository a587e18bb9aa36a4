"""Mail: the MailU stack on each server, its domains and mailboxes."""
