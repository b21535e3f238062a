//! The core's index writer: byte-identical shard files to the reference
//! layout (the tests' hand-written writer), counts equal to a brute-force
//! count, a typed manifest that reads back, the marker that makes a lost
//! manifest an error, and the shard split rule.

mod common;

use std::path::Path;

use anygram::build::writer::{publish_index, shard_cuts, IndexWriter, IndexWriterOptions};
use anygram::build::SuffixArrayOptions;
use anygram::manifest::{Manifest, MANIFEST_FILE, MARKER_FILE};
use anygram::{Engine, Error, OpenOptions, TokenWidth};
use common::{metadata_line, write_index, IndexSpec};
use rand::{Rng, SeedableRng};

fn documents(width: TokenWidth, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let ids = common::byte_order_tokens(width);
    (0..40)
        .map(|_| {
            let len = rng.gen_range(0..30);
            (0..len).map(|_| ids[rng.gen_range(0..ids.len())]).collect()
        })
        .collect()
}

fn write(output: &Path, docs: &[Vec<u32>], width: TokenWidth, shards: usize) -> Manifest {
    let mut writer = IndexWriter::create(
        output,
        IndexWriterOptions {
            width,
            vocab_size: None,
            eos_token_id: None,
            num_shards: shards,
            metadata: true,
            suffix_array: SuffixArrayOptions {
                threads: 1,
                ..Default::default()
            },
            accelerator: true,
            tokenizer: None,
        },
    )
    .unwrap();
    for (i, doc) in docs.iter().enumerate() {
        writer.add(doc, Some(metadata_line(i).as_bytes())).unwrap();
    }
    writer.finish(None).unwrap()
}

fn brute_count(docs: &[Vec<u32>], pattern: &[u32]) -> u64 {
    docs.iter()
        .map(|d| {
            if pattern.len() > d.len() {
                0
            } else {
                d.windows(pattern.len()).filter(|w| *w == pattern).count() as u64
            }
        })
        .sum()
}

#[test]
fn writer_files_are_the_reference_layout_and_answer_like_brute_force() {
    for width in [TokenWidth::U8, TokenWidth::U16, TokenWidth::U32] {
        let docs = documents(width, width.bytes() as u64);
        let dir = tempfile::tempdir().unwrap();
        let ours = dir.path().join("ours");
        let manifest = write(&ours, &docs, width, 1);
        let reference = dir.path().join("reference");
        std::fs::create_dir(&reference).unwrap();
        write_index(
            &reference,
            &IndexSpec {
                shards: vec![docs.clone()],
                metadata: true,
                ..Default::default()
            },
            width,
        );
        for name in [
            "tokenized.0",
            "table.0",
            "offset.0",
            "metadata.0",
            "metaoff.0",
        ] {
            assert_eq!(
                std::fs::read(ours.join(name)).unwrap(),
                std::fs::read(reference.join(name)).unwrap(),
                "{width:?} {name}"
            );
        }
        // The manifest on disk is the one returned, and reads back through the type.
        assert_eq!(Manifest::read(&ours).unwrap().unwrap(), manifest);
        assert!(manifest.files.contains_key("accel.0") && manifest.files.contains_key(MARKER_FILE));
        let engine = Engine::open(&ours, &OpenOptions::default()).unwrap();
        let ids = common::byte_order_tokens(width);
        for pattern in [
            vec![ids[0]],
            vec![ids[1], ids[2]],
            vec![ids[3], ids[3], ids[0]],
        ] {
            assert_eq!(
                engine.count(&pattern).unwrap(),
                brute_count(&docs, &pattern)
            );
        }
        assert!(anygram::verify::verify(&engine).problems.is_empty());
    }
}

