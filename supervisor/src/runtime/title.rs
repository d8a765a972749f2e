//! A process's name where operators look: its thread name (`/proc/PID/comm`, what
//! `top` and the OOM killer's log show) and its command line (`ps`, `pgrep -f`).
//!
//! A child's command line reads `prog: Process-1:2`. A spawned child is started with
//! that `argv[0]` and nothing else; a child forked by the forkserver inherits the
//! forkserver's argument area, which the forkserver is started with room in (an
//! argument of [`ROOM`] spaces), and writes its title over it. The title never runs
//! past the argument area into the environment block that follows it: the kernel
//! shows that block as `/proc/PID/environ`, and C's `environ` points into it, so it is
//! left as the process started with it. A title longer than the area is cut.
#![allow(unsafe_code)]

use std::ffi::{CString, OsString};
use std::sync::OnceLock;

/// The longest thread name the kernel keeps (`TASK_COMM_LEN` less its NUL).
pub(crate) const COMM_LEN: usize = 15;

/// Bytes of argument area the forkserver is started with beyond its own title, so
/// that a forked child's title fits.
pub(crate) const ROOM: usize = 128;

/// The program's name, as a title starts with it: the executable's file name.
///
/// Every process of a tree runs the same executable, so this is the same in all of
/// them, whatever they have done to their `argv`.
pub(crate) fn program() -> &'static str {
    static PROGRAM: OnceLock<String> = OnceLock::new();
    PROGRAM.get_or_init(|| {
        let exe = std::fs::read_link("/proc/self/exe")
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            // A program replaced on disk while it runs reads "prog (deleted)".
            .map(|n| n.trim_end_matches(" (deleted)").to_owned());
        exe.or_else(|| {
            std::env::args_os().next().and_then(|a| {
                std::path::Path::new(&a)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
        })
        .unwrap_or_else(|| "multiproc".to_owned())
    })
}

/// The command line of the process named `name`: `prog: name`.
pub(crate) fn title(name: &str) -> String {
    format!("{}: {name}", program())
}

/// `argv[0]` for a spawned child named `name`.
pub(crate) fn arg0(name: &str) -> OsString {
    OsString::from(title(name))
}

/// The argument after `argv[0]` that gives the forkserver's forked children room for
/// their titles.
pub(crate) fn room() -> String {
    " ".repeat(ROOM)
}

/// As much of `name` as the kernel keeps as a thread name, cut on a character
/// boundary, without NULs.
pub(crate) fn comm(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars().filter(|&c| c != '\0') {
        if out.len() + c.len_utf8() > COMM_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// Names this process `name`: its calling thread's name (threads started after this
/// inherit it) and its command line. Called by a child on its main thread before it
/// starts any other thread.
pub(crate) fn set(name: &str) {
    if let Ok(comm) = CString::new(comm(name)) {
        let _ = rustix::thread::set_name(&comm);
    }
    if let Some((start, end)) = arg_area() {
        write_args(start, end, title(name).as_bytes());
    }
}

/// Where this process's argument strings lie, `[start, end)`: fields 48 and 49 of
/// `/proc/self/stat`.
fn arg_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses; field 3 follows
    // the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(48 - 3);
    let start: usize = fields.next()?.parse().ok()?;
    let end: usize = fields.next()?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

/// Writes `title` at the start of the argument area and NULs over the rest, ending
/// with one: the kernel then shows the area as it is, `title` and empty arguments.
fn write_args(start: usize, end: usize, title: &[u8]) {
    let len = end - start;
    let n = title.len().min(len - 1);
    // SAFETY: `[start, end)` is this process's argument area as the kernel reports
    // it: mapped and writable (the top of the initial stack) for the whole life of the
    // process, and owned by no Rust value. std's `args()` reads the strings through
    // `argv` when called, and sees the new ones; no other thread runs yet (see `set`).
    unsafe {
        let area = start as *mut u8;
        std::ptr::copy_nonoverlapping(title.as_ptr(), area, n);
        std::ptr::write_bytes(area.add(n), 0, len - n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comm_keeps_what_fits_and_cuts_on_a_character_boundary() {
        let cases = [
            ("Process-1:2", "Process-1:2"),
            ("PoolWorker-12:345", "PoolWorker-12:3"),
            ("forkserver", "forkserver"),
            ("ééééééééé", "ééééééé"),
            ("a\0b", "ab"),
            ("", ""),
        ];
        for (name, want) in cases {
            assert_eq!(comm(name), want, "comm of {name:?}");
            assert!(comm(name).len() <= COMM_LEN);
        }
    }

    #[test]
    fn title_leads_with_the_program() {
        let t = title("Process-1");
        assert!(t.ends_with(": Process-1"), "{t}");
        assert!(!program().is_empty());
        assert!(!program().contains('/'));
    }
}
