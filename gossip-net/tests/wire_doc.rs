//! Keeps `docs/wire.md` honest: every test vector and known answer in the document is parsed
//! and checked against the code, so the document cannot drift from the implementation.
//!
//! A vector is a fenced block in the document whose first line is `vector: <name>`, followed by
//! `field: value` lines. A field repeated on consecutive lines (long hex) is concatenated. A
//! field of a nested item is named by its path: `page[0].node`, `deltas[0].entries[1].value`;
//! a list is as long as the indices it lists (none: empty).
//!
//! Every message vector is checked both ways: the envelope built from the stated fields encodes
//! to the stated envelope bytes and is sealed to the stated datagram, the datagram decodes to
//! that envelope, and the fields printed back from the decoded envelope are exactly the stated
//! ones (none unchecked, none missing).
//!
//! To print the vectors again after a deliberate wire change:
//! `WIRE_DOC_PRINT=1 cargo test -p gossip-net --test wire_doc generated -- --nocapture`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use gossip_core::blob::{BlobHave, BlobId, BlobMeta, BlobPiece, BlobRequest, BlobWant, PieceIndex};
use gossip_core::feed::{self, FeedId, FeedMessage, MessageHash};
use gossip_core::flow::{FlowAdvert, FlowConfig, FlowControl};
use gossip_core::membership::{self, CyclonConfig, Descriptor, Shuffle, ShuffleReply};
use gossip_core::reconcile::{
    DeltaEntry, Deltas, Digest, DigestEntry, NodeDelta, NodePrefix, ReconcileConfig, Reply,
};
use gossip_core::tree::{self, FeedBatch, Note, Notes, TreeConfig};
use gossip_core::{Envelope, Gossip, Message, MessageId, NodeId, PacketType};
use gossip_crypto::{
    Identity, KEY_ID_CONTEXT, Key, Keyring, NONCE_LEN, PASSPHRASE_SALT_PREFIX, SEAL_OVERHEAD,
    TAG_LEN,
};
use gossip_net::wire::{self, DECODE_LIMIT};
use gossip_net::{
    Cipher, DEFAULT_MAX_DATAGRAM, DropReason, LABEL_LEN, Label, MAX_UDP_PAYLOAD, PACKET_OVERHEAD,
    PacketCodec, Security,
};

/// Every vector the document must contain.
const EXPECTED: [&str; 18] = [
    "push_ack_plaintext",
    "pull_sync_plaintext",
    "push_message_aes256gcm",
    "pull_response_aes256gcm",
    "passphrase_kat",
    "state_digest_plaintext",
    "state_reply_plaintext",
    "state_deltas_plaintext",
    "cyclon_shuffle_aes256gcm",
    "cyclon_shuffle_reply_plaintext",
    "tree_notes_plaintext",
    "tree_batch_plaintext",
    "feed_message_kat",
    "feed_message_kat_second",
    "blob_want_plaintext",
    "blob_have_plaintext",
    "blob_request_plaintext",
    "blob_piece_aes256gcm",
];

/// Fields of a message vector that are not fields of the message.
const META: [&str; 10] = [
    "mode", "key", "key_id", "nonce", "sender", "epoch", "counter", "message", "envelope",
    "datagram",
];

/// The sender epoch of every vector and example: 1,700,000,000 s after the Unix epoch
/// (2023-11-14 22:13:20 UTC), in microseconds.
const DOC_EPOCH: u64 = 1_700_000_000_000_000;

/// Bytes of the envelope header (sender, epoch, counter): the variant byte's offset.
const H: usize = 48;

// ---------------------------------------------------------------------------------------------
// Helpers

/// An RNG that always yields the same 12-byte nonce, to reproduce a sealed vector.
struct FixedNonce([u8; NONCE_LEN]);

impl rand::RngCore for FixedNonce {
    fn next_u32(&mut self) -> u32 {
        u32::from_le_bytes([self.0[0], self.0[1], self.0[2], self.0[3]])
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        assert_eq!(dst.len(), NONCE_LEN, "seal draws exactly one nonce");
        dst.copy_from_slice(&self.0);
    }
}

impl rand::CryptoRng for FixedNonce {}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Vec<u8> {
    let text: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(text.len() % 2 == 0, "odd number of hex digits: {text}");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn array<const N: usize>(text: &str) -> [u8; N] {
    let bytes = from_hex(text);
    bytes
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("expected {N} bytes, got {}", b.len()))
}

/// A parsed vector: field name to value (repeated fields concatenated).
type Vector = BTreeMap<String, String>;

/// Parses every `vector:` block of `docs/wire.md`.
fn doc_vectors() -> BTreeMap<String, Vector> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wire.md");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut vectors = BTreeMap::new();
    let mut in_fence = false;
    let mut current: Option<(String, Vector)> = None;
    let mut last_field = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with("```") {
            if let Some((name, fields)) = current.take() {
                assert!(
                    vectors.insert(name.clone(), fields).is_none(),
                    "vector {name} appears twice"
                );
            }
            in_fence = !in_fence;
            continue;
        }
        if !in_fence {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "vector" {
            assert!(current.is_none(), "vector {value} starts inside another");
            current = Some((value.to_owned(), Vector::new()));
            last_field.clear();
            continue;
        }
        if let Some((_, fields)) = current.as_mut() {
            let entry = fields.entry(key.to_owned()).or_default();
            if !entry.is_empty() {
                assert_eq!(last_field, key, "field {key} repeated non-consecutively");
            }
            entry.push_str(value);
            last_field = key.to_owned();
        }
    }
    assert!(current.is_none(), "unterminated vector block");
    vectors
}

fn field<'a>(vector: &'a Vector, name: &str) -> &'a str {
    vector
        .get(name)
        .unwrap_or_else(|| panic!("vector lacks field `{name}`"))
}

/// A decimal (or other `FromStr`) field.
fn num<T: FromStr>(vector: &Vector, name: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    let text = field(vector, name);
    text.parse()
        .unwrap_or_else(|e| panic!("field `{name}` = {text}: {e:?}"))
}

fn flag(vector: &Vector, name: &str) -> bool {
    match field(vector, name) {
        "true" => true,
        "false" => false,
        other => panic!("field `{name}` is {other}, not true/false"),
    }
}

/// A hex field that may be `none`.
fn opt_hex(vector: &Vector, name: &str) -> Option<Vec<u8>> {
    match field(vector, name) {
        "none" => None,
        hex => Some(from_hex(hex)),
    }
}

/// The items `list[0]`, `list[1]`, ... of a path-form list, each built by `item` from its
/// path.
fn items<T>(vector: &Vector, list: &str, item: impl Fn(&Vector, &str) -> T) -> Vec<T> {
    let mut out = Vec::new();
    loop {
        let path = format!("{list}[{}]", out.len());
        if !vector.keys().any(|k| k.starts_with(&format!("{path}."))) {
            return out;
        }
        out.push(item(vector, &path));
    }
}

fn ids(vector: &Vector, name: &str) -> Vec<MessageId> {
    field(vector, name)
        .split(',')
        .map(|id| MessageId(array(id.trim())))
        .collect()
}

fn gossip(vector: &Vector) -> Gossip {
    Gossip {
        id: MessageId(array(field(vector, "id"))),
        origin: NodeId(array(field(vector, "origin"))),
        hop: field(vector, "hop").parse().expect("hop is a decimal u16"),
        payload: Bytes::from(from_hex(field(vector, "payload"))),
    }
}

fn digest_entry(v: &Vector, p: &str) -> DigestEntry {
    DigestEntry {
        node: NodePrefix(array(field(v, &format!("{p}.node")))),
        generation: num(v, &format!("{p}.generation")),
        heartbeat: num(v, &format!("{p}.heartbeat")),
        max_version: num(v, &format!("{p}.max_version")),
        gc_version: num(v, &format!("{p}.gc_version")),
    }
}

fn flow_advert(v: &Vector, p: &str) -> FlowAdvert {
    FlowAdvert {
        rate: num(v, &format!("{p}.rate")),
        desired: num(v, &format!("{p}.desired")),
    }
}

fn delta_entry(v: &Vector, p: &str) -> DeltaEntry {
    DeltaEntry {
        key: field(v, &format!("{p}.key")).to_owned(),
        version: num(v, &format!("{p}.version")),
        value: opt_hex(v, &format!("{p}.value")).map(Bytes::from),
    }
}

fn node_delta(v: &Vector, p: &str) -> NodeDelta {
    NodeDelta {
        node: NodeId(array(field(v, &format!("{p}.node")))),
        generation: num(v, &format!("{p}.generation")),
        heartbeat: num(v, &format!("{p}.heartbeat")),
        addr: num(v, &format!("{p}.addr")),
        gc_version: num(v, &format!("{p}.gc_version")),
        reset: flag(v, &format!("{p}.reset")),
        from_version: num(v, &format!("{p}.from_version")),
        to_version: num(v, &format!("{p}.to_version")),
        complete: flag(v, &format!("{p}.complete")),
        entries: items(v, &format!("{p}.entries"), delta_entry),
    }
}

fn descriptor(v: &Vector, p: &str) -> Descriptor {
    Descriptor {
        node: NodeId(array(field(v, &format!("{p}.node")))),
        addr: num(v, &format!("{p}.addr")),
        age: num(v, &format!("{p}.age")),
    }
}

fn note_entry(v: &Vector, p: &str) -> (FeedId, i64) {
    (
        FeedId(array(field(v, &format!("{p}.feed")))),
        num(v, &format!("{p}.note")),
    )
}

fn feed_message(v: &Vector, p: &str) -> FeedMessage {
    FeedMessage {
        author: FeedId(array(field(v, &format!("{p}.author")))),
        sequence: num(v, &format!("{p}.sequence")),
        previous: opt_hex(v, &format!("{p}.previous"))
            .map(|h| MessageHash(h.try_into().expect("32-byte previous"))),
        timestamp_ms: num(v, &format!("{p}.timestamp_ms")),
        content: Bytes::from(from_hex(field(v, &format!("{p}.content")))),
        signature: array(field(v, &format!("{p}.signature"))),
    }
}

