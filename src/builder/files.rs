//! COPY and ADD: sources resolved in the context (or a `--from` root) with globs, hashed for
//! the build cache, and written into a fresh staging tree with Docker's rules:
//!
//! - a directory source copies its contents, not itself;
//! - a file goes to DEST/NAME when DEST ends with `/` (or is `.`, or is a directory in the
//!   image), else to DEST itself;
//! - several sources need a directory destination;
//! - a relative DEST is relative to WORKDIR; missing parents are created (0755);
//! - a source that is a symlink at the top level is followed; symlinks inside directories are
//!   copied as symlinks;
//! - ADD unpacks local tar archives (plain, gzip or zstd) into DEST;
//! - ADD of a URL places the downloaded file ([`super::fetch`]) like a local file, mode 0600.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::config;
use super::driver::{Builder, located, resolve_path};
use crate::builder::cache::State;
use crate::digest::{Algorithm, Hasher};
use crate::dockerfile::ignore::Ignore;
use crate::dockerfile::{Add, Copy, Files, Instruction, Located, Source};
use crate::error::{Error, IoContext, Result};
use crate::storage::LayerRef;
use crate::unpack::{ApplyMode, ApplyOptions};

/// The context's `.dockerignore`, applied to paths under `root` (the context).
#[derive(Clone, Copy)]
pub struct Filter<'a> {
    pub root: &'a Path,
    pub ignore: &'a Ignore,
}

impl Filter<'_> {
    fn excluded(&self, path: &Path) -> bool {
        path.strip_prefix(self.root)
            .is_ok_and(|rel| self.ignore.excluded(rel))
    }

    /// Whether to leave `path` out entirely: excluded, and not a directory that a `!`
    /// exception may re-include something under.
    fn skip(&self, path: &Path, is_dir: bool) -> bool {
        self.excluded(path) && !(is_dir && self.ignore.has_exceptions())
    }
}

fn skip(filter: Option<Filter>, path: &Path, is_dir: bool) -> bool {
    filter.is_some_and(|f| f.skip(path, is_dir))
}

fn has_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// The paths (absolute) a source pattern names under `root`, sorted; with a filter, less
/// those `.dockerignore` excludes.
pub fn resolve(root: &Path, pattern: &str, filter: Option<Filter>) -> Result<Vec<PathBuf>> {
    let clean = resolve_path("/", pattern);
    let rel = clean.trim_start_matches('/');
    let mut found = vec![root.to_path_buf()];
    if !rel.is_empty() {
        for comp in rel.split('/') {
            let mut next = Vec::new();
            for dir in &found {
                if has_glob(comp) {
                    let m = globset::GlobBuilder::new(comp)
                        .literal_separator(true)
                        .build()
                        .map_err(|e| Error::invalid(format!("source {pattern}"), e.to_string()))?
                        .compile_matcher();
                    let Ok(rd) = fs::read_dir(dir) else { continue };
                    let mut names: Vec<_> = rd.flatten().map(|e| e.file_name()).collect();
                    names.sort();
                    for n in names {
                        if m.is_match(&n) {
                            next.push(dir.join(n));
                        }
                    }
                } else {
                    let p = dir.join(comp);
                    if fs::symlink_metadata(&p).is_ok() {
                        next.push(p);
                    }
                }
            }
            found = next;
        }
    }
    if found.is_empty() {
        return Err(Error::invalid(
            format!("source {pattern}"),
            "no such file or directory in the build context",
        ));
    }
    found.retain(|p| !skip(filter, p, p.is_dir()));
    if found.is_empty() {
        return Err(Error::invalid(
            format!("source {pattern}"),
            "excluded by .dockerignore",
        ));
    }
    Ok(found)
}

fn check_supported(f: &Files) -> Result<()> {
    if f.parents {
        return Err(Error::unsupported("--parents", "not supported yet"));
    }
    if !f.exclude.is_empty() {
        return Err(Error::unsupported("--exclude", "not supported yet"));
    }
    for s in &f.sources {
        if let Source::Git(g) = s {
            return Err(Error::unsupported(
                format!("ADD {g}"),
                "Git sources are not supported yet",
            ));
        }
    }
    Ok(())
}

