//! The observer's page in a real headless Chromium: it shows the running tree, and
//! when a supervised child is killed, the kill and the restart show on the page.
//!
//! The browser is `MULTIPROC_BROWSER`, else the first Chromium on `PATH`. Without one
//! the test says it skipped, unless `MULTIPROC_REQUIRE_BROWSER=1` (as `.ci/run` sets),
//! when it fails. With `MULTIPROC_SCREENSHOTS=1` it writes the book's screenshots,
//! `book/src/images/observer.png` (dark) and `observer-light.png`.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

#[path = "support/cdp.rs"]
mod cdp;
mod common;

use std::time::Duration;

use common::{TestResult, trial};
use multiproc::blocking::observe::{self, Observer};
use multiproc::blocking::{Pool, Process, SupervisorRef};
use multiproc::{Backoff, RestartIntensity, Supervisor, SupervisorFlags, function_child};

/// How long the page gets to show what the test waits for.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The viewport of the screenshots.
const WIDTH: u32 = 1440;
const HEIGHT: u32 = 600;
/// Snapshots the page must have drawn before the screenshots: enough points for the
/// sparklines to show a shape.
const SAMPLES_BEFORE_SHOTS: usize = 24;

fn steady() {
    multiproc::blocking::wait_for_stop();
}

/// Starts a child of its own, so that the tree has some depth.
fn gateway() -> Result<(), multiproc::Error> {
    let mut upstream = Process::new(steady, ()).named("gateway-upstream");
    upstream.start()?;
    multiproc::blocking::wait_for_stop();
    Ok(())
}

fn crash_prone() {
    let dice = std::process::id().wrapping_mul(2_654_435_761) >> 16;
    std::thread::sleep(Duration::from_millis(800 + u64::from(dice % 1500)));
    std::process::exit(3);
}

fn square(x: u64) -> u64 {
    (0..200_000u64).fold(x, |a, i| a.wrapping_mul(31).wrapping_add(i)) % 1000 + x * x
}

multiproc::register!(steady, gateway, crash_prone, square);

fn browser() -> Result<Option<std::path::PathBuf>, String> {
    if let Some(exe) = cdp::find() {
        return Ok(Some(exe));
    }
    if std::env::var("MULTIPROC_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
        return Err(
            "no Chromium found (MULTIPROC_BROWSER, or chromium on PATH), and \
             MULTIPROC_REQUIRE_BROWSER=1 requires one"
                .into(),
        );
    }
    println!(
        "SKIPPED: no Chromium found (install Debian's `chromium`, or set MULTIPROC_BROWSER); \
         MULTIPROC_REQUIRE_BROWSER=1 makes this a failure"
    );
    Ok(None)
}

/// A JavaScript expression: the row of the supervised child `spec`.
fn row(spec: &str) -> String {
    format!("document.querySelector('tr[data-spec=\"{spec}\"]')")
}

