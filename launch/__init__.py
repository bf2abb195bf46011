"""Wires every layer into a running fleet and hosts the `depai` command line; nothing imports it."""