/// The cache input of a COPY/ADD from the context: every file it reads, with its name, type,
/// mode and content.
pub fn hash_sources(context: &Path, ignore: &Ignore, f: &Files) -> Result<String> {
    check_supported(f)?;
    let filter = Some(Filter {
        root: context,
        ignore,
    });
    let mut h = Hasher::new(Algorithm::Sha256);
    for s in &f.sources {
        if let Source::Path(p) = s {
            for path in resolve(context, p, filter)? {
                let rel = path.strip_prefix(context).unwrap_or(&path).to_path_buf();
                hash_tree(&mut h, &path, &rel, true, filter)?;
            }
        }
    }
    Ok(format!("context:{}", h.finish()))
}

/// The cache input of what `RUN --mount=type=bind` mounts from the context: `pattern` (one
/// path) hashed as COPY hashes its sources, `.dockerignore` applied.
pub(super) fn hash_context_path(context: &Path, ignore: &Ignore, pattern: &str) -> Result<String> {
    let filter = Some(Filter {
        root: context,
        ignore,
    });
    let mut h = Hasher::new(Algorithm::Sha256);
    for path in resolve(context, pattern, filter)? {
        let rel = path.strip_prefix(context).unwrap_or(&path).to_path_buf();
        hash_tree(&mut h, &path, &rel, true, filter)?;
    }
    Ok(format!("context:{}", h.finish()))
}

/// Whether `.dockerignore` hides anything at or under `path` (in the context), which a bind
/// mount of the directory itself would show.
pub(super) fn hides_any(context: &Path, ignore: &Ignore, path: &Path) -> bool {
    if ignore.is_empty() {
        return false;
    }
    let filter = Filter {
        root: context,
        ignore,
    };
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        if filter.excluded(&p) {
            return true;
        }
        if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir())
            && let Ok(rd) = fs::read_dir(&p)
        {
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    false
}

fn hash_tree(
    h: &mut Hasher,
    path: &Path,
    rel: &Path,
    top: bool,
    filter: Option<Filter>,
) -> Result<()> {
    let meta = if top {
        fs::metadata(path)
    } else {
        fs::symlink_metadata(path)
    }
    .at(path)?;
    let ft = meta.file_type();
    h.update(format!("\0{}\0{:o}\0", rel.display(), meta.permissions().mode()).as_bytes());
    if ft.is_dir() {
        for n in kept_children(path, filter)? {
            hash_tree(h, &path.join(&n), &rel.join(&n), false, filter)?;
        }
    } else if ft.is_symlink() {
        h.update(b"l");
        h.update(fs::read_link(path).at(path)?.as_os_str().as_encoded_bytes());
    } else if ft.is_file() {
        h.update(format!("f{}\0", meta.len()).as_bytes());
        let mut file = File::open(path).at(path)?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).at(path)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(())
}

fn mkdirs(p: &Path) -> Result<()> {
    if p.is_dir() {
        return Ok(());
    }
    if let Some(parent) = p.parent() {
        mkdirs(parent)?;
    }
    match fs::create_dir(p) {
        Ok(()) => fs::set_permissions(p, fs::Permissions::from_mode(0o755)).at(p),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && p.is_dir() => Ok(()),
        Err(e) => Err(Error::io_path(p, e)),
    }
}

/// Creates `abs` (an absolute path in the image) and its ancestors in the staging `tree`,
/// each with the mode the state's directory of that name has (0755 for new ones), so that a
/// layer adding `/tmp/x` does not change `/tmp`'s 1777 in the merged image.
pub(super) fn prepare_dirs(b: &Builder, state: &State, tree: &Path, abs: &str) -> Result<()> {
    let mut rel = PathBuf::new();
    for comp in abs.split('/').filter(|c| !c.is_empty()) {
        rel.push(comp);
        let p = tree.join(&rel);
        if p.is_dir() {
            continue;
        }
        let r = rel.to_string_lossy();
        let Some(mode) = b.dir_mode_in(state, &r) else {
            break; // not a directory in the image: mkdirs makes the rest later
        };
        remove_existing(&p)?;
        fs::create_dir(&p).at(&p)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(mode | 0o700)).at(&p)?;
        b.dirs_to_restore.borrow_mut().push((p, mode));
    }
    Ok(())
}