fn piece_index(v: &Vector, p: &str) -> PieceIndex {
    PieceIndex {
        level: num(v, &format!("{p}.level")),
        index: num(v, &format!("{p}.index")),
    }
}

/// The envelope a vector states, built from its input fields (not from its hex).
fn stated_envelope(vector: &Vector) -> Envelope {
    let v = vector;
    let message = match field(v, "message") {
        "PushMessage" => Message::PushMessage(gossip(v)),
        "PushAck" => Message::PushAck {
            id: MessageId(array(field(v, "id"))),
        },
        "PullSync" => Message::PullSync { ids: ids(v, "ids") },
        "PullRequest" => Message::PullRequest { ids: ids(v, "ids") },
        "PullResponse" => Message::PullResponse(gossip(v)),
        "StateDigest" => Message::StateDigest(Digest {
            range_end: NodePrefix(array(field(v, "range_end"))),
            page: items(v, "page", digest_entry),
            extra: items(v, "extra", digest_entry),
            flow: flow_advert(v, "flow"),
        }),
        "StateReply" => Message::StateReply(Reply {
            deltas: items(v, "deltas", node_delta),
            digest: items(v, "digest", digest_entry),
            flow: flow_advert(v, "flow"),
            assigned_rate: num(v, "assigned_rate"),
        }),
        "StateDeltas" => Message::StateDeltas(Deltas {
            deltas: items(v, "deltas", node_delta),
        }),
        "CyclonShuffle" => Message::CyclonShuffle(Shuffle {
            entries: items(v, "entries", descriptor),
        }),
        "CyclonShuffleReply" => Message::CyclonShuffleReply(ShuffleReply {
            entries: items(v, "entries", descriptor),
        }),
        "TreeNotes" => Message::TreeNotes(Notes {
            entries: items(v, "entries", note_entry),
        }),
        "TreeBatch" => Message::TreeBatch(FeedBatch {
            messages: items(v, "messages", feed_message),
        }),
        "BlobWant" => Message::BlobWant(BlobWant {
            blob: BlobId(array(field(v, "blob"))),
        }),
        "BlobHave" => Message::BlobHave(BlobHave {
            blob: BlobId(array(field(v, "blob"))),
            meta: BlobMeta {
                size: num(v, "size"),
                chunk_size: num(v, "chunk_size"),
                root: array(field(v, "root")),
            },
        }),
        "BlobRequest" => Message::BlobRequest(BlobRequest {
            blob: BlobId(array(field(v, "blob"))),
            pieces: items(v, "pieces", piece_index),
        }),
        "BlobPiece" => Message::BlobPiece(BlobPiece {
            blob: BlobId(array(field(v, "blob"))),
            piece: piece_index(v, "piece"),
            data: Bytes::from(from_hex(field(v, "data"))),
        }),
        other => panic!("unknown message {other}"),
    };
    Envelope {
        sender: NodeId(array(field(v, "sender"))),
        epoch: num(v, "epoch"),
        counter: num(v, "counter"),
        message,
    }
}

/// A field value as the document writes it: hex (wrapped when long) or text.
enum Value {
    Hex(Vec<u8>),
    Text(String),
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Hex(bytes) => to_hex(bytes),
            Value::Text(text) => text.clone(),
        }
    }
}

/// Collects `(path, value)` pairs in the document's order.
#[derive(Default)]
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn hex(&mut self, path: String, bytes: &[u8]) {
        self.0.push((path, Value::Hex(bytes.to_vec())));
    }

    fn text(&mut self, path: String, text: impl ToString) {
        self.0.push((path, Value::Text(text.to_string())));
    }

    fn opt_hex(&mut self, path: String, bytes: Option<&[u8]>) {
        match bytes {
            Some(bytes) => self.hex(path, bytes),
            None => self.text(path, "none"),
        }
    }

    fn gossip(&mut self, g: &Gossip) {
        self.hex("id".into(), &g.id.0);
        self.hex("origin".into(), &g.origin.0);
        self.text("hop".into(), g.hop);
        self.hex("payload".into(), &g.payload);
    }

    fn digest_entry(&mut self, p: &str, e: &DigestEntry) {
        self.hex(format!("{p}.node"), &e.node.0);
        self.text(format!("{p}.generation"), e.generation);
        self.text(format!("{p}.heartbeat"), e.heartbeat);
        self.text(format!("{p}.max_version"), e.max_version);
        self.text(format!("{p}.gc_version"), e.gc_version);
    }

    fn flow(&mut self, p: &str, f: &FlowAdvert) {
        self.text(format!("{p}.rate"), f.rate);
        self.text(format!("{p}.desired"), f.desired);
    }

    fn node_delta(&mut self, p: &str, d: &NodeDelta) {
        self.hex(format!("{p}.node"), &d.node.0);
        self.text(format!("{p}.generation"), d.generation);
        self.text(format!("{p}.heartbeat"), d.heartbeat);
        self.text(format!("{p}.addr"), d.addr);
        self.text(format!("{p}.gc_version"), d.gc_version);
        self.text(format!("{p}.reset"), d.reset);
        self.text(format!("{p}.from_version"), d.from_version);
        self.text(format!("{p}.to_version"), d.to_version);
        self.text(format!("{p}.complete"), d.complete);
        for (j, e) in d.entries.iter().enumerate() {
            self.text(format!("{p}.entries[{j}].key"), &e.key);
            self.text(format!("{p}.entries[{j}].version"), e.version);
            self.opt_hex(format!("{p}.entries[{j}].value"), e.value.as_deref());
        }
    }

    fn descriptors(&mut self, entries: &[Descriptor]) {
        for (i, d) in entries.iter().enumerate() {
            self.hex(format!("entries[{i}].node"), &d.node.0);
            self.text(format!("entries[{i}].addr"), d.addr);
            self.text(format!("entries[{i}].age"), d.age);
        }
    }

    fn feed_message(&mut self, p: &str, m: &FeedMessage) {
        self.hex(format!("{p}.author"), &m.author.0);
        self.text(format!("{p}.sequence"), m.sequence);
        self.opt_hex(
            format!("{p}.previous"),
            m.previous.as_ref().map(|h| &h.0[..]),
        );
        self.text(format!("{p}.timestamp_ms"), m.timestamp_ms);
        self.hex(format!("{p}.content"), &m.content);
        self.hex(format!("{p}.signature"), &m.signature);
    }
}

/// The message's name and fields as the document writes them.
fn message_fields(message: &Message) -> (&'static str, Fields) {
    let mut f = Fields::default();
    let name = match message {
        Message::PushMessage(g) => {
            f.gossip(g);
            "PushMessage"
        }
        Message::PushAck { id } => {
            f.hex("id".into(), &id.0);
            "PushAck"
        }
        Message::PullSync { ids } | Message::PullRequest { ids } => {
            let list: Vec<String> = ids.iter().map(|i| to_hex(&i.0)).collect();
            f.text("ids".into(), list.join(", "));
            if matches!(message, Message::PullSync { .. }) {
                "PullSync"
            } else {
                "PullRequest"
            }
        }
        Message::PullResponse(g) => {
            f.gossip(g);
            "PullResponse"
        }
        Message::StateDigest(d) => {
            f.hex("range_end".into(), &d.range_end.0);
            for (i, e) in d.page.iter().enumerate() {
                f.digest_entry(&format!("page[{i}]"), e);
            }
            for (i, e) in d.extra.iter().enumerate() {
                f.digest_entry(&format!("extra[{i}]"), e);
            }
            f.flow("flow", &d.flow);
            "StateDigest"
        }
        Message::StateReply(r) => {
            for (i, d) in r.deltas.iter().enumerate() {
                f.node_delta(&format!("deltas[{i}]"), d);
            }
            for (i, e) in r.digest.iter().enumerate() {
                f.digest_entry(&format!("digest[{i}]"), e);
            }
            f.flow("flow", &r.flow);
            f.text("assigned_rate".into(), r.assigned_rate);
            "StateReply"
        }
        Message::StateDeltas(d) => {
            for (i, d) in d.deltas.iter().enumerate() {
                f.node_delta(&format!("deltas[{i}]"), d);
            }
            "StateDeltas"
        }
        Message::CyclonShuffle(s) => {
            f.descriptors(&s.entries);
            "CyclonShuffle"
        }
        Message::CyclonShuffleReply(r) => {
            f.descriptors(&r.entries);
            "CyclonShuffleReply"
        }
        Message::TreeNotes(n) => {
            for (i, (feed, note)) in n.entries.iter().enumerate() {
                f.hex(format!("entries[{i}].feed"), &feed.0);
                f.text(format!("entries[{i}].note"), note);
            }
            "TreeNotes"
        }
        Message::TreeBatch(b) => {
            for (i, m) in b.messages.iter().enumerate() {
                f.feed_message(&format!("messages[{i}]"), m);
            }
            "TreeBatch"
        }
        Message::Application(app) => {
            f.text("kind".into(), app.kind);
            f.hex("payload".into(), &app.payload);
            "Application"
        }
        Message::BlobWant(w) => {
            f.hex("blob".into(), &w.blob.0);
            "BlobWant"
        }
        Message::BlobHave(h) => {
            f.hex("blob".into(), &h.blob.0);
            f.text("size".into(), h.meta.size);
            f.text("chunk_size".into(), h.meta.chunk_size);
            f.hex("root".into(), &h.meta.root);
            "BlobHave"
        }
        Message::BlobRequest(r) => {
            f.hex("blob".into(), &r.blob.0);
            for (i, p) in r.pieces.iter().enumerate() {
                f.text(format!("pieces[{i}].level"), p.level);
                f.text(format!("pieces[{i}].index"), p.index);
            }
            "BlobRequest"
        }
        Message::BlobPiece(p) => {
            f.hex("blob".into(), &p.blob.0);
            f.text("piece.level".into(), p.piece.level);
            f.text("piece.index".into(), p.piece.index);
            f.hex("data".into(), &p.data);
            "BlobPiece"
        }
    };
    (name, f)
}

