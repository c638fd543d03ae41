//! Recursive Length Prefix encoding (Ethereum's wire format for
//! transactions), encoding only: the wallet never needs to decode.

/// An item to encode: a byte string or a list of items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Bytes(Vec<u8>),
    List(Vec<Item>),
}

impl Item {
    /// An unsigned integer: big-endian, no leading zeros (zero is empty).
    pub fn uint(value: u128) -> Item {
        let bytes = value.to_be_bytes();
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        Item::Bytes(bytes[first..].to_vec())
    }
}

/// The encoding of `item`.
pub fn encode(item: &Item) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(item, &mut out);
    out
}

fn encode_into(item: &Item, out: &mut Vec<u8>) {
    match item {
        Item::Bytes(bytes) if bytes.len() == 1 && bytes[0] < 0x80 => out.push(bytes[0]),
        Item::Bytes(bytes) => {
            header(0x80, bytes.len(), out);
            out.extend_from_slice(bytes);
        }
        Item::List(items) => {
            let mut body = Vec::new();
            for item in items {
                encode_into(item, &mut body);
            }
            header(0xc0, body.len(), out);
            out.extend_from_slice(&body);
        }
    }
}

fn header(offset: u8, len: usize, out: &mut Vec<u8>) {
    if len < 56 {
        // Fits: len < 56.
        out.push(offset + len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
        let len_bytes = &bytes[first..];
        out.push(offset + 55 + len_bytes.len() as u8);
        out.extend_from_slice(len_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Item {
        Item::Bytes(s.as_bytes().to_vec())
    }

    #[test]
    fn the_yellow_paper_examples() {
        assert_eq!(encode(&b("dog")), hex::decode("83646f67").unwrap());
        assert_eq!(
            encode(&Item::List(vec![b("cat"), b("dog")])),
            hex::decode("c88363617483646f67").unwrap()
        );
        assert_eq!(encode(&b("")), vec![0x80]);
        assert_eq!(encode(&Item::List(vec![])), vec![0xc0]);
        assert_eq!(encode(&Item::uint(0)), vec![0x80]);
        assert_eq!(encode(&Item::uint(15)), vec![0x0f]);
        assert_eq!(encode(&Item::uint(1024)), hex::decode("820400").unwrap());
        let long = "Lorem ipsum dolor sit amet, consectetur adipisicing elit";
        let encoded = encode(&b(long));
        assert_eq!(&encoded[..2], &[0xb8, 0x38]);
        // [ [], [[]], [ [], [[]] ] ]
        let empty = || Item::List(vec![]);
        let set = Item::List(vec![
            empty(),
            Item::List(vec![empty()]),
            Item::List(vec![empty(), Item::List(vec![empty()])]),
        ]);
        assert_eq!(encode(&set), hex::decode("c7c0c1c0c3c0c1c0").unwrap());
    }
}
