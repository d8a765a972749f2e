//! Queues, locks and events across nodes: real node processes on loopback (this test
//! program in node mode, children of the test), whose placed processes use handles
//! they got among their arguments through the root that placed them.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::node::{COOKIE, TestNode};
use common::{TestResult, trial};
use multiproc::ExitReason;
use multiproc::SyncError;
use multiproc::blocking::node::{self, NodeConfig, NodeError, Refusal, rustls};
use multiproc::blocking::{Connection, Event, Lock, Process, Queue, pipe};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::sync::Arc;

type BoxResult = Result<(), Box<dyn std::error::Error>>;

/// How long a test waits for what should come at once.
const SOON: Duration = Duration::from_secs(10);

// ---- entry points, run on a node ----

/// Doubles `n` numbers from `input` into `output`, marking each done.
fn doubles(input: Queue<u64>, output: Queue<u64>, n: u64) -> BoxResult {
    for _ in 0..n {
        let x = input.get(true, Some(SOON))?;
        output.put(&(x * 2), true, Some(SOON))?;
        input.task_done()?;
    }
    Ok(())
}

/// Takes the lock, says so, holds it until `go`, releases it.
fn holds_until(lock: Lock, holding: Event, go: Event) -> BoxResult {
    check_acquired(lock.acquire(true, Some(SOON))?)?;
    holding.set()?;
    if !go.wait(Some(SOON))? {
        return Err("never told to go".into());
    }
    lock.release()?;
    Ok(())
}

