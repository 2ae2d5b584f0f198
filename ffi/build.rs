//! Generates include/coatcheck.h from this crate with cbindgen, and gives the shared library the
//! SONAME `libcoatcheck.so` (the name it is installed under; see [lib] in Cargo.toml).

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=../include/coatcheck.h");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcoatcheck.so");

    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("ffi/cbindgen.toml is readable and valid");
    let version = std::env::var("CARGO_PKG_VERSION").expect("set by cargo");
    let part = |name: &str| std::env::var(name).expect("set by cargo");
    // Generated from the package version, so the header cannot drift from Cargo.toml.
    let version_macros = format!(
        "#define COATCHECK_VERSION \"{version}\"\n\
         #define COATCHECK_VERSION_MAJOR {}\n\
         #define COATCHECK_VERSION_MINOR {}\n\
         #define COATCHECK_VERSION_PATCH {}",
        part("CARGO_PKG_VERSION_MAJOR"),
        part("CARGO_PKG_VERSION_MINOR"),
        part("CARGO_PKG_VERSION_PATCH"),
    );
    let header = crate_dir.join("../include/coatcheck.h");
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .with_after_include(version_macros)
        .generate()
        .expect("cbindgen can generate the header from ffi/src")
        .write_to_file(header);
}
