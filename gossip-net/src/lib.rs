//! The network edge of the gossip framework: the labelled, encrypted packet codec and the UDP
//! transport.
#![deny(missing_docs)]

pub mod codec;
pub mod drops;
pub mod label;
pub mod wire;

pub use codec::{
    CodecConfigError, DEFAULT_MAX_DATAGRAM, Decoded, EncodeError, MAX_UDP_PAYLOAD, PACKET_OVERHEAD,
    PacketCodec, Security,
};
pub use drops::{DropCounts, DropReason};
pub use label::{Cipher, LABEL_LEN, Label};
