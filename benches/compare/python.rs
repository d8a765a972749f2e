//! The Python references: the interpreter, and the scripts of benches/python run with
//! `--serve`, which answer each `rep` line with a result in plain lines (no JSON):
//! zero or more `NAME V1 V2 ...` lines, ended by `samples UNIT V1 V2 ...`.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use crate::Res;

/// The interpreter behind `python3`, called directly (pyenv's shim costs ~50 ms).
pub(crate) struct Python {
    exe: PathBuf,
    pub(crate) version: String,
    scripts: PathBuf,
}

impl Python {
    pub(crate) fn detect() -> Option<Python> {
        let out = Command::new("python3")
            .args([
                "-c",
                "import sys; print(sys.executable); print(sys.version.split()[0])",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let mut lines = text.lines();
        let (exe, version) = (lines.next()?, lines.next()?);
        (out.status.success() && !exe.is_empty()).then(|| Python {
            exe: exe.into(),
            version: format!("{exe} {version}"),
            scripts: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/python"),
        })
    }

    fn command(&self, script: &str, args: &[&str], env: &[(&str, usize)]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.arg(self.scripts.join(script))
            .args(args)
            .current_dir(&self.scripts);
        for (k, v) in env {
            cmd.env(k, v.to_string());
        }
        cmd
    }

    /// Starts `script --serve` and waits until it has set up and warmed up.
    pub(crate) fn serve(
        &self,
        script: &str,
        args: &[&str],
        env: &[(&str, usize)],
    ) -> Res<PyServer> {
        let mut child = self
            .command(script, args, env)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut server = PyServer {
            child,
            stdin: Some(stdin),
            stdout,
            what: format!("{script} {}", args.join(" ")),
        };
        match server.line()?.as_deref().map(str::trim) {
            Some("ready") => Ok(server),
            other => Err(format!("python {script} did not say it was ready: {other:?}").into()),
        }
    }

    /// Runs `script` once and reads its one result.
    pub(crate) fn once(&self, script: &str, args: &[&str], env: &[(&str, usize)]) -> Res<PyReply> {
        let out = self
            .command(script, args, env)
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(format!("{script} failed: {}", out.status).into());
        }
        let text = String::from_utf8(out.stdout)?;
        let mut lines = text.lines().map(str::to_string);
        PyReply::read(script, &mut || Ok(lines.next()))
    }
}

/// A reference script run with `--serve`: one `rep` line in, one result out.
pub(crate) struct PyServer {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    what: String,
}

impl PyServer {
    /// The next line of output, without its end; `None` at the end of the output.
    fn line(&mut self) -> Res<Option<String>> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim_end().to_string()))
    }

    /// The script's process and its descendants (a manager's server, say).
    pub(crate) fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.child.id()];
        let mut at = 0;
        while at < pids.len() {
            let pid = pids[at];
            at += 1;
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            for task in tasks.flatten() {
                let children = std::fs::read_to_string(task.path().join("children"));
                pids.extend(
                    children
                        .unwrap_or_default()
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
        pids
    }

    pub(crate) fn rep(&mut self) -> Res<PyReply> {
        let stdin = self.stdin.as_mut().ok_or("stdin closed")?;
        stdin.write_all(b"rep\n")?;
        stdin.flush()?;
        let what = self.what.clone();
        PyReply::read(&what, &mut || self.line())
    }

    pub(crate) fn finish(mut self) -> Res {
        drop(self.stdin.take());
        let status = self.child.wait()?;
        if !status.success() {
            return Err(format!("python {} failed: {status}", self.what).into());
        }
        Ok(())
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        // End of input makes the script clean up its children and exit.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// One result of a reference script (benches/python/common.py): zero or more
/// `NAME V1 V2 ...` lines of extra series, ended by one `samples UNIT V1 V2 ...` line.
#[derive(Debug, Default)]
pub(crate) struct PyReply {
    pub(crate) samples: Vec<f64>,
    series: Vec<(String, Vec<f64>)>,
}

impl PyReply {
    /// Reads one result from `lines` (each without its end); `what` names the script.
    fn read(what: &str, lines: &mut dyn FnMut() -> Res<Option<String>>) -> Res<PyReply> {
        let mut reply = PyReply::default();
        loop {
            let line = lines()?.ok_or_else(|| format!("python {what} ended early"))?;
            let mut words = line.split_whitespace();
            match words.next() {
                Some("error") => {
                    let why = line.trim_start().trim_start_matches("error").trim();
                    return Err(format!("python {what}: {why}").into());
                }
                Some("samples") => {
                    words
                        .next()
                        .ok_or_else(|| format!("python {what}: no unit in {line:?}"))?;
                    reply.samples = numbers(what, words)?;
                    return Ok(reply);
                }
                Some(name) => reply.series.push((name.to_string(), numbers(what, words)?)),
                None => return Err(format!("python {what}: an empty line").into()),
            }
        }
    }

    /// The values of the series `name`.
    pub(crate) fn series(&self, name: &str) -> Res<Vec<f64>> {
        self.series
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| format!("no {name:?} in a python result").into())
    }

    /// The one value of the series `name`.
    pub(crate) fn number(&self, name: &str) -> Res<f64> {
        match self.series(name)?.as_slice() {
            &[v] => Ok(v),
            other => Err(format!("{name:?} is not one number: {other:?}").into()),
        }
    }

    /// The one sample.
    pub(crate) fn sample(&self) -> Res<f64> {
        match self.samples.as_slice() {
            &[v] => Ok(v),
            other => Err(format!("not one sample: {other:?}").into()),
        }
    }
}

/// The numbers of a result line, as Python's `str` writes them.
fn numbers<'a>(what: &str, words: impl Iterator<Item = &'a str>) -> Res<Vec<f64>> {
    words
        .map(|w| {
            w.parse()
                .map_err(|_| format!("python {what}: {w:?} is not a number").into())
        })
        .collect()
}
