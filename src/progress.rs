//! Progress reporting: bars on a terminal, plain lines when piped, silence at `-q`.
//!
//! Everything goes to standard error, so that standard output carries only results.

use std::io::{IsTerminal, Read, Write};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    verbosity: i8,
    multi: Option<MultiProgress>,
}

impl Progress {
    /// `verbosity`: -1 quiet, 0 normal, 1+ chatty.
    pub fn new(verbosity: i8) -> Progress {
        let multi = (verbosity >= 0 && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { verbosity, multi }
    }

    /// No output at all (library use, tests).
    pub fn silent() -> Progress {
        Progress {
            verbosity: -1,
            multi: None,
        }
    }

    pub fn verbosity(&self) -> i8 {
        self.verbosity
    }

    /// A line shown in normal mode.
    pub fn info(&self, msg: &str) {
        if self.verbosity >= 0 {
            self.println(msg);
        }
    }

    /// A line shown with `-v`.
    pub fn note(&self, msg: &str) {
        if self.verbosity >= 1 {
            self.println(msg);
        }
    }

    /// A warning, always shown (but for `-q`).
    pub fn warn(&self, msg: &str) {
        if self.verbosity >= 0 {
            self.println(&format!("warning: {msg}"));
        }
    }

    /// A line of the command's result, on standard output and at every verbosity (`-q` quiets
    /// progress, not results): `lade build`'s step lines, for one, which scripts read. Bars
    /// on the terminal are set aside while it is written.
    pub fn result(&self, line: &str) {
        let write = || {
            let mut out = std::io::stdout().lock();
            // A closed standard output (`| head`) is the reader's choice, not lade's failure.
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        };
        match &self.multi {
            Some(m) => m.suspend(write),
            None => write(),
        }
    }

    fn println(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }

    /// A byte-counting task (a blob copy, a layer unpack).
    pub fn bytes(&self, label: &str, total: Option<u64>) -> Task {
        let bar = self.multi.as_ref().map(|m| {
            let bar = match total {
                Some(t) => ProgressBar::new(t),
                None => ProgressBar::new_spinner(),
            };
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:24} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(label.to_string());
            m.add(bar)
        });
        Task {
            bar,
            label: label.to_string(),
            progress: self.clone(),
        }
    }
}

pub struct Task {
    bar: Option<ProgressBar>,
    label: String,
    progress: Progress,
}

impl Task {
    pub fn inc(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    pub fn wrap_read<R: Read>(&self, inner: R) -> CountingReader<'_, R> {
        CountingReader { inner, task: self }
    }

    pub fn finish(&self, outcome: &str) {
        match &self.bar {
            Some(b) => {
                b.finish_and_clear();
                self.progress.note(&format!("{}: {outcome}", self.label));
            }
            None => self.progress.note(&format!("{}: {outcome}", self.label)),
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub struct CountingReader<'a, R> {
    inner: R,
    task: &'a Task,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.task.inc(n as u64);
        Ok(n)
    }
}
