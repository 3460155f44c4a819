//! Configuration files: `server.toml` and `client.toml`, parsed raw (serde) then validated, with
//! errors that name the file and line.