/// The vector's message fields are exactly those printed back from `envelope`.
fn check_fields(name: &str, vector: &Vector, envelope: &Envelope) {
    let (message, fields) = message_fields(&envelope.message);
    assert_eq!(field(vector, "message"), message, "{name}: message name");
    assert_eq!(field(vector, "sender"), to_hex(&envelope.sender.0));
    let printed: BTreeMap<String, String> = fields
        .0
        .iter()
        .map(|(k, v)| (k.clone(), v.render()))
        .collect();
    let stated: BTreeMap<String, String> = vector
        .iter()
        .filter(|(k, _)| !META.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(stated, printed, "{name}: stated fields");
}

fn vector(name: &str) -> Vector {
    doc_vectors()
        .remove(name)
        .unwrap_or_else(|| panic!("docs/wire.md lacks vector {name}"))
}

fn encode_envelope(envelope: &Envelope) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_envelope(envelope, &mut out).expect("encodable");
    out
}

/// Seals `envelope` exactly as [`PacketCodec`] does, but with the given nonce.
fn seal_with_nonce(keyring: &Keyring, envelope: &Envelope, nonce: [u8; NONCE_LEN]) -> Vec<u8> {
    let plaintext = encode_envelope(envelope);
    let body_len = plaintext.len() + SEAL_OVERHEAD;
    let label = Label {
        packet_type: envelope.message.packet_type(),
        cipher: Cipher::Aes256Gcm,
        key_id: keyring.primary_id(),
        body_len: u32::try_from(body_len).expect("fits"),
    }
    .to_bytes();
    let mut body = vec![0; NONCE_LEN];
    body.extend_from_slice(&plaintext);
    body.extend_from_slice(&[0; TAG_LEN]);
    keyring
        .seal_in_place(&mut FixedNonce(nonce), &label, &mut body)
        .expect("seal");
    let mut datagram = label.to_vec();
    datagram.extend_from_slice(&body);
    datagram
}

/// The feed identity of the known answers: the ed25519 seed of 32 bytes `01`.
fn kat_identity() -> Identity {
    Identity::from_bytes(&[1; 32])
}

/// The two known-answer feed messages: the first message of the seed-one feed, and the second.
fn kat_messages() -> (FeedMessage, FeedMessage) {
    let identity = kat_identity();
    let max = feed::DEFAULT_MAX_CONTENT_LEN;
    let first = FeedMessage::create(
        &identity,
        None,
        1_700_000_000_000,
        Bytes::from_static(b"hello"),
        max,
    )
    .expect("first");
    let second = FeedMessage::create(
        &identity,
        Some(&first),
        1_700_000_000_500,
        Bytes::from_static(b"again"),
        max,
    )
    .expect("second");
    (first, second)
}

// ---------------------------------------------------------------------------------------------
// Checks

#[test]
fn document_holds_every_vector() {
    let vectors = doc_vectors();
    for name in EXPECTED {
        assert!(
            vectors.contains_key(name),
            "docs/wire.md lacks vector {name}"
        );
    }
    assert_eq!(
        vectors.len(),
        EXPECTED.len(),
        "unchecked vectors: {vectors:?}"
    );
}

fn check_plaintext(name: &str) {
    let v = vector(name);
    assert_eq!(field(&v, "mode"), "plaintext");
    let envelope = stated_envelope(&v);
    let datagram = from_hex(field(&v, "datagram"));
    assert_eq!(
        to_hex(&encode_envelope(&envelope)),
        field(&v, "envelope"),
        "{name}: envelope encoding"
    );

    let codec = PacketCodec::new(Security::Plaintext, DEFAULT_MAX_DATAGRAM).unwrap();
    let decoded = codec.decode_datagram(&mut datagram.clone());
    assert_eq!(decoded, Ok(envelope.clone()), "{name}: decode");
    check_fields(name, &v, &decoded.unwrap());

    let mut codec = codec;
    let mut out = BytesMut::new();
    let len = codec.encode_datagram(&envelope, &mut out).unwrap();
    assert_eq!(len, datagram.len());
    assert_eq!(to_hex(&out), to_hex(&datagram), "{name}: re-encode");

    // Label fields as stated.
    assert_eq!(datagram[0], 1);
    assert_eq!(datagram[1], envelope.message.packet_type().to_byte());
    assert_eq!(datagram[2], 0);
    assert_eq!(datagram[3], 0);
    assert_eq!(
        u32::from_be_bytes(datagram[4..8].try_into().unwrap()) as usize,
        datagram.len() - LABEL_LEN
    );
    assert_eq!(&datagram[LABEL_LEN..], from_hex(field(&v, "envelope")));
}

fn check_encrypted(name: &str) {
    let v = vector(name);
    assert_eq!(field(&v, "mode"), "aes-256-gcm");
    let key = Key::from_hex(field(&v, "key")).unwrap();
    assert_eq!(
        format!("{:02x}", key.id()),
        field(&v, "key_id"),
        "{name}: key id"
    );
    let keyring = Keyring::new(key);
    let nonce: [u8; NONCE_LEN] = array(field(&v, "nonce"));
    let envelope = stated_envelope(&v);
    let datagram = from_hex(field(&v, "datagram"));
    let plaintext = encode_envelope(&envelope);
    assert_eq!(
        to_hex(&plaintext),
        field(&v, "envelope"),
        "{name}: envelope encoding"
    );

    // Opens with the stated key and decodes to the stated envelope.
    let codec = PacketCodec::new(Security::Encrypted(Arc::new(keyring.clone())), 1400).unwrap();
    let decoded = codec.decode_datagram(&mut datagram.clone());
    assert_eq!(decoded, Ok(envelope.clone()), "{name}: decode");
    check_fields(name, &v, &decoded.unwrap());
    // The layout: label ‖ nonce ‖ ciphertext ‖ tag, label = AAD.
    assert_eq!(&datagram[LABEL_LEN..LABEL_LEN + NONCE_LEN], &nonce);
    assert_eq!(datagram.len(), plaintext.len() + PACKET_OVERHEAD);
    let mut body = datagram[LABEL_LEN..].to_vec();
    let opened = keyring
        .open_in_place(datagram[3], &datagram[..LABEL_LEN], &mut body)
        .unwrap();
    assert_eq!(opened, &plaintext[..]);

    // Sealing the same envelope with the same key and nonce reproduces it byte for byte.
    assert_eq!(
        to_hex(&seal_with_nonce(&keyring, &envelope, nonce)),
        to_hex(&datagram),
        "{name}: re-seal"
    );

    // The codec (random nonce) produces the same label and length.
    let mut codec = codec;
    let mut out = BytesMut::new();
    codec.encode_datagram(&envelope, &mut out).unwrap();
    assert_eq!(out.len(), datagram.len());
    assert_eq!(&out[..LABEL_LEN], &datagram[..LABEL_LEN]);

    // Any flipped bit in the label (the AAD) makes it fail to authenticate or be refused.
    for byte in [1usize, 3, 4, 7] {
        let mut tampered = datagram.clone();
        tampered[byte] ^= 0x01;
        assert!(codec.decode_datagram(&mut tampered).is_err(), "byte {byte}");
    }
    let mut tampered = datagram.clone();
    tampered[LABEL_LEN + NONCE_LEN] ^= 0x80;
    assert_eq!(
        codec.decode_datagram(&mut tampered),
        Err(DropReason::Unauthenticated)
    );
}

#[test]
fn push_ack_plaintext_vector() {
    check_plaintext("push_ack_plaintext");
}

#[test]
fn pull_sync_plaintext_vector() {
    check_plaintext("pull_sync_plaintext");
}

#[test]
fn push_message_encrypted_vector() {
    check_encrypted("push_message_aes256gcm");
}

#[test]
fn pull_response_encrypted_vector() {
    check_encrypted("pull_response_aes256gcm");
}

#[test]
fn state_digest_plaintext_vector() {
    check_plaintext("state_digest_plaintext");
}

#[test]
fn state_reply_plaintext_vector() {
    check_plaintext("state_reply_plaintext");
    // The reply's advert and assigned rate are what the default flow control of a fresh
    // responder (rate 10, desired 1 update/s) gives for the digest's advert of 8.6.
    let digest = vector("state_digest_plaintext");
    let reply = vector("state_reply_plaintext");
    let now = std::time::Instant::now();
    let mut flow = FlowControl::new(FlowConfig::default(), now).unwrap();
    assert_eq!(
        flow.advert(),
        FlowAdvert {
            rate: 10_000,
            desired: 1_000
        }
    );
    let assigned = flow.split(now, flow_advert(&digest, "flow"));
    assert_eq!(assigned, num::<u32>(&reply, "assigned_rate"));
    assert_eq!(flow.advert(), flow_advert(&reply, "flow"));
}

#[test]
fn state_deltas_plaintext_vector() {
    check_plaintext("state_deltas_plaintext");
}

#[test]
fn cyclon_shuffle_encrypted_vector() {
    check_encrypted("cyclon_shuffle_aes256gcm");
}

#[test]
fn cyclon_shuffle_reply_plaintext_vector() {
    check_plaintext("cyclon_shuffle_reply_plaintext");
}

#[test]
fn tree_notes_plaintext_vector() {
    check_plaintext("tree_notes_plaintext");
    // The notes mean what the document says they mean.
    let v = vector("tree_notes_plaintext");
    let notes: Vec<Option<Note>> = items(&v, "entries", note_entry)
        .into_iter()
        .map(|(_, n)| Note::from_i64(n))
        .collect();
    assert_eq!(
        notes,
        [
            Some(Note::Replicate {
                sequence: 5,
                eager: true
            }),
            Some(Note::DoNotReplicate),
            Some(Note::Replicate {
                sequence: 300,
                eager: false
            }),
            Some(Note::Replicate {
                sequence: 0,
                eager: false
            }),
        ]
    );
}

