//! Node processes on loopback for the cluster tests: this test program started in node
//! mode, as a child of the test, so it dies with the test.

use std::time::Duration;

use multiproc::blocking::node::{self, NodeConfig};
use multiproc::blocking::{Connection, Process, pipe};
use serde::{Deserialize, Serialize};

/// The cookie the test nodes share unless a test asks for another.
pub const COOKIE: &str = "test-cookie";

#[derive(Debug, Serialize, Deserialize)]
pub struct NodeArgs {
    pub name: String,
    pub cookie: String,
    /// A build id to claim instead of ours: a different build of the program.
    pub claim: Option<u64>,
    pub grace_ms: u64,
}

/// Node mode: serves on a free loopback port, sends the address up, then each node
/// event as text, until asked to stop.
fn node_main(args: NodeArgs, up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(id) = args.claim {
        multiproc::__private::test_hooks::claim_build_id(id);
    }
    let config = NodeConfig::new(args.name, "127.0.0.1:0".parse()?, args.cookie)
        .grace(Duration::from_millis(args.grace_ms));
    serve_and_report(config, up)
}

/// Serves `config`, sends the address up `up`, then each node event as text, until
/// asked to stop: the life of a test node.
pub fn serve_and_report(
    config: NodeConfig,
    mut up: Connection,
) -> Result<(), Box<dyn std::error::Error>> {
    let serving = node::serve(config)?;
    let mut events = serving.events();
    up.send(&serving.addr().to_string())?;
    std::thread::spawn(move || {
        while let Some(event) = node::next_event(&mut events) {
            if up.send(&event.to_string()).is_err() {
                return;
            }
        }
    });
    multiproc::blocking::wait_for_stop();
    node::shutdown(serving);
    Ok(())
}

/// A node process, child of the test; killed when dropped, so a failing test leaves
/// none behind (and the parent-death signal covers a test process that dies).
pub struct TestNode {
    pub process: Process,
    pub addr: String,
    pub events: Connection,
}

impl TestNode {
    pub fn start(name: &str, cookie: &str, claim: Option<u64>, grace: Duration) -> TestNode {
        let (events, theirs) = pipe(true).unwrap();
        let args = NodeArgs {
            name: name.to_string(),
            cookie: cookie.to_string(),
            claim,
            grace_ms: grace.as_millis() as u64,
        };
        let mut process = Process::new(node_main, (args, theirs)).named(format!("node-{name}"));
        process.start().unwrap();
        let mut node = TestNode {
            process,
            addr: String::new(),
            events,
        };
        node.addr = node.recv(Duration::from_secs(10)).unwrap();
        node
    }

    /// A node named `name`, with the test cookie and a 5 s grace, and this
    /// process's session to it.
    #[allow(dead_code, reason = "not every test program connects this way")]
    pub fn connected(name: &str) -> Result<(TestNode, node::Node), String> {
        let n = TestNode::start(name, COOKIE, None, Duration::from_secs(5));
        let session = node::connect(&n.addr, COOKIE).map_err(|e| e.to_string())?;
        Ok((n, session))
    }

    pub fn recv(&mut self, timeout: Duration) -> Result<String, String> {
        match self.events.poll(Some(timeout)) {
            Ok(true) => self.events.recv().map_err(|e| e.to_string()),
            Ok(false) => Err(format!("no node event within {timeout:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The node's next event that starts with `prefix`, skipping others.
    pub fn event(&mut self, prefix: &str) -> Result<String, String> {
        loop {
            let e = self.recv(Duration::from_secs(10))?;
            if e.starts_with(prefix) {
                return Ok(e);
            }
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.join();
    }
}

/// This test program started afresh with `env`: node mode by the environment if the
/// environment says so. Killed when dropped, and by the parent-death signal when the
/// thread that started it (the test's) ends.
pub struct EnvNode(pub std::process::Child);

impl EnvNode {
    #[allow(unsafe_code, reason = "pre_exec, to tie the node to the test's thread")]
    pub fn start(env: &[(&str, &str)]) -> std::io::Result<EnvNode> {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(std::env::current_exe()?);
        cmd.envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // SAFETY: only an async-signal-safe prctl between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                Ok(())
            });
        }
        cmd.spawn().map(EnvNode)
    }

    /// The first line it prints, within 10 s.
    pub fn first_line(&mut self) -> Result<String, String> {
        use std::io::BufRead;
        let stdout = self.0.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        rx.recv_timeout(Duration::from_secs(10))
            .map_err(|_| "no line within 10 s".to_string())
    }
}

impl Drop for EnvNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl EnvNode {
    /// A node named `name`, by the environment, on a free loopback port: the node
    /// and its address. It is the root of a process tree of its own, as a node on
    /// another host is.
    pub fn serve(name: &str) -> Result<(EnvNode, String), String> {
        let mut n = EnvNode::start(&[
            ("MULTIPROC_NODE_LISTEN", "127.0.0.1:0"),
            ("MULTIPROC_NODE_NAME", name),
            ("MULTIPROC_NODE_COOKIE", COOKIE),
        ])
        .map_err(|e| e.to_string())?;
        let line = n.first_line()?;
        let addr = line
            .trim()
            .strip_prefix(&format!("multiproc node {name} listening on "))
            .ok_or(format!("unexpected first line: {line:?}"))?
            .to_string();
        Ok((n, addr))
    }
}

multiproc::register!(node_main);
