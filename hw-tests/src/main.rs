//! `hw-tests`: unibuf's hardware tests.
//!
//! `hw-tests --list` lists the tests and what each needs; `hw-tests [FILTER...]` runs the tests
//! whose names contain a filter (all of them without one). Devices are found by discovery, never by
//! fixed paths, so the same binary runs in the test VM and on a board. Exit status: 0 when nothing
//! failed, 1 otherwise.

mod harness;
mod pngfile;
mod tests;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let all = tests::all();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: hw-tests [--list] [FILTER...]");
        return;
    }
    if args.iter().any(|a| a == "--list") {
        for t in &all {
            println!("{:<50} needs: {}", t.name, t.needs);
        }
        return;
    }
    let filters: Vec<String> = args.into_iter().filter(|a| !a.starts_with("--")).collect();
    let (_p, f, _s) = harness::run_all(&all, &filters);
    std::process::exit(if f == 0 { 0 } else { 1 });
}
