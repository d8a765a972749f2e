//! The live observer over HTTP, spoken to over raw sockets: the snapshot as JSON,
//! the live stream that reports a killed child at once, the figures over time, and
//! a clear answer or error for each kind of bad input (a wrong token, a bad path, a
//! foreign host name, an address in use, an observer asked for in a child).

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{TestResult, trial};
use multiproc::blocking::observe::{self, Observer, ObserverError, ObserverHandle};
use multiproc::blocking::{Connection, Process, SupervisorRef, pipe};
use multiproc::{Backoff, Supervisor, SupervisorFlags, function_child};
use serde_json::Value;

/// How long a socket read may take before the test fails rather than hangs.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

fn leaf() {
    multiproc::blocking::wait_for_stop();
}

/// Tries to start an observer in a child, and sends back what that gave.
fn observer_in_child(mut up: Connection) -> Result<(), Box<dyn std::error::Error>> {
    let got = observe::serve(Observer::builder().bind("127.0.0.1:0".parse()?));
    let answer = match got {
        Ok(_) => "started".to_string(),
        Err(ObserverError::NotRoot { name }) => format!("not root: {name}"),
        Err(e) => format!("other: {e}"),
    };
    up.send(&answer)?;
    Ok(())
}

multiproc::register!(leaf, observer_in_child);

/// An answer: its status, headers (names lowercase) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<Value, String> {
        serde_json::from_str(&self.body).map_err(|e| format!("{e}: {}", self.body))
    }
}

fn open(addr: SocketAddr, path: &str, extra: &[&str]) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    let mut req = format!("GET {path} HTTP/1.0\r\n");
    if !extra.iter().any(|h| h.starts_with("Host:")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| e.to_string())?;
    Ok(stream)
}