/// The names in directory `dir` the filter keeps, sorted (so cache keys and layers do not
/// depend on directory order).
fn kept_children(dir: &Path, filter: Option<Filter>) -> Result<Vec<std::ffi::OsString>> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .at(dir)?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    names.retain(|n| {
        let child = dir.join(n);
        let is_dir = fs::symlink_metadata(&child).is_ok_and(|m| m.is_dir());
        !skip(filter, &child, is_dir)
    });
    Ok(names)
}

fn remove_existing(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if !m.is_dir() => fs::remove_file(p).at(p),
        _ => Ok(()),
    }
}

/// Copies `src` to `dst` (a directory's contents merge into `dst`), leaving out what the
/// filter excludes.
pub(super) fn copy_tree(
    src: &Path,
    dst: &Path,
    follow: bool,
    chmod: Option<u32>,
    filter: Option<Filter>,
) -> Result<()> {
    let meta = if follow {
        fs::metadata(src)
    } else {
        fs::symlink_metadata(src)
    }
    .at(src)?;
    let ft = meta.file_type();
    if ft.is_dir() {
        if !dst.is_dir() {
            remove_existing(dst)?;
            fs::create_dir(dst).at(dst)?;
        }
        // Image trees keep their modes (a `0000` directory): access while copying it.
        let granted = crate::unpack::grant_dir_path(src, crate::unpack::DIR_RX).at(src)?;
        let copied = kept_children(src, filter).and_then(|names| {
            names
                .iter()
                .try_for_each(|n| copy_tree(&src.join(n), &dst.join(n), false, chmod, filter))
        });
        if let Some(g) = granted {
            g.restore().map_err(|e| Error::io_path(src, e.into()))?;
        }
        copied?;
        // An excluded directory walked only for `!` exceptions stays only if one matched.
        if !follow && filter.is_some_and(|f| f.excluded(src)) {
            let empty = fs::read_dir(dst).at(dst)?.next().is_none();
            if empty {
                fs::remove_dir(dst).at(dst)?;
                return Ok(());
            }
        }
        let mode = chmod.unwrap_or(meta.permissions().mode() & 0o7777);
        fs::set_permissions(dst, fs::Permissions::from_mode(mode | 0o700)).at(dst)?;
        if mode & 0o700 != 0o700 {
            fs::set_permissions(dst, fs::Permissions::from_mode(mode)).at(dst)?;
        }
    } else if ft.is_symlink() {
        remove_existing(dst)?;
        let target = fs::read_link(src).at(src)?;
        std::os::unix::fs::symlink(&target, dst).at(dst)?;
    } else if ft.is_file() {
        remove_existing(dst)?;
        match fs::copy(src, dst) {
            Ok(_) => {}
            // An image's `0000` file: read with access granted for the open.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                let mut from = crate::unpack::open_file_path(src).at(src)?;
                let mut to = File::create(dst).at(dst)?;
                std::io::copy(&mut from, &mut to).at(dst)?;
            }
            Err(e) => return Err(Error::io_path(dst, e)),
        }
        // The time first: a `0400` file could not be opened for it afterwards.
        if let Ok(t) = meta.modified() {
            let _ = File::options()
                .write(true)
                .open(dst)
                .and_then(|f| f.set_modified(t));
        }
        let mode = chmod.unwrap_or(meta.permissions().mode() & 0o7777);
        fs::set_permissions(dst, fs::Permissions::from_mode(mode)).at(dst)?;
    } else if ft.is_fifo() {
        // Image trees hold FIFOs (`mknod` needs no privilege).
        remove_existing(dst)?;
        let mode = chmod.unwrap_or(meta.permissions().mode() & 0o7777);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dst,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(mode),
            0,
        )
        .map_err(|e| Error::io_path(dst, e.into()))?;
        fs::set_permissions(dst, fs::Permissions::from_mode(mode)).at(dst)?;
    } else {
        return Err(Error::unsupported(
            format!("copying {}", src.display()),
            "only files, directories, symlinks and FIFOs can be copied",
        ));
    }
    Ok(())
}

