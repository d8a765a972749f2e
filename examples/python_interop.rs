//! A multiproc `Listener` that real CPython connects to with
//! `multiprocessing.connection.Client`, and a multiproc `client` of a CPython
//! `Listener`: the same frames and the same authkey handshake. The CPython side is
//! `python_interop.py`, beside this file; `PYTHON` names the interpreter
//! (default `python3`).
//!
//! Prints what each side received, then what a wrong authkey gets.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use multiproc::connection::{Address, Listener, client};

const AUTHKEY: &[u8] = b"abracadabra";

#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python_interop.py");
    let key = std::str::from_utf8(AUTHKEY)?;

    // CPython connects to us.
    let mut listener = Listener::bind(&Address::tcp("127.0.0.1:0")?, Some(AUTHKEY))?;
    let address = listener.address().to_string();
    let mut py = Command::new(&python)
        .arg(&script)
        .args(["client", &address, key])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut conn = listener.accept()?;
    println!("received: {}", String::from_utf8_lossy(&conn.recv_bytes()?));
    conn.send_bytes(b"hello from multiproc")?;
    println!("received: {}", String::from_utf8_lossy(&conn.recv_bytes()?));
    for line in BufReader::new(py.stdout.take().ok_or("no stdout")?).lines() {
        println!("CPython {}", line?);
    }
    py.wait()?;

    // We connect to CPython.
    let mut py = Command::new(&python)
        .arg(&script)
        .args(["listener", key])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut lines = BufReader::new(py.stdout.take().ok_or("no stdout")?).lines();
    let port: u16 = lines
        .next()
        .ok_or("CPython printed no port")??
        .strip_prefix("port ")
        .ok_or("CPython printed no port")?
        .parse()?;
    let mut conn = client(&Address::tcp(("127.0.0.1", port))?, Some(AUTHKEY))?;
    conn.send_bytes(b"hello again from multiproc")?;
    println!("received: {}", String::from_utf8_lossy(&conn.recv_bytes()?));
    for line in lines {
        println!("CPython {}", line?);
    }
    py.wait()?;

    // A wrong key is refused, and nothing passes.
    let mut py = Command::new(&python)
        .arg(&script)
        .args(["client", &address, "wrong key"])
        .stdout(Stdio::null())
        .spawn()?;
    match listener.accept() {
        Ok(_) => println!("a wrong authkey was accepted"),
        Err(e) => println!("a wrong authkey: {e}"),
    }
    py.wait()?;
    Ok(())
}
