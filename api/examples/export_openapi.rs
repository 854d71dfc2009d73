//! Prints the OpenAPI document (`just api-export` writes it to
//! `docs/api/openapi.json`).

use std::io::Write as _;

fn main() -> std::io::Result<()> {
    std::io::stdout().write_all(revaer_api::openapi::json().as_bytes())
}