#[test]
fn blob_plaintext_vectors() {
    check_plaintext("blob_want_plaintext");
    check_plaintext("blob_have_plaintext");
    check_plaintext("blob_request_plaintext");
}

#[test]
fn blob_piece_encrypted_vector() {
    check_encrypted("blob_piece_aes256gcm");
}

/// The blob sizes of section 6.7: a full 1,248-byte chunk fits a 1,400-byte encrypted
/// datagram with its framing, and so do 213 piece indexes in one request.
#[test]
fn stated_blob_budget() {
    use gossip_core::blob;
    assert_eq!(blob::chunk_size_for(1_364), 1_248);
    assert_eq!(blob::PIECE_OVERHEAD, 90);
    assert_eq!(blob::pieces_per_request(1_364), 213);
    let keyring = Arc::new(Keyring::new(Key::from_bytes([7; 32])));
    let mut codec = PacketCodec::new(Security::Encrypted(keyring), 1400).unwrap();
    let piece = |len: usize| Envelope {
        sender: NodeId([1; 32]),
        epoch: u64::MAX,
        counter: u64::MAX,
        message: Message::BlobPiece(BlobPiece {
            blob: BlobId([2; 32]),
            piece: PieceIndex {
                level: 255,
                index: u32::MAX,
            },
            data: Bytes::from(vec![0; len]),
        }),
    };
    assert!(piece(1_248).encoded_len_bound() <= 1_364);
    assert_eq!(wire::encoded_len(&piece(1_248)).unwrap(), 1_338);
    assert!(
        codec
            .encode_datagram(&piece(1_248), &mut BytesMut::new())
            .is_ok()
    );
    let request = Envelope {
        sender: NodeId([1; 32]),
        epoch: u64::MAX,
        counter: u64::MAX,
        message: Message::BlobRequest(BlobRequest {
            blob: BlobId([2; 32]),
            pieces: vec![
                PieceIndex {
                    level: 255,
                    index: u32::MAX,
                };
                213
            ],
        }),
    };
    assert!(request.encoded_len_bound() <= 1_364);
    assert!(
        codec
            .encode_datagram(&request, &mut BytesMut::new())
            .is_ok()
    );
}

#[test]
fn tree_batch_plaintext_vector() {
    check_plaintext("tree_batch_plaintext");
}

/// The batch vector carries the two known-answer feed messages, validly signed and chained.
#[test]
fn tree_batch_carries_the_known_answer_messages() {
    let (first, second) = kat_messages();
    let v = vector("tree_batch_plaintext");
    let Message::TreeBatch(batch) = stated_envelope(&v).message else {
        panic!("tree_batch_plaintext is not a TreeBatch");
    };
    assert_eq!(batch.messages, [first, second]);
    for m in &batch.messages {
        m.verify_signature().expect("signed by its author");
    }
    assert_eq!(batch.messages[1].previous, Some(batch.messages[0].id()));
    // The sender is the feed's author (it pushes its own feed).
    assert_eq!(field(&v, "sender"), to_hex(&kat_identity().public_key()));
}

fn check_feed_kat(name: &str, message: &FeedMessage) {
    let v = vector(name);
    let seed: [u8; 32] = array(field(&v, "seed"));
    let identity = Identity::from_bytes(&seed);
    assert_eq!(
        to_hex(&identity.public_key()),
        field(&v, "author"),
        "{name}"
    );
    let author: [u8; 32] = array(field(&v, "author"));
    let sequence: u64 = num(&v, "sequence");
    let previous = opt_hex(&v, "previous");
    let timestamp: u64 = num(&v, "timestamp_ms");
    let content = from_hex(field(&v, "content"));

    // The signing encoding, built from the document's byte table alone.
    let mut signing = b"gossip/v1/feed-msg".to_vec();
    signing.extend_from_slice(&author);
    signing.extend_from_slice(&sequence.to_be_bytes());
    match &previous {
        None => {
            signing.push(0);
            signing.extend_from_slice(&[0; 32]);
        }
        Some(hash) => {
            signing.push(1);
            signing.extend_from_slice(hash);
        }
    }
    signing.extend_from_slice(&timestamp.to_be_bytes());
    signing.extend_from_slice(&u32::try_from(content.len()).unwrap().to_be_bytes());
    signing.extend_from_slice(&content);
    assert_eq!(to_hex(&signing), field(&v, "signing_bytes"), "{name}");
    assert_eq!(signing.len(), feed::HEADER_LEN + content.len());
    assert_eq!(feed::DOMAIN, b"gossip/v1/feed-msg");

    // gossip-core signs, encodes and hashes it the same way.
    assert_eq!(to_hex(&message.author.0), field(&v, "author"));
    assert_eq!(message.sequence, sequence);
    assert_eq!(message.previous.map(|h| h.0.to_vec()), previous);
    assert_eq!(message.timestamp_ms, timestamp);
    assert_eq!(&message.content[..], &content[..]);
    assert_eq!(message.signing_bytes(), signing, "{name}: signing bytes");
    let signature: [u8; 64] = array(field(&v, "signature"));
    assert_eq!(identity.sign(&signing), signature, "{name}: signature");
    assert_eq!(message.signature, signature);
    let signed = from_hex(field(&v, "signed"));
    assert_eq!([&signing[..], &signature[..]].concat(), signed);
    assert_eq!(message.encode_signed(), signed, "{name}: signed encoding");
    assert_eq!(signed.len(), feed::SIGNED_OVERHEAD + content.len());
    let id: [u8; 32] = array(field(&v, "id"));
    assert_eq!(gossip_crypto::sha256(&signed), id, "{name}: id");
    assert_eq!(message.id().0, id, "{name}: FeedMessage::id");
    gossip_crypto::verify(&author, &signing, &signature).expect("verifies");
    message.verify_signature().expect("verifies");
    assert_eq!(
        FeedMessage::decode_signed(&signed, feed::DEFAULT_MAX_CONTENT_LEN).as_ref(),
        Ok(message)
    );
}

#[test]
fn feed_message_known_answers() {
    let (first, second) = kat_messages();
    check_feed_kat("feed_message_kat", &first);
    check_feed_kat("feed_message_kat_second", &second);
    // The first is the known answer of gossip-core's own feed tests.
    assert!(
        field(&vector("feed_message_kat"), "id").starts_with("601e8b3a"),
        "the id gossip-core's feed tests pin"
    );
    // The second names the first.
    assert_eq!(
        field(&vector("feed_message_kat_second"), "previous"),
        field(&vector("feed_message_kat"), "id")
    );
}

