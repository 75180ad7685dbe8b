"""Measuring a real libvirt migration: the call, its job statistics, events and daemon logs, the record
they make, and the read-only pre-check of a live domain."""
