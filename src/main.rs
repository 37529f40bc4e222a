//! The `lade` command: argument parsing and output only; the work is in the library. Each
//! command is a small module under [`cli`].
//!
//! The process starts at the C `main` below, not at Rust's `fn main`: `lade run` is a
//! start-up path measured against ch-run (a small C program), and Rust's own start-up
//! installs a stack-overflow handler whose set-up reads and parses all of /proc/self/maps
//! (glibc's `pthread_getattr_np`) and maps an alternate signal stack: ~0.1 ms of a ~2.5 ms
//! container start on the benchmark machine. What else that start-up does is kept
//! ([`rust_runtime_basics`]); the one loss is the message of a stack overflow, which is a
//! plain `SIGSEGV` instead. (Unit-test builds keep Rust's entry, for the test harness.)
#![cfg_attr(not(test), no_main)]

mod cli;
mod no_libm;

use std::process::ExitCode;

use clap::{Args, Parser};

use cli::{Cli, Command, Global, one_line, run::RunArgs};
use lade::progress::Progress;

/// The process's entry (see the module comment): Rust's start-up basics, the command, then
/// `exit`, which flushes standard output as returning from Rust's `fn main` does.
#[cfg_attr(not(test), unsafe(no_mangle))]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    rust_runtime_basics();
    // A panic must not unwind out of this C function; the hook has printed it already, and
    // 101 is the status Rust gives a panicking `fn main`.
    let status = match std::panic::catch_unwind(lade_main) {
        Ok(code) => exit_status(code),
        Err(_) => 101,
    };
    std::process::exit(status)
}

/// What Rust's start-up does before `fn main` and lade relies on: the standard descriptors
/// 0-2 open (on `/dev/null` if closed, so that a file lade opens never becomes its standard
/// output), and `SIGPIPE` ignored (see [`quiet_on_closed_stdout`]; child processes get the
/// default back, as `std::process::Command` restores it before `exec`).
fn rust_runtime_basics() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd for the call; `open` gets a
    // NUL-terminated path; `signal` sets a standard disposition.
    unsafe {
        if libc::poll(fds.as_mut_ptr(), 3, 0) >= 0 {
            for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
                // Descriptors are allocated lowest first: this fills the closed one.
                if libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) != p.fd {
                    libc::abort();
                }
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The exit status an [`ExitCode`] stands for (it has no stable accessor; on Unix every one
/// is `ExitCode::from` a byte).
fn exit_status(code: ExitCode) -> libc::c_int {
    (0..=u8::MAX)
        .find(|&n| ExitCode::from(n) == code)
        .map_or(1, libc::c_int::from)
}

fn lade_main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = parse_run_quickly().unwrap_or_else(|| Cli::try_parse().unwrap_or_else(usage_error));
    let progress = Progress::new(if cli.global.quiet {
        -1
    } else {
        cli.global.verbose.min(3) as i8
    });
    match cli::run(cli, &progress) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("lade: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// Output into a closed pipe (`lade list | head -1`) ends lade quietly, as it ends other
/// command-line tools: by `SIGPIPE`, exit status 141 in a shell.
///
/// Rust ignores `SIGPIPE`, so a write to a closed pipe fails with `EPIPE` and `println!` panics
/// on it. Restoring the signal's default for the whole process would also kill lade when it
/// feeds a `RUN` step's standard input that the step does not read, so instead the panic of a
/// print to a closed pipe is recognised (one place for every print of every command) and turned
/// into that same quiet death; any other panic is reported as before.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            // SAFETY: restoring a signal's default disposition and raising it; nothing else runs.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
                libc::raise(libc::SIGPIPE);
            }
        }
        default(info);
    }));
}

/// A command line clap refuses: its message, and for `lade run IMAGE CMD…` (the command not
/// after `--`) how to write it.
fn usage_error(e: clap::Error) -> Cli {
    use clap::error::{ContextKind, ErrorKind};
    let in_run = std::env::args().skip(1).any(|a| a == "run");
    if e.kind() == ErrorKind::UnknownArgument && in_run {
        let arg = e
            .get(ContextKind::InvalidArg)
            .map(|v| v.to_string())
            .unwrap_or_default();
        let _ = e.print();
        eprintln!(
            "hint: the command to run goes after '--': lade run [OPTIONS] IMAGE -- {arg} [ARGS...]"
        );
        std::process::exit(e.exit_code());
    }
    e.exit()
}

