//! ipamd's link. Relative relocations packed (`DT_RELR`): a position-independent binary of this
//! size carries about 800 kB of them, which the loader reads whole at every start and which then
//! stay resident; packed, they take a few kB. Needs binutils ≥ 2.38 to link and glibc ≥ 2.36 to
//! run (Debian 12, the image's base).
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
