//! `rsbackup-fuzz-afl TARGET`: feeds afl's inputs to the fuzz target `TARGET` of
//! `rsbackup::fuzz` (the same function the test suite's stable runner calls), with the stable
//! runner's allocation cap: an allocation out of proportion to the input is a crash here too.

#[allow(dead_code)]
#[path = "../../../tests/fuzz/alloc_cap.rs"]
mod alloc_cap;

#[global_allocator]
static ALLOCATOR: alloc_cap::CappedAllocator = alloc_cap::CappedAllocator;

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = rsbackup::fuzz::target(&name) else {
        let names: Vec<&str> = rsbackup::fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!("usage: rsbackup-fuzz-afl TARGET, one of: {}", names.join(" "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| {
        alloc_cap::reset(alloc_cap::cap_for(data.len()));
        (target.run)(data);
        let over = alloc_cap::take_over_cap();
        assert!(
            over == 0,
            "allocated {over} bytes at once for {} bytes of input",
            data.len()
        );
    });
}
