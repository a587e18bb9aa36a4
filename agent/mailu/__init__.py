"""MailU on the VPS: rendering its compose project, driving ``docker compose``, its status."""
