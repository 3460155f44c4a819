//! Integration tests: one test binary that drives the real `rsbackup` binary.

mod common;

mod bad_day;
mod check_damage;
mod cli_basic;
mod client_restore;
mod confine;
mod find_diff;
mod full_disk;
mod identity;
mod ingest_crash;
mod install_doc;
mod interrupted;
mod key_damage;
mod keys;
mod manifest_damage;
mod mirror;
mod onboarding;
mod outcome;
mod ownership;
mod package;
mod prune;
mod push_basis;
mod push_client;
mod push_hollow;
mod push_renames;
mod push_server;
mod quota_repo;
mod repair_chunks;
mod repair_index;
mod restore_fidelity;
mod session_records;
mod smtp;
mod sshd;
mod watch;
