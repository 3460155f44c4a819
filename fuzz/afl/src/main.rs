//! `rsbackup-fuzz-afl TARGET`: feeds afl's inputs to the fuzz target `TARGET` of
//! `rsbackup::fuzz` (the same function the test suite's stable runner calls).

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = rsbackup::fuzz::target(&name) else {
        let names: Vec<&str> = rsbackup::fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!("usage: rsbackup-fuzz-afl TARGET, one of: {}", names.join(" "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| {
        (target.run)(data);
    });
}
