//! What the container process is: its argv, environment and working directory, worked out
//! from the image config and the command line with Docker's rules. Pure functions, so that
//! every rule is unit-tested without namespaces.

use globset::Glob;

use crate::error::{Error, Result};

/// ch-image's default when the image sets no PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Host variables that describe the user's session rather than the host's software, so they
/// make sense inside any image; everything else of the host stays outside.
pub const PASS_THROUGH: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "TERM",
    "COLORTERM",
    "LANG",
    "TZ",
    "DISPLAY",
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
];

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
}

impl ImageDefaults {
    pub fn from_config(config: &oci_spec::image::ImageConfiguration) -> ImageDefaults {
        let Some(c) = config.config() else {
            return ImageDefaults::default();
        };
        ImageDefaults {
            env: c.env().clone().unwrap_or_default(),
            entrypoint: c.entrypoint().clone().unwrap_or_default(),
            cmd: c.cmd().clone().unwrap_or_default(),
            working_dir: c.working_dir().clone().filter(|w| !w.is_empty()),
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct UserChoices {
    /// Arguments after `--`; they replace the image's Cmd (Docker's rule), not its Entrypoint.
    pub command: Vec<String>,
    /// `--set-env K=V` in order; a later setting wins.
    pub set_env: Vec<(String, String)>,
    /// `--unset-env GLOB`: removes matching variables after everything else.
    pub unset_env: Vec<String>,
    /// `--cd DIR`.
    pub cwd: Option<String>,
    /// The host environment to take the pass-through variables from.
    pub host_env: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
}

pub fn process_spec(image: &ImageDefaults, user: &UserChoices) -> Result<ProcessSpec> {
    let mut argv = image.entrypoint.clone();
    if user.command.is_empty() {
        argv.extend(image.cmd.iter().cloned());
    } else {
        argv.extend(user.command.iter().cloned());
    }
    if argv.is_empty() {
        return Err(Error::invalid(
            "lade run",
            "no command given and the image has neither Entrypoint nor Cmd; add -- COMMAND",
        ));
    }

    let mut env: Vec<(String, String)> = Vec::new();
    fn set(env: &mut Vec<(String, String)>, k: &str, v: &str) {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    for (k, v) in &user.host_env {
        if PASS_THROUGH.contains(&k.as_str()) {
            set(&mut env, k, v);
        }
    }
    for item in &image.env {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => set(&mut env, k, v),
            _ => {} // Docker ignores malformed entries the same way.
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        set(&mut env, "PATH", DEFAULT_PATH);
    }
    for (k, v) in &user.set_env {
        set(&mut env, k, v);
    }
    for pattern in &user.unset_env {
        let glob = Glob::new(pattern)
            .map_err(|e| Error::invalid(format!("--unset-env '{pattern}'"), e.to_string()))?
            .compile_matcher();
        env.retain(|(k, _)| !glob.is_match(k));
    }

    let cwd = user
        .cwd
        .clone()
        .or_else(|| image.working_dir.clone())
        .unwrap_or_else(|| "/".to_string());
    Ok(ProcessSpec { argv, env, cwd })
}

/// Parses `--set-env` arguments: `K=V`, or a file of `K=V` lines (blank lines and `#`
/// comments skipped; values taken literally, as ch-run does).
pub fn parse_set_env(arg: &str) -> Result<Vec<(String, String)>> {
    if let Some((k, v)) = arg.split_once('=')
        && !k.is_empty()
        && !k.contains('/')
    {
        return Ok(vec![(k.to_string(), v.to_string())]);
    }
    let text = std::fs::read_to_string(arg).map_err(|e| {
        Error::io(
            format!("--set-env {arg} (neither K=V nor a readable file)"),
            e,
        )
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
            _ => {
                return Err(Error::invalid(
                    format!("--set-env file {arg}, line {}", n + 1),
                    "expected KEY=VALUE",
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    fn img(ep: &[&str], cmd: &[&str]) -> ImageDefaults {
        ImageDefaults {
            env: vec!["A=1".into(), "PATH=/img/bin".into()],
            entrypoint: ep.iter().map(|s| s.to_string()).collect(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            working_dir: Some("/work".into()),
        }
    }

    /// The choices of `lade run IMAGE -- CMD...` with no option (also for [`super::apptainer`]).
    pub(in crate::run) fn user(cmd: &[&str]) -> UserChoices {
        UserChoices {
            command: cmd.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn entrypoint_and_cmd_combine_as_docker() {
        let spec = |i: &ImageDefaults, u: &UserChoices| process_spec(i, u).map(|s| s.argv);
        assert_eq!(spec(&img(&[], &["sh"]), &user(&[])).unwrap(), ["sh"]);
        assert_eq!(spec(&img(&[], &["sh"]), &user(&["ls"])).unwrap(), ["ls"]);
        assert_eq!(
            spec(&img(&["ep"], &["x"]), &user(&[])).unwrap(),
            ["ep", "x"]
        );
        assert_eq!(
            spec(&img(&["ep"], &["x"]), &user(&["y"])).unwrap(),
            ["ep", "y"]
        );
        assert!(spec(&img(&[], &[]), &user(&[])).is_err());
    }

    #[test]
    fn environment_layers() {
        let mut u = user(&["true"]);
        u.host_env = vec![
            ("HOME".into(), "/home/me".into()),
            ("LD_PRELOAD".into(), "evil.so".into()),
            ("PATH".into(), "/host/bin".into()),
        ];
        u.set_env = vec![("A".into(), "2".into()), ("B".into(), "3".into())];
        u.unset_env = vec!["B*".into()];
        let s = process_spec(&img(&[], &[]), &u).unwrap();
        let get = |k: &str| s.env.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HOME"), Some("/home/me"));
        assert_eq!(get("LD_PRELOAD"), None);
        assert_eq!(get("PATH"), Some("/img/bin"));
        assert_eq!(get("A"), Some("2"));
        assert_eq!(get("B"), None);
        assert_eq!(s.cwd, "/work");
    }

    #[test]
    fn default_path_when_image_has_none() {
        let mut i = img(&[], &["sh"]);
        i.env.clear();
        let s = process_spec(&i, &user(&[])).unwrap();
        assert!(
            s.env
                .contains(&("PATH".to_string(), DEFAULT_PATH.to_string()))
        );
    }

    #[test]
    fn set_env_forms() {
        assert_eq!(
            parse_set_env("K=v=w").unwrap(),
            [("K".to_string(), "v=w".to_string())]
        );
        assert!(parse_set_env("/nonexistent/file").is_err());
    }
}
