//! Corrupt, hostile or extreme inputs: every one is a clear error or the exact
//! answer, never a panic, a hang or a silently wrong answer.

mod common;

use std::path::Path;
use std::time::Duration;

use anygram::scan::ScanControl;
use anygram::{Engine, Error, TokenWidth};
use common::{byte_order_tokens, open, write_index, IndexSpec};

fn docs(width: TokenWidth) -> Vec<Vec<u32>> {
    let t = byte_order_tokens(width);
    vec![
        vec![t[0], t[1], t[2]],
        vec![t[1], t[2], t[1], t[2]],
        vec![t[3], t[0]],
        vec![t[1], t[2], t[3], t[0], t[1]],
        vec![t[2]],
    ]
}

fn spec(width: TokenWidth) -> IndexSpec {
    IndexSpec {
        shards: vec![docs(width)],
        metadata: true,
        manifest: false,
        tokenizer: false,
        vocab_size: width.max_vocab_size(),
        eos_token_id: width.separator() as u64,
    }
}

fn set_offset(dir: &Path, entry: usize, value: u64) {
    let path = dir.join("offset.0");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[entry * 8..entry * 8 + 8].copy_from_slice(&value.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
}

fn is_corrupt_offset(e: &Error) -> bool {
    matches!(e, Error::Corrupt { path, detail } if path.ends_with("offset.0") && detail.contains("entr"))
}

/// Every document lookup of every kind, on an index whose `offset.0` entry 2
/// is `value`: each is Ok or a Corrupt error naming offset.0, and document 2
/// (or its neighbour, whose end it is) is an error.
fn assert_offset_corruption_is_reported(width: TokenWidth, value: u64) {
    let dir = tempfile::tempdir().unwrap();
    write_index(dir.path(), &spec(width), width);
    set_offset(dir.path(), 2, value);
    let engine = open(dir.path(), width).unwrap();
    let control = ScanControl::default();
    let check = |what: &str, r: anygram::Result<()>| {
        if let Err(e) = r {
            assert!(is_corrupt_offset(&e), "{what} with offset {value}: {e}");
        }
    };
    let by_ix: Vec<bool> = (0..engine.num_documents())
        .map(|d| {
            let r = engine.get_doc_by_ix(d, 100);
            check("get_doc_by_ix", r.as_ref().map(|_| ()).map_err(clone_err));
            r.is_err()
        })
        .collect();
    assert!(
        by_ix[1] || by_ix[2],
        "offset {value}: documents 1 and 2 opened: {by_ix:?}"
    );
    let n = engine.shards()[0].num_tokens();
    for rank in 0..n {
        check(
            "get_doc_by_rank",
            engine.get_doc_by_rank(0, rank, 5).map(|_| ()),
        );
    }
    for tokens in [vec![], vec![byte_order_tokens(width)[1]]] {
        check(
            "search_docs",
            engine.search_docs(&tokens, 100, 5, Some(1)).map(|_| ()),
        );
        check("occurrences", engine.occurrences(&tokens, 100).map(|_| ()));
    }
    check("dedup_self", engine.dedup_self(1, &control).map(|_| ()));
    check(
        "dedup_against",
        engine
            .dedup_against(&engine, 0, 0..engine.num_documents(), 1, &control)
            .map(|_| ()),
    );
    let report = anygram::verify::verify(&engine);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.contains("offset.0") && p.contains("entry 2")),
        "verify missed offset {value}: {:?}",
        report.problems
    );
}

fn clone_err(e: &Error) -> Error {
    match e {
        Error::Corrupt { path, detail } => Error::Corrupt {
            path: path.clone(),
            detail: detail.clone(),
        },
        other => Error::InvalidQuery(other.to_string()),
    }
}

#[test]
fn a_corrupt_middle_offset_is_an_error_not_a_panic() {
    for width in [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32] {
        let w = width.bytes() as u64;
        let total: u64 = docs(width).iter().map(|d| (d.len() as u64 + 1) * w).sum();
        let mut values = vec![
            u64::MAX,
            1 << 63,
            total,
            total + w,
            0,
            w * 4, /* a token, not a separator */
        ];
        if w > 1 {
            values.push((docs(width)[0].len() as u64 + 1) * w + 1); // misaligned, inside document 1's separator
        }
        for value in values {
            assert_offset_corruption_is_reported(width, value);
        }
    }
}

