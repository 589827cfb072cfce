//! The `unibuf` command-line tool.

fn main() {
    eprintln!("unibuf: no commands yet");
    std::process::exit(2);
}
