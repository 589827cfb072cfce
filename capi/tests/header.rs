//! The committed C header (`include/unibuf.h`) is what cbindgen makes of the sources now.
//! Regenerate it with `UNIBUF_UPDATE_HEADER=1 cargo test -p unibuf-capi --test header`.

use std::path::Path;

#[test]
fn committed_header_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let mut fresh = Vec::new();
    cbindgen::Builder::new()
        .with_crate(dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the header")
        .write(&mut fresh);
    let path = dir.join("include/unibuf.h");
    if std::env::var_os("UNIBUF_UPDATE_HEADER").is_some() {
        std::fs::write(&path, &fresh).expect("write the header");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == fresh,
        "capi/include/unibuf.h differs from what cbindgen makes of capi/src: regenerate it with \
         `UNIBUF_UPDATE_HEADER=1 cargo test -p unibuf-capi --test header` and commit it"
    );
    let text = String::from_utf8(fresh).expect("UTF-8 header");
    for line in text.lines() {
        // No Rust type leaks into the header.
        for bad in [
            "Arc<",
            "Vec<",
            "Option<",
            "Mutex",
            "ListH",
            "ObjH",
            "EndpointH",
        ] {
            assert!(!line.contains(bad), "Rust type in the header: {line}");
        }
    }
}
