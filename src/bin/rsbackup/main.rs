//! The `rsbackup` command.

fn main() {
    eprintln!("rsbackup: not yet");
    std::process::exit(1);
}
