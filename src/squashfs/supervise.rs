//! The container as lade's child, for images served by FUSE: lade must outlive the container
//! as the FUSE server's parent, and end the server the moment the container ends.
//!
//! A stored image needs no supervisor (lade replaces itself with the command). A file does:
//! its server is a process, and if the command itself were the server's parent, a program
//! that reaps every child (an init such as `tini`, a shell's bare `wait`) would wait for the
//! server forever. So, like ch-run, lade forks: the child goes on to become the container,
//! the parent waits for it, then leaves with the container's status (its exit code, or the
//! same signal, re-raised), and the server dies with it.
//!
//! Lifetimes: both children have `PR_SET_PDEATHSIG = SIGKILL`, so `kill -9` of lade takes the
//! container and the server with it, and the FUSE mount, which exists only in the private
//! mount namespace they share, goes with the last of them. Signals sent to lade by `kill`
//! (a batch system's SIGTERM, SIGHUP, SIGUSR1/2, a SIGINT from a script) are passed on to
//! the container; the terminal's Ctrl-C and Ctrl-\ already reach the container directly, as
//! it is in lade's foreground process group, so they are not sent twice (the kernel marks
//! them `SI_KERNEL`). The server is in a process group of its own and never sees them.

use std::process::Child;
use std::sync::atomic::{AtomicI32, Ordering};

use super::serve::Served;
use crate::error::{Error, Result};

/// Signals passed on to the container.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGTERM,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The container's process ID, for the signal handler (0 until it exists).
static CONTAINER: AtomicI32 = AtomicI32::new(0);

/// Forks. Returns in the child, which goes on to become the container. The parent never
/// returns: it waits for the container, stops the server and exits as the container did.
/// Must be called while lade has a single thread.
pub fn fork_container(served: &mut Served) -> Result<()> {
    let Some(server) = served.take_server() else {
        return Ok(());
    };
    let file = served.file().display().to_string();
    let blocked = signal_set(&FORWARDED);
    let mut previous = empty_set();
    // SAFETY: sigprocmask and fork on a single-threaded process; the child only resets
    // signal state before returning to ordinary Rust code, which is then safe to run as the
    // process has one thread.
    unsafe {
        libc::sigprocmask(libc::SIG_BLOCK, &blocked, &mut previous);
        let parent = libc::getpid();
        match libc::fork() {
            -1 => {
                let e = std::io::Error::last_os_error();
                libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
                let mut server = server;
                let _ = server.kill();
                let _ = server.wait();
                Err(Error::io("starting the container (fork)", e))
            }
            0 => {
                // The server's handle stays with the parent; dropping it here does nothing.
                std::mem::forget(server);
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
                    libc::_exit(1);
                }
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
                Ok(())
            }
            container => {
                CONTAINER.store(container, Ordering::SeqCst);
                for sig in FORWARDED {
                    install_forwarder(sig);
                }
                libc::sigprocmask(libc::SIG_SETMASK, &previous, std::ptr::null_mut());
                supervise(container, server, &file)
            }
        }
    }
}

/// The parent's whole remaining life.
fn supervise(container: libc::pid_t, server: Child, file: &str) -> ! {
    let server_pid = server.id() as libc::pid_t;
    let mut server_alive = true;
    let status = loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == container {
            break status;
        }
        if pid == server_pid {
            // The image vanished under the container: every file access would now fail.
            server_alive = false;
            eprintln!(
                "lade: error: {file}: the SquashFS server (squashfuse) stopped while the \
                 container ran; stopping the container"
            );
            // SAFETY: kill of our own child.
            unsafe { libc::kill(container, libc::SIGKILL) };
            continue;
        }
        if pid == -1 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("lade: error: waiting for the container: {e}");
            std::process::exit(1);
        }
    };
    if !server_alive {
        std::process::exit(1);
    }
    // The server dies of lade's own exit (its `PR_SET_PDEATHSIG`), not of a kill sent
    // first: the kernel sends that signal only after lade has let go of the mount
    // namespace, so the server is always the last to hold it and tearing the mounts down
    // (about 2 ms, RCU grace periods included) happens after lade's parent has its status,
    // off the critical path of every run. A kill sent here raced lade's exit for it. Its
    // zombie goes to whoever reaps orphans.
    drop(server);
    exit_as(status)
}

/// Leaves with the container's exit code, or dies of its signal (without a core file of
/// lade's own).
fn exit_as(status: libc::c_int) -> ! {
    if libc::WIFEXITED(status) {
        std::process::exit(libc::WEXITSTATUS(status));
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        // SAFETY: resetting a signal to its default and raising it on ourselves.
        unsafe {
            let no_core = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::signal(sig, libc::SIG_DFL);
            let only = signal_set(&[sig]);
            libc::sigprocmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
            libc::raise(sig);
        }
        std::process::exit(128 + sig);
    }
    std::process::exit(1)
}

extern "C" fn forward(sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    let container = CONTAINER.load(Ordering::SeqCst);
    if container <= 0 {
        return;
    }
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let from_terminal = !info.is_null() && unsafe { (*info).si_code } == libc::SI_KERNEL;
    if !from_terminal {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(container, sig) };
    }
}

/// # Safety
/// Installs a process-wide signal handler.
unsafe fn install_forwarder(sig: libc::c_int) {
    // SAFETY: a zeroed sigaction is a valid starting point; the handler is async-signal-safe.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = forward as *const () as libc::sighandler_t;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(sig, &action, std::ptr::null_mut());
    }
}

fn empty_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        set
    }
}

fn signal_set(signals: &[libc::c_int]) -> libc::sigset_t {
    let mut set = empty_set();
    for &s in signals {
        // SAFETY: adding a valid signal number to an initialised set.
        unsafe { libc::sigaddset(&mut set, s) };
    }
    set
}
