//! The one wire codec of nm's peer traffic (DESIGN §5): bincode 2 with a size limit on every
//! decode, and HMAC-SHA256 tags. Swapping to postcard stays a change of this module only.

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::Sha256;

/// The largest frame either side sends or accepts, in bytes. A longer length prefix closes the
/// link: the stream can no longer be trusted to be in step.
pub const MAX_FRAME: usize = 4096;

/// An HMAC-SHA256 tag.
pub type Tag = [u8; 32];

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME>()
}

/// Encodes `value`. Our own messages are small and always encodable: an error here is a bug.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, config()).expect("wire messages always encode")
}

/// Decodes a whole frame; trailing bytes are an error, like any other malformed input.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(value)
}

/// The HMAC-SHA256 of the parts, each prefixed with its length (so part boundaries are bound).
pub fn mac(key: &[u8], parts: &[&[u8]]) -> Tag {
    keyed(key, parts).finalize().into_bytes().into()
}

/// Whether `tag` is the HMAC of the parts, compared in constant time.
pub fn verify(key: &[u8], parts: &[&[u8]], tag: &Tag) -> bool {
    keyed(key, parts).verify_slice(tag).is_ok()
}

fn keyed(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(&(p.len() as u64).to_be_bytes());
        m.update(p);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_and_trailing_bytes_are_refused() {
        let bytes = encode(&(7u64, String::from("x")));
        assert_eq!(decode::<(u64, String)>(&bytes), Ok((7, "x".into())));
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<(u64, String)>(&longer).is_err());
    }

    #[test]
    fn a_length_beyond_the_limit_is_refused_without_allocating_it() {
        // a Vec<u8> claiming 2^40 bytes
        let mut bytes = vec![253u8];
        bytes.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }

    #[test]
    fn tags_bind_the_key_and_the_part_boundaries() {
        let t = mac(b"key", &[b"ab", b"c"]);
        assert!(verify(b"key", &[b"ab", b"c"], &t));
        assert!(!verify(b"other", &[b"ab", b"c"], &t));
        assert!(!verify(b"key", &[b"a", b"bc"], &t));
    }
}
