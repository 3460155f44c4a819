//! Integration tests: check_damage.