fn the_page_shows_the_tree_and_a_kill_as_it_happens() -> TestResult {
    let Some(exe) = browser()? else {
        return Ok(());
    };
    let flags = SupervisorFlags {
        intensity: RestartIntensity {
            max_restarts: 1000,
            within: Duration::from_secs(60),
        },
        backoff: Backoff {
            min: Duration::from_millis(300),
            max: Duration::from_millis(300),
            ..Backoff::default()
        },
        ..SupervisorFlags::default()
    };
    let sup = SupervisorRef::start(
        Supervisor::new(flags)
            .child(function_child("gateway", gateway, ())?)
            .child(function_child("victim", steady, ())?)
            .child(function_child("crash_prone", crash_prone, ())?),
    )?;
    let pool = Pool::new(2)?;
    let busy = {
        let pool = pool.clone();
        std::thread::spawn(move || {
            for _ in 0..40 {
                if pool.map(square, 0..24u64).is_err() {
                    break;
                }
            }
        })
    };
    let observer = observe::serve(
        Observer::builder()
            .bind("127.0.0.1:0".parse()?)
            .token("browser-test")
            .title("observer_browser")
            .sample_every(Duration::from_millis(250))
            .history(Duration::from_secs(60)),
    )?;

    let mut browser = cdp::Browser::launch(&exe)?;
    let page = browser.open(&observer.url(), WIDTH, HEIGHT)?;

    // The tree: the root, each supervised child, a pool worker, the grandchild.
    let shown = browser.wait_for(
        &page,
        &format!(
            "document.querySelector('tr[data-kind=\"root\"][data-name=\"MainProcess\"]') \
             && {} && {} && {} \
             && document.querySelector('tr[data-kind=\"pool_worker\"]') \
             && document.querySelector('tr[data-name=\"gateway-upstream\"]') \
             && document.getElementById('conn').dataset.state === 'live'",
            row("gateway"),
            row("victim"),
            row("crash_prone")
        ),
        PAGE_TIMEOUT,
    );
    check!(shown.is_ok(), "the tree did not show: {shown:?}");
    // Nested by parent: the grandchild sits deeper than its parent.
    let depths = browser.eval(
        &page,
        "[...document.querySelectorAll('#rows tr')].map(r => [r.dataset.name, \
         parseFloat(r.querySelector('.name').style.paddingLeft)])",
        Duration::ZERO,
    )?;
    let depth = |name: &str| {
        depths
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r[0] == name))
            .and_then(|r| r[1].as_f64())
    };
    let gateway_name = browser.eval(
        &page,
        &format!("{}.dataset.name", row("gateway")),
        Duration::ZERO,
    )?;
    let gateway_name = gateway_name.as_str().unwrap_or_default().to_string();
    check!(
        depth("gateway-upstream") > depth(&gateway_name)
            && depth(&gateway_name) > depth("MainProcess"),
        "not nested by parent: {depths}"
    );

    // Kill the victim: the page logs the kill and counts the restart.
    let snap = multiproc::blocking::snapshot();
    let victim = snap
        .processes
        .iter()
        .find(|p| p.supervised_as.as_deref() == Some("victim"))
        .ok_or(format!("no victim in\n{snap}"))?;
    let pid = victim.pid.ok_or("victim has no pid")?;
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )?;
    let logged = browser.wait_for(
        &page,
        &format!(
            "document.querySelector('#log li[data-kind=\"exit\"][data-spec=\"victim\"]\
             [data-reason=\"signaled(SIGKILL)\"][data-level=\"error\"]') \
             && document.querySelector('#log li[data-kind=\"restarted\"][data-spec=\"victim\"]') \
             && {}.querySelector('[data-field=\"restarts\"]').textContent === '1' \
             && {}.dataset.pid !== '{pid}'",
            row("victim"),
            row("victim")
        ),
        PAGE_TIMEOUT,
    );
    check!(logged.is_ok(), "the kill did not show: {logged:?}");
    let exit_text = browser.eval(
        &page,
        "document.querySelector('#log li[data-kind=\"exit\"][data-spec=\"victim\"] .text').textContent",
        Duration::ZERO,
    )?;
    check!(
        exit_text
            .as_str()
            .is_some_and(|t| t.contains(&format!("(pid {pid}) exited: signaled(SIGKILL)"))),
        "{exit_text}"
    );

    if std::env::var("MULTIPROC_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let drawn = browser.wait_for(
            &page,
            &format!(
                "(() => {{ const s = document.querySelector('tr[data-kind=\"root\"] svg.spark.mem path.line'); \
                 return s && s.getAttribute('d').split('L').length >= {SAMPLES_BEFORE_SHOTS}; }})()"
            ),
            PAGE_TIMEOUT,
        );
        check!(drawn.is_ok(), "the sparklines did not fill: {drawn:?}");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src/images");
        std::fs::create_dir_all(&dir)?;
        browser.color_scheme(&page, "dark")?;
        std::fs::write(dir.join("observer.png"), browser.screenshot(&page)?)?;
        browser.color_scheme(&page, "light")?;
        std::fs::write(dir.join("observer-light.png"), browser.screenshot(&page)?)?;
        println!(
            "wrote {}/observer.png and observer-light.png",
            dir.display()
        );
    }

    drop(browser);
    let _ = busy.join();
    pool.close();
    pool.join()?;
    sup.shutdown();
    observe::shutdown(observer);
    Ok(())
}

fn main() {
    // Children restarted in a loop, and a browser's processes: bounded, and all gone
    // when the binary ends.
    common::cgroup::confine("observer_browser");
    common::run(vec![trial(
        "the_page_shows_the_tree_and_a_kill_as_it_happens",
        the_page_shows_the_tree_and_a_kill_as_it_happens,
    )]);
}
