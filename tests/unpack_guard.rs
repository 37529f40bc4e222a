//! A hostile layer that tries to walk the tar extension-header guard out of step with the tar
//! parser (issue 13, item 1): a PAX `size=` meant for a file, taken by a global (`g`) or
//! old-style (`L`) header that does not use it, then a PAX header claiming 1 GiB, followed by a
//! gigabyte of zeros that gzip shrinks to about a megabyte. lade must refuse it with one line,
//! in bounded memory (run under `prlimit --as`), before reading the record.

mod common;

use std::fs;
use std::io::Write;
use std::process::Command;

use common::*;

const BLOCK: usize = 512;

fn header(kind: u8, magic: &[u8; 8], size: u64) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..4].copy_from_slice(b"name");
    h[100..108].copy_from_slice(b"0000644\0");
    h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = kind;
    h[257..265].copy_from_slice(magic);
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The hostile layer, gzip-compressed: the headers in one gzip member, then a gigabyte of
/// zeros as 16 members of 64 MiB (gzip streams may be concatenated), about a megabyte in all.
fn hostile_blob(taker: [u8; BLOCK]) -> Vec<u8> {
    let record = b"20 size=99999999999\n";
    let mut prefix = Vec::new();
    prefix.extend_from_slice(&header(b'x', b"ustar\x0000", record.len() as u64));
    prefix.extend_from_slice(record);
    prefix.resize(2 * BLOCK, 0);
    prefix.extend_from_slice(&taker);
    prefix.extend_from_slice(&header(b'x', b"ustar\x0000", 1 << 30));
    let mut blob = gzip(&prefix);
    let zeros = gzip(&vec![0u8; 64 << 20]);
    for _ in 0..16 {
        blob.extend_from_slice(&zeros);
    }
    blob
}

#[test]
fn a_desynchronising_layer_is_refused_in_bounded_memory() {
    let s = Scratch::new("guard");
    let takers = [
        ("global", header(b'g', b"ustar\x0000", 0)),
        ("old-style long name", header(b'L', &[0; 8], 0)),
    ];
    for (what, taker) in takers {
        let blob = s.join("hostile.tar.gz");
        fs::write(&blob, hostile_blob(taker)).unwrap();
        assert!(
            fs::metadata(&blob).unwrap().len() < 2 << 20,
            "{what}: a small blob"
        );
        let lade = Lade::new();
        // 400 MB of address space: lade's threads and buffers fit easily, the record not.
        let mut c = Command::new("prlimit");
        c.arg("--as=400000000")
            .arg("--")
            .arg(lade_bin())
            .arg("--storage")
            .arg(&lade.storage)
            .arg("import")
            .arg(&blob)
            .arg("hostile");
        let err = run_cmd(c).fails_one_line();
        assert!(
            err.contains("PAX extended header of 1073741824 bytes"),
            "{what}: {err}"
        );
        assert!(lade.list().is_empty(), "{what}: nothing imported");
    }
}