/// Verification is strict, as the document says: a non-canonical `S` and a small-order
/// public key are refused, and so is a changed byte anywhere in the signing encoding.
#[test]
fn feed_signatures_verify_strictly() {
    let (first, _) = kat_messages();
    let signing = first.signing_bytes();
    let author = first.author.0;
    // S + L (the group order), little-endian: the same point equation, a second encoding.
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut malleated = first.signature;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(malleated[32 + i]) + u16::from(L[i]) + carry;
        malleated[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    assert_eq!(carry, 0);
    assert!(gossip_crypto::verify(&author, &signing, &malleated).is_err());
    // The identity point as public key with R = identity, S = 0 satisfies the plain equation
    // for every message; strict verification refuses the small-order key.
    let mut weak_key = [0u8; 32];
    weak_key[0] = 1;
    let mut forged = [0u8; 64];
    forged[0] = 1;
    assert!(gossip_crypto::verify(&weak_key, &signing, &forged).is_err());
    // Every byte of the signing encoding is covered.
    for i in [0, 18, 50, 58, 91, 99, 103] {
        let mut changed = signing.clone();
        changed[i] ^= 1;
        assert!(gossip_crypto::verify(&author, &changed, &first.signature).is_err());
    }
}

#[test]
fn passphrase_known_answer() {
    let v = vector("passphrase_kat");
    let cluster = field(&v, "cluster");
    let mut salt = PASSPHRASE_SALT_PREFIX.to_vec();
    salt.extend_from_slice(cluster.as_bytes());
    assert_eq!(to_hex(&salt), field(&v, "salt"), "salt bytes");
    let key = Key::from_passphrase(field(&v, "passphrase"), cluster).unwrap();
    assert_eq!(key.to_hex(), field(&v, "key"), "derived key");
    assert_eq!(format!("{:02x}", key.id()), field(&v, "key_id"), "key id");
    // The same key as a key-file (64 hex digits plus a newline).
    assert_eq!(
        Key::from_hex(&format!("{}\n", field(&v, "key"))).unwrap(),
        key
    );
    // The key-id context string the document names.
    assert_eq!(KEY_ID_CONTEXT, b"gossip/v1/key-id");
}

#[test]
fn push_message_vector_uses_the_passphrase_key() {
    // The document says the encrypted PushMessage vector is sealed with the known-answer key.
    let kat = vector("passphrase_kat");
    let push = vector("push_message_aes256gcm");
    assert_eq!(field(&kat, "key"), field(&push, "key"));
}

#[test]
fn stated_constants() {
    assert_eq!(LABEL_LEN, 8);
    assert_eq!(PACKET_OVERHEAD, 36);
    assert_eq!(NONCE_LEN, 12);
    assert_eq!(TAG_LEN, 16);
    assert_eq!(DEFAULT_MAX_DATAGRAM, 1400);
    assert_eq!(MAX_UDP_PAYLOAD, 65_507);
    assert_eq!(DECODE_LIMIT, 65_536);
    assert!(PacketCodec::new(Security::Plaintext, 127).is_err());
    assert!(PacketCodec::new(Security::Plaintext, 128).is_ok());
    assert!(PacketCodec::new(Security::Plaintext, 65_507).is_ok());
    assert!(PacketCodec::new(Security::Plaintext, 65_508).is_err());
    assert_eq!(gossip_crypto::ARGON2_MEMORY_KIB, 19_456);
    assert_eq!(gossip_crypto::ARGON2_ITERATIONS, 2);
    assert_eq!(gossip_crypto::ARGON2_PARALLELISM, 1);
    // Feed messages (section 6.5) and the protocol limits the document states.
    assert_eq!(feed::HEADER_LEN, 103);
    assert_eq!(feed::SIGNED_OVERHEAD, 167);
    assert_eq!(feed::MAX_CONTENT_LIMIT, 65_272);
    assert_eq!(feed::DEFAULT_MAX_CONTENT_LEN, 1_024);
    assert_eq!(TreeConfig::default().max_content_len, 1_024);
    assert_eq!(tree::MAX_NOTE_ENTRIES_PER_MESSAGE, 2_048);
    assert_eq!(tree::MAX_MESSAGES_PER_BATCH, 512);
    assert_eq!(Note::MAX_SEQUENCE, (1 << 62) - 1);
    assert_eq!(gossip_core::reconcile::DIGEST_ENTRY_LIMIT, 2_048);
    let state = ReconcileConfig::default();
    assert_eq!(state.max_key_len, 128);
    assert_eq!(state.max_value_len, 1_024);
    assert_eq!(state.largest_value_len(), 1_050);
    assert_eq!(state.max_message_len(), 1_315);
    let cyclon = CyclonConfig::default();
    assert_eq!((cyclon.view_size, cyclon.shuffle_length), (20, 8));
    assert_eq!(cyclon.max_shuffle_length(), 23);
    assert_eq!(gossip_core::flow::MAX_RATE, 1_000_000);
}

/// One message of every variant, in declaration order.
fn one_of_each() -> Vec<Message> {
    let addr: SocketAddr = "10.0.0.1:7000".parse().unwrap();
    let (first, _) = kat_messages();
    vec![
        Message::PushMessage(Gossip {
            id: MessageId([1; 16]),
            origin: NodeId([2; 32]),
            hop: 0,
            payload: Bytes::new(),
        }),
        Message::PushAck {
            id: MessageId([1; 16]),
        },
        Message::PullSync { ids: vec![] },
        Message::PullRequest { ids: vec![] },
        Message::PullResponse(Gossip {
            id: MessageId([1; 16]),
            origin: NodeId([2; 32]),
            hop: 0,
            payload: Bytes::new(),
        }),
        Message::StateDigest(Digest {
            range_end: NodePrefix([0; 8]),
            page: vec![],
            extra: vec![],
            flow: FlowAdvert::default(),
        }),
        Message::StateReply(Reply {
            deltas: vec![],
            digest: vec![],
            flow: FlowAdvert::default(),
            assigned_rate: 0,
        }),
        Message::StateDeltas(Deltas { deltas: vec![] }),
        Message::CyclonShuffle(Shuffle {
            entries: vec![Descriptor {
                node: NodeId([3; 32]),
                addr,
                age: 0,
            }],
        }),
        Message::CyclonShuffleReply(ShuffleReply { entries: vec![] }),
        Message::TreeNotes(Notes {
            entries: vec![(FeedId([4; 32]), -1)],
        }),
        Message::TreeBatch(FeedBatch {
            messages: vec![first],
        }),
        Message::Application(gossip_core::AppMessage {
            kind: 0x7001,
            payload: Bytes::from_static(b"ping 1"),
        }),
        Message::BlobWant(BlobWant {
            blob: BlobId([5; 32]),
        }),
        Message::BlobHave(BlobHave {
            blob: BlobId([5; 32]),
            meta: BlobMeta {
                size: 0,
                chunk_size: 1_280,
                root: [6; 32],
            },
        }),
        Message::BlobRequest(BlobRequest {
            blob: BlobId([5; 32]),
            pieces: vec![],
        }),
        Message::BlobPiece(BlobPiece {
            blob: BlobId([5; 32]),
            piece: PieceIndex { level: 0, index: 0 },
            data: Bytes::new(),
        }),
    ]
}

/// The table of section 5.2: variant index, packet type byte, name.
const VARIANTS: [(u8, u8, &str); 17] = [
    (0, 1, "PushMessage"),
    (1, 2, "PushAck"),
    (2, 3, "PullSync"),
    (3, 4, "PullRequest"),
    (4, 5, "PullResponse"),
    (5, 16, "StateDigest"),
    (6, 17, "StateReply"),
    (7, 18, "StateDeltas"),
    (8, 19, "CyclonShuffle"),
    (9, 20, "CyclonShuffleReply"),
    (10, 21, "TreeNotes"),
    (11, 22, "TreeBatch"),
    (12, 64, "Application"),
    (13, 23, "BlobWant"),
    (14, 24, "BlobHave"),
    (15, 25, "BlobRequest"),
    (16, 26, "BlobPiece"),
];

#[test]
fn stated_packet_types_and_variant_indexes() {
    let messages = one_of_each();
    assert_eq!(messages.len(), VARIANTS.len());
    for (message, (index, type_byte, name)) in messages.iter().zip(VARIANTS) {
        let envelope = Envelope {
            sender: NodeId([0; 32]),
            epoch: DOC_EPOCH,
            counter: 0,
            message: message.clone(),
        };
        let bytes = encode_envelope(&envelope);
        assert_eq!(bytes[H], index, "{name}: variant index");
        assert_eq!(message.packet_type().to_byte(), type_byte, "{name}: type");
        assert_eq!(message_fields(message).0, name);
        assert_eq!(wire::decode_envelope(&bytes).unwrap(), envelope);
        // Each type round-trips through the codec under its label type.
        let mut codec = PacketCodec::new(Security::Plaintext, 1400).unwrap();
        let mut out = BytesMut::new();
        codec.encode_datagram(&envelope, &mut out).unwrap();
        assert_eq!(out[1], type_byte);
        assert_eq!(codec.decode_datagram(&mut out.to_vec()), Ok(envelope));
    }
    // The worked Application example of section 5.
    let app = Envelope {
        sender: NodeId([0; 32]),
        epoch: DOC_EPOCH,
        counter: 0,
        message: Message::Application(gossip_core::AppMessage {
            kind: 0x7001,
            payload: Bytes::from_static(b"ping 1"),
        }),
    };
    assert_eq!(
        to_hex(&encode_envelope(&app)[32..H]),
        "00060a24181e40000000000000000000"
    );
    assert_eq!(
        to_hex(&encode_envelope(&app)[H..]),
        "0cfb01700670696e672031"
    );
    assert!(
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wire.md"))
            .unwrap()
            .contains(
                "`00`×32 ‖ `00060a24181e4000` (epoch) ‖\n`0000000000000000` (counter) ‖ `0c` ‖ \
                 `fb 01 70` ‖ `06` ‖ `70696e672031`"
            ),
        "the document states the same bytes"
    );
    // Every assigned type byte, and no other.
    let assigned: Vec<u8> = PacketType::ALL.iter().map(|t| t.to_byte()).collect();
    let mut by_type = VARIANTS.map(|(_, t, _)| t);
    by_type.sort_unstable();
    assert_eq!(assigned, by_type);
    for byte in 0..=255u8 {
        assert_eq!(
            PacketType::from_byte(byte).is_some(),
            assigned.contains(&byte),
            "type byte {byte}"
        );
    }
    // A label type that names another message is `type_mismatch`; an unassigned one is
    // `unknown_type`.
    let codec = PacketCodec::new(Security::Plaintext, 1400).unwrap();
    let mut datagram = from_hex(field(&vector("tree_notes_plaintext"), "datagram"));
    datagram[1] = 22;
    assert_eq!(
        codec.decode_datagram(&mut datagram.clone()),
        Err(DropReason::TypeMismatch)
    );
    for unassigned in [0u8, 6, 15, 27, 63, 65, 255] {
        datagram[1] = unassigned;
        assert_eq!(
            codec.decode_datagram(&mut datagram.clone()),
            Err(DropReason::UnknownType)
        );
    }
}

/// The size budget of section "Size budget": the largest payload and the most ids that fit a
/// 1400-byte encrypted datagram, and one more does not.
#[test]
fn stated_size_budget() {
    let keyring = Arc::new(Keyring::new(Key::from_bytes([7; 32])));
    let mut codec = PacketCodec::new(Security::Encrypted(keyring), 1400).unwrap();
    let push = |hop: u16, len: usize| Envelope {
        sender: NodeId([1; 32]),
        epoch: DOC_EPOCH,
        counter: 0,
        message: Message::PushMessage(Gossip {
            id: MessageId([2; 16]),
            origin: NodeId([3; 32]),
            hop,
            payload: Bytes::from(vec![0; len]),
        }),
    };
    let fits = |codec: &mut PacketCodec, e: &Envelope| {
        codec.encode_datagram(e, &mut BytesMut::new()).is_ok()
    };
    assert_eq!(codec.datagram_len(&push(0, 1263)).unwrap(), 1400);
    assert!(fits(&mut codec, &push(0, 1263)));
    assert!(!fits(&mut codec, &push(0, 1264)));
    assert!(fits(&mut codec, &push(300, 1261)));
    assert!(!fits(&mut codec, &push(300, 1262)));
    let sync = |n: usize| Envelope {
        sender: NodeId([1; 32]),
        epoch: DOC_EPOCH,
        counter: 0,
        message: Message::PullSync {
            ids: vec![MessageId([4; 16]); n],
        },
    };
    assert_eq!(codec.datagram_len(&sync(82)).unwrap(), 36 + 50 + 82 * 16);
    assert!(fits(&mut codec, &sync(82)));
    assert!(!fits(&mut codec, &sync(83)));
    let mut plain = PacketCodec::new(Security::Plaintext, 1400).unwrap();
    assert!(fits(&mut plain, &push(0, 1291)));
    assert!(!fits(&mut plain, &push(0, 1292)));
    assert!(fits(&mut plain, &sync(83)));
    assert!(!fits(&mut plain, &sync(84)));
    assert_eq!(plain.datagram_len(&push_ack()).unwrap(), 73);
    assert_eq!(codec.datagram_len(&push_ack()).unwrap(), 101);

    // The largest datagram.
    let keyring = Arc::new(Keyring::new(Key::from_bytes([7; 32])));
    let mut big = PacketCodec::new(Security::Encrypted(keyring), 65_507).unwrap();
    assert!(fits(&mut big, &push(300, 65_368)));
    assert!(!fits(&mut big, &push(300, 65_369)));
    assert!(fits(&mut big, &sync(4_088)));
    assert!(!fits(&mut big, &sync(4_089)));
    let mut big_plain = PacketCodec::new(Security::Plaintext, 65_507).unwrap();
    assert!(fits(&mut big_plain, &push(300, 65_396)));
    assert!(!fits(&mut big_plain, &push(300, 65_397)));
    assert!(fits(&mut big_plain, &sync(4_090)));
    assert!(!fits(&mut big_plain, &sync(4_091)));
}

fn push_ack() -> Envelope {
    Envelope {
        sender: NodeId([0; 32]),
        epoch: DOC_EPOCH,
        counter: 0,
        message: Message::PushAck {
            id: MessageId([0; 16]),
        },
    }
}

/// The most items of a list that fit one 1,400-byte datagram under each codec, found by
/// encoding: `(AES-256-GCM, plaintext)`.
fn most_that_fit(make: impl Fn(usize) -> Message) -> (usize, usize) {
    let keyring = Arc::new(Keyring::new(Key::from_bytes([7; 32])));
    let mut codecs = [
        PacketCodec::new(Security::Encrypted(keyring), 1400).unwrap(),
        PacketCodec::new(Security::Plaintext, 1400).unwrap(),
    ];
    let counts = codecs.each_mut().map(|codec| {
        let mut n = 0;
        loop {
            let e = Envelope {
                sender: NodeId([1; 32]),
                epoch: DOC_EPOCH,
                counter: 0,
                message: make(n + 1),
            };
            if codec.encode_datagram(&e, &mut BytesMut::new()).is_err() {
                return n;
            }
            n += 1;
        }
    });
    (counts[0], counts[1])
}

/// The size budget of the state, membership and tree messages (section 7.2).
#[test]
fn stated_size_budget_of_the_later_protocols() {
    // Digest entries: 44 bytes at most, 12 at least, 24 typical.
    let entry = |generation: u64, other: u64| DigestEntry {
        node: NodePrefix([9; 8]),
        generation,
        heartbeat: other,
        max_version: other,
        gc_version: other,
    };
    let digest = |e: DigestEntry, flow: FlowAdvert| {
        move |n| {
            Message::StateDigest(Digest {
                range_end: NodePrefix([0; 8]),
                page: vec![e; n],
                extra: vec![],
                flow,
            })
        }
    };
    let largest = entry(u64::MAX, u64::MAX);
    let smallest = entry(1, 0);
    let typical = DigestEntry {
        node: NodePrefix([9; 8]),
        generation: 1_700_000_000_000,
        heartbeat: 3_600,
        max_version: 1_000,
        gc_version: 0,
    };
    assert_eq!(largest.encoded_len_bound(), 44);
    assert_eq!(smallest.encoded_len_bound(), 12);
    assert_eq!(typical.encoded_len_bound(), 24);
    let max_flow = FlowAdvert {
        rate: u32::MAX,
        desired: u32::MAX,
    };
    let typical_flow = FlowAdvert {
        rate: 10_000,
        desired: 10_000,
    };
    assert_eq!(most_that_fit(digest(largest, max_flow)), (29, 30));
    assert_eq!(
        most_that_fit(digest(smallest, FlowAdvert::default())),
        (108, 110)
    );
    assert_eq!(most_that_fit(digest(typical, typical_flow)), (54, 55));
    assert_eq!(Digest::FIXED_LEN, 24);

    // One delta of the longest key and the largest value always fits a reply.
    let state = ReconcileConfig::default();
    let worst_reply = Message::StateReply(Reply {
        deltas: vec![NodeDelta {
            node: NodeId([5; 32]),
            generation: u64::MAX,
            heartbeat: u64::MAX,
            addr: "[2001:db8::1]:65535".parse().unwrap(),
            gc_version: u64::MAX,
            reset: false,
            from_version: u64::MAX,
            to_version: u64::MAX,
            complete: true,
            entries: vec![DeltaEntry {
                key: "k".repeat(state.max_key_len),
                version: u64::MAX,
                value: Some(Bytes::from(vec![0; state.largest_value_len()])),
            }],
        }],
        digest: vec![],
        flow: max_flow,
        assigned_rate: u32::MAX,
    });
    let e = Envelope {
        sender: NodeId([1; 32]),
        epoch: DOC_EPOCH,
        counter: 0,
        message: worst_reply,
    };
    assert_eq!(wire::encoded_len(&e).unwrap(), 1_358);
    assert!(e.encoded_len_bound() <= 1_364);

    // CYCLON descriptors: 57 bytes at most, 39 at least (IPv4, port and age below 251).
    let shuffle = |addr: &str, age: u32| {
        let addr: SocketAddr = addr.parse().unwrap();
        move |n| {
            Message::CyclonShuffle(Shuffle {
                entries: vec![
                    Descriptor {
                        node: NodeId([6; 32]),
                        addr,
                        age,
                    };
                    n
                ],
            })
        }
    };
    assert_eq!(
        most_that_fit(shuffle("[2001:db8::1]:7000", u32::MAX)),
        (23, 23)
    );
    assert_eq!(most_that_fit(shuffle("10.0.0.1:80", 5)), (33, 34));
    assert_eq!(membership::wire_bound::DESCRIPTOR, 57);
    assert_eq!(membership::wire_bound::entries_per_message(1_364), 23);

    // Notes: 41 bytes at most (a note of 2^31 or more), 33 at least.
    let notes = |note: i64| {
        move |n| {
            Message::TreeNotes(Notes {
                entries: vec![(FeedId([7; 32]), note); n],
            })
        }
    };
    assert_eq!(most_that_fit(notes(i64::MAX)), (32, 32));
    assert_eq!(most_that_fit(notes(-1)), (39, 40));
    assert_eq!(tree::notes_per_datagram(1_364), 32);
    assert_eq!(tree::NOTE_ENTRY_BOUND, 41);

    // Feed content: a batch of one message with the widest integers.
    let (first, _) = kat_messages();
    let batch = |content: usize| {
        let mut m = first.clone();
        m.sequence = u64::MAX;
        m.previous = Some(MessageHash([8; 32]));
        m.timestamp_ms = u64::MAX;
        m.content = Bytes::from(vec![0; content]);
        Envelope {
            sender: NodeId([1; 32]),
            epoch: DOC_EPOCH,
            counter: 0,
            message: Message::TreeBatch(FeedBatch { messages: vec![m] }),
        }
    };
    assert_eq!(tree::max_content_fit(1_364), Some(1_162));
    assert_eq!(tree::max_content_fit(1_392), Some(1_190));
    assert_eq!(wire::encoded_len(&batch(1_162)).unwrap(), 1_362);
    // 50 + 32 + 9 + 33 + 9 + v(len) + 64: 200 + content once the length takes 3 bytes.
    assert_eq!(wire::encoded_len(&batch(0)).unwrap(), 198);
    assert_eq!(wire::encoded_len(&batch(251)).unwrap(), 200 + 251);
    let keyring = Arc::new(Keyring::new(Key::from_bytes([7; 32])));
    let mut codec = PacketCodec::new(Security::Encrypted(keyring), 1400).unwrap();
    assert!(
        codec
            .encode_datagram(&batch(1_164), &mut BytesMut::new())
            .is_ok()
    );
    assert!(
        codec
            .encode_datagram(&batch(1_165), &mut BytesMut::new())
            .is_err()
    );
    let mut plain = PacketCodec::new(Security::Plaintext, 1400).unwrap();
    assert!(
        plain
            .encode_datagram(&batch(1_192), &mut BytesMut::new())
            .is_ok()
    );
    assert!(
        plain
            .encode_datagram(&batch(1_193), &mut BytesMut::new())
            .is_err()
    );
    assert_eq!(feed::wire_bound::FIXED, 147);
}

/// The varint boundaries the document states, observed through a `PullSync`'s length prefix
/// and a gossip's hop.
#[test]
fn stated_varint_forms() {
    let hop_bytes = |hop: u16| {
        let e = Envelope {
            sender: NodeId([0; 32]),
            epoch: DOC_EPOCH,
            counter: 0,
            message: Message::PushMessage(Gossip {
                id: MessageId([0; 16]),
                origin: NodeId([0; 32]),
                hop,
                payload: Bytes::new(),
            }),
        };
        let bytes = encode_envelope(&e);
        // Between the origin and the empty payload's length byte `00`.
        assert_eq!(bytes.last(), Some(&0));
        bytes[H + 1 + 16 + 32..bytes.len() - 1].to_vec()
    };
    assert_eq!(hop_bytes(5), [5]);
    assert_eq!(hop_bytes(250), [250]);
    assert_eq!(hop_bytes(251), [251, 251, 0]);
    assert_eq!(hop_bytes(300), [251, 0x2c, 0x01]);
    assert_eq!(hop_bytes(u16::MAX), [251, 0xff, 0xff]);
    // A longer form than needed is accepted on receipt; a marker wider than the field is not.
    let mut bytes = encode_envelope(&Envelope {
        sender: NodeId([0; 32]),
        epoch: DOC_EPOCH,
        counter: 0,
        message: Message::PushMessage(Gossip {
            id: MessageId([0; 16]),
            origin: NodeId([0; 32]),
            hop: 5,
            payload: Bytes::new(),
        }),
    });
    assert_eq!(bytes[97..], [5, 0]);
    bytes.splice(97..98, [251, 5, 0]);
    let decoded = wire::decode_envelope(&bytes).unwrap();
    assert!(matches!(
        decoded.message,
        Message::PushMessage(Gossip { hop: 5, .. })
    ));
    bytes.splice(97..100, [252, 5, 0, 0, 0]);
    assert!(wire::decode_envelope(&bytes).is_err());
    // Variant index 17 (the first unassigned) and the marker bytes 254/255 are refused.
    let mut bytes = encode_envelope(&push_ack());
    for bad in [17u8, 254, 255] {
        let mut b = bytes.clone();
        b[H] = bad;
        assert!(wire::decode_envelope(&b).is_err(), "variant byte {bad}");
    }
    // Trailing bytes after an envelope are refused.
    assert!(wire::decode_envelope(&bytes).is_ok());
    bytes.push(0);
    assert!(matches!(
        wire::decode_envelope(&bytes),
        Err(wire::WireError::TrailingBytes { trailing: 1 })
    ));
}

/// The encoding rules of section 5.1 that the later messages add: `SocketAddr`, zigzag `i64`,
/// `bool`, `Option` and `String`, each observed inside a real envelope.
#[test]
fn stated_encoding_rules() {
    // SocketAddr: in a one-descriptor CyclonShuffle, between the node id and the age.
    let addr_bytes = |addr: &str| {
        let e = Envelope {
            sender: NodeId([0; 32]),
            epoch: DOC_EPOCH,
            counter: 0,
            message: Message::CyclonShuffle(Shuffle {
                entries: vec![Descriptor {
                    node: NodeId([0; 32]),
                    addr: addr.parse().unwrap(),
                    age: 7,
                }],
            }),
        };
        let bytes = encode_envelope(&e);
        assert_eq!(bytes[H..H + 2], [8, 1]);
        assert_eq!(bytes.last(), Some(&7));
        to_hex(&bytes[82..bytes.len() - 1])
    };
    assert_eq!(addr_bytes("10.0.0.1:7000"), "000a000001fb581b");
    assert_eq!(addr_bytes("10.0.0.1:80"), "000a00000150");
    assert_eq!(
        addr_bytes("[2001:db8::1]:7000"),
        "0120010db8000000000000000000000001fb581b"
    );
    // Flow info and scope id are not encoded: they arrive as 0.
    assert_eq!(
        addr_bytes("[2001:db8::1%3]:7000"),
        addr_bytes("[2001:db8::1]:7000")
    );
    // An address variant other than 0 (V4) or 1 (V6) is malformed.
    let mut bytes = from_hex(field(&vector("cyclon_shuffle_reply_plaintext"), "envelope"));
    assert!(wire::decode_envelope(&bytes).is_ok());
    assert_eq!(bytes[82], 0);
    bytes[82] = 2;
    assert!(wire::decode_envelope(&bytes).is_err());

    // i64 (notes): zigzag, then the unsigned varint.
    let note_bytes = |note: i64| {
        let e = Envelope {
            sender: NodeId([0; 32]),
            epoch: DOC_EPOCH,
            counter: 0,
            message: Message::TreeNotes(Notes {
                entries: vec![(FeedId([0; 32]), note)],
            }),
        };
        to_hex(&encode_envelope(&e)[H + 1 + 1 + 32..])
    };
    for (note, hex) in [
        (-1, "01"),
        (0, "00"),
        (1, "02"),
        (10, "14"),
        (11, "16"),
        (125, "fa"),
        (126, "fbfc00"),
        (601, "fbb204"),
        (-2, "03"),
        (i64::MAX, "fdfeffffffffffffff"),
    ] {
        assert_eq!(note_bytes(note), hex, "note {note}");
    }

    // bool and Option tags other than 0/1, and keys that are not UTF-8, are malformed. The
    // state_deltas vector's first delta starts at 50: node, generation, heartbeat, addr,
    // gc_version, then `reset`.
    let v = vector("state_deltas_plaintext");
    let bytes = from_hex(field(&v, "envelope"));
    assert!(wire::decode_envelope(&bytes).is_ok());
    let Message::StateDeltas(deltas) = stated_envelope(&v).message else {
        panic!("not StateDeltas");
    };
    let d = &deltas.deltas[0];
    let reset_at = 50
        + 32
        + varint_len(d.generation)
        + varint_len(d.heartbeat)
        + 20
        + varint_len(d.gc_version);
    assert_eq!(bytes[reset_at], u8::from(d.reset));
    let mut bad = bytes.clone();
    bad[reset_at] = 2;
    assert!(wire::decode_envelope(&bad).is_err(), "bool 2");
    // The first entry: key length, key, version, Option tag.
    let entries_at = reset_at
        + 1
        + varint_len(d.from_version)
        + varint_len(d.to_version)
        + 1
        + varint_len(d.entries.len() as u64);
    let key = &d.entries[0].key;
    assert_eq!(usize::from(bytes[entries_at]), key.len());
    let mut bad = bytes.clone();
    bad[entries_at + 1] = 0xff;
    assert!(wire::decode_envelope(&bad).is_err(), "key not UTF-8");
    let tag_at = entries_at + 1 + key.len() + varint_len(d.entries[0].version);
    assert_eq!(bytes[tag_at], 1);
    let mut bad = bytes.clone();
    bad[tag_at] = 2;
    assert!(wire::decode_envelope(&bad).is_err(), "Option tag 2");

    // A u32 (age, rate) refuses the 9-byte marker; a u64 takes it.
    let mut bytes = encode_envelope(&Envelope {
        sender: NodeId([0; 32]),
        epoch: DOC_EPOCH,
        counter: 0,
        message: Message::CyclonShuffle(Shuffle {
            entries: vec![Descriptor {
                node: NodeId([0; 32]),
                addr: "10.0.0.1:80".parse().unwrap(),
                age: 7,
            }],
        }),
    });
    let last = bytes.len() - 1;
    bytes.splice(last.., [0xfd, 7, 0, 0, 0, 0, 0, 0, 0]);
    assert!(wire::decode_envelope(&bytes).is_err(), "u32 with fd marker");
}

fn varint_len(value: u64) -> usize {
    gossip_core::reconcile::wire::varint_len(value)
}

// ---------------------------------------------------------------------------------------------
// Generator

fn seq(start: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| start.wrapping_add(i as u8)).collect()
}

