"""Shared building blocks of Switchboard: contracts, Kafka wiring, the case log, settings, clock."""
