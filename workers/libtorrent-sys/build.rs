//! Build script: locates libtorrent-rasterbar and compiles the cxx bridge
//! (`src/ffi.rs` + `cpp/bridge.cpp`) against it.
//!
//! Discovery: `pkg-config libtorrent-rasterbar` (>= 2.0), unless both
//! `LIBTORRENT_INCLUDE_DIR` and `LIBTORRENT_LIB_DIR` are set, in which case
//! pkg-config is skipped and the defines of Debian's build are used (override
//! them with a space-separated `LIBTORRENT_DEFINES`, e.g. `A B=1`).
//!
//! Every define pkg-config reports is passed through unchanged: they select
//! the library's ABI. We never add `TORRENT_ABI_VERSION` or
//! `TORRENT_NO_DEPRECATE` (Debian builds ABI version 1; those defines make
//! symbols fail to link).

use std::env;
use std::path::PathBuf;
use std::process;

const PKG_NAME: &str = "libtorrent-rasterbar";
const APT_HINT: &str = "apt-get install libtorrent-rasterbar-dev pkg-config";

/// The defines `pkg-config --cflags libtorrent-rasterbar` reports for Debian's
/// libtorrent-rasterbar 2.0.8; used only when pkg-config is bypassed.
const DEBIAN_DEFINES: &[&str] = &[
    "TORRENT_LINKING_SHARED",
    "BOOST_ASIO_ENABLE_CANCELIO",
    "BOOST_ASIO_NO_DEPRECATED",
    "TORRENT_USE_OPENSSL",
    "TORRENT_USE_LIBCRYPTO",
    "TORRENT_SSL_PEERS",
    "OPENSSL_NO_SSL2",
    "BOOST_ALL_NO_LIB",
];

struct Found {
    include_dirs: Vec<PathBuf>,
    lib_dirs: Vec<PathBuf>,
    defines: Vec<(String, Option<String>)>,
    libs: Vec<String>,
}

fn main() {
    for var in [
        "LIBTORRENT_INCLUDE_DIR",
        "LIBTORRENT_LIB_DIR",
        "LIBTORRENT_DEFINES",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=cpp/bridge.cpp");
    println!("cargo:rerun-if-changed=cpp/bridge.h");
    println!("cargo:rerun-if-changed=src/ffi.rs");

    let found = match (
        env::var_os("LIBTORRENT_INCLUDE_DIR"),
        env::var_os("LIBTORRENT_LIB_DIR"),
    ) {
        (Some(include), Some(lib)) => from_env(include.into(), lib.into()),
        _ => from_pkg_config(),
    };

    let mut build = cxx_build::bridge("src/ffi.rs");
    build
        .file("cpp/bridge.cpp")
        .std("c++17")
        .flag("-fexceptions")
        .warnings(true);
    for dir in &found.include_dirs {
        build.include(dir);
    }
    for (name, value) in &found.defines {
        build.define(name, value.as_deref());
    }
    build.compile("revaer_libtorrent_bridge");

    // Link lines go out after the bridge's static library so that the
    // linker sees the bridge's references before the shared libraries.
    for dir in &found.lib_dirs {
        println!("cargo:rustc-link-search=native={}", dir.display());
    }
    for lib in &found.libs {
        println!("cargo:rustc-link-lib={lib}");
    }
}

fn from_env(include: PathBuf, lib: PathBuf) -> Found {
    let defines = match env::var("LIBTORRENT_DEFINES") {
        Ok(list) => list.split_whitespace().map(split_define).collect(),
        Err(_) => DEBIAN_DEFINES
            .iter()
            .map(|d| ((*d).to_owned(), None))
            .collect(),
    };
    Found {
        include_dirs: vec![include],
        lib_dirs: vec![lib],
        defines,
        libs: vec!["torrent-rasterbar".into(), "ssl".into(), "crypto".into()],
    }
}

fn split_define(item: &str) -> (String, Option<String>) {
    match item.split_once('=') {
        Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
        None => (item.to_owned(), None),
    }
}

fn from_pkg_config() -> Found {
    let library = match pkg_config::Config::new()
        .atleast_version("2.0")
        .cargo_metadata(false)
        .probe(PKG_NAME)
    {
        Ok(library) => library,
        Err(err) => {
            eprintln!(
                "error: revaer-libtorrent-sys could not find {PKG_NAME} >= 2.0 through pkg-config: {err}\n\
                 On Debian/Ubuntu install it with:\n    {APT_HINT}\n\
                 Or point the build at an installation with both LIBTORRENT_INCLUDE_DIR and \
                 LIBTORRENT_LIB_DIR (and LIBTORRENT_DEFINES if its defines differ from Debian's)."
            );
            process::exit(1);
        }
    };
    let mut defines: Vec<(String, Option<String>)> = library.defines.into_iter().collect();
    // HashMap order is random; keep the compiler command line stable so the
    // C++ object is not rebuilt for nothing.
    defines.sort();
    let mut libs = library.libs;
    for needed in ["torrent-rasterbar", "ssl", "crypto"] {
        if !libs.iter().any(|l| l == needed) {
            libs.push(needed.to_owned());
        }
    }
    Found {
        include_dirs: library.include_paths,
        lib_dirs: library.link_paths,
        defines,
        libs,
    }
}
