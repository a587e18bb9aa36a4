"""Tenants: the companies MailFleet serves. Every tenant-owned row points at one."""
