//! The size bounds of [`wire_bound`] against the real encoding: bincode 2, standard
//! configuration, through serde (what `gossip-net`'s wire module uses).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};

use proptest::prelude::*;
use serde::{Serialize, Serializer};

use crate::id::NodeId;
use crate::membership::wire_bound::{self, ENVELOPE_OVERHEAD};
use crate::membership::{CyclonConfig, Descriptor, Shuffle, ShuffleReply};

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encodes")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, bincode::config::standard()).expect("decodes");
    assert_eq!(read, bytes.len());
    value
}

/// How `Message::CyclonShuffle` (type 19) and `CyclonShuffleReply` (type 20) will sit in an
/// envelope: the sender id, then a newtype variant of the message enum.
struct InMessage<'a, T>(u32, &'a T);

impl<T: Serialize> Serialize for InMessage<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_variant("Message", self.0, "Cyclon", self.1)
    }
}

fn v6_max() -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(
        Ipv6Addr::from([0xff; 16]),
        u16::MAX,
        7,
        9,
    ))
}

#[test]
fn the_descriptor_bound_is_exact_at_the_extremes() {
    let node = NodeId([0xab; 32]);
    let largest = Descriptor {
        node,
        addr: v6_max(),
        age: u32::MAX,
    };
    assert_eq!(encode(&largest).len(), Descriptor::ENCODED_LEN_BOUND);
    assert_eq!(Descriptor::ENCODED_LEN_BOUND, 57);
    let v4 = Descriptor {
        node,
        addr: SocketAddr::from((Ipv4Addr::BROADCAST, u16::MAX)),
        age: u32::MAX,
    };
    assert_eq!(encode(&v4).len(), 45);
    let small = Descriptor {
        node,
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 250)),
        age: 250,
    };
    assert_eq!(encode(&small).len(), 39);
    // The compact form of an IPv6 address carries no flow info or scope id.
    let back: Descriptor = decode(&encode(&largest));
    assert_eq!(back.addr.ip(), largest.addr.ip());
    assert_eq!(back.addr.port(), u16::MAX);
    assert!(matches!(back.addr, SocketAddr::V6(a) if a.flowinfo() == 0 && a.scope_id() == 0));
    let back: Descriptor = decode(&encode(&v4));
    assert_eq!(back, v4);
}

#[test]
fn a_full_shuffle_of_the_largest_entries_fits_the_envelope_limit() {
    let config = CyclonConfig::default();
    let l = config.max_shuffle_length();
    let entries: Vec<Descriptor> = (0..l)
        .map(|i| Descriptor {
            node: NodeId([u8::try_from(i).unwrap_or(0); 32]),
            addr: v6_max(),
            age: u32::MAX,
        })
        .collect();
    let shuffle = Shuffle {
        entries: entries.clone(),
    };
    let reply = ShuffleReply { entries };
    // Below 251 entries the length prefix takes 1 byte, 2 fewer than the bound assumes.
    assert_eq!(encode(&shuffle).len() + 2, shuffle.encoded_len_bound());
    assert_eq!(encode(&reply).len() + 2, reply.encoded_len_bound());
    let sender = NodeId([1; 32]);
    for (variant, len) in [
        (
            19,
            encode(&(sender, [0u8; 16], InMessage(19, &shuffle))).len(),
        ),
        (
            20,
            encode(&(sender, [0u8; 16], InMessage(20, &reply))).len(),
        ),
    ] {
        assert_eq!(
            len,
            ENVELOPE_OVERHEAD + encode(&shuffle).len(),
            "type {variant}"
        );
        assert!(
            len <= config.max_envelope_len,
            "type {variant}: {len} bytes"
        );
    }
    // The default l = 8: 459 bytes of bound, 508 with the envelope.
    assert_eq!(wire_bound::entries(8), 459);
    assert_eq!(ENVELOPE_OVERHEAD + wire_bound::entries(8), 508);
    // The length prefix of very long lists.
    assert_eq!(wire_bound::entries(65_536), 9 + 65_536 * 57);
    assert_eq!(wire_bound::entries_per_message(36), 0);
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
            |(ip, port, flow, scope)| {
                SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, flow, scope))
            }
        ),
    ]
}

fn arb_descriptor() -> impl Strategy<Value = Descriptor> {
    (any::<[u8; 32]>(), arb_addr(), any::<u32>()).prop_map(|(node, addr, age)| Descriptor {
        node: NodeId(node),
        addr,
        age,
    })
}

proptest! {
    /// Every descriptor list encodes within its bound and decodes back (IPv6 flow info and
    /// scope id aside).
    #[test]
    fn every_shuffle_encodes_within_its_bound(
        entries in prop::collection::vec(arb_descriptor(), 0..30)
    ) {
        let shuffle = Shuffle { entries };
        let bytes = encode(&shuffle);
        prop_assert!(bytes.len() <= shuffle.encoded_len_bound());
        let back: Shuffle = decode(&bytes);
        prop_assert_eq!(back.entries.len(), shuffle.entries.len());
        for (a, b) in back.entries.iter().zip(&shuffle.entries) {
            prop_assert_eq!((a.node, a.addr.ip(), a.addr.port(), a.age), (b.node, b.addr.ip(), b.addr.port(), b.age));
        }
    }
}