#[test]
fn shards_split_at_documents_and_together_hold_every_one() {
    let width = TokenWidth::U16;
    let docs = documents(width, 7);
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(&dir.path().join("idx"), &docs, width, 3);
    assert_eq!(manifest.shards.len(), 3);
    assert_eq!(
        manifest.shards.iter().map(|s| s.num_documents).sum::<u64>(),
        docs.len() as u64
    );
    let engine = Engine::open(dir.path().join("idx"), &OpenOptions::default()).unwrap();
    let ids = common::byte_order_tokens(width);
    for pattern in [vec![ids[0]], vec![ids[1], ids[2]]] {
        assert_eq!(
            engine.count(&pattern).unwrap(),
            brute_count(&docs, &pattern)
        );
    }
    // The rule: the document starting nearest at or above each equal cut, one at least a shard.
    assert_eq!(shard_cuts(&[0, 10, 20, 30], 40, 2).unwrap(), vec![0, 2, 4]);
    assert_eq!(
        shard_cuts(&[0, 1, 2, 100], 110, 3).unwrap(),
        vec![0, 2, 3, 4]
    );
    assert_eq!(shard_cuts(&[0, 5], 10, 2).unwrap(), vec![0, 1, 2]);
    assert!(matches!(
        shard_cuts(&[0, 5], 10, 3),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn publishing_replaces_an_index_only_when_asked_and_leaves_nothing_aside() {
    let width = TokenWidth::U16;
    let dir = tempfile::tempdir().unwrap();
    let (old, new, output) = (
        dir.path().join("old"),
        dir.path().join("new"),
        dir.path().join("idx"),
    );
    let (old_docs, new_docs) = (documents(width, 5), documents(width, 6));
    write(&old, &old_docs, width, 1);
    write(&new, &new_docs, width, 2);
    publish_index(&old, &output, false).unwrap();
    let err = publish_index(&new, &output, false).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("already exists")),
        "{err}"
    );
    let engine = Engine::open(&output, &OpenOptions::default()).unwrap();
    assert_eq!(engine.num_documents(), old_docs.len() as u64);
    drop(engine);
    publish_index(&new, &output, true).unwrap();
    let engine = Engine::open(&output, &OpenOptions::default()).unwrap();
    assert_eq!(engine.shards().len(), 2);
    assert_eq!(engine.num_documents(), new_docs.len() as u64);
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["idx"],
        "the old index is gone, nothing is left aside"
    );
}

#[test]
fn a_lost_manifest_is_noticed_without_a_tokenizer() {
    let width = TokenWidth::U8;
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("idx");
    write(&index, &documents(width, 3), width, 1);
    std::fs::remove_file(index.join(MANIFEST_FILE)).unwrap();
    let err = Engine::open(&index, &OpenOptions::default()).err().unwrap();
    assert!(
        matches!(&err, Error::Corrupt { detail, .. } if detail.contains(MARKER_FILE) && detail.contains("without its manifest")),
        "{err}"
    );
}

#[test]
fn out_of_vocabulary_ids_and_bad_metadata_lines_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut writer = IndexWriter::create(
        &dir.path().join("idx"),
        IndexWriterOptions {
            width: TokenWidth::U16,
            vocab_size: Some(100),
            eos_token_id: None,
            num_shards: 1,
            metadata: true,
            suffix_array: SuffixArrayOptions::default(),
            accelerator: false,
            tokenizer: None,
        },
    )
    .unwrap();
    let err = writer.add(&[1, 100], Some(b"{}\n")).unwrap_err();
    assert!(
        err.to_string().contains("token id 100 at position 1"),
        "{err}"
    );
    assert!(writer.add(&[1], Some(b"{}\n{}\n")).is_err());
    assert!(writer.add(&[1], None).is_err());
    drop(writer);
    // Dropped unfinished: no work directory is left beside the output.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn unknown_manifest_fields_are_refused_at_every_level() {
    let width = TokenWidth::U8;
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("idx");
    write(&index, &documents(width, 5), width, 1);
    let text = std::fs::read_to_string(index.join(MANIFEST_FILE)).unwrap();
    let value: serde_json::Value = serde_json::from_str(&text).unwrap();
    for pointer in ["", "/shards/0", "/files/table.0"] {
        let mut changed = value.clone();
        changed
            .pointer_mut(pointer)
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert("surprise".into(), 1.into());
        let err = Manifest::parse(&changed.to_string()).unwrap_err();
        assert!(
            format!("{err:?}").contains("surprise"),
            "{pointer}: {err:?}"
        );
    }
    // A newer format is named as such, not as its unknown fields.
    let mut newer = value.clone();
    newer["format_version"] = 99.into();
    newer["surprise"] = 1.into();
    assert_eq!(
        Manifest::parse(&newer.to_string()),
        Err(anygram::manifest::ManifestError::Version(99))
    );
}
