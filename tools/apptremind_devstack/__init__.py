"""Launchers for the local stack without Docker: real Kafka (KRaft) and PostgreSQL, plus a process supervisor."""
