//! Progress of `map` and `imap`: reports that only go up, end at the total, and say
//! the total when the input knows it.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::sync::{Arc, Mutex};

use common::{TestResult, trial};
use multiproc::Progress;
use multiproc::blocking::Pool;

fn triple(x: u32) -> u32 {
    x * 3
}

fn add(a: u32, b: u32) -> u32 {
    a + b
}

multiproc::register!(triple, add);

/// The reports a callback saw, and the callback.
fn recorder() -> (
    Arc<Mutex<Vec<Progress>>>,
    impl FnMut(Progress) + Send + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = Arc::clone(&seen);
    (seen, move |p| into.lock().unwrap().push(p))
}

fn check_reports(seen: &[Progress], total: usize, known: bool) -> TestResult {
    check!(!seen.is_empty(), "no progress reported");
    for pair in seen.windows(2) {
        check!(pair[0].done < pair[1].done, "progress went back: {pair:?}");
    }
    for p in seen {
        check!(p.done <= p.submitted, "more done than submitted: {p:?}");
        check_eq!(p.total, known.then_some(total));
    }
    check_eq!(seen.last().unwrap().done, total);
    Ok(())
}

fn map_reports_progress_up_to_its_total() -> TestResult {
    let pool = Pool::new(2)?;
    let (seen, report) = recorder();
    let got = pool.map_with_progress(triple, 0..500u32, report)?;
    check_eq!(got, (0..500u32).map(|x| x * 3).collect::<Vec<_>>());
    let seen = seen.lock().unwrap().clone();
    check!(seen.len() > 1, "one report for 500 items: {seen:?}");
    check_reports(&seen, 500, true)?;
    check_eq!(seen.last().unwrap().fraction(), Some(1.0));
    pool.close();
    pool.join()?;
    Ok(())
}

fn starmap_items_report_progress_too() -> TestResult {
    let pool = Pool::new(2)?;
    let (seen, report) = recorder();
    let pairs: Vec<(u32, u32)> = (0..50).map(|i| (i, 100)).collect();
    let got = pool.map_with_progress(add, pairs, report)?;
    check_eq!(got[49], 149);
    check_reports(&seen.lock().unwrap(), 50, true)?;
    pool.close();
    pool.join()?;
    Ok(())
}

fn imap_reports_progress_and_a_total_only_when_known() -> TestResult {
    let pool = Pool::new(2)?;
    let (seen, report) = recorder();
    let mut results = pool.imap(triple, 0..100u32, 7).with_progress(report);
    let got: Vec<u32> = results.by_ref().map(Result::unwrap).collect();
    check_eq!(got.len(), 100);
    check_eq!(results.progress().done, 100);
    check_eq!(results.progress().total, Some(100));
    check_reports(&seen.lock().unwrap(), 100, true)?;

    // An input that cannot say its length: progress without a total.
    let (seen, report) = recorder();
    let unknown = (0..1000u32).filter(|x| x % 10 == 0);
    let mut results = pool
        .imap_unordered(triple, unknown, 3)
        .with_progress(report);
    let got = results.by_ref().count();
    check_eq!(got, 100);
    check_eq!(results.progress().total, None);
    check_eq!(results.progress().fraction(), None);
    check_reports(&seen.lock().unwrap(), 100, false)?;
    pool.close();
    pool.join()?;
    Ok(())
}

fn an_empty_map_reports_nothing_and_returns_nothing() -> TestResult {
    let pool = Pool::new(1)?;
    let (seen, report) = recorder();
    let got = pool.map_with_progress(triple, Vec::<u32>::new(), report)?;
    check!(got.is_empty(), "{got:?}");
    check!(
        seen.lock().unwrap().is_empty(),
        "{:?}",
        seen.lock().unwrap()
    );
    pool.close();
    pool.join()?;
    Ok(())
}

fn main() {
    common::run(vec![
        trial(
            "map_reports_progress_up_to_its_total",
            map_reports_progress_up_to_its_total,
        ),
        trial(
            "starmap_items_report_progress_too",
            starmap_items_report_progress_too,
        ),
        trial(
            "imap_reports_progress_and_a_total_only_when_known",
            imap_reports_progress_and_a_total_only_when_known,
        ),
        trial(
            "an_empty_map_reports_nothing_and_returns_nothing",
            an_empty_map_reports_nothing_and_returns_nothing,
        ),
    ]);
}
