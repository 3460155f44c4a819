//! Integration tests: restore_fidelity.