/// Takes the lock, says so, and holds it until killed.
fn holds_for_ever(lock: Lock, holding: Event) -> BoxResult {
    check_acquired(lock.acquire(true, Some(SOON))?)?;
    holding.set()?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

/// Waits for `ping`, then sets `pong`; checks `is_set` and `clear` on the way.
fn answers(ping: Event, pong: Event) -> BoxResult {
    if !ping.wait(Some(SOON))? {
        return Err("no ping".into());
    }
    if !ping.is_set()? {
        return Err("ping set but not is_set".into());
    }
    ping.clear()?;
    pong.set()?;
    Ok(())
}

fn check_acquired(took: bool) -> BoxResult {
    if took {
        Ok(())
    } else {
        Err("a blocking acquire did not take the lock".into())
    }
}

/// Says it started, then waits for a lock its root holds; reports how the wait
/// ended to `report` (a TCP address of the test).
fn acquire_and_report(lock: Lock, started: Event, report: String) -> BoxResult {
    use std::io::Write;
    // The root may die before the answer to `set` comes back: that operation is
    // the one in flight then.
    let outcome = match started.set().and_then(|()| lock.acquire(true, None)) {
        Err(SyncError::Node(NodeError::NodeDown { .. })) => "NodeDown".to_string(),
        other => format!("{other:?}"),
    };
    std::net::TcpStream::connect(report)?.write_all(outcome.as_bytes())?;
    Ok(())
}

/// A root of its own: holds a lock, places `acquire_and_report` on the node at
/// `addr`, says when its acquire is on its way, and waits to be killed.
fn sub_root(addr: String, report: String, mut up: Connection) -> BoxResult {
    let node = node::connect(&addr, COOKIE)?;
    let (lock, started) = (Lock::new()?, Event::new()?);
    check_acquired(lock.acquire(true, None)?)?;
    let mut p = Process::new(acquire_and_report, (lock.clone(), started.clone(), report)).on(&node);
    p.start()?;
    if !started.wait(Some(SOON))? {
        return Err("the placed process never started".into());
    }
    up.send(&"in flight")?;
    loop {
        std::thread::park();
    }
}

fn takes_lock_and_value(_lock: Lock, _v: multiproc::Value<u64>) {}

/// A node over TLS with this certificate chain and key (DER): serves on a free
/// loopback port, sends its address up, then each node event as text.
fn tls_node(chain: Vec<Vec<u8>>, key: Vec<u8>, up: Connection) -> BoxResult {
    let chain = chain.into_iter().map(CertificateDer::from).collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let config = NodeConfig::new("tls", "127.0.0.1:0".parse()?, COOKIE)
        .tls(Arc::new(config))
        .grace(Duration::from_secs(5));
    common::node::serve_and_report(config, up)
}

/// Exits with `code`: something to place.
fn exits_with(code: i32) {
    std::process::exit(code);
}

multiproc::register!(tls_node);
multiproc::register!(exits_with);
multiproc::register!(doubles);
multiproc::register!(holds_until);
multiproc::register!(holds_for_ever);
multiproc::register!(answers);
multiproc::register!(takes_lock_and_value);
multiproc::register!(acquire_and_report);
multiproc::register!(sub_root);

// ---- tests ----

fn queue_put_and_get_both_ways() -> TestResult {
    let (_n, node) = TestNode::connected("qa")?;
    let input = Queue::<u64>::joinable(0)?;
    let output = Queue::<u64>::new(0)?;
    let mut p = Process::new(doubles, (input.clone(), output.clone(), 5)).on(&node);
    p.start()?;
    for x in 1..=5u64 {
        input.put(&x, true, None)?;
    }
    let mut got: Vec<u64> = (0..5)
        .map(|_| output.get(true, Some(SOON)))
        .collect::<Result<_, _>>()?;
    got.sort_unstable();
    check_eq!(got, vec![2, 4, 6, 8, 10]);
    // Every item the node took was marked done from there.
    input.join()?;
    check_eq!(p.join()?, ExitReason::Normal);
    check!(output.empty()?, "nothing more came");
    Ok(())
}

fn a_lock_excludes_across_a_node_and_the_root() -> TestResult {
    let (_n, node) = TestNode::connected("la")?;
    let lock = Lock::new()?;
    let (holding, go) = (Event::new()?, Event::new()?);
    // The root holds it: the node's acquire waits.
    check!(lock.acquire(false, None)?, "a new lock is free");
    let mut p = Process::new(holds_until, (lock.clone(), holding.clone(), go.clone())).on(&node);
    p.start()?;
    check!(
        !holding.wait(Some(Duration::from_millis(300)))?,
        "the node took a lock the root holds"
    );
    lock.release()?;
    check!(
        holding.wait(Some(SOON))?,
        "the node never took the freed lock"
    );
    // The node holds it: the root's acquire fails until the node lets go.
    check!(
        !lock.acquire(false, None)?,
        "the root took a lock the node holds"
    );
    go.set()?;
    check!(
        lock.acquire(true, Some(SOON))?,
        "the root never took it back"
    );
    check_eq!(p.join()?, ExitReason::Normal);
    lock.release()?;
    Ok(())
}

fn an_event_is_set_and_waited_across_a_node() -> TestResult {
    let (_n, node) = TestNode::connected("ea")?;
    let (ping, pong) = (Event::new()?, Event::new()?);
    let mut p = Process::new(answers, (ping.clone(), pong.clone())).on(&node);
    p.start()?;
    ping.set()?;
    check!(pong.wait(Some(SOON))?, "no pong from the node");
    check_eq!(p.join()?, ExitReason::Normal);
    check!(!ping.is_set()?, "the node cleared it");
    Ok(())
}

fn a_node_killed_holding_a_lock_leaves_it_owner_died() -> TestResult {
    let (n, node) = TestNode::connected("ka")?;
    let lock = Lock::new()?;
    let holding = Event::new()?;
    let mut p = Process::new(holds_for_ever, (lock.clone(), holding.clone())).on(&node);
    p.start()?;
    check!(holding.wait(Some(SOON))?, "the node never took the lock");
    n.process.kill()?;
    match lock.acquire(true, Some(SOON)) {
        Err(SyncError::OwnerDied) => {}
        other => return Err(format!("expected OwnerDied, got {other:?}").into()),
    }
    // Taken now, by the root: an ordinary lock again.
    check!(
        !lock.acquire(false, None)?,
        "OwnerDied leaves the caller holding it"
    );
    lock.release()?;
    check!(lock.acquire(false, None)?, "free after the release");
    lock.release()?;
    check!(
        matches!(p.join()?, ExitReason::NodeDown { .. }),
        "the placed process died with its node"
    );
    Ok(())
}

fn an_operation_in_flight_when_the_root_dies_is_node_down() -> TestResult {
    let n = TestNode::start("ra", COOKIE, None, Duration::from_secs(5));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let report = listener.local_addr()?.to_string();
    let (mut up, theirs) = pipe(true)?;
    let mut root = Process::new(sub_root, (n.addr.clone(), report, theirs));
    root.start()?;
    check!(
        up.poll(Some(SOON))?,
        "the sub-root never placed its process"
    );
    let said: String = up.recv()?;
    check_eq!(said, "in flight");
    // The root dies with the wait at its gateway, or on its way there.
    root.kill()?;
    root.join()?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut outcome = String::new();
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.read_to_string(&mut outcome);
        }
        let _ = tx.send(outcome);
    });
    let outcome = rx
        .recv_timeout(SOON)
        .map_err(|_| "the placed process never reported")?;
    check_eq!(outcome, "NodeDown");
    drop(n);
    Ok(())
}

