//! The instructions that only change the image config (ENV, LABEL, CMD, ENTRYPOINT, SHELL,
//! USER, EXPOSE, VOLUME, STOPSIGNAL, HEALTHCHECK, ONBUILD, MAINTAINER; WORKDIR's config half),
//! the config values other steps read (shell, working directory), and history entries.

use std::time::Duration;

use serde_json::Map;

use crate::builder::cache::State;
use crate::dockerfile::{Command, Healthcheck, Instruction};
use crate::image_config::{self, Field, History, ImageConfig, RootFs};
use crate::storage::LayerRef;

/// The config of `FROM scratch`: this host's platform, nothing else.
pub(super) fn scratch() -> ImageConfig {
    let mut config = ImageConfig::for_host(Vec::new(), false);
    config.rootfs.set(RootFs::layers(Vec::new()));
    config
}

/// Applies a config-only instruction to `config`; the others (ARG, WORKDIR, RUN, COPY, ADD)
/// are the driver's and leave it alone here. `entrypoint_resets_cmd`: an ENTRYPOINT before any
/// CMD of the stage clears the inherited CMD, as Docker does.
pub(super) fn apply(config: &mut ImageConfig, x: &Instruction, entrypoint_resets_cmd: bool) {
    let shell = shell(config);
    let command = |c: &Command| match c {
        Command::Exec(v) => v.clone(),
        Command::Shell(s) => {
            let mut v = shell.clone();
            v.push(s.clone());
            v
        }
    };
    match x {
        Instruction::Maintainer(m) => config.author.set(m.clone()),
        Instruction::Env(kvs) => {
            let env = config.container_mut().env.get_or_default();
            for kv in kvs {
                let prefix = format!("{}=", kv.key);
                env.retain(|e| !e.starts_with(&prefix) && e != &kv.key);
                env.push(format!("{}={}", kv.key, kv.value));
            }
        }
        Instruction::Label(kvs) => {
            let labels = config.container_mut().labels.get_or_default();
            for kv in kvs {
                labels.insert(kv.key.clone(), kv.value.clone());
            }
        }
        Instruction::Cmd(cmd) => config.container_mut().cmd.set(command(cmd)),
        Instruction::Entrypoint(cmd) => {
            let c = config.container_mut();
            c.entrypoint.set(command(cmd));
            if entrypoint_resets_cmd {
                c.cmd.clear();
            }
        }
        Instruction::Shell(v) => config.container_mut().shell.set(v.clone()),
        Instruction::User(u) => config.container_mut().user.set(u.clone()),
        Instruction::Expose(ports) => {
            let exposed = config.container_mut().exposed_ports.get_or_default();
            for p in ports {
                let p = if p.contains('/') {
                    p.to_ascii_lowercase()
                } else {
                    format!("{p}/tcp")
                };
                exposed.insert(p, Map::new());
            }
        }
        Instruction::Volume(vs) => {
            let volumes = config.container_mut().volumes.get_or_default();
            for v in vs {
                volumes.insert(v.clone(), Map::new());
            }
        }
        Instruction::StopSignal(s) => config.container_mut().stop_signal.set(s.clone()),
        Instruction::Healthcheck(h) => config.container_mut().healthcheck.set(healthcheck(h)),
        Instruction::Onbuild(o) => {
            let triggers = config.container_mut().on_build.get_or_default();
            triggers.push(o.expression.clone());
        }
        Instruction::Arg(_)
        | Instruction::Workdir(_)
        | Instruction::Run(_)
        | Instruction::Copy(_)
        | Instruction::Add(_) => {}
    }
}

/// Docker's form of a HEALTHCHECK: `Test` is `["NONE"]`, `["CMD", arg…]` or `["CMD-SHELL",
/// command]`; durations in nanoseconds.
fn healthcheck(h: &Healthcheck) -> image_config::Healthcheck {
    let Healthcheck::Check {
        command,
        interval,
        timeout,
        start_period,
        start_interval,
        retries,
    } = h
    else {
        return image_config::Healthcheck {
            test: Field::Set(vec!["NONE".into()]),
            ..Default::default()
        };
    };
    let test = match command {
        Command::Exec(v) => std::iter::once("CMD".to_string())
            .chain(v.iter().cloned())
            .collect(),
        Command::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
    };
    let nanos = |d: &Option<Duration>| match d {
        Some(d) => Field::Set(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        None => Field::Absent,
    };
    image_config::Healthcheck {
        test: Field::Set(test),
        interval: nanos(interval),
        timeout: nanos(timeout),
        start_period: nanos(start_period),
        start_interval: nanos(start_interval),
        retries: retries.map_or(Field::Absent, |r| Field::Set(i64::from(r))),
        other: Map::new(),
    }
}

/// The shell of shell-form commands: SHELL's, else `/bin/sh -c`.
pub(super) fn shell(config: &ImageConfig) -> Vec<String> {
    match config.container().and_then(|c| c.shell.get()) {
        Some(s) if !s.is_empty() => s.clone(),
        _ => vec!["/bin/sh".into(), "-c".into()],
    }
}

/// The working directory: WORKDIR's, else `/`.
pub(super) fn workdir(config: &ImageConfig) -> String {
    config
        .container()
        .and_then(|c| c.working_dir.get())
        .filter(|s| !s.is_empty())
        .map_or_else(|| "/".to_string(), String::clone)
}

/// The image's environment (`K=V`, in order).
pub(super) fn env(config: &ImageConfig) -> Vec<String> {
    config
        .container()
        .and_then(|c| c.env.get())
        .cloned()
        .unwrap_or_default()
}

/// Appends a history entry for a step (and its layer, if it made one), created at `created`
/// (RFC 3339: [`rfc3339`]).
pub(super) fn push_history(
    state: &mut State,
    created_by: &str,
    layer: Option<LayerRef>,
    created: String,
) {
    let entry = History::step(Some(created), created_by, layer.is_none());
    state.config.history.get_or_default().push(entry);
    if let Some(l) = layer {
        state.layers.push(l);
    }
}

/// Seconds since 1970 now.
pub(super) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` since 1970 as RFC 3339 in UTC, to the second (history entries and the image's
/// `created`).
pub(super) fn rfc3339(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
