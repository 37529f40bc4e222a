//! The guard's framing against the `tar` crate's: hand-made attacks, and generated header
//! sequences (proptest) on which both must see the same entries at the same places.

use super::*;
use proptest::prelude::*;

const GNU: &[u8; 8] = b"ustar  \0";
const USTAR: &[u8; 8] = b"ustar\x0000";
const OLD: &[u8; 8] = &[0; 8];

/// A header block with a correct checksum.
fn header(kind: u8, magic: &[u8; 8], size_field: &[u8]) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    h[..4].copy_from_slice(b"name");
    h[100..108].copy_from_slice(b"0000644\0");
    h[257..265].copy_from_slice(magic);
    h[124..124 + size_field.len()].copy_from_slice(size_field);
    h[156] = kind;
    set_cksum(&mut h);
    h
}

fn set_cksum(h: &mut [u8; BLOCK]) {
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

fn octal(n: u64) -> Vec<u8> {
    format!("{n:011o}\0").into_bytes()
}

/// A PAX record line, `"%d key=value\n"` with the right length.
fn pax_line(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}").len() + body.len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

fn padded(mut data: Vec<u8>) -> Vec<u8> {
    data.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
    data
}

/// Passes `data` through a guard with `limit`, in small reads that cross every boundary.
fn guard(data: &[u8], limit: u64) -> (io::Result<Vec<u8>>, Vec<(u64, u64)>) {
    let mut r = ExtensionLimit::with_limit(io::Cursor::new(data), limit);
    let mut out = Vec::new();
    let mut buf = [0u8; 37];
    let res = loop {
        match r.read(&mut buf) {
            Ok(0) => break Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    (res, r.log)
}

#[test]
fn huge_pax_header_is_refused_before_its_data() {
    // 100 GiB in octal, with no data following at all.
    let data = header(b'x', GNU, b"1440000000000");
    let err = guard(&data, MAX_EXTENSION).0.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("PAX extended header"), "{err}");
}

#[test]
fn huge_gnu_long_name_in_base256_is_refused() {
    let mut field = [0u8; 12];
    field[0] = 0x80;
    field[8] = 0x01; // 2^24 bytes
    let data = header(b'L', GNU, &field);
    assert!(guard(&data, MAX_EXTENSION).0.is_err());
}

/// The stream of issue 13: a PAX `size` meant for the next file, then a header that takes it
/// without using it (a global `g`, an old-style `L`), then a PAX header claiming 1 GiB.
fn desync_attempt(taker: [u8; BLOCK]) -> Vec<u8> {
    let mut s = Vec::new();
    let record = pax_line("size", "99999999999");
    s.extend_from_slice(&header(b'x', USTAR, &octal(record.len() as u64)));
    s.extend(padded(record));
    s.extend_from_slice(&taker);
    s.extend_from_slice(&header(b'x', USTAR, &octal(1 << 30)));
    s.extend(vec![0u8; 4096]);
    s
}

#[test]
fn a_pax_size_taken_by_a_global_or_old_header_cannot_desynchronise_it() {
    for taker in [header(b'g', USTAR, &octal(0)), header(b'L', OLD, &octal(0))] {
        let err = guard(&desync_attempt(taker), MAX_EXTENSION).0.unwrap_err();
        assert!(
            err.to_string()
                .contains("PAX extended header of 1073741824"),
            "{err}"
        );
    }
}

#[test]
fn a_real_archive_passes_unchanged_and_pax_size_sets_the_framing() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(700);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    let long = "d/".repeat(200) + "file";
    b.append_data(&mut h, &long, &[7u8; 700][..]).unwrap();
    let mut data = b.into_inner().unwrap();
    // Without the end-of-archive blocks, where the parser would stop.
    data.truncate(data.len() - 2 * BLOCK);
    // A PAX record with a size override, then an entry whose header says 0.
    let record = pax_line("size", "1000000");
    data.extend_from_slice(&header(b'x', USTAR, &octal(record.len() as u64)));
    data.extend(padded(record));
    data.extend_from_slice(&header(b'0', USTAR, &octal(0)));
    data.extend_from_slice(&vec![0u8; 1_000_448]);
    // Reached only if the PAX size is honoured.
    data.extend_from_slice(&header(b'L', GNU, b"77777777777"));
    assert!(guard(&data, MAX_EXTENSION).0.is_err());
    let cut = data.len() - BLOCK;
    assert_eq!(guard(&data[..cut], MAX_EXTENSION).0.unwrap(), &data[..cut]);
}

#[test]
fn pax_size_reads_as_the_tar_crate_does() {
    assert_eq!(pax_size(&pax_line("size", "1000000")), Some(1_000_000));
    assert_eq!(pax_size(&pax_line("path", "abc")), None);
    let mut two = pax_line("size", "5");
    two.extend(pax_line("size", "7"));
    assert_eq!(pax_size(&two), Some(5), "the first size counts");
    let mut bad_first = b"99 size=1\n".to_vec();
    bad_first.extend(pax_line("size", "7"));
    assert_eq!(
        pax_size(&bad_first),
        None,
        "a malformed line ends the search"
    );
}

// ----- differential: generated header sequences -----

/// One member of a generated archive.
#[derive(Debug, Clone)]
struct Member {
    kind: u8,
    magic: &'static [u8; 8],
    /// The size the header claims, and how the field spells it (see [`size_field`]).
    size: u64,
    spelling: u8,
    /// A PAX header's record (its size field then says its length).
    record: Vec<u8>,
    /// Data written after the header instead of what the framing asks for (a broken archive).
    wrong_data: Option<usize>,
    /// A GNU sparse header: whether it says extension blocks follow, and the flags of the
    /// blocks written after it.
    extended: u8,
    ext_blocks: Vec<u8>,
    bad_cksum: bool,
}

/// The ways a tar size field can say `n` that the tar crate accepts, and a few it refuses.
fn size_field(n: u64, spelling: u8) -> Vec<u8> {
    match spelling % 8 {
        0 | 1 => octal(n),
        2 => format!("{n:o}\0garbage").into_bytes(),
        3 => format!("\t {n:o} ").into_bytes(),
        4 => format!("+{n:o}").into_bytes(),
        // base-256: the crate reads the last 8 bytes of the field only.
        5 => {
            let mut f = vec![0x80u8, spelling, 0x7f, 0xff];
            f.extend_from_slice(&n.to_be_bytes());
            f
        }
        6 => b"7777777777777".to_vec(),
        _ => b"zz".to_vec(),
    }
}

fn pax_record() -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        4 => (0u64..3000).prop_map(|n| n.to_string()),
        1 => Just("99999999999".to_string()),
        1 => Just("-1".to_string()),
        1 => Just("x".to_string()),
    ];
    let line = prop_oneof![
        4 => value.prop_map(|v| pax_line("size", &v)),
        1 => Just(pax_line("path", "p")),
        1 => Just(b"5 bad\n".to_vec()),
        1 => Just(b"\n".to_vec()),
    ];
    proptest::collection::vec(line, 0..3).prop_map(|lines| lines.concat())
}

