//! The byte-level BPE vocabulary of synthetic models.
//!
//! GPT-2 style: 256 tokens for the bytes (each byte written as a printable
//! code point, GPT-2's `bytes_to_unicode`), then tokens made by merging two
//! earlier tokens, then special tokens. Every text tokenizes (bytes are the
//! fallback) and detokenizes back to itself, which is all tests and benches
//! need; the merges only have to be real merges of tokens that exist.

use std::collections::HashSet;

/// llama.cpp's token type for ordinary tokens.
pub(crate) const TOKEN_NORMAL: i32 = 1;
/// llama.cpp's token type for control tokens (never produced from text
/// unless special-token parsing is on).
pub(crate) const TOKEN_CONTROL: i32 = 3;

/// Special tokens, in vocabulary order after the merged tokens.
pub(crate) const BOS: &str = "<s>";
pub(crate) const EOS: &str = "</s>";
pub(crate) const IM_START: &str = "<|im_start|>";
pub(crate) const IM_END: &str = "<|im_end|>";
const SPECIALS: [&str; 4] = [BOS, EOS, IM_START, IM_END];

/// Merges written first, in GPT-2's spirit (frequent English pieces), so the
/// small vocabularies hold useful tokens. `Ġ` is the byte-level space.
const SEED_MERGES: &[(&str, &str)] = &[
    ("Ġ", "t"),
    ("Ġ", "a"),
    ("h", "e"),
    ("i", "n"),
    ("r", "e"),
    ("o", "n"),
    ("Ġt", "he"),
    ("e", "r"),
    ("Ġ", "s"),
    ("a", "t"),
    ("Ġ", "w"),
    ("Ġ", "o"),
    ("e", "n"),
    ("Ġ", "c"),
    ("i", "t"),
    ("i", "s"),
    ("a", "n"),
    ("o", "r"),
    ("e", "s"),
    ("Ġ", "b"),
    ("e", "d"),
    ("Ġ", "f"),
    ("in", "g"),
    ("Ġ", "p"),
    ("o", "u"),
    ("Ġa", "n"),
    ("a", "l"),
    ("a", "r"),
    ("Ġt", "o"),
    ("Ġ", "m"),
    ("Ġo", "f"),
    ("Ġ", "in"),
    ("Ġ", "d"),
    ("Ġ", "h"),
    ("Ġan", "d"),
    ("i", "c"),
    ("a", "s"),
    ("l", "e"),
    ("Ġt", "h"),
    ("i", "on"),
    ("o", "m"),
    ("l", "l"),
    ("en", "t"),
    ("Ġ", "n"),
    ("Ġ", "l"),
    ("s", "t"),
    ("Ġ", "re"),
    ("v", "e"),
    ("Ġ", "e"),
    ("r", "o"),
    ("l", "y"),
    ("Ġb", "e"),
    ("Ġ", "g"),
    ("Ġ", "H"),
    ("Ġ", "W"),
    ("H", "e"),
    ("He", "ll"),
    ("Hell", "o"),
    ("Ġw", "or"),
    ("Ġwor", "ld"),
    ("l", "d"),
    ("Ġ", "I"),
    ("Ġ", "y"),
    ("Ġy", "ou"),
];

/// The vocabulary: token texts, their types, and the merges in rank order.
pub(crate) struct Vocab {
    pub(crate) tokens: Vec<String>,
    pub(crate) token_types: Vec<i32>,
    pub(crate) merges: Vec<String>,
}

impl Vocab {
    /// Id of a special token.
    pub(crate) fn id(&self, text: &str) -> u32 {
        // Special tokens sit at the end and are always present.
        self.tokens
            .iter()
            .rposition(|t| t == text)
            .map_or(0, |i| i as u32)
    }
}

/// GPT-2's reversible byte → printable code point mapping.
pub(crate) fn byte_symbol(byte: u8) -> char {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(byte) {
        return char::from(byte);
    }
    // Non-printable bytes take code points from 256 up, in byte order.
    let rank = (0..byte).filter(|&b| !printable(b)).count() as u32;
    char::from_u32(256 + rank).unwrap_or('\u{FFFD}')
}

/// Builds a vocabulary of exactly `n_vocab` tokens (at least 260).
pub(crate) fn build(n_vocab: usize) -> Vocab {
    let n_merged = n_vocab.saturating_sub(256 + SPECIALS.len());
    let mut tokens: Vec<String> = (0..=255u8).map(|b| byte_symbol(b).to_string()).collect();
    let mut known: HashSet<String> = tokens.iter().cloned().collect();
    let mut merges = Vec::with_capacity(n_merged);
    let mut add = |left: &str, right: &str, tokens: &mut Vec<String>, merges: &mut Vec<String>| {
        let merged = format!("{left}{right}");
        if merges.len() < n_merged
            && known.contains(left)
            && known.contains(right)
            && known.insert(merged.clone())
        {
            merges.push(format!("{left} {right}"));
            tokens.push(merged);
        }
    };
    for (left, right) in SEED_MERGES {
        add(left, right, &mut tokens, &mut merges);
    }
    // Then grow tokens by one letter at a time, oldest first, until the
    // vocabulary is full: deterministic, and every merge joins two tokens
    // that already exist.
    let letters: Vec<String> = ('a'..='z').chain('A'..='Z').map(String::from).collect();
    let mut next = 0;
    while merges.len() < n_merged && next < tokens.len() {
        let left = tokens[next].clone();
        next += 1;
        let starts_word = left.starts_with('Ġ') || left.chars().all(|c| c.is_ascii_alphabetic());
        if !starts_word {
            continue;
        }
        for right in &letters {
            add(&left, right, &mut tokens, &mut merges);
        }
    }
    let mut token_types = vec![TOKEN_NORMAL; tokens.len()];
    for special in SPECIALS {
        tokens.push(special.to_string());
        token_types.push(TOKEN_CONTROL);
    }
    Vocab {
        tokens,
        token_types,
        merges,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_symbols_are_unique_and_match_gpt2() {
        let symbols: HashSet<char> = (0..=255u8).map(byte_symbol).collect();
        assert_eq!(symbols.len(), 256);
        assert_eq!(byte_symbol(b' '), 'Ġ');
        assert_eq!(byte_symbol(b'\n'), 'Ċ');
        assert_eq!(byte_symbol(b'A'), 'A');
    }

    #[test]
    fn vocab_has_requested_size_and_valid_merges() {
        for n_vocab in [320, 8192, 32000] {
            let vocab = build(n_vocab);
            assert_eq!(vocab.tokens.len(), n_vocab);
            assert_eq!(vocab.token_types.len(), n_vocab);
            let unique: HashSet<&String> = vocab.tokens.iter().collect();
            assert_eq!(unique.len(), n_vocab, "tokens are unique");
            for (i, merge) in vocab.merges.iter().enumerate() {
                let (left, right) = merge.split_once(' ').expect("a merge has two parts");
                assert_eq!(vocab.tokens[256 + i], format!("{left}{right}"));
            }
            assert!(vocab.merges.len() >= 50);
        }
    }
}