fn head(reader: &mut impl BufRead) -> Result<(u16, Vec<(String, String)>), String> {
    let mut line = String::new();
    reader.read_line(&mut line).map_err(|e| e.to_string())?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or(format!("no status line: {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (n, v) = l.split_once(':').ok_or(format!("bad header {l:?}"))?;
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
    Ok((status, headers))
}

fn get(addr: SocketAddr, path: &str, extra: &[&str]) -> Result<Answer, String> {
    let mut reader = BufReader::new(open(addr, path, extra)?);
    let (status, headers) = head(&mut reader)?;
    let mut body = String::new();
    reader
        .read_to_string(&mut body)
        .map_err(|e| e.to_string())?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A live stream of server-sent events.
struct Events(BufReader<TcpStream>);

impl Events {
    fn open(addr: SocketAddr, path: &str) -> Result<Events, String> {
        let mut reader = BufReader::new(open(addr, path, &[])?);
        let (status, headers) = head(&mut reader)?;
        check_ok(status == 200, format!("status {status}"))?;
        let kind = headers.iter().find(|(n, _)| n == "content-type");
        check_ok(
            kind.is_some_and(|(_, v)| v == "text/event-stream"),
            format!("content type {kind:?}"),
        )?;
        Ok(Events(reader))
    }

    /// The next event: its type and its data.
    fn next(&mut self) -> Result<(String, String), String> {
        let (mut kind, mut data) = (String::new(), String::new());
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.0.read_line(&mut line).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("the stream ended".into());
            }
            let l = line.trim_end_matches('\n');
            if l.is_empty() {
                if !kind.is_empty() {
                    return Ok((kind, data));
                }
                continue;
            }
            if let Some(k) = l.strip_prefix("event: ") {
                kind = k.to_string();
            } else if let Some(d) = l.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
    }

    /// Reads events until one of type `kind` whose data satisfies `want`, within
    /// `within`.
    fn until(
        &mut self,
        kind: &str,
        within: Duration,
        want: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            let (k, data) = self.next()?;
            if k == kind {
                let v: Value = serde_json::from_str(&data).map_err(|e| e.to_string())?;
                if want(&v) {
                    return Ok(v);
                }
            }
            seen.push(k);
        }
        Err(format!(
            "no {kind} event as wanted within {within:?}; saw {seen:?}"
        ))
    }
}

fn check_ok(cond: bool, msg: String) -> Result<(), String> {
    if cond { Ok(()) } else { Err(msg) }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn serve(builder: multiproc::observe::ObserverBuilder) -> Result<ObserverHandle, ObserverError> {
    observe::serve(builder.bind(loopback()))
}

fn quick_flags() -> SupervisorFlags {
    SupervisorFlags {
        backoff: Backoff {
            min: Duration::from_millis(10),
            max: Duration::from_millis(10),
            ..Backoff::default()
        },
        ..SupervisorFlags::default()
    }
}

fn processes(snap: &Value) -> Vec<Value> {
    snap["processes"].as_array().cloned().unwrap_or_default()
}

fn snapshot_json_shows_the_tree() -> TestResult {
    let sup = SupervisorRef::start(Supervisor::new(quick_flags()).child(function_child(
        "steady",
        leaf,
        (),
    )?))?;
    let observer = serve(Observer::builder())?;
    let answer = get(observer.local_addr(), "/api/snapshot", &[])?;
    check_eq!(answer.status, 200);
    check_eq!(answer.header("content-type"), Some("application/json"));
    let snap = answer.json()?;
    let list = processes(&snap);
    check_eq!(list[0]["kind"], "root");
    check_eq!(list[0]["pid"], std::process::id());
    check_eq!(list[0]["depth"], 0);
    check!(
        list[0]["rss_bytes"].as_u64() > Some(0),
        "no RSS: {}",
        list[0]
    );
    let steady = list
        .iter()
        .find(|p| p["supervised_as"] == "steady")
        .ok_or(format!("no steady in {snap}"))?;
    check_eq!(steady["state"], "running");
    check_eq!(steady["key"], "spec:steady");
    check_eq!(steady["parent_pid"], std::process::id());
    check_eq!(steady["depth"], 1);
    check_eq!(steady["restarts"], 0);
    check!(snap["interval_ms"] == 1000, "{snap}");
    sup.shutdown();
    observe::shutdown(observer);
    Ok(())
}

fn the_page_and_its_assets_are_served_with_a_strict_policy() -> TestResult {
    let observer = serve(Observer::builder())?;
    let addr = observer.local_addr();
    let page = get(addr, "/", &[])?;
    check_eq!(page.status, 200);
    check!(page.body.contains("<table id=\"tree\""), "{}", page.body);
    let policy = page.header("content-security-policy").unwrap_or_default();
    check!(policy.contains("default-src 'none'"), "{policy}");
    for (path, kind) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/app.css", "text/css; charset=utf-8"),
    ] {
        let asset = get(addr, path, &[])?;
        check_eq!(asset.status, 200);
        check_eq!(asset.header("content-type"), Some(kind));
        // Nothing is fetched from elsewhere (SVG's namespace is a name, not a fetch).
        let text = asset.body.replace("\"http://www.w3.org/2000/svg\"", "");
        check!(
            !text.contains("http://") && !text.contains("https://"),
            "{path} names another host"
        );
    }
    observe::shutdown(observer);
    Ok(())
}

fn a_wrong_or_missing_token_is_refused_with_401() -> TestResult {
    let observer = serve(Observer::builder().token("s3cret-Token_1"))?;
    let addr = observer.local_addr();
    check!(
        observer.url().ends_with("/?token=s3cret-Token_1"),
        "{}",
        observer.url()
    );
    for (path, headers) in [
        ("/", &[][..]),
        ("/api/snapshot", &[][..]),
        ("/api/events", &[][..]),
        ("/api/history", &[][..]),
        ("/api/snapshot?token=wrong", &[][..]),
        ("/api/snapshot?token=s3cret-Token_", &[][..]),
        ("/api/snapshot", &["Authorization: Bearer wrong"][..]),
        (
            "/api/snapshot",
            &["Authorization: Basic czNjcmV0LVRva2VuXzE="][..],
        ),
    ] {
        let answer = get(addr, path, headers)?;
        check!(
            answer.status == 401,
            "{path} {headers:?}: {}",
            answer.status
        );
        check_eq!(
            answer.header("www-authenticate"),
            Some("Bearer realm=\"multiproc observer\"")
        );
        check_eq!(answer.json()?["status"], 401);
    }
    let by_query = get(addr, "/api/snapshot?token=s3cret-Token_1", &[])?;
    check_eq!(by_query.status, 200);
    let by_header = get(addr, "/", &["Authorization: Bearer s3cret-Token_1"])?;
    check_eq!(by_header.status, 200);
    // The page's script and style hold no data, and a page cannot pass its token on
    // to them.
    check_eq!(get(addr, "/app.js", &[])?.status, 200);
    observe::shutdown(observer);
    Ok(())
}

fn a_bad_path_method_or_host_gets_a_clear_status() -> TestResult {
    let observer = serve(Observer::builder())?;
    let addr = observer.local_addr();
    let missing = get(addr, "/api/nothing", &[])?;
    check_eq!(missing.status, 404);
    check_eq!(missing.json()?["error"], "no such page: /api/nothing");
    let unknown = get(addr, "/api/history?name=no-such-process", &[])?;
    check_eq!(unknown.status, 404);
    // A page elsewhere whose host name was rebound to this address.
    let foreign = get(addr, "/api/snapshot", &["Host: evil.example:80"])?;
    check_eq!(foreign.status, 421);
    check_eq!(get(addr, "/", &["Host: localhost"])?.status, 200);
    let mut post = TcpStream::connect(addr)?;
    post.set_read_timeout(Some(READ_TIMEOUT))?;
    post.write_all(
        format!("POST /api/snapshot HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )?;
    let (status, headers) = head(&mut BufReader::new(post))?;
    check_eq!(status, 405);
    check!(
        headers
            .iter()
            .any(|(n, v)| n == "allow" && v == "GET, HEAD"),
        "{headers:?}"
    );
    observe::shutdown(observer);
    Ok(())
}

fn an_address_in_use_is_a_typed_error() -> TestResult {
    let taken = std::net::TcpListener::bind(loopback())?;
    let addr = taken.local_addr()?;
    match observe::serve(Observer::builder().bind(addr)) {
        Err(ObserverError::AddressInUse { addr: said }) => check_eq!(said, addr),
        other => return Err(format!("{other:?}").into()),
    }
    Ok(())
}

fn bad_settings_are_typed_errors() -> TestResult {
    let remote: SocketAddr = "0.0.0.0:0".parse()?;
    match observe::serve(Observer::builder().bind(remote)) {
        Err(ObserverError::RemoteWithoutToken { addr }) => check_eq!(addr, remote),
        other => return Err(format!("{other:?}").into()),
    }
    for token in ["", "with space", "new\nline", "slash/", &"x".repeat(257)] {
        match serve(Observer::builder().token(token)) {
            Err(ObserverError::InvalidToken) => {}
            other => return Err(format!("token {token:?}: {other:?}").into()),
        }
    }
    match serve(Observer::builder().sample_every(Duration::ZERO)) {
        Err(ObserverError::InvalidSetting { field, .. }) => check_eq!(field, "sample_every"),
        other => return Err(format!("{other:?}").into()),
    }
    match serve(
        Observer::builder()
            .sample_every(Duration::from_secs(2))
            .history(Duration::from_secs(1)),
    ) {
        Err(ObserverError::InvalidSetting { field, .. }) => check_eq!(field, "history"),
        other => return Err(format!("{other:?}").into()),
    }
    Ok(())
}

fn an_observer_started_in_a_child_is_a_typed_error() -> TestResult {
    let (mut ours, theirs) = pipe(true)?;
    let mut child = Process::new(observer_in_child, theirs);
    child.start()?;
    let answer: String = ours.recv()?;
    check_eq!(answer, format!("not root: {}", child.name()));
    child.join()?;
    check_eq!(child.exit_code(), Some(0));
    Ok(())
}

fn the_stream_reports_a_killed_child_the_moment_it_dies() -> TestResult {
    let sup = SupervisorRef::start(Supervisor::new(quick_flags()).child(function_child(
        "victim",
        leaf,
        (),
    )?))?;
    // A long interval: what the test sees of the kill is the event, not a snapshot.
    let observer = serve(Observer::builder().sample_every(Duration::from_secs(60)))?;
    let mut events = Events::open(observer.local_addr(), "/api/events")?;
    let snap = events.until("snapshot", READ_TIMEOUT, |s| {
        processes(s).iter().any(|p| p["supervised_as"] == "victim")
    })?;
    let victim = processes(&snap)
        .into_iter()
        .find(|p| p["supervised_as"] == "victim")
        .unwrap();
    let pid = victim["pid"].as_u64().ok_or("no pid")? as i32;
    let name = victim["name"].as_str().unwrap().to_string();
    // SAFETY of the test: the pid is our child's, which cannot be reaped (and its pid
    // reused) before the supervisor sees the kill.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    )?;
    let exit = events.until("event", READ_TIMEOUT, |e| {
        e["kind"] == "exit" && e["pid"] == pid
    })?;
    check_eq!(exit["name"], name.as_str());
    check_eq!(exit["pid"], pid);
    check_eq!(exit["spec"], "victim");
    check_eq!(exit["reason"], "signaled(SIGKILL)");
    check_eq!(exit["exit_code"], -9);
    check_eq!(exit["level"], "error");
    let restarted = events.until("event", READ_TIMEOUT, |e| {
        e["kind"] == "restarted" && e["spec"] == "victim"
    })?;
    check_eq!(restarted["spec"], "victim");
    check!(restarted["pid"] != pid, "{restarted}");
    check!(
        exit["seq"].as_u64() < restarted["seq"].as_u64(),
        "{exit} {restarted}"
    );
    // A page that opens now finds both in its backlog.
    let mut late = Events::open(observer.local_addr(), "/api/events")?;
    let backlog = late.until("backlog", READ_TIMEOUT, |_| true)?;
    let kinds: Vec<&str> = backlog
        .as_array()
        .ok_or("backlog is no list")?
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    check!(
        kinds.contains(&"exit") && kinds.contains(&"restarted"),
        "{kinds:?}"
    );
    sup.shutdown();
    observe::shutdown(observer);
    // The stream ends with the observer.
    let mut ended = false;
    for _ in 0..1000 {
        if events.next().is_err() {
            ended = true;
            break;
        }
    }
    check!(ended, "the stream outlived its observer");
    Ok(())
}

fn figures_over_time_are_kept_per_process() -> TestResult {
    let observer = serve(
        Observer::builder()
            .sample_every(Duration::from_millis(50))
            .history(Duration::from_millis(200)),
    )?;
    let addr = observer.local_addr();
    let mut events = Events::open(addr, "/api/events")?;
    // Six snapshots: more than the window holds.
    let mut last = Value::Null;
    for _ in 0..6 {
        last = events.until("snapshot", READ_TIMEOUT, |_| true)?;
    }
    check_eq!(last["history_ms"], 200);
    let all = get(addr, "/api/history", &[])?.json()?;
    check_eq!(all["interval_ms"], 50);
    let root = get(addr, "/api/history?name=MainProcess", &[])?.json()?;
    let series = &root["processes"]["MainProcess"];
    let times = series["t"].as_array().ok_or(format!("{root}"))?;
    // The window holds four samples, however many were taken.
    check_eq!(times.len(), 4);
    check!(
        series["rss"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_u64() > Some(0)),
        "{series}"
    );
    check!(
        series["cpu"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1)
            .all(Value::is_number),
        "{series}"
    );
    observe::shutdown(observer);
    Ok(())
}

fn a_stopped_observer_gives_its_port_back() -> TestResult {
    let observer = serve(Observer::builder())?;
    let addr = observer.local_addr();
    let _stream = Events::open(addr, "/api/events")?;
    observe::shutdown(observer);
    // Listening again on the same port works at once: nothing holds it.
    let again = observe::serve(Observer::builder().bind(addr))?;
    check_eq!(again.local_addr(), addr);
    drop(again);
    Ok(())
}

fn main() {
    // Children killed and restarted: bounded, whatever a regression does.
    common::cgroup::confine("observer");
    common::run(vec![
        trial("snapshot_json_shows_the_tree", snapshot_json_shows_the_tree),
        trial(
            "the_page_and_its_assets_are_served_with_a_strict_policy",
            the_page_and_its_assets_are_served_with_a_strict_policy,
        ),
        trial(
            "a_wrong_or_missing_token_is_refused_with_401",
            a_wrong_or_missing_token_is_refused_with_401,
        ),
        trial(
            "a_bad_path_method_or_host_gets_a_clear_status",
            a_bad_path_method_or_host_gets_a_clear_status,
        ),
        trial(
            "an_address_in_use_is_a_typed_error",
            an_address_in_use_is_a_typed_error,
        ),
        trial(
            "bad_settings_are_typed_errors",
            bad_settings_are_typed_errors,
        ),
        trial(
            "an_observer_started_in_a_child_is_a_typed_error",
            an_observer_started_in_a_child_is_a_typed_error,
        ),
        trial(
            "the_stream_reports_a_killed_child_the_moment_it_dies",
            the_stream_reports_a_killed_child_the_moment_it_dies,
        ),
        trial(
            "figures_over_time_are_kept_per_process",
            figures_over_time_are_kept_per_process,
        ),
        trial(
            "a_stopped_observer_gives_its_port_back",
            a_stopped_observer_gives_its_port_back,
        ),
    ]);
}
