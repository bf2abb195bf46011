"""The data layer: MQTT transport, topic schema and the verify-on-ingest pipeline."""
