//! `lade build --force[=fakeroot]`: ch-image's workarounds for package managers in a fully
//! unprivileged build.
//!
//! RUN sees only one uid and gid (0, the caller mapped), so package managers fail where they
//! chown files to other users or drop privileges (apt's sandbox user `_apt`). ch-image's
//! answer, followed here:
//!
//! 1. after FROM, find which distribution the image holds by matching one file against a
//!    pattern ([`detect`], first match wins, table [`CONFIGS`] from ch-image's `force.py`);
//! 2. before the first RUN whose words name one of the configuration's commands (`apt-get`,
//!    `dpkg`, `dnf`, …, matched as whole whitespace-separated words, as ch-image does), run
//!    the init steps: each has a side-effect-free check and a command run only when the check
//!    fails (Debian: turn off apt's sandbox user, install `fakeroot`);
//! 3. prefix those RUN commands with `fakeroot`, which fakes chown and friends.
//!
//! Without `--force`, a failed RUN that step 3 would have changed prints a hint suggesting it
//! (ch-image's "--force may fix it"), unless `--no-force-detect`.
//!
//! Differences from ch-image: a stage whose image matches no configuration gets a warning
//! rather than a fatal error, so that a multi-stage build ending in `FROM scratch` still
//! works; the Debian configuration matches any image with `/etc/debian_version` (every
//! Debian derivative has it) rather than version patterns in `/etc/os-release`.

/// One distribution's workarounds.
#[derive(Debug)]
pub struct Config {
    /// Short user-visible name, as ch-image's.
    pub tag: &'static str,
    pub name: &'static str,
    /// The file (absolute in the image) whose text [`Config::matches`] judges.
    file: &'static str,
    matches: fn(&str) -> bool,
    /// (check, command): the command runs only when the check exits non-zero.
    pub init: &'static [(&'static str, &'static str)],
    /// RUN words that mean the step needs the wrapper.
    cmds: &'static [&'static str],
    /// The wrapper prefixed to such steps.
    each: &'static [&'static str],
}

