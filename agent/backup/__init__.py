"""restic backups of the server's data, driven by the control plane's commands."""