thread_local! {
    /// What the vector generator writes (one document block after another).
    static OUT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Appends one line to the generator's output.
macro_rules! out {
    ($($arg:tt)*) => {
        OUT.with(|o| {
            use std::fmt::Write as _;
            let _ = writeln!(o.borrow_mut(), $($arg)*);
        })
    };
}

fn print_field(name: &str, bytes: &[u8]) {
    let hex = to_hex(bytes);
    if hex.is_empty() {
        out!("{name}:");
    }
    for chunk in hex.as_bytes().chunks(64) {
        out!("{name}: {}", std::str::from_utf8(chunk).unwrap());
    }
}

fn print_message(message: &Message) {
    let (name, fields) = message_fields(message);
    out!("message: {name}");
    for (path, value) in &fields.0 {
        match value {
            Value::Hex(bytes) => print_field(path, bytes),
            Value::Text(text) => out!("{path}: {text}"),
        }
    }
}

enum Mode {
    Plaintext,
    Aes(Key, [u8; NONCE_LEN]),
}

/// The inputs of every message vector, in the document's order.
fn vector_inputs() -> Vec<(&'static str, Mode, Envelope)> {
    let node = |start: u8| NodeId(array(&to_hex(&seq(start, 32))));
    let prefix = |start: u8| NodePrefix(array(&to_hex(&seq(start, 8))));
    let sender = node(0x00);
    let kat_key = Key::from_passphrase("correct horse", "cluster-a").unwrap();
    let raw_key = Key::from_slice(&seq(0x00, 32)).unwrap();
    let nonce = |start: u8| -> [u8; NONCE_LEN] { seq(start, NONCE_LEN).try_into().unwrap() };
    let (first, second) = kat_messages();
    let author = NodeId(kat_identity().public_key());
    let mut out = vec![
        (
            "push_ack_plaintext",
            Mode::Plaintext,
            Envelope {
                sender,
                epoch: DOC_EPOCH,
                counter: 0,
                message: Message::PushAck {
                    id: MessageId(array(&to_hex(&seq(0xf0, 16)))),
                },
            },
        ),
        (
            "pull_sync_plaintext",
            Mode::Plaintext,
            Envelope {
                sender,
                epoch: DOC_EPOCH,
                counter: 1,
                message: Message::PullSync {
                    ids: vec![
                        MessageId(array(&to_hex(&seq(0x10, 16)))),
                        MessageId(array(&to_hex(&seq(0x20, 16)))),
                    ],
                },
            },
        ),
        (
            "push_message_aes256gcm",
            Mode::Aes(kat_key, nonce(0x10)),
            Envelope {
                sender,
                epoch: DOC_EPOCH,
                counter: 41,
                message: Message::PushMessage(Gossip {
                    id: MessageId(array(&to_hex(&seq(0xa0, 16)))),
                    origin: node(0x40),
                    hop: 1,
                    payload: Bytes::from_static(b"hello, gossip"),
                }),
            },
        ),
        (
            "pull_response_aes256gcm",
            Mode::Aes(raw_key.clone(), nonce(0xc0)),
            Envelope {
                sender: node(0x80),
                epoch: DOC_EPOCH,
                counter: 300,
                message: Message::PullResponse(Gossip {
                    id: MessageId(array(&to_hex(&seq(0xb0, 16)))),
                    origin: node(0x60),
                    hop: 300,
                    payload: Bytes::from(seq(0x00, 300)),
                }),
            },
        ),
    ];
    out.push((
        "state_digest_plaintext",
        Mode::Plaintext,
        Envelope {
            sender,
            epoch: DOC_EPOCH,
            counter: 65_536,
            message: Message::StateDigest(Digest {
                range_end: NodePrefix([0x80, 0, 0, 0, 0, 0, 0, 0]),
                page: vec![
                    DigestEntry {
                        node: prefix(0x20),
                        generation: 1_700_000_000_000,
                        heartbeat: 300,
                        max_version: 5,
                        gc_version: 0,
                    },
                    DigestEntry {
                        node: prefix(0x40),
                        generation: 1,
                        heartbeat: 5,
                        max_version: 0,
                        gc_version: 0,
                    },
                ],
                extra: vec![DigestEntry {
                    node: prefix(0x00),
                    generation: 1_700_000_000_123,
                    heartbeat: 12,
                    max_version: 65_536,
                    gc_version: 3,
                }],
                flow: FlowAdvert {
                    rate: 10_000,
                    desired: 2_500,
                },
            }),
        },
    ));
    out.push((
        "state_reply_plaintext",
        Mode::Plaintext,
        Envelope {
            sender: node(0x20),
            epoch: DOC_EPOCH,
            counter: 7,
            message: Message::StateReply(Reply {
                deltas: vec![NodeDelta {
                    node: node(0x20),
                    generation: 1_700_000_000_000,
                    heartbeat: 301,
                    addr: "10.0.0.2:7000".parse().unwrap(),
                    gc_version: 0,
                    reset: false,
                    from_version: 5,
                    to_version: 7,
                    complete: true,
                    entries: vec![
                        DeltaEntry {
                            key: "load".into(),
                            version: 6,
                            value: Some(Bytes::from_static(b"0.7")),
                        },
                        DeltaEntry {
                            key: "mode".into(),
                            version: 7,
                            value: None,
                        },
                    ],
                }],
                digest: vec![DigestEntry {
                    node: prefix(0x40),
                    generation: 0,
                    heartbeat: 0,
                    max_version: 0,
                    gc_version: 0,
                }],
                flow: FlowAdvert {
                    rate: 9_250,
                    desired: 1_000,
                },
                assigned_rate: 10_750,
            }),
        },
    ));
    out.push((
        "state_deltas_plaintext",
        Mode::Plaintext,
        Envelope {
            sender,
            epoch: DOC_EPOCH,
            counter: 4_294_967_296,
            message: Message::StateDeltas(Deltas {
                deltas: vec![
                    NodeDelta {
                        node: node(0x40),
                        generation: 1,
                        heartbeat: 70_000,
                        addr: "[2001:db8::4]:7000".parse().unwrap(),
                        gc_version: 9,
                        reset: true,
                        from_version: 0,
                        to_version: 10,
                        complete: false,
                        entries: vec![DeltaEntry {
                            key: "role".into(),
                            version: 10,
                            value: Some(Bytes::from_static(b"seed")),
                        }],
                    },
                    NodeDelta {
                        node: node(0x60),
                        generation: 2,
                        heartbeat: 44,
                        addr: "10.0.0.6:80".parse().unwrap(),
                        gc_version: 0,
                        reset: false,
                        from_version: 3,
                        to_version: 3,
                        complete: true,
                        entries: vec![],
                    },
                ],
            }),
        },
    ));
    out.push((
        "cyclon_shuffle_aes256gcm",
        Mode::Aes(raw_key, nonce(0x20)),
        Envelope {
            sender,
            epoch: DOC_EPOCH,
            counter: 2,
            message: Message::CyclonShuffle(Shuffle {
                entries: vec![
                    Descriptor {
                        node: sender,
                        addr: "10.0.0.1:7000".parse().unwrap(),
                        age: 0,
                    },
                    Descriptor {
                        node: node(0x60),
                        addr: "[2001:db8::6]:7000".parse().unwrap(),
                        age: 300,
                    },
                    Descriptor {
                        node: node(0xa0),
                        addr: "10.0.0.10:80".parse().unwrap(),
                        age: 5,
                    },
                ],
            }),
        },
    ));
    out.push((
        "cyclon_shuffle_reply_plaintext",
        Mode::Plaintext,
        Envelope {
            sender: node(0x60),
            epoch: DOC_EPOCH,
            counter: 3,
            message: Message::CyclonShuffleReply(ShuffleReply {
                entries: vec![Descriptor {
                    node: node(0xc0),
                    addr: "10.0.0.12:7000".parse().unwrap(),
                    age: 2,
                }],
            }),
        },
    ));
    let feed = |start: u8| FeedId(node(start).0);
    out.push((
        "tree_notes_plaintext",
        Mode::Plaintext,
        Envelope {
            sender,
            epoch: DOC_EPOCH,
            counter: 12,
            message: Message::TreeNotes(Notes {
                entries: vec![
                    (FeedId(author.0), 10),
                    (feed(0xb0), -1),
                    (feed(0xc0), 601),
                    (feed(0xd0), 1),
                ],
            }),
        },
    ));
    out.push((
        "tree_batch_plaintext",
        Mode::Plaintext,
        Envelope {
            sender: author,
            epoch: DOC_EPOCH,
            counter: 1_000,
            message: Message::TreeBatch(FeedBatch {
                messages: vec![first, second],
            }),
        },
    ));
    let blob = BlobId(array(&to_hex(&seq(0x30, 32))));
    out.push((
        "blob_want_plaintext",
        Mode::Plaintext,
        Envelope {
            sender,
            epoch: DOC_EPOCH,
            counter: 7,
            message: Message::BlobWant(BlobWant { blob }),
        },
    ));
    out.push((
        "blob_have_plaintext",
        Mode::Plaintext,
        Envelope {
            sender: node(0x40),
            epoch: DOC_EPOCH,
            counter: 7,
            message: Message::BlobHave(BlobHave {
                blob,
                meta: BlobMeta {
                    size: 10 << 20,
                    chunk_size: 1_280,
                    root: array(&to_hex(&seq(0x70, 32))),
                },
            }),
        },
    ));
    out.push((
        "blob_request_plaintext",
        Mode::Plaintext,
        Envelope {
            sender,
            epoch: DOC_EPOCH,
            counter: 7,
            message: Message::BlobRequest(BlobRequest {
                blob,
                pieces: vec![
                    PieceIndex { level: 3, index: 0 },
                    PieceIndex {
                        level: 0,
                        index: 250,
                    },
                    PieceIndex {
                        level: 0,
                        index: 8_191,
                    },
                ],
            }),
        },
    ));
    out.push((
        "blob_piece_aes256gcm",
        Mode::Aes(Key::from_slice(&seq(0x00, 32)).unwrap(), nonce(0x50)),
        Envelope {
            sender: node(0x40),
            epoch: DOC_EPOCH,
            counter: 7,
            message: Message::BlobPiece(BlobPiece {
                blob,
                piece: PieceIndex {
                    level: 0,
                    index: 8_191,
                },
                data: Bytes::from_static(b"the last chunk of a blob"),
            }),
        },
    ));
    out
}

fn print_feed_kat(name: &str, m: &FeedMessage) {
    out!("\n```text\nvector: {name}");
    print_field("seed", &[1; 32]);
    print_field("author", &m.author.0);
    out!("sequence: {}", m.sequence);
    match m.previous {
        None => out!("previous: none"),
        Some(h) => print_field("previous", &h.0),
    }
    out!("timestamp_ms: {}", m.timestamp_ms);
    print_field("content", &m.content);
    print_field("signing_bytes", &m.signing_bytes());
    print_field("signature", &m.signature);
    print_field("signed", &m.encode_signed());
    print_field("id", &m.id().0);
    out!("```");
}

/// Generates every vector block from its fixed inputs and checks that the document holds each
/// block exactly as generated, so a vector can never drift from the code that makes it. After
/// a deliberate wire change, `WIRE_DOC_PRINT=1 cargo test -p gossip-net --test wire_doc
/// generated -- --nocapture` prints the blocks to paste into the document.
#[test]
fn generated_vectors_are_the_documents() {
    OUT.with(|o| o.borrow_mut().clear());
    generate_vectors();
    let generated = OUT.with(|o| o.borrow().clone());
    if std::env::var_os("WIRE_DOC_PRINT").is_some() {
        println!("{generated}");
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/wire.md");
    let document = std::fs::read_to_string(path).unwrap();
    let blocks: Vec<&str> = generated
        .split("```text\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap_or(""))
        .collect();
    assert!(blocks.len() >= 10, "{} blocks generated", blocks.len());
    for block in blocks {
        let name = block.lines().next().unwrap_or("");
        assert!(
            document.contains(block),
            "docs/wire.md does not hold the generated block {name} exactly:\n{block}"
        );
    }
}

/// Writes the vectors in the document's format from fixed inputs into `OUT`.
fn generate_vectors() {
    for (name, mode, e) in vector_inputs() {
        let datagram = match &mode {
            Mode::Plaintext => {
                let mut codec = PacketCodec::new(Security::Plaintext, 1400).unwrap();
                let mut out = BytesMut::new();
                codec.encode_datagram(&e, &mut out).unwrap();
                out!("\n```text\nvector: {name}\nmode: plaintext");
                out.to_vec()
            }
            Mode::Aes(key, nonce) => {
                out!("\n```text\nvector: {name}\nmode: aes-256-gcm");
                out!("key: {}", key.to_hex());
                out!("key_id: {:02x}", key.id());
                print_field("nonce", nonce);
                seal_with_nonce(&Keyring::new(key.clone()), &e, *nonce)
            }
        };
        print_field("sender", &e.sender.0);
        out!("epoch: {}", e.epoch);
        out!("counter: {}", e.counter);
        print_message(&e.message);
        print_field("envelope", &encode_envelope(&e));
        print_field("datagram", &datagram);
        out!("```");
    }

    // Passphrase known answer.
    let mut salt = PASSPHRASE_SALT_PREFIX.to_vec();
    salt.extend_from_slice(b"cluster-a");
    let key = Key::from_passphrase("correct horse", "cluster-a").unwrap();
    out!("\n```text\nvector: passphrase_kat\npassphrase: correct horse\ncluster: cluster-a");
    out!("salt: {}", to_hex(&salt));
    out!("key: {}\nkey_id: {:02x}\n```", key.to_hex(), key.id());

    // Feed message known answers.
    let (first, second) = kat_messages();
    print_feed_kat("feed_message_kat", &first);
    print_feed_kat("feed_message_kat_second", &second);
}
