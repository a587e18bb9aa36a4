"""Switching a live server's sending address: a durable workflow with verification and rollback."""
