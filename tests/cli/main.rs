//! Integration tests: one test binary that drives the real `rsbackup` binary.

mod common;

mod check_damage;
mod cli_basic;
mod confine;
mod identity;
mod ingest_crash;
mod key_damage;
mod manifest_damage;
mod mirror;
mod outcome;
mod prune;
mod push_basis;
mod push_client;
mod push_hollow;
mod push_renames;
mod push_server;
mod repair_index;
mod restore_fidelity;
mod smtp;
mod sshd;