fn a_value_is_refused_naming_it() -> TestResult {
    let (_n, node) = TestNode::connected("va")?;
    let value = multiproc::Value::new(7u64)?;
    let mut p = Process::new(takes_lock_and_value, (Lock::new()?, value)).on(&node);
    match p.start() {
        Err(multiproc::Error::Node(NodeError::NotAcrossNodes { what, node })) => {
            check!(what.starts_with("a Value handle"), "{what}");
            check_eq!(node, "va");
        }
        other => return Err(format!("expected NotAcrossNodes, got {other:?}").into()),
    }
    Ok(())
}

/// A certificate authority and a node's certificate it signed for `name`.
struct Pki {
    ca: CertificateDer<'static>,
    chain: Vec<Vec<u8>>,
    key: Vec<u8>,
}

fn pki(name: &str) -> Result<Pki, rcgen::Error> {
    let ca_key = rcgen::KeyPair::generate()?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec![name.to_string()])?.signed_by(&key, &ca)?;
    Ok(Pki {
        ca: ca.der().clone(),
        chain: vec![cert.der().to_vec()],
        key: key.serialize_der(),
    })
}

/// A root's TLS settings that trust `ca`.
fn trusting(ca: &CertificateDer<'static>) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone())?;
    Ok(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// A TLS node process, child of the test, killed when dropped.
struct TlsNode {
    process: Process,
    addr: String,
    events: Connection,
}

impl TlsNode {
    fn start(pki: &Pki) -> Result<TlsNode, Box<dyn std::error::Error>> {
        let (mut events, theirs) = pipe(true)?;
        let mut process = Process::new(tls_node, (pki.chain.clone(), pki.key.clone(), theirs));
        process.start()?;
        if !events.poll(Some(SOON))? {
            return Err("the TLS node did not report its address".into());
        }
        let addr: String = events.recv()?;
        Ok(TlsNode {
            process,
            addr,
            events,
        })
    }

    /// The node's next event that starts with `prefix`, skipping others.
    fn event(&mut self, prefix: &str) -> Result<String, Box<dyn std::error::Error>> {
        loop {
            if !self.events.poll(Some(SOON))? {
                return Err(format!("no node event {prefix:?} in time").into());
            }
            let e: String = self.events.recv()?;
            if e.starts_with(prefix) {
                return Ok(e);
            }
        }
    }
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.join();
    }
}

fn a_tls_root_places_a_process_on_a_tls_node() -> TestResult {
    let pki = pki("node.test")?;
    let mut n = TlsNode::start(&pki)?;
    let node = node::connect_tls(&n.addr, COOKIE, trusting(&pki.ca)?, "node.test")?;
    check_eq!(node.name(), "tls");
    n.event("root ")?;
    let mut p = Process::new(exits_with, 3).on(&node);
    p.start()?;
    check_eq!(p.join()?, ExitReason::Exited(3));
    // Far handles ride the encrypted session as well.
    let lock = Lock::new()?;
    let holding = Event::new()?;
    let mut q = Process::new(holds_for_ever, (lock.clone(), holding.clone())).on(&node);
    q.start()?;
    check!(
        holding.wait(Some(SOON))?,
        "the TLS node never took the lock"
    );
    q.kill()?;
    match lock.acquire(true, Some(SOON)) {
        Err(SyncError::OwnerDied) => {}
        other => return Err(format!("expected OwnerDied, got {other:?}").into()),
    }
    lock.release()?;
    node.disconnect();
    Ok(())
}

fn a_plain_root_is_refused_by_a_tls_node_typed() -> TestResult {
    let pki = pki("node.test")?;
    let mut n = TlsNode::start(&pki)?;
    match node::connect(&n.addr, COOKIE) {
        Err(NodeError::Refused {
            reason: Refusal::Tls { message },
            ..
        }) => check!(message.contains("TLS"), "{message}"),
        other => return Err(format!("expected a TLS refusal, got {other:?}").into()),
    }
    let seen = n.event("refused ")?;
    check!(seen.contains("TLS"), "the node says why: {seen}");
    Ok(())
}

fn a_certificate_that_does_not_verify_is_refused_typed() -> TestResult {
    let pki_node = pki("node.test")?;
    let other = pki("node.test")?;
    let mut n = TlsNode::start(&pki_node)?;
    // Signed by an authority this root does not trust.
    match node::connect_tls(&n.addr, COOKIE, trusting(&other.ca)?, "node.test") {
        Err(NodeError::Refused {
            reason: Refusal::Tls { message },
            ..
        }) => check!(message.contains("certificate"), "{message}"),
        other => return Err(format!("expected a TLS refusal, got {other:?}").into()),
    }
    n.event("refused ")?;
    // Trusted, but for another name.
    match node::connect_tls(&n.addr, COOKIE, trusting(&pki_node.ca)?, "other.test") {
        Err(NodeError::Refused {
            reason: Refusal::Tls { message },
            ..
        }) => check!(message.contains("certificate"), "{message}"),
        other => return Err(format!("expected a TLS refusal, got {other:?}").into()),
    }
    // A TLS root meets a plain node.
    let plain = TestNode::start("plain", COOKIE, None, Duration::from_secs(5));
    match node::connect_tls(&plain.addr, COOKIE, trusting(&pki_node.ca)?, "node.test") {
        Err(NodeError::Refused {
            reason: Refusal::Tls { .. },
            ..
        }) => {}
        other => return Err(format!("expected a TLS refusal, got {other:?}").into()),
    }
    match node::connect_tls(&n.addr, COOKIE, trusting(&pki_node.ca)?, "not a name!") {
        Err(NodeError::Config { .. }) => {}
        other => return Err(format!("expected a Config error, got {other:?}").into()),
    }
    Ok(())
}

/// A network namespace of the test's own, joined to this one by a veth pair on a
/// private subnet; removed (with the pair) when dropped.
struct Netns {
    name: String,
    host_if: String,
    node_ip: String,
}

impl Netns {
    /// `Ok(None)` when this machine cannot make one (no `ip`, no permission).
    fn create() -> Result<Option<Netns>, String> {
        let pid = std::process::id();
        let subnet = pid % 250 + 1;
        let ns = Netns {
            name: format!("mpns{pid}"),
            host_if: format!("mph{pid}"),
            node_ip: format!("10.213.{subnet}.2"),
        };
        let node_if = format!("mpn{pid}");
        if let Err(e) = ip(&["netns", "add", &ns.name]) {
            println!("skipping the partition test: cannot make a network namespace: {e}");
            return Ok(None);
        }
        let host_addr = format!("10.213.{subnet}.1/24");
        let node_addr = format!("{}/24", ns.node_ip);
        for args in [
            vec![
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &node_if,
            ],
            vec!["link", "set", &node_if, "netns", &ns.name],
            vec!["addr", "add", &host_addr, "dev", &ns.host_if],
            vec!["link", "set", &ns.host_if, "up"],
            vec!["-n", &ns.name, "addr", "add", &node_addr, "dev", &node_if],
            vec!["-n", &ns.name, "link", "set", &node_if, "up"],
            vec!["-n", &ns.name, "link", "set", "lo", "up"],
        ] {
            ip(&args)?;
        }
        Ok(Some(ns))
    }

    fn link(&self, up: bool) -> Result<(), String> {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Runs `ip` with `args`; its stderr when it fails.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// This test program in node mode by the environment, in the namespace `ns`; killed
/// when dropped, and by the parent-death signal if the test dies.
struct NsNode(std::process::Child);

impl NsNode {
    #[allow(unsafe_code, reason = "pre_exec, to tie the node to the test")]
    fn start(ns: &Netns, name: &str) -> Result<(NsNode, String), Box<dyn std::error::Error>> {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &ns.name])
            .arg(std::env::current_exe()?)
            .env("MULTIPROC_NODE_LISTEN", format!("{}:0", ns.node_ip))
            .env("MULTIPROC_NODE_NAME", name)
            .env("MULTIPROC_NODE_COOKIE", COOKIE)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        // SAFETY: only an async-signal-safe prctl between fork and exec (`ip netns
        // exec` execs the node in the same process, so the setting stays).
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                Ok(())
            });
        }
        let mut child = NsNode(cmd.spawn()?);
        let stdout = child.0.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(SOON)?;
        let addr = line
            .trim()
            .strip_prefix(&format!("multiproc node {name} listening on "))
            .ok_or(format!("unexpected first line: {line:?}"))?
            .to_string();
        Ok((child, addr))
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn waits() {
    multiproc::blocking::wait_for_stop();
}

