//! Integration tests: cli_basic.