fn member() -> impl Strategy<Value = Member> {
    let kind = prop_oneof![
        Just(b'0'),
        Just(b'5'),
        Just(b'x'),
        Just(b'g'),
        Just(b'L'),
        Just(b'K'),
        Just(b'S'),
        Just(b'7'),
    ];
    let magic = prop_oneof![Just(GNU), Just(USTAR), Just(OLD)];
    (
        kind,
        magic,
        prop_oneof![1 => Just(0u64), 3 => 0u64..1400],
        any::<u8>(),
        pax_record(),
        prop::option::weighted(0.05, 0usize..1400),
        prop_oneof![Just(0u8), Just(1u8), Just(2u8)],
        proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(2u8)], 0..3),
        prop::bool::weighted(0.03),
    )
        .prop_map(
            |(kind, magic, size, spelling, record, wrong_data, extended, ext_blocks, bad_cksum)| {
                Member {
                    kind,
                    magic,
                    size,
                    spelling,
                    record,
                    wrong_data,
                    extended,
                    ext_blocks,
                    bad_cksum,
                }
            },
        )
}

/// Writes the members as the tar crate frames them (so that most generated archives parse to
/// the end), except where a member asks for wrong data.
fn archive(members: &[Member], end_blocks: bool) -> Vec<u8> {
    let mut s = Vec::new();
    let mut pending: Option<Vec<u8>> = None;
    for m in members {
        let is_pax = m.kind == b'x' && !m.record.is_empty();
        let field = if is_pax {
            octal(m.record.len() as u64)
        } else {
            size_field(m.size, m.spelling)
        };
        let mut h = header(m.kind, m.magic, &field);
        if m.kind == b'S' {
            h[482] = m.extended;
            // The real size, which the crate checks against the (empty) sparse map.
            h[483..495].copy_from_slice(&octal(0));
        }
        set_cksum(&mut h);
        if m.bad_cksum {
            h[148] ^= 1;
        }
        s.extend_from_slice(&h);
        if m.kind == b'S' && m.magic == GNU && m.extended == 1 {
            for &flag in &m.ext_blocks {
                let mut ext = [0u8; BLOCK];
                ext[504] = flag;
                s.extend_from_slice(&ext);
                if flag != 1 {
                    break;
                }
            }
        }
        let extension = matches!(m.kind, b'x' | b'g' | b'L' | b'K');
        let recognized = m.magic != OLD && matches!(m.kind, b'x' | b'L' | b'K');
        let mut size = if is_pax {
            m.record.len() as u64
        } else {
            m.size
        };
        if !extension && let Some(p) = pending.as_deref().and_then(pax_size) {
            size = p;
        }
        let data = match m.wrong_data {
            Some(n) => vec![b'd'; n],
            None if is_pax => m.record.clone(),
            None => vec![b'd'; size.min(4000) as usize],
        };
        s.extend(padded(data));
        if !recognized {
            pending = None;
        } else if m.kind == b'x' {
            pending = Some(m.record.clone());
        }
    }
    if end_blocks {
        s.extend_from_slice(&[0u8; 2 * BLOCK]);
    }
    s
}

