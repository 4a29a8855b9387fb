//! Wire compatibility across one release: `fixtures/wire-v1.bin` is a frame
//! captured from the version-1 controller (an HTTP listener with a route and
//! an HTTPS listener with its certificate and key). This build must decode
//! it, and what it encodes for a version-1 peer must decode as version 1 did
//! (`{version, config}`, unknown fields ignored) to the same value.

use portcullis_kube::stream::wire::{Decoder, Message, encode_for};

const FIXTURE: &[u8] = include_bytes!("fixtures/wire-v1.bin");

#[test]
fn a_version_1_frame_decodes_and_round_trips() {
    let msgs = Decoder::default()
        .push(FIXTURE)
        .expect("the v1 frame decodes");
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!(m.generation, 0, "version 1 has no generation");
    assert_eq!(m.config.ports.len(), 2);
    let original: serde_json::Value = serde_json::from_slice(&FIXTURE[4..]).unwrap();
    let tls = &original["config"]["ports"][1]["listeners"][0]["tls"];
    assert!(
        tls.to_string().contains("PRIVATE KEY"),
        "the fixture carries a key: {tls}"
    );
    // Re-encoded for a version-1 peer: the same JSON, field for field.
    let again: serde_json::Value = serde_json::from_slice(&encode_for(m, 1)[4..]).unwrap();
    assert_eq!(again, original);
}

#[test]
fn what_version_2_sends_decodes_as_version_1_did() {
    #[derive(serde::Deserialize)]
    struct V1 {
        version: u64,
        config: portcullis_ir::Config,
    }
    let m = Decoder::default().push(FIXTURE).unwrap().remove(0);
    let m2 = Message {
        generation: 7,
        ..m.clone()
    };
    for wire in [1, 2] {
        let frame = encode_for(&m2, wire);
        let old: V1 = serde_json::from_slice(&frame[4..]).expect("a version-1 proxy decodes it");
        assert_eq!(old.version, m.version);
        assert_eq!(old.config, m.config);
    }
    let back = Decoder::default()
        .push(&encode_for(&m2, 2))
        .unwrap()
        .remove(0);
    assert_eq!(back.generation, 7);
}