/// The number after `release ` in a `*-release` file.
fn release_major(text: &str) -> Option<u32> {
    let rest = &text[text.find("release ")? + "release ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `KEY=value` lines of an os-release file, quotes removed.
fn os_release(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// RHEL's EPEL holds fakeroot; EPEL is removed again when it was not there before, since
/// it can shadow base packages (ch-image's note).
const RHEL_INIT: &str = "set -e; \
    if ! grep -Eq '\\[epel\\]' /etc/yum.conf /etc/yum.repos.d/*; then \
    dnf install -y https://dl.fedoraproject.org/pub/epel/epel-release-latest-$(rpm -E %rhel).noarch.rpm; \
    dnf install -y fakeroot; dnf remove -y epel-release; \
    else dnf install -y fakeroot; fi";
const RHEL7_INIT: &str = "set -e; \
    if ! grep -Eq '\\[epel\\]' /etc/yum.conf /etc/yum.repos.d/*; then \
    yum install -y https://dl.fedoraproject.org/pub/epel/epel-release-latest-7.noarch.rpm; \
    yum install -y fakeroot; yum remove -y epel-release; \
    else yum install -y fakeroot; fi";
const HAS_FAKEROOT: &str = "command -v fakeroot > /dev/null";
const RPM_CMDS: &[&str] = &["dnf", "rpm", "yum"];
const FAKEROOT: &[&str] = &["fakeroot"];

/// ch-image's configurations, in its order (Fedora before RHEL 8+: Fedora has a
/// /etc/redhat-release too).
pub static CONFIGS: &[Config] = &[
    Config {
        tag: "fedora",
        name: "Fedora 24+",
        file: "/etc/fedora-release",
        matches: |t| release_major(t).is_some_and(|v| v >= 24),
        init: &[(HAS_FAKEROOT, "dnf install -y fakeroot")],
        cmds: RPM_CMDS,
        each: FAKEROOT,
    },
    Config {
        tag: "rhel7",
        name: "RHEL 7 and derivatives",
        file: "/etc/redhat-release",
        matches: |t| t.contains("release 7."),
        init: &[(HAS_FAKEROOT, RHEL7_INIT)],
        cmds: RPM_CMDS,
        each: FAKEROOT,
    },
    Config {
        tag: "rhel8",
        name: "RHEL 8+ and derivatives",
        file: "/etc/redhat-release",
        matches: |t| release_major(t).is_some_and(|v| v >= 8),
        init: &[(HAS_FAKEROOT, RHEL_INIT)],
        cmds: RPM_CMDS,
        each: FAKEROOT,
    },
    Config {
        tag: "debderiv",
        name: "Debian, Ubuntu, or other derivative",
        file: "/etc/debian_version",
        matches: |t| !t.trim().is_empty(),
        init: &[
            // apt drops privileges to `_apt` for downloads, which fails with one uid mapped;
            // with no `_apt` user it does not try.
            (
                "apt-config dump | grep -Fq 'APT::Sandbox::User \"root\"' || ! grep -Fq _apt /etc/passwd",
                "echo 'APT::Sandbox::User \"root\";' > /etc/apt/apt.conf.d/no-sandbox",
            ),
            // Base images ship without package indexes, hence the update.
            (
                HAS_FAKEROOT,
                "apt-get update && apt-get install -y fakeroot",
            ),
        ],
        cmds: &["apt", "apt-get", "dpkg"],
        each: FAKEROOT,
    },
    Config {
        tag: "suse",
        name: "(Open)SUSE 42.2+",
        file: "/etc/os-release",
        matches: |t| os_release(t, "ID_LIKE").is_some_and(|v| v.contains("suse")),
        // fakeroot's script needs getopt, which its package does not pull in.
        init: &[(
            HAS_FAKEROOT,
            "zypper refresh; zypper install -y fakeroot /usr/bin/getopt",
        )],
        cmds: &["zypper", "rpm"],
        each: FAKEROOT,
    },
    Config {
        tag: "arch",
        name: "Arch Linux",
        file: "/etc/os-release",
        matches: |t| os_release(t, "ID").as_deref() == Some("arch"),
        init: &[(HAS_FAKEROOT, "pacman -Syq --noconfirm fakeroot")],
        cmds: &["pacman"],
        each: FAKEROOT,
    },
    Config {
        tag: "alpine",
        name: "Alpine, any version",
        file: "/etc/alpine-release",
        matches: |t| {
            t.trim()
                .split('.')
                .filter(|p| p.parse::<u32>().is_ok())
                .count()
                >= 3
        },
        init: &[(HAS_FAKEROOT, "apk update; apk add fakeroot")],
        cmds: &["apk"],
        each: FAKEROOT,
    },
];

/// The configuration for an image; `read` gives the text of a file in it (absolute path),
/// `None` if it has no such regular file.
pub fn detect(read: impl Fn(&str) -> Option<String>) -> Option<&'static Config> {
    CONFIGS
        .iter()
        .find(|c| read(c.file).is_some_and(|t| (c.matches)(&t)))
}

impl Config {
    /// Whether a RUN step with these words (exec-form arguments, or a shell command or
    /// script split on whitespace) needs the wrapper.
    pub fn wants<'a>(&self, mut words: impl Iterator<Item = &'a str>) -> bool {
        words.any(|w| self.cmds.contains(&w))
    }

    /// `argv` with the wrapper in front.
    pub fn wrap(&self, argv: Vec<String>) -> Vec<String> {
        self.each
            .iter()
            .map(|s| s.to_string())
            .chain(argv)
            .collect()
    }

    /// What goes into the cache key of the init steps and of wrapped RUNs, so that editing
    /// a configuration misses the cache.
    pub fn fingerprint(&self) -> String {
        let init: Vec<String> = self.init.iter().map(|(c, i)| format!("{c}\n{i}")).collect();
        format!(
            "--force=fakeroot:{}\n{}\n{}",
            self.tag,
            init.join("\n"),
            self.each.join(" ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(files: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |p| {
            files
                .iter()
                .find(|(f, _)| *f == p)
                .map(|(_, t)| t.to_string())
        }
    }

    #[test]
    fn detects_distributions() {
        let tag = |files| detect(image(files)).map(|c| c.tag);
        assert_eq!(tag(&[("/etc/debian_version", "12.5\n")]), Some("debderiv"));
        assert_eq!(
            tag(&[
                ("/etc/fedora-release", "Fedora release 39 (Thirty Nine)\n"),
                ("/etc/redhat-release", "Fedora release 39 (Thirty Nine)\n"),
            ]),
            Some("fedora")
        );
        assert_eq!(
            tag(&[(
                "/etc/redhat-release",
                "CentOS Linux release 7.9.2009 (Core)\n"
            )]),
            Some("rhel7")
        );
        assert_eq!(
            tag(&[(
                "/etc/redhat-release",
                "Rocky Linux release 9.3 (Blue Onyx)\n"
            )]),
            Some("rhel8")
        );
        assert_eq!(
            tag(&[("/etc/redhat-release", "AlmaLinux release 8.9\n")]),
            Some("rhel8")
        );
        assert_eq!(tag(&[("/etc/alpine-release", "3.19.1\n")]), Some("alpine"));
        assert_eq!(
            tag(&[(
                "/etc/os-release",
                "NAME=\"openSUSE Leap\"\nID_LIKE=\"suse opensuse\"\n"
            )]),
            Some("suse")
        );
        assert_eq!(tag(&[("/etc/os-release", "ID=arch\n")]), Some("arch"));
        assert_eq!(tag(&[("/etc/os-release", "ID=busybox\n")]), None);
        assert_eq!(tag(&[]), None);
    }

    #[test]
    fn matches_whole_words_only() {
        let deb = detect(image(&[("/etc/debian_version", "12\n")])).expect("debian");
        assert!(deb.wants("apt-get update && apt-get install -y hello".split_whitespace()));
        assert!(deb.wants(["dpkg", "-i", "x.deb"].into_iter()));
        // ch-image's documented false negative: no shell parsing.
        assert!(!deb.wants("true&&apt-get install x".split_whitespace()));
        assert!(!deb.wants("apt-cache policy".split_whitespace()));
        assert_eq!(
            deb.wrap(vec!["/bin/sh".into(), "-c".into(), "apt-get x".into()]),
            ["fakeroot", "/bin/sh", "-c", "apt-get x"]
        );
    }
}