/// Where the `tar` crate finds its entries' headers and data, until it stops.
fn tar_positions(data: &[u8]) -> Vec<(u64, u64)> {
    let mut ar = tar::Archive::new(data);
    let mut out = Vec::new();
    let Ok(entries) = ar.entries() else {
        return out;
    };
    for e in entries {
        match e {
            Ok(e) => out.push((e.raw_header_position(), e.raw_file_position())),
            Err(_) => break,
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The guard follows the tar crate's framing exactly: every entry the crate hands on is
    /// one the guard saw at the same place, with its data at the same place; and the guard
    /// refuses only an extension record over its limit.
    #[test]
    fn frames_as_the_tar_crate_does(
        members in proptest::collection::vec(member(), 1..8),
        end_blocks in any::<bool>(),
    ) {
        let data = archive(&members, end_blocks);
        let want = tar_positions(&data);
        // Without a limit the guard passes everything and frames every entry as the crate.
        let (res, log) = guard(&data, u64::MAX);
        prop_assert!(res.is_ok());
        prop_assert!(log.len() >= want.len(), "guard {:?}, tar {:?}", log, want);
        prop_assert_eq!(&log[..want.len()], &want[..]);
        let limit = 600;
        let (res, log) = guard(&data, limit);
        let refused = res.is_err();
        match res {
            Ok(out) => {
                prop_assert_eq!(&out, &data);
                prop_assert!(log.len() >= want.len(), "guard {:?}, tar {:?}", log, want);
                prop_assert_eq!(&log[..want.len()], &want[..]);
            }
            Err(e) => {
                prop_assert!(e.to_string().contains("lade accepts at most 600"), "{}", e);
                // Up to the refused record the two agree.
                let n = log.len().min(want.len());
                prop_assert_eq!(&log[..n], &want[..n]);
            }
        }
        // Through the guard, the crate parses the same entries as far as the guard lets it.
        let mut ar = tar::Archive::new(ExtensionLimit::with_limit(&data[..], limit));
        let mut guarded = Vec::new();
        if let Ok(entries) = ar.entries() {
            for e in entries {
                match e {
                    Ok(e) => guarded.push((e.raw_header_position(), e.raw_file_position())),
                    Err(_) => break,
                }
            }
        }
        prop_assert_eq!(&guarded[..], &want[..guarded.len()]);
        if !refused {
            prop_assert_eq!(&guarded, &want);
        }
        // And when the crate skips what it does not read by seeking, as lade lets it.
        let mut ar = tar::Archive::new(ExtensionLimit::with_limit(io::Cursor::new(&data[..]), limit));
        let mut seeking = Vec::new();
        if let Ok(entries) = ar.entries_with_seek() {
            for e in entries {
                match e {
                    Ok(e) => seeking.push((e.raw_header_position(), e.raw_file_position())),
                    Err(_) => break,
                }
            }
        }
        prop_assert_eq!(&seeking, &guarded);
    }
}
