//! Bytes only: encoders and decoders for each document in `format-spec/`. Nothing here does I/O
//! or cryptography.

pub mod chunk;
pub mod client_identity;
pub mod complete_args;
pub mod manifest;
pub mod pack;
pub mod records;
pub mod rename_list;
pub mod repository;