multiproc::register!(waits);

fn a_partition_is_node_down_the_node_lets_go_and_it_heals() -> TestResult {
    let Some(ns) = Netns::create()? else {
        return Ok(());
    };
    let (_node_process, addr) = NsNode::start(&ns, "far")?;
    let node = node::connect(&addr, COOKIE)?;
    let mut p = Process::new(waits, ()).on(&node);
    p.start()?;
    let remote_pid = p.pid().ok_or("a placed process has a pid")?;
    // The link goes down: no reset, no FIN, only silence, on both sides.
    ns.link(false)?;
    let cut = std::time::Instant::now();
    match node::wait_down(&node) {
        NodeError::NodeDown { why, .. } => check!(why.contains("heartbeat"), "{why}"),
        other => return Err(format!("expected NodeDown, got {other:?}").into()),
    }
    let seen = cut.elapsed();
    println!("partition seen as NodeDown after {seen:?}");
    // Default heartbeat: a ping every 200 ms, down after 800 ms without an answer.
    check!(seen < Duration::from_secs(2), "NodeDown took {seen:?}");
    check!(
        matches!(p.join()?, ExitReason::NodeDown { .. }),
        "the placed process's exit is NodeDown"
    );
    // The node, whose session still looks open, counts the root lost by its silence
    // and stops its process after the grace period (5 s in node mode).
    check!(
        common::wait_gone(remote_pid, Duration::from_secs(20)),
        "the node stopped the lost root's process"
    );
    // Healed: the root connects again and places a process.
    ns.link(true)?;
    let again = node::connect(&addr, COOKIE)?;
    check!(again.is_up(), "a new connection is up");
    let mut q = Process::new(exits_with, 4).on(&again);
    q.start()?;
    check_eq!(q.join()?, ExitReason::Exited(4));
    again.disconnect();
    Ok(())
}

