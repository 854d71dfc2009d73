//! `revaer.toml` as the supervisor reads it on every edit: any bytes give a
//! validated config or a typed error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = revaer_config::Config::from_toml_bytes(data);
});
