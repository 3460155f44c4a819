//! Integration tests: ingest_crash.
