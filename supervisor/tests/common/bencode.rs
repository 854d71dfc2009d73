//! A small bencode reader and writer, enough to edit the `.torrent` files
//! the tests make (add `private` to the info dictionary, add a BEP 19
//! `url-list`) and to read what peers and trackers send. Dictionaries keep
//! their keys sorted (`BTreeMap`), which is the canonical form, so decoding
//! and re-encoding a canonical torrent keeps its info-hash.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    pub fn str(text: &str) -> Self {
        Self::Bytes(text.as_bytes().to_vec())
    }

    pub fn get(&self, key: &str) -> Option<&Self> {
        match self {
            Self::Dict(map) => map.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn as_dict_mut(&mut self) -> &mut BTreeMap<Vec<u8>, Self> {
        match self {
            Self::Dict(map) => map,
            other => panic!("not a dictionary: {other:?}"),
        }
    }

    /// The keys of a dictionary, as text.
    pub fn keys(&self) -> Vec<String> {
        match self {
            Self::Dict(map) => map
                .keys()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Self::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Self::List(items) => {
                out.push(b'l');
                for item in items {
                    item.write(out);
                }
                out.push(b'e');
            }
            Self::Dict(map) => {
                out.push(b'd');
                for (key, value) in map {
                    Self::Bytes(key.clone()).write(out);
                    value.write(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one complete value; `None` on malformed input or trailing
    /// bytes.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let (value, rest) = Self::parse(bytes, 0)?;
        rest.is_empty().then_some(value)
    }

    fn parse(bytes: &[u8], depth: usize) -> Option<(Self, &[u8])> {
        if depth > 64 {
            return None;
        }
        match *bytes.first()? {
            b'i' => {
                let end = bytes.iter().position(|&b| b == b'e')?;
                let n = std::str::from_utf8(&bytes[1..end]).ok()?.parse().ok()?;
                Some((Self::Int(n), &bytes[end + 1..]))
            }
            b'l' => {
                let mut rest = &bytes[1..];
                let mut items = Vec::new();
                while *rest.first()? != b'e' {
                    let (item, next) = Self::parse(rest, depth + 1)?;
                    items.push(item);
                    rest = next;
                }
                Some((Self::List(items), &rest[1..]))
            }
            b'd' => {
                let mut rest = &bytes[1..];
                let mut map = BTreeMap::new();
                while *rest.first()? != b'e' {
                    let (Self::Bytes(key), next) = Self::parse(rest, depth + 1)? else {
                        return None;
                    };
                    let (value, next) = Self::parse(next, depth + 1)?;
                    map.insert(key, value);
                    rest = next;
                }
                Some((Self::Dict(map), &rest[1..]))
            }
            b'0'..=b'9' => {
                let colon = bytes.iter().position(|&b| b == b':')?;
                let len: usize = std::str::from_utf8(&bytes[..colon]).ok()?.parse().ok()?;
                let start = colon + 1;
                let data = bytes.get(start..start.checked_add(len)?)?;
                Some((Self::Bytes(data.to_vec()), &bytes[start + len..]))
            }
            _ => None,
        }
    }
}

/// `torrent` with `private=1` in its info dictionary (BEP 27): a new
/// info-hash.
pub fn make_private(torrent: &[u8]) -> Vec<u8> {
    let mut root = Value::decode(torrent).expect("a canonical .torrent");
    root.as_dict_mut()
        .get_mut(b"info".as_slice())
        .expect("an info dictionary")
        .as_dict_mut()
        .insert(b"private".to_vec(), Value::Int(1));
    root.encode()
}

/// `torrent` with a BEP 19 `url-list` (outside the info dictionary: the
/// info-hash is unchanged).
pub fn with_web_seeds(torrent: &[u8], urls: &[String]) -> Vec<u8> {
    let mut root = Value::decode(torrent).expect("a canonical .torrent");
    root.as_dict_mut().insert(
        b"url-list".to_vec(),
        Value::List(urls.iter().map(|u| Value::str(u)).collect()),
    );
    root.encode()
}
