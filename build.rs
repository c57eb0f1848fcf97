// include_dir! does not tell Cargo which files it read; without this, editing a migration or
// an asset would not rebuild the binary.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=assets");
    if std::env::var_os("CARGO_FEATURE_SQLITE").is_none()
        && std::env::var_os("CARGO_FEATURE_POSTGRES").is_none()
    {
        println!(
            "cargo:warning=diun-dashboard needs a database backend: enable the `sqlite` and/or `postgres` feature"
        );
    }
}