#[derive(PartialEq)]
enum Archive {
    No,
    Tar,
    Compressed,
}

fn sniff_archive(path: &Path) -> Result<Archive> {
    let mut f = File::open(path).at(path)?;
    let mut buf = vec![0u8; 512];
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..]).at(path)?;
        if r == 0 {
            break;
        }
        n += r;
    }
    let b = &buf[..n];
    if b.starts_with(&[0x1f, 0x8b]) || b.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Ok(Archive::Compressed);
    }
    if b.starts_with(b"BZh") || b.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(Error::unsupported(
            format!("ADD {}", path.display()),
            "bzip2 and xz archives are not supported yet",
        ));
    }
    if n >= 262 && &b[257..262] == b"ustar" {
        return Ok(Archive::Tar);
    }
    Ok(Archive::No)
}

/// Unpacks a local archive into `dst`; false if it turned out not to be a tar archive.
fn unpack_archive(src: &Path, dst: &Path, kind: Archive) -> Result<bool> {
    let tmp = PathBuf::from(format!("{}.unpack", dst.display()));
    let _ = crate::fsutil::remove_all(&tmp);
    fs::create_dir_all(&tmp).at(&tmp)?;
    let what = format!("archive {}", src.display());
    let file = File::open(src).at(src)?;
    let res = crate::unpack::apply_layer(
        file,
        &tmp,
        &ApplyOptions {
            mode: ApplyMode::Flatten,
            what: &what,
        },
    );
    let out = match res {
        Ok(_) => {
            mkdirs(dst)?;
            copy_tree(&tmp, dst, false, None, None).map(|()| true)
        }
        Err(_) if kind == Archive::Compressed => Ok(false),
        Err(e) => Err(e),
    };
    let _ = crate::fsutil::remove_all(&tmp);
    out
}

impl Builder<'_> {
    /// COPY: the sources (from the context, or a `--from` stage or image) as a new layer.
    pub(super) fn copy(
        &mut self,
        ins: &Located<Instruction>,
        c: &Copy,
        state: &State,
    ) -> Result<LayerRef> {
        if c.files.chown.is_some() {
            self.progress
                .warn(&format!("{}: COPY --chown ignored", self.where_(ins)));
        }
        let root = match c.from.as_deref() {
            Some(f) => Some(self.source_root(f)?.0),
            None => None,
        };
        let tree = self.storage.scratch_path("build-tree");
        fs::create_dir_all(&tree).at(&tree)?;
        let res = copy_files(self, state, &c.files, root.as_deref(), false, None, &tree)
            .and_then(|()| self.restore_dir_modes());
        if let Err(e) = res {
            let _ = crate::fsutil::remove_all(&tree);
            return Err(located(&self.where_(ins), e));
        }
        self.commit_layer(&tree)
    }

    /// ADD: as COPY, with local archives unpacked (unless `--unpack=false`) and URLs
    /// downloaded.
    pub(super) fn add(
        &self,
        ins: &Located<Instruction>,
        a: &Add,
        state: &State,
    ) -> Result<LayerRef> {
        if a.files.chown.is_some() {
            self.progress
                .warn(&format!("{}: ADD --chown ignored", self.where_(ins)));
        }
        let tree = self.storage.scratch_path("build-tree");
        fs::create_dir_all(&tree).at(&tree)?;
        let unpack = a.unpack.unwrap_or(true);
        let res = super::fetch::add_checksum(a)
            .and_then(|c| copy_files(self, state, &a.files, None, unpack, c.as_ref(), &tree))
            .and_then(|()| self.restore_dir_modes());
        if let Err(e) = res {
            let _ = crate::fsutil::remove_all(&tree);
            return Err(located(&self.where_(ins), e));
        }
        self.commit_layer(&tree)
    }

    /// Gives the directories [`prepare_dirs`] made their image modes (they stayed
    /// owner-writable while files went in).
    pub(super) fn restore_dir_modes(&self) -> Result<()> {
        for (p, mode) in self.dirs_to_restore.borrow_mut().drain(..).rev() {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).at(&p)?;
        }
        Ok(())
    }
}