#[test]
fn verify_checks_every_byte_of_the_separator_alignment_and_count() {
    let width = TokenWidth::U16;
    // Document 1 holds 0x00FF and 0xFF00: a byte of either is 0xFF.
    let spec = IndexSpec {
        shards: vec![vec![vec![1], vec![0x00FF, 0xFF00, 7], vec![2, 3]]],
        ..spec(width)
    };
    let ok = tempfile::tempdir().unwrap();
    write_index(ok.path(), &spec, width);
    assert!(anygram::verify::verify(&open(ok.path(), width).unwrap())
        .problems
        .is_empty());
    // Document 1's separator is at byte 4, 0x00FF at 6 (bytes FF 00), 0xFF00
    // at 8 (bytes 00 FF): entry 2 set to 6, 9 or 5 points at a 0xFF byte that
    // is not a whole separator token.
    for (value, why) in [
        (6u64, "does not point at a document separator"),
        (9, "not a multiple"),
        (5, "not a multiple"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_index(dir.path(), &spec, width);
        set_offset(dir.path(), 2, value);
        let problems = anygram::verify::verify(&open(dir.path(), width).unwrap()).problems;
        assert!(
            problems
                .iter()
                .any(|p| p.contains("entry 2") && p.contains(why)),
            "{value}: {problems:?}"
        );
    }
    // One offset dropped (and its metadata offset): every entry is a separator,
    // in order, but a separator has no document.
    let dir = tempfile::tempdir().unwrap();
    write_index(
        dir.path(),
        &IndexSpec {
            metadata: false,
            ..spec.clone()
        },
        width,
    );
    let offsets = std::fs::read(dir.path().join("offset.0")).unwrap();
    std::fs::write(dir.path().join("offset.0"), &offsets[..16]).unwrap();
    let problems = anygram::verify::verify(&open(dir.path(), width).unwrap()).problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("2 document offsets") && p.contains("3 document separators")),
        "{problems:?}"
    );
    // A metadata offset past the end of the metadata.
    let dir = tempfile::tempdir().unwrap();
    write_index(dir.path(), &spec, width);
    let path = dir.path().join("metaoff.0");
    let mut metaoff = std::fs::read(&path).unwrap();
    metaoff[8..16].copy_from_slice(&10_000u64.to_le_bytes());
    std::fs::write(&path, metaoff).unwrap();
    let engine = open(dir.path(), width).unwrap();
    let problems = anygram::verify::verify(&engine).problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("metaoff.0") && p.contains("entry 1")),
        "{problems:?}"
    );
    let err = engine.get_doc_by_ix(1, 10).unwrap_err();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if path.ends_with("metaoff.0")),
        "{err}"
    );
}

#[test]
fn huge_lengths_mean_everything_not_overflow() {
    for width in [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32] {
        let dir = tempfile::tempdir().unwrap();
        write_index(dir.path(), &spec(width), width);
        let engine = open(dir.path(), width).unwrap();
        let docs = docs(width);
        for huge in [(1u64 << 63) - 1, 1 << 63, u64::MAX] {
            for (d, doc) in docs.iter().enumerate() {
                let got = engine.get_doc_by_ix(d as u64, huge).unwrap();
                assert_eq!(
                    &got.token_ids, doc,
                    "width {width:?} doc {d} max_disp_len {huge}"
                );
                assert_eq!(got.metadata, common::metadata_line(d));
            }
            let t = byte_order_tokens(width);
            let found = engine
                .search_docs(&[t[1], t[2]], 100, huge, Some(0))
                .unwrap();
            assert_eq!(found.count, 4);
            for doc in &found.documents {
                assert_eq!(doc.token_ids, docs[doc.doc_ix as usize]);
            }
            // Windows longer than any document repeat nowhere: nothing is removed.
            let control = ScanControl::default();
            assert_eq!(engine.dedup_self(huge, &control).unwrap(), vec![]);
            assert_eq!(
                engine.dedup_against_all(&engine, huge, &control).unwrap(),
                vec![]
            );
            assert_eq!(
                engine
                    .dedup_against(&engine, 0, 0..docs.len() as u64, huge, &control)
                    .unwrap(),
                vec![]
            );
            let contamination = engine.contamination(&docs[1], huge, usize::MAX).unwrap();
            assert_eq!(contamination.num_covered, 0);
            assert_eq!(contamination.longest_len, 4);
            // A CNF reach past the whole shard is no limit at all.
            let cnf = vec![vec![vec![t[0]]], vec![vec![t[3]]]];
            let unlimited = engine.find_cnf(&cnf, huge, huge).unwrap();
            let whole = engine.find_cnf(&cnf, 1 << 20, engine.num_tokens()).unwrap();
            assert_eq!(unlimited, whole);
            assert_eq!(
                engine.ntd(&[t[1]], huge).unwrap().counts,
                engine.ntd(&[t[1]], 1 << 20).unwrap().counts
            );
        }
        assert!(
            matches!(engine.dedup_self(0, &ScanControl::default()), Err(Error::InvalidArgument(m)) if m.contains("min_len"))
        );
        let zero_support = anygram::ScoreOptions {
            top_max_support: Some(0),
            ..Default::default()
        };
        assert!(
            matches!(engine.score(&docs[1], &zero_support), Err(Error::InvalidQuery(m)) if m.contains("max_support"))
        );
        assert!(
            matches!(engine.get_doc_by_ix(0, 0), Err(Error::InvalidQuery(m)) if m.contains("max_disp_len"))
        );
        assert!(
            matches!(engine.occurrence_at(7, 0), Err(Error::InvalidArgument(m)) if m.contains("shard 7"))
        );
        assert!(
            matches!(engine.get_doc_by_rank(0, u64::MAX, 1), Err(Error::InvalidQuery(m)) if m.contains("rank"))
        );
    }
}

