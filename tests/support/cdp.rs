//! A headless Chromium driven over the DevTools protocol: launch, open a page, wait
//! on a condition of its DOM (a `MutationObserver` in the page, bounded by a
//! timeout, never a poll), evaluate, and take a screenshot.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// How long the browser gets to start and say where it listens.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one protocol call may take, beyond what it waits for itself.
const CALL_SLACK: Duration = Duration::from_secs(60);
/// How long the browser gets to close on its own before it is killed.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The browser to drive: `MULTIPROC_BROWSER`, else the first Chromium on `PATH`.
pub(crate) fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MULTIPROC_BROWSER") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    [
        "chromium",
        "chromium-browser",
        "google-chrome",
        "google-chrome-stable",
    ]
    .iter()
    .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
    .find(|candidate| candidate.is_file())
}

/// A running headless browser; dropped, it is killed and its profile removed.
pub(crate) struct Browser {
    child: Child,
    profile: PathBuf,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Events read while waiting for a call's answer.
    events: Vec<Value>,
}

/// A page of the browser: a target attached with its own session.
pub(crate) struct Page {
    session: String,
}

impl Browser {
    /// Starts `exe` headless, with a fresh profile, and connects to it.
    pub(crate) fn launch(exe: &Path) -> Result<Browser, String> {
        let profile = std::env::temp_dir().join(format!(
            "multiproc-browser-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let mut child = Command::new(exe)
            .args([
                "--headless",
                // Root in a container has no user namespaces for the sandbox.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1440,900",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // A group of its own, which its helper processes join: killed as one.
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        let stderr = child.stderr.take().expect("stderr was piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Nobody listens any more: keep draining, so the browser never
                    // blocks on a full pipe.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + LAUNCH_TIMEOUT;
        let mut said = Vec::new();
        let url = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(url) = line.split("DevTools listening on ").nth(1) {
                        break url.trim().to_string();
                    }
                    said.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let _ = std::fs::remove_dir_all(&profile);
                    return Err(format!(
                        "{} did not say where it listens within {LAUNCH_TIMEOUT:?}; it said:\n{}",
                        exe.display(),
                        said.join("\n")
                    ));
                }
            }
        };
        let host = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .ok_or(format!("odd DevTools address {url}"))?;
        let stream = TcpStream::connect(host).map_err(|e| format!("DevTools at {host}: {e}"))?;
        stream
            .set_read_timeout(Some(CALL_SLACK))
            .map_err(|e| e.to_string())?;
        let (ws, _) = tungstenite::client(url.as_str(), stream)
            .map_err(|e| format!("DevTools websocket at {url}: {e}"))?;
        Ok(Browser {
            child,
            profile,
            ws,
            next_id: 0,
            events: Vec::new(),
        })
    }

    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Result<u64, String> {
        self.next_id += 1;
        let mut msg = json!({ "id": self.next_id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .map_err(|e| format!("{method}: {e}"))?;
        Ok(self.next_id)
    }

    fn read(&mut self, within: Duration) -> Result<Value, String> {
        self.ws
            .get_mut()
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        loop {
            match self.ws.read().map_err(|e| e.to_string())? {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).map_err(|e| e.to_string());
                }
                Message::Close(_) => return Err("the browser closed the connection".into()),
                _ => {}
            }
        }
    }

    /// Calls `method` and returns its result; `wait` is how long the call itself
    /// may take on the browser's side.
    fn call_within(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
        wait: Duration,
    ) -> Result<Value, String> {
        let id = self.send(session, method, params)?;
        let deadline = Instant::now() + wait + CALL_SLACK;
        loop {
            let msg = self
                .read(deadline.saturating_duration_since(Instant::now()))
                .map_err(|e| format!("{method}: no answer: {e}"))?;
            if msg["id"] == id {
                if let Some(error) = msg.get("error") {
                    return Err(format!("{method}: {error}"));
                }
                return Ok(msg["result"].clone());
            }
            if msg.get("method").is_some() {
                self.events.push(msg);
            }
        }
    }

    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.call_within(session, method, params, Duration::ZERO)
    }

    /// Waits for the event `method` of `session`, within `timeout`.
    fn event(&mut self, session: &str, method: &str, timeout: Duration) -> Result<Value, String> {
        let mine = |m: &Value| m["method"] == method && m["sessionId"] == session;
        if let Some(at) = self.events.iter().position(mine) {
            return Ok(self.events.remove(at));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("no {method} within {timeout:?}"));
            }
            let msg = self
                .read(left)
                .map_err(|e| format!("waiting for {method}: {e}"))?;
            if mine(&msg) {
                return Ok(msg);
            }
            if msg.get("method").is_some() {
                self.events.push(msg);
            }
        }
    }

    /// Opens `url` in a new page of `width` × `height` and waits until it has loaded.
    pub(crate) fn open(&mut self, url: &str, width: u32, height: u32) -> Result<Page, String> {
        let target = self.call(None, "Target.createTarget", json!({ "url": "about:blank" }))?;
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        )?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or("no session")?
            .to_string();
        let s = Some(session.as_str());
        self.call(s, "Page.enable", json!({}))?;
        self.call(
            s,
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )?;
        self.call(s, "Page.navigate", json!({ "url": url }))?;
        self.event(&session, "Page.loadEventFired", LAUNCH_TIMEOUT)?;
        Ok(Page { session })
    }

    /// The value of the JavaScript `expression` in `page` (awaited, if a promise).
    pub(crate) fn eval(
        &mut self,
        page: &Page,
        expression: &str,
        wait: Duration,
    ) -> Result<Value, String> {
        let got = self.call_within(
            Some(&page.session),
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            wait,
        )?;
        if let Some(e) = got.get("exceptionDetails") {
            let text = e["exception"]["description"]
                .as_str()
                .or(e["text"].as_str())
                .unwrap_or("an exception");
            return Err(text.to_string());
        }
        Ok(got["result"]["value"].clone())
    }

    /// Waits until the JavaScript `condition` holds in `page` (it is checked at once,
    /// then whenever the DOM changes), within `timeout`; returns its value.
    pub(crate) fn wait_for(
        &mut self,
        page: &Page,
        condition: &str,
        timeout: Duration,
    ) -> Result<Value, String> {
        let described = serde_json::to_string(condition).expect("a string encodes");
        let expression = format!(
            "new Promise((resolve, reject) => {{
                let observer = null, timer = null;
                const check = () => {{
                    let value = null;
                    try {{ value = ({condition}); }} catch (e) {{ value = null; }}
                    if (!value) return false;
                    if (observer) observer.disconnect();
                    if (timer) clearTimeout(timer);
                    resolve(value);
                    return true;
                }};
                if (check()) return;
                observer = new MutationObserver(check);
                observer.observe(document, {{ subtree: true, childList: true, characterData: true, attributes: true }});
                timer = setTimeout(() => {{
                    observer.disconnect();
                    reject(new Error('not within {ms} ms: ' + {described}));
                }}, {ms});
            }})",
            ms = timeout.as_millis()
        );
        self.eval(page, &expression, timeout)
    }

    /// Emulates the user's colour scheme preference (`dark` or `light`).
    pub(crate) fn color_scheme(&mut self, page: &Page, scheme: &str) -> Result<(), String> {
        self.call(
            Some(&page.session),
            "Emulation.setEmulatedMedia",
            json!({ "features": [{ "name": "prefers-color-scheme", "value": scheme }] }),
        )?;
        Ok(())
    }

    /// A PNG of the page's viewport.
    pub(crate) fn screenshot(&mut self, page: &Page) -> Result<Vec<u8>, String> {
        let shot = self.call(
            Some(&page.session),
            "Page.captureScreenshot",
            json!({ "format": "png" }),
        )?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Asked first, so that it ends its helper processes itself; then its whole
        // process group is killed, whatever it did.
        let _ = self.send(None, "Browser.close", json!({}));
        let pid = self.child.id() as i32;
        if let Some(fd) = rustix::process::Pid::from_raw(pid)
            .and_then(|p| rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok())
        {
            let mut set = [rustix::event::PollFd::new(
                &fd,
                rustix::event::PollFlags::IN,
            )];
            let timeout = rustix::event::Timespec {
                tv_sec: CLOSE_TIMEOUT.as_secs() as _,
                tv_nsec: 0,
            };
            let _ = rustix::event::poll(&mut set, Some(&timeout));
        }
        if let Some(group) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