/// `lade run` is a start-up path (a container's whole cost can be a few milliseconds), and
/// building clap's tree of every subcommand was a measurable share of it. So `run` is first
/// parsed with a command that knows only the global options and `run`; anything else, and any
/// error, help or version request, falls through to the full parser, which owns every message.
/// Even that small parser cost ~0.15 ms of first-touched code, so the plainest form, `lade run
/// IMAGE [-- COMMAND...]`, is read by hand first ([`parse_plain_run`]).
fn parse_run_quickly() -> Option<Cli> {
    use clap::FromArgMatches;
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Cheap pre-check: without a literal `run` argument this cannot be a run.
    if !args.iter().skip(1).any(|a| a == "run") {
        return None;
    }
    if let Some(cli) = parse_plain_run(&args) {
        return Some(cli);
    }
    let run = RunArgs::augment_args(clap::Command::new("run"));
    let lade = Global::augment_args(clap::Command::new("lade"))
        .subcommand(run)
        .disable_help_flag(true)
        .disable_version_flag(true);
    let matches = lade.try_get_matches_from(&args).ok()?;
    let (name, sub) = matches.subcommand()?;
    if name != "run" {
        return None;
    }
    Some(Cli {
        global: Global::from_arg_matches(&matches).ok()?,
        command: Command::Run(RunArgs::from_arg_matches(sub).ok()?),
    })
}

/// `lade run IMAGE` or `lade run IMAGE -- COMMAND...`, with no option anywhere and no
/// environment variable that sets a global option: every other argument is clap's default, as
/// the test below checks against clap itself. Anything else is `None`, for clap.
fn parse_plain_run(args: &[std::ffi::OsString]) -> Option<Cli> {
    if Global::ENV_VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some())
    {
        return None;
    }
    let args: Vec<&str> = args.iter().map(|a| a.to_str()).collect::<Option<_>>()?;
    let (image, command) = match args.as_slice() {
        [_, "run", image] => (image, &[][..]),
        [_, "run", image, "--", command @ ..] => (image, command),
        _ => return None,
    };
    if image.is_empty() || image.starts_with('-') {
        return None;
    }
    Some(Cli {
        global: Global::default(),
        command: Command::Run(RunArgs::plain(image, command)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What clap makes of `args`, with the run parser's own command.
    fn by_clap(args: &[&str]) -> (Global, RunArgs) {
        let cli = Cli::try_parse_from(args).unwrap();
        match cli.command {
            Command::Run(run) => (cli.global, run),
            _ => panic!("not a run: {args:?}"),
        }
    }

    #[test]
    fn the_plain_run_form_reads_as_clap_reads_it() {
        if Global::ENV_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some())
        {
            return; // The plain form steps aside then; nothing to compare.
        }
        for args in [
            &["lade", "run", "img"][..],
            &["lade", "run", "img", "--"],
            &[
                "lade",
                "run",
                "docker://x/y:1",
                "--",
                "/bin/sh",
                "-c",
                "echo --",
            ],
            &["lade", "run", "./dir", "--", "run", "--", "-q"],
        ] {
            let os: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            let plain = parse_plain_run(&os).expect("the plain form");
            let Command::Run(run) = plain.command else {
                panic!("not a run")
            };
            assert_eq!((plain.global, run), by_clap(args), "{args:?}");
        }
    }

    #[test]
    fn every_variable_that_sets_an_option_of_run_is_known() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let run = cli.find_subcommand("run").expect("run");
        for arg in cli.get_arguments().chain(run.get_arguments()) {
            if let Some(var) = arg.get_env() {
                assert!(
                    Global::ENV_VARS.iter().any(|v| var == *v),
                    "{var:?} sets --{}: add it to Global::ENV_VARS",
                    arg.get_id()
                );
            }
        }
    }

    #[test]
    fn anything_else_is_left_to_clap() {
        for args in [
            &["lade", "run"][..],
            &["lade", "run", "-q", "img"],
            &["lade", "-q", "run", "img"],
            &["lade", "run", "img", "-q"],
            &["lade", "run", "img", "true"],
            &["lade", "run", "--help"],
            &["lade", "run", "-", "--", "x"],
            &["lade", "run", ""],
            &["lade", "pull", "img"],
        ] {
            let os: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            assert!(parse_plain_run(&os).is_none(), "{args:?}");
        }
    }
}