fn main() {
    // Nodes and their processes come and go: bounded, whatever a regression does.
    common::cgroup::confine("cluster_sync");
    // One at a time: a process's connections to nodes are shared.
    common::run_serial(vec![
        trial("queue_put_and_get_both_ways", queue_put_and_get_both_ways),
        trial(
            "a_lock_excludes_across_a_node_and_the_root",
            a_lock_excludes_across_a_node_and_the_root,
        ),
        trial(
            "an_event_is_set_and_waited_across_a_node",
            an_event_is_set_and_waited_across_a_node,
        ),
        trial(
            "a_node_killed_holding_a_lock_leaves_it_owner_died",
            a_node_killed_holding_a_lock_leaves_it_owner_died,
        ),
        trial("a_value_is_refused_naming_it", a_value_is_refused_naming_it),
        trial(
            "an_operation_in_flight_when_the_root_dies_is_node_down",
            an_operation_in_flight_when_the_root_dies_is_node_down,
        ),
        trial(
            "a_partition_is_node_down_the_node_lets_go_and_it_heals",
            a_partition_is_node_down_the_node_lets_go_and_it_heals,
        ),
        trial(
            "a_tls_root_places_a_process_on_a_tls_node",
            a_tls_root_places_a_process_on_a_tls_node,
        ),
        trial(
            "a_plain_root_is_refused_by_a_tls_node_typed",
            a_plain_root_is_refused_by_a_tls_node_typed,
        ),
        trial(
            "a_certificate_that_does_not_verify_is_refused_typed",
            a_certificate_that_does_not_verify_is_refused_typed,
        ),
    ]);
}