/// Runs `f` on a thread and fails the test if it has not returned within a
/// minute (a hang), instead of hanging the suite.
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("it hung (blocked on a FIFO?)")
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o600) },
        0,
        "mkfifo {}",
        path.display()
    );
}

#[test]
fn a_fifo_in_place_of_an_index_file_is_refused_without_blocking() {
    let width = TokenWidth::U16;
    for (name, manifest, give_width) in [
        ("tokenized.0", false, true),
        ("tokenized.0", false, false), // the width is inferred by reading tokenized.0
        ("table.0", false, true),
        ("offset.0", true, true),
        ("metadata.0", false, true),
        ("anygram.json", false, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        write_index(
            dir.path(),
            &IndexSpec {
                manifest,
                ..spec(width)
            },
            width,
        );
        let _ = std::fs::remove_file(dir.path().join(name));
        mkfifo(&dir.path().join(name));
        let path = dir.path().to_path_buf();
        let result = within_a_minute(move || {
            let options = anygram::OpenOptions {
                token_width: give_width.then_some(2),
                sample_keys: false,
                ..Default::default()
            };
            Engine::open(&path, &options)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        let err = result.expect_err(name);
        assert!(
            err.contains(name) && err.contains("not a regular file") && err.contains("FIFO"),
            "{name}: {err}"
        );
    }
    // Verify's checksums open every file the manifest lists.
    let dir = tempfile::tempdir().unwrap();
    write_index(
        dir.path(),
        &IndexSpec {
            manifest: true,
            tokenizer: true,
            ..spec(width)
        },
        width,
    );
    std::fs::remove_file(dir.path().join("tokenizer.json")).unwrap();
    mkfifo(&dir.path().join("tokenizer.json"));
    let path = dir.path().to_path_buf();
    let problems =
        within_a_minute(move || anygram::verify::verify(&open(&path, width).unwrap()).problems);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("tokenizer.json") && p.contains("not a regular file")),
        "{problems:?}"
    );
}

#[test]
fn an_anygram_index_without_its_manifest_does_not_open_as_infini_grams() {
    let width = TokenWidth::U16;
    let dir = tempfile::tempdir().unwrap();
    write_index(
        dir.path(),
        &IndexSpec {
            manifest: true,
            tokenizer: true,
            eos_token_id: 1,
            ..spec(width)
        },
        width,
    );
    assert_eq!(open(dir.path(), width).unwrap().eos_token_id(), 1);
    std::fs::remove_file(dir.path().join("anygram.json")).unwrap();
    for options in [
        anygram::OpenOptions::default(),
        anygram::OpenOptions {
            token_width: Some(2),
            ..Default::default()
        },
    ] {
        let err = Engine::open(dir.path(), &options)
            .err()
            .expect("opened without its manifest");
        assert!(
            matches!(&err, Error::Corrupt { path, detail } if path.ends_with("anygram.json") && detail.contains("anygram.json is missing") && detail.contains("tokenizer.json")),
            "{err}"
        );
    }
    // A plain infini-gram index (no manifest, no tokenizer) still opens.
    let plain = tempfile::tempdir().unwrap();
    write_index(plain.path(), &spec(width), width);
    let engine = Engine::open(plain.path(), &anygram::OpenOptions::default()).unwrap();
    assert!(engine.manifest().is_none());
    assert!(anygram::verify::verify(&engine).problems.is_empty());
}

#[test]
fn the_tokenizer_file_must_be_inside_the_index() {
    let width = TokenWidth::U16;
    let dir = tempfile::tempdir().unwrap();
    write_index(
        dir.path(),
        &IndexSpec {
            manifest: true,
            tokenizer: true,
            ..spec(width)
        },
        width,
    );
    let engine = open(dir.path(), width).unwrap();
    let manifest = engine.manifest().unwrap();
    assert_eq!(
        manifest.tokenizer_path(dir.path()),
        Some(dir.path().join("tokenizer.json"))
    );
    let text = std::fs::read_to_string(dir.path().join("anygram.json")).unwrap();
    for bad in [
        "/etc/passwd",
        "../tokenizer.json",
        "sub/tokenizer.json",
        "..",
        ".",
        "",
    ] {
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json["tokenizer"]["file"] = bad.into();
        std::fs::write(dir.path().join("anygram.json"), json.to_string()).unwrap();
        let err = open(dir.path(), width).err().expect(bad);
        assert!(
            matches!(&err, Error::Corrupt { detail, .. } if detail.contains("tokenizer.file") && detail.contains("plain file name")),
            "{bad}: {err}"
        );
    }
}
