//! `#[multiproc::main]` on an `async fn main`: `init()` runs before the runtime it
//! builds, so a child started from such a program runs its function, never `main`'s
//! body; and the body runs on that runtime.
//!
//! This binary's own `main` carries the attribute (it is the program under test); its
//! trials drive the async API on the runtime it built.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::Duration;

use common::TestResult;
use libtest_mimic::{Arguments, Trial};
use multiproc::{Connection, Process, StartMethod};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Exit code of a child that ran `main`'s body, which it must never do.
const RAN_MAIN: i32 = 97;

/// The child's function: says who ran it.
fn report(mut conn: multiproc::blocking::Connection) -> Result<(), multiproc::connection::Error> {
    let me = multiproc::current_process();
    conn.send(&format!("function ran in {}", me.name()))
}
multiproc::register!(report);

fn child_runs_its_function(handle: &Handle, method: StartMethod) -> TestResult {
    handle.block_on(async {
        let (ours, theirs) = multiproc::blocking::pipe(true)?;
        let mut ours = Connection::from(ours);
        let mut p = Process::new(report, theirs).start_method(method);
        p.start().await?;
        let said = tokio::time::timeout(Duration::from_secs(30), ours.recv::<String>()).await;
        let reason = p.join().await?;
        check!(
            reason.exit_code() != RAN_MAIN,
            "the child ran main's body: {reason:?}"
        );
        check_eq!(reason.exit_code(), 0);
        let said = said.map_err(|_| "the child said nothing within 30 s")??;
        check!(
            said.starts_with("function ran in Process-"),
            "the child said {said:?}"
        );
        Ok(())
    })
}

#[multiproc::main]
async fn main() {
    // The attribute put `init()` before this line: a child never gets here.
    if std::env::var_os("MULTIPROC_BOOTSTRAP").is_some() {
        eprintln!("a child ran main's body");
        std::process::exit(RAN_MAIN);
    }
    let handle = Handle::current();
    let flavor = handle.runtime_flavor();
    let args = Arguments::from_args();
    let (spawn, fork) = (handle.clone(), handle.clone());
    let trials = vec![
        Trial::test("a_spawned_child_runs_its_function_not_main", move || {
            child_runs_its_function(&spawn, StartMethod::Spawn)
        }),
        Trial::test("a_forkserver_child_runs_its_function_not_main", move || {
            child_runs_its_function(&fork, StartMethod::Forkserver)
        }),
        Trial::test("main_runs_on_a_multi_threaded_runtime", move || {
            check_eq!(flavor, RuntimeFlavor::MultiThread);
            Ok(())
        }),
    ];
    // The trials run on threads of their own, which enter the runtime through `handle`.
    let conclusion = tokio::task::spawn_blocking(move || libtest_mimic::run(&args, trials))
        .await
        .unwrap();
    multiproc::stop_children(Duration::from_secs(5)).await;
    conclusion.exit()
}
