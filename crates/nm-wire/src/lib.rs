//! nm's peer wire (DESIGN §3 "API", §5): every byte two nm processes exchange goes through here.
//!
//! - [`admission`]: the bounded handshake pool of a peer listener (per source address and in
//!   total, the oldest stranger of the busiest source evicted) and the handshake deadline.
//! - [`codec`]: bincode 2 with a size limit on every decode, HMAC-SHA256 tags.
//! - [`frame`]: length-prefixed frames on a stream; a length beyond [`codec::MAX_FRAME`] is an
//!   error (the stream is no longer in step).
//! - [`session`]: a handshake that authenticates both sides under a shared key (a nonce from each
//!   side, a session key from both), then sealed frames: a sequence number and the message
//!   encrypted with ChaCha20-Poly1305 under a per-direction key derived from the session key
//!   (nonce = direction ‖ sequence number; the protocol, direction and sequence number bound as
//!   associated data). A sealed frame that fails its tag, its sequence or decoding is reported as
//!   [`session::Received::Rejected`] and never handed over as a message.

pub mod admission;
pub mod codec;
pub mod frame;
pub mod session;
#[cfg(feature = "testing")]
pub mod testing;
