//! Gives the shared library a soname (`libunibuf.so.0`), so C programs linked against it keep
//! working across compatible updates; scripts/install-capi installs the matching links.
fn main() {
    let major = env!("CARGO_PKG_VERSION_MAJOR");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libunibuf.so.{major}");
}