/// Writes the sources of a COPY/ADD into `tree` (a fresh staging directory) at their
/// destination. `root` is the `--from` root, else the context is used.
fn copy_files(
    b: &Builder,
    state: &State,
    f: &Files,
    root: Option<&Path>,
    unpack: bool,
    checksum: Option<&crate::digest::Digest>,
    tree: &Path,
) -> Result<()> {
    check_supported(f)?;
    // .dockerignore applies to the context, not to `--from` stages and images.
    let filter = root.is_none().then_some(Filter {
        root: &b.context,
        ignore: &b.ignore,
    });
    let root = root.unwrap_or(&b.context);
    let chmod = match f.chmod.as_deref() {
        None => None,
        Some(m) => Some(u32::from_str_radix(m, 8).map_err(|_| {
            Error::unsupported(format!("--chmod={m}"), "only octal modes are supported yet")
        })?),
    };
    let workdir = config::workdir(&state.config);
    let dest = b.resolve_links_in(state, &resolve_path(&workdir, &f.dest));
    // (path, heredoc content, the URL it was downloaded from)
    let mut srcs: Vec<(PathBuf, Option<String>, Option<&str>)> = Vec::new();
    for s in &f.sources {
        match s {
            Source::Path(p) => {
                for path in resolve(root, p, filter)? {
                    srcs.push((path, None, None));
                }
            }
            Source::Heredoc(h) => {
                srcs.push((PathBuf::from(&h.name), Some(h.content.clone()), None))
            }
            Source::Url(u) => srcs.push((b.fetch_url(u, checksum)?.path, None, Some(u))),
            Source::Git(_) => unreachable!("checked above"),
        }
    }
    // ch-image's manual, COPY rule 2: the destination is a directory when it ends in a slash,
    // when there is more than one source (explicit or by wildcard, slash or not: Docker's
    // reference says it must end in a slash, but Docker and ch-image create it anyway), or
    // when it already is one.
    let dest_is_dir = f.dest.ends_with('/')
        || f.dest == "."
        || f.dest.ends_with("/.")
        || srcs.len() > 1
        || b.is_dir_in(state, &dest);
    let dest_in_tree = tree.join(dest.trim_start_matches('/'));
    if dest_is_dir {
        prepare_dirs(b, state, tree, &dest)?;
    } else if let Some(parent) = Path::new(&dest).parent() {
        prepare_dirs(b, state, tree, &parent.to_string_lossy())?;
    }
    for (src, content, url) in srcs {
        if let Some(u) = url
            && dest_is_dir
        {
            super::fetch::file_name(u)?; // a directory destination needs the URL's file name
        }
        let name = src
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_else(|| "file".into());
        if let Some(content) = content {
            let target = if dest_is_dir {
                dest_in_tree.join(&name)
            } else {
                dest_in_tree.clone()
            };
            if let Some(p) = target.parent() {
                mkdirs(p)?;
            }
            remove_existing(&target)?;
            fs::write(&target, content).at(&target)?;
            fs::set_permissions(&target, fs::Permissions::from_mode(chmod.unwrap_or(0o644)))
                .at(&target)?;
            continue;
        }
        let meta = fs::metadata(&src).at(&src)?;
        if meta.is_dir() {
            mkdirs(&dest_in_tree)?;
            copy_tree(&src, &dest_in_tree, true, chmod, filter)?;
            continue;
        }
        // Docker never unpacks a downloaded archive.
        if unpack && url.is_none() && meta.is_file() {
            let kind = sniff_archive(&src)?;
            if kind != Archive::No && unpack_archive(&src, &dest_in_tree, kind)? {
                continue;
            }
        }
        let target = if dest_is_dir {
            dest_in_tree.join(&name)
        } else {
            dest_in_tree.clone()
        };
        if let Some(p) = target.parent() {
            mkdirs(p)?;
        }
        copy_tree(&src, &target, true, chmod, filter)?;
    }
    Ok(())
}
