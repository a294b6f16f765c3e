//! Partitions (namespaces) and entry ids.
//!
//! A partition is everything that must match exactly and is never compared by similarity: the
//! API kind, the model, the output-affecting parameters, the system prompt, the embedding model,
//! and the configured `vary_by` values. Never the prompt itself. Entries of two partitions live
//! under different Redis keys, so no lookup can ever return another partition's entry.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// Bumped whenever the canonical form or the stored entry changes, so old entries are simply
/// never found again (3: expiry in milliseconds).
const LAYOUT_VERSION: &[u8] = b"semcache/3";

pub struct PartitionInput<'a> {
    pub kind: &'a str,
    pub model: &'a str,
    pub params: &'a str,
    pub system: &'a str,
    pub embedding_model: &'a str,
    pub vary: &'a [String],
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn feed(h: &mut Sha256, part: &[u8]) {
    // Length-prefix every part so no two different inputs concatenate to the same bytes.
    h.update((part.len() as u64).to_le_bytes());
    h.update(part);
}

/// The namespace id: 96 bits of SHA-256, hex.
pub fn namespace(p: &PartitionInput<'_>) -> String {
    let mut h = Sha256::new();
    feed(&mut h, LAYOUT_VERSION);
    for part in [p.kind, p.model, p.params, p.system, p.embedding_model] {
        feed(&mut h, part.as_bytes());
    }
    feed(&mut h, &(p.vary.len() as u64).to_le_bytes());
    for v in p.vary {
        feed(&mut h, v.as_bytes());
    }
    hex(&h.finalize()[..12])
}

/// The entry id of a canonical prompt inside a namespace: 96 bits of SHA-256 in 16 base64url
/// characters. The same prompt always maps to the same id, which is what makes the exact tier
/// one key lookup. 96 bits keep a collision (a wrong exact hit) out of reach (about 1e-15 for
/// ten million entries in one partition) while the id, kept twice per entry in Redis (vector
/// set element, expiry index), costs 16 bytes less each time than 128 bits in hex.
pub fn entry_id(namespace: &str, exact_prompt: &str) -> String {
    let mut h = Sha256::new();
    feed(&mut h, namespace.as_bytes());
    feed(&mut h, exact_prompt.as_bytes());
    URL_SAFE_NO_PAD.encode(&h.finalize()[..12])
}

/// 64 well-mixed bits of an entry id (FNV-1a over its characters), e.g. to pick a table slot.
pub fn id_bits(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base<'a>(vary: &'a [String]) -> PartitionInput<'a> {
        PartitionInput {
            kind: "chat",
            model: "gpt-4o",
            params: "{}",
            system: "",
            embedding_model: "minilm",
            vary,
        }
    }

    #[test]
    fn every_component_splits_the_partition() {
        let none: Vec<String> = vec![];
        let ns = namespace(&base(&none));
        assert_eq!(ns.len(), 24);
        assert_eq!(ns, namespace(&base(&none)));
        let variants = [
            PartitionInput {
                kind: "legacy",
                ..base(&none)
            },
            PartitionInput {
                model: "gpt-4o-mini",
                ..base(&none)
            },
            PartitionInput {
                params: r#"{"temperature":0}"#,
                ..base(&none)
            },
            PartitionInput {
                system: "Be terse.",
                ..base(&none)
            },
            PartitionInput {
                embedding_model: "other",
                ..base(&none)
            },
        ];
        for v in variants {
            assert_ne!(namespace(&v), ns);
        }
    }

    #[test]
    fn vary_values_are_unambiguous() {
        let a = vec!["ab".to_string(), "c".to_string()];
        let b = vec!["a".to_string(), "bc".to_string()];
        let c = vec!["abc".to_string()];
        let e = vec![String::new()];
        let none: Vec<String> = vec![];
        let all: Vec<String> = [&a, &b, &c, &e, &none]
            .iter()
            .map(|v| namespace(&base(v)))
            .collect();
        for i in 0..all.len() {
            for j in i + 1..all.len() {
                assert_ne!(all[i], all[j], "{i} vs {j}");
            }
        }
    }

    #[test]
    fn entry_ids_depend_on_namespace_and_prompt() {
        assert_eq!(entry_id("n1", "p"), entry_id("n1", "p"));
        assert_ne!(entry_id("n1", "p"), entry_id("n2", "p"));
        assert_ne!(entry_id("n1", "p"), entry_id("n1", "q"));
        let id = entry_id("n1", "p");
        assert_eq!(id.len(), 16);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(id_bits(&id), id_bits(&entry_id("n1", "q")));
    }
}
