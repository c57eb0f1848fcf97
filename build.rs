// include_dir! does not tell Cargo which files it read; without this, editing a migration or
// an asset would not rebuild the binary.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=assets");
}
