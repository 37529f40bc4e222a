//! Copying files between trees (flattening, external hard links): a reflink where the
//! filesystem can share extents, else an in-kernel copy, else read/write; always streaming.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsFd;

use rustix::fs::{Stat, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::meta::keep_xattr;

const SMALL_FILE: u64 = 64 * 1024;

/// Largest xattr list or value Linux allows (`XATTR_LIST_MAX`, `XATTR_SIZE_MAX`).
const XATTR_MAX: usize = 64 * 1024;

pub(crate) struct Copier {
    /// Cleared after the first refusal, which will repeat for every file of the same trees.
    reflink: bool,
    copy_range: bool,
    buf: Vec<u8>,
    xattr_names: Vec<u8>,
    xattr_value: Vec<u8>,
}

impl Copier {
    pub(crate) fn new() -> Copier {
        Copier {
            reflink: true,
            copy_range: true,
            buf: Vec::new(),
            xattr_names: Vec::new(),
            xattr_value: Vec::new(),
        }
    }

    /// Copies `len` bytes from the start of `src` to the (empty) `dst`.
    pub(crate) fn copy(&mut self, src: impl AsFd, dst: impl AsFd, len: u64) -> io::Result<()> {
        let (src, dst) = (src.as_fd(), dst.as_fd());
        if len == 0 {
            return Ok(());
        }
        if self.reflink {
            match rustix::fs::ioctl_ficlone(dst, src) {
                Ok(()) => return Ok(()),
                // EOPNOTSUPP (ext4, tmpfs), EXDEV (other filesystem), EINVAL (unaligned)...
                Err(_) => self.reflink = false,
            }
        }
        // For small files the splice machinery behind copy_file_range costs more than the
        // copy itself (measured on tmpfs with 1 KiB files).
        if self.copy_range && len > SMALL_FILE {
            let mut copied = 0u64;
            loop {
                let want = (len - copied).min(1 << 30) as usize;
                match rustix::fs::copy_file_range(src, None, dst, None, want) {
                    Ok(0) => return Ok(()),
                    Ok(n) => {
                        copied += n as u64;
                        if copied >= len {
                            return Ok(());
                        }
                    }
                    Err(Errno::INTR) => {}
                    Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP)
                        if copied == 0 =>
                    {
                        self.copy_range = false;
                        break;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.buf.resize(super::pipeline::CHUNK, 0);
        let mut left = len;
        while left > 0 {
            let want = (left.min(self.buf.len() as u64)) as usize;
            let n = match rustix::io::read(src, &mut self.buf[..want]) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut out = &self.buf[..n];
            while !out.is_empty() {
                match rustix::io::write(dst, out) {
                    Ok(k) => out = &out[k..],
                    Err(Errno::INTR) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            left -= n as u64;
        }
        Ok(())
    }

    /// Copies the xattrs lade keeps (see `meta`) from `src` to `dst`; a filesystem without
    /// xattrs has none to copy.
    pub(crate) fn copy_xattrs(&mut self, src: impl AsFd, dst: impl AsFd) -> io::Result<()> {
        let (src, dst) = (src.as_fd(), dst.as_fd());
        self.xattr_names.resize(XATTR_MAX, 0);
        let len = match rustix::fs::flistxattr(src, &mut self.xattr_names[..]) {
            Ok(n) => n,
            Err(Errno::NOTSUP) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if len == 0 {
            return Ok(());
        }
        self.xattr_value.resize(XATTR_MAX, 0);
        for name in self.xattr_names[..len].split(|b| *b == 0) {
            if name.is_empty() || !keep_xattr(name) {
                continue;
            }
            let Ok(cname) = CStr::from_bytes_with_nul(&[name, b"\0"].concat()).map(CStr::to_owned)
            else {
                continue;
            };
            let n = match rustix::fs::fgetxattr(src, &cname, &mut self.xattr_value[..]) {
                Ok(n) => n,
                Err(Errno::NODATA) => continue,
                Err(e) => return Err(e.into()),
            };
            rustix::fs::fsetxattr(dst, &cname, &self.xattr_value[..n], XattrFlags::empty())?;
        }
        Ok(())
    }
}

/// The access and modification times of `st`, for `futimens`/`utimensat`.
#[allow(clippy::unnecessary_cast)]
pub(crate) fn stat_times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as i64,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as i64,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn copies_by_every_method() {
        let t = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let src_path = t.path().join("src");
        std::fs::File::create(&src_path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        for (reflink, copy_range) in [(true, true), (false, true), (false, false)] {
            let src = std::fs::File::open(&src_path).unwrap();
            let dst_path = t.path().join(format!("dst-{reflink}-{copy_range}"));
            let dst = std::fs::File::create(&dst_path).unwrap();
            let mut c = Copier::new();
            c.reflink = reflink;
            c.copy_range = copy_range;
            c.copy(&src, &dst, data.len() as u64).unwrap();
            drop(dst);
            assert_eq!(std::fs::read(&dst_path).unwrap(), data);
        }
    }
}
