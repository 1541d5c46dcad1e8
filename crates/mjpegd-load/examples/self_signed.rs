//! Writes a self-signed certificate for `localhost` and `127.0.0.1` and its key, for serving
//! mjpegd over TLS in benchmarks where `openssl` is not installed (scripts/bench-h2.sh).
//!
//! `cargo run --release -p mjpegd-load --example self_signed -- DIR` writes `DIR/cert.pem`
//! and `DIR/key.pem`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .ok_or("usage: self_signed DIR (writes DIR/cert.pem and DIR/key.pem)")?;
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    std::fs::write(dir.join("cert.pem"), ck.cert.pem())?;
    std::fs::write(dir.join("key.pem"), ck.key_pair.serialize_pem())?;
    println!("{}", dir.join("cert.pem").display());
    Ok(())
}
