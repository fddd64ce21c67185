//! Prints the README's variable table from the catalog:
//! `cargo run -q -p ipamd-settings --example variables_table`.

fn main() {
    print!("{}", ipamd_settings::markdown_table());
}
