//! Sampling options, and the llama.cpp samplers built from them.
//!
//! A token is picked by: the grammar (when the output is constrained) →
//! repetition penalties → top-k → top-p → min-p → temperature → a seeded
//! random pick; with `temperature == 0` the chain ends in a greedy pick
//! instead and the distribution filters are left out (they cannot change the
//! argmax). The grammar is a sampler of its own ahead of the chain, so that
//! tokens whose text would differ from what the grammar sees can be refused
//! between the two (see `GrammarGuard`).
//!
//! Unconstrained requests are sampled with `llama_sampler_sample`: one
//! optimised C++ call per token that fills the candidates, runs the chain and
//! accepts the pick (so it is never accepted again here). Nothing in such a
//! chain can throw.
//!
//! Constrained requests are sampled in two steps, apply then accept: with a
//! grammar, `llama_sampler_sample` would accept inside C++, where a grammar
//! that rejects the token throws through the C boundary and aborts the
//! process. Here the selected token is checked first (a grammar marks the
//! tokens it refuses with a logit of −∞; if it refused all of them the
//! request fails) and accepted exactly once, through the exception-catching
//! `try_accept`. Accepting a token twice corrupts the grammar's state.
//!
//! Repetition penalties see the generated tokens only, not the prompt.

use std::sync::Arc;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;

use crate::backend::GenerateError;

/// How tokens are picked.
///
/// Defaults follow llama.cpp's: temperature 0.8, top-k 40, top-p 0.95,
/// min-p 0.05, no repetition penalty (1.0, over the last 64 tokens), and a
/// random seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
    /// Softmax temperature; 0 picks the most likely token (greedy).
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; 0 keeps all.
    pub top_k: i32,
    /// Keep the smallest set of tokens whose probabilities sum to `top_p`; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` × the most likely one; 0 keeps all.
    pub min_p: f32,
    /// Divide the logits of recently generated tokens by this; 1 disables.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub repeat_last_n: i32,
    /// Subtract `frequency_penalty` × count from a recent token's logit; 0 disables.
    pub frequency_penalty: f32,
    /// Subtract `presence_penalty` from the logit of any recent token; 0 disables.
    pub presence_penalty: f32,
    /// Seed of the random pick; `None` draws one.
    pub seed: Option<u32>,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplingOptions {
    /// Always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// Checks the ranges llama.cpp's samplers need.
    ///
    /// # Errors
    /// [`GenerateError::InvalidSampling`] naming the option.
    pub fn validate(&self) -> Result<(), GenerateError> {
        let invalid =
            |name: &'static str, reason: String| GenerateError::InvalidSampling { name, reason };
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(invalid(
                "temperature",
                format!("is {}; it must be 0 or more", self.temperature),
            ));
        }
        if self.top_k < 0 {
            return Err(invalid(
                "top_k",
                format!("is {}; it must be 0 (off) or more", self.top_k),
            ));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(invalid(
                "top_p",
                format!("is {}; it must be between 0 and 1", self.top_p),
            ));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(invalid(
                "min_p",
                format!("is {}; it must be between 0 and 1", self.min_p),
            ));
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return Err(invalid(
                "repeat_penalty",
                format!(
                    "is {}; it must be more than 0 (1 disables)",
                    self.repeat_penalty
                ),
            ));
        }
        if self.repeat_last_n < 0 {
            return Err(invalid(
                "repeat_last_n",
                format!("is {}; it must be 0 or more", self.repeat_last_n),
            ));
        }
        for (name, value) in [
            ("frequency_penalty", self.frequency_penalty),
            ("presence_penalty", self.presence_penalty),
        ] {
            if !value.is_finite() {
                return Err(invalid(name, format!("is {value}; it must be finite")));
            }
        }
        Ok(())
    }

    /// The samplers after the penalties: top-k (when asked for and
    /// `with_top_k`), top-p, min-p, temperature and dist, or greedy.
    fn chain_after_penalties(&self, with_top_k: bool) -> Vec<LlamaSampler> {
        if self.temperature == 0.0 {
            return vec![LlamaSampler::greedy()];
        }
        let mut chain = Vec::new();
        if with_top_k && self.top_k > 0 {
            chain.push(LlamaSampler::top_k(self.top_k));
        }
        if self.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(self.top_p, 1));
        }
        if self.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(self.min_p, 1));
        }
        chain.push(LlamaSampler::temp(self.temperature));
        chain.push(LlamaSampler::dist(self.seed.unwrap_or(RANDOM_SEED)));
        chain
    }

    fn penalties_active(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.frequency_penalty != 0.0
                || self.presence_penalty != 0.0)
    }
}

/// llama.cpp's `LLAMA_DEFAULT_SEED`: the dist sampler draws a random seed.
const RANDOM_SEED: u32 = 0xFFFF_FFFF;

/// A GBNF grammar (start rule `root`) for the sampler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grammar {
    /// The grammar's text.
    pub(crate) text: String,
    /// Literal texts that switch a lazy grammar on (from the trigger's
    /// first byte); empty: the grammar holds from the first token.
    pub(crate) triggers: Vec<String>,
    /// The triggers count only at the start of the output (after whitespace).
    pub(crate) at_start: bool,
    /// Control tokens the output may hold (tool-call markers): the guard
    /// lets the grammar judge them by their text.
    pub(crate) preserved: Vec<LlamaToken>,
}

impl Grammar {
    /// llama.cpp's sampler for this grammar. A lazy one gets its triggers
    /// as regular expressions matching the literal text (as llama.cpp's
    /// `common` turns trigger words into patterns).
    fn sampler(&self, model: &LlamaModel) -> Result<LlamaSampler, GenerateError> {
        let sampler = if self.triggers.is_empty() {
            LlamaSampler::grammar(model, &self.text, "root")
        } else {
            // llama.cpp matches a pattern in `^…$` against the whole output
            // so far and constrains from its first group; any other pattern
            // anywhere, from the match.
            let patterns: Vec<String> = self
                .triggers
                .iter()
                .map(|t| {
                    if self.at_start {
                        format!("^\\s*({})[\\s\\S]*$", regex_escape(t))
                    } else {
                        regex_escape(t)
                    }
                })
                .collect();
            LlamaSampler::grammar_lazy_patterns(model, &self.text, "root", &patterns, &[])
        };
        sampler.map_err(|error| GenerateError::InvalidGrammar {
            reason: format!("{error} (llama.cpp's log names the position)"),
        })
    }
}

/// `text` as an ECMAScript regular expression matching it literally.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The text of every token as output renders it, for checking constrained
/// output byte by byte, and an index by first byte for pruning.
#[derive(Debug)]
pub(crate) struct TokenTexts {
    /// `None` marks end-of-generation tokens.
    texts: Vec<Option<Box<[u8]>>>,
    /// Each token's first byte when it is ASCII; [`NO_PRUNE`] for tokens that
    /// are always checked (end-of-generation, empty, non-ASCII first byte).
    first: Vec<u8>,
    /// For each ASCII byte, a token whose whole text is that byte.
    single: Vec<(u8, LlamaToken)>,
    /// Each token's second byte when its first two are ASCII, else [`NO_PRUNE`].
    second: Vec<u8>,
    /// Tokens whose whole text is two ASCII bytes, by `first * 128 + second`.
    pairs: Vec<(usize, LlamaToken)>,
}

/// [`TokenTexts::first`] for a token that is never pruned.
const NO_PRUNE: u8 = 0xFF;

impl TokenTexts {
    /// Reads every token of `model`'s vocabulary (once per model).
    pub(crate) fn new(model: &LlamaModel) -> Self {
        let vocab = model.vocab();
        let texts: Vec<Option<Box<[u8]>>> = (0..vocab.n_tokens())
            .map(LlamaToken)
            .map(|token| {
                (!vocab.is_eog(token))
                    .then(|| vocab.token_to_piece(token, false, None).into_boxed_slice())
            })
            .collect();
        let first = texts
            .iter()
            .map(|text| match text.as_deref() {
                Some([b, ..]) if b.is_ascii() => *b,
                _ => NO_PRUNE,
            })
            .collect();
        let second = texts
            .iter()
            .map(|text| match text.as_deref() {
                Some([a, b, ..]) if a.is_ascii() && b.is_ascii() => *b,
                _ => NO_PRUNE,
            })
            .collect();
        let mut pairs = Vec::new();
        let mut seen = vec![false; 128 * 128];
        for (id, text) in (0_i32..).zip(&texts) {
            if let Some([a, b]) = text.as_deref() {
                let key = usize::from(*a) * 128 + usize::from(*b);
                if a.is_ascii() && b.is_ascii() && !vocab.is_control(LlamaToken(id)) && !seen[key] {
                    seen[key] = true;
                    pairs.push((key, LlamaToken(id)));
                }
            }
        }
        let mut single: Vec<(u8, LlamaToken)> = Vec::new();
        for (id, text) in (0_i32..).zip(&texts) {
            if let Some([b]) = text.as_deref() {
                let normal = !vocab.is_control(LlamaToken(id));
                if b.is_ascii() && normal && !single.iter().any(|(c, _)| c == b) {
                    single.push((*b, LlamaToken(id)));
                }
            }
        }
        Self {
            texts,
            first,
            single,
            second,
            pairs,
        }
    }
}

/// A grammar, and the checks that keep the output text equal to what the
/// grammar saw.
///
/// llama.cpp's grammar reads a token through its *special* rendering and
/// takes any lead byte plus the right number of following bytes as one
/// character without checking them. The output is rendered without special
/// tokens and decoded strictly, so a control token (`<|im_start|>` inside a
/// JSON string) or a malformed UTF-8 sequence would make the text differ
/// from what the grammar accepted — a schema's `maxLength`, or the JSON
/// itself, would break. Those tokens are refused before the pick.
struct GrammarGuard {
    grammar: LlamaSampler,
    texts: Arc<TokenTexts>,
    /// Bytes of an incomplete character at the end of the output.
    partial: Vec<u8>,
    scratch: Vec<u8>,
    /// Control tokens the output holds as text ([`Grammar::preserved`]).
    preserved: Vec<LlamaToken>,
}

impl GrammarGuard {
    fn refuse_mismatched(&mut self, candidates: &mut LlamaTokenDataArray) {
        for candidate in &mut candidates.data {
            if candidate.logit().is_finite() && !self.guard_allows(candidate.id()) {
                candidate.set_logit(f32::NEG_INFINITY);
            }
        }
    }

    /// [`GrammarGuard::refuse_mismatched`] for one token.
    fn guard_allows(&mut self, token: LlamaToken) -> bool {
        if self.preserved.contains(&token) {
            return true;
        }
        let index = usize::try_from(token.0).unwrap_or(usize::MAX);
        match self.texts.texts.get(index) {
            Some(None) => true,
            Some(Some(text)) if text.is_empty() => false,
            Some(Some(text)) => {
                self.scratch.clear();
                self.scratch.extend_from_slice(&self.partial);
                self.scratch.extend_from_slice(text);
                valid_utf8_prefix(&self.scratch)
            }
            None => false,
        }
    }

    fn accepted(&mut self, token: LlamaToken) {
        let index = usize::try_from(token.0).unwrap_or(usize::MAX);
        if let Some(Some(text)) = self.texts.texts.get(index) {
            self.partial.extend_from_slice(text);
            let complete = match std::str::from_utf8(&self.partial) {
                Ok(_) => self.partial.len(),
                Err(error) => error.valid_up_to(),
            };
            self.partial.drain(..complete);
        }
    }
}

/// The index of the first highest value (llama.cpp's greedy sampler keeps
/// the first of equal logits too). NaN is never picked while a number is
/// there. Two passes the compiler vectorises: the highest value in eight
/// lanes, then the first position holding it.
fn first_argmax(logits: &[f32]) -> i32 {
    let mut lanes = [f32::NEG_INFINITY; 8];
    let chunks = logits.chunks_exact(8);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (lane, &logit) in lanes.iter_mut().zip(chunk) {
            *lane = if logit > *lane { logit } else { *lane };
        }
    }
    let best = lanes
        .into_iter()
        .chain(tail.iter().copied())
        .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
    let at = logits.iter().position(|&logit| logit == best).unwrap_or(0);
    i32::try_from(at).unwrap_or(0)
}

/// Whether `bytes` is valid UTF-8, or valid UTF-8 cut inside its last character.
fn valid_utf8_prefix(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(error) => error.error_len().is_none(),
    }
}

/// A grammar-constrained sampler.
///
/// Applying a llama.cpp grammar to every token of the vocabulary costs about
/// as much as decoding a token of a small model. When the chain only ever
/// looks at the `k` most likely tokens (greedy: `k` = 1; top-k sampling:
/// `k` = `top_k`), the exact same pick needs far less: tokens are visited in
/// descending logit order in chunks (32, 64, 128, … tokens), each chunk goes
/// through the grammar in one call, and the first `k` tokens that the grammar
/// and the guard allow are exactly the ones top-k would keep after masking the
/// whole vocabulary. When fewer than `k` are allowed anywhere, the scan ends
/// having visited every token, with the same result as a full mask. Without
/// top-k every allowed token matters, and the whole vocabulary is masked in
/// one call, as llama.cpp's grammar sampler does.
pub(crate) struct ChainSampler {
    guard: GrammarGuard,
    /// Repetition penalties, applied to all logits before anything else.
    penalties: Option<LlamaSampler>,
    /// Everything after top-k: top-p, min-p, temperature, dist — or greedy.
    rest: LlamaSampler,
    /// How many allowed tokens the chain looks at; `None`: all of them.
    keep: Option<usize>,
    candidates: LlamaTokenDataArray,
    /// Token indices, partially sorted by logit during a scan.
    order: Vec<u32>,
    /// The allowed tokens a scan found.
    found: LlamaTokenDataArray,
    /// One chunk of candidates on its way through the grammar.
    chunk: LlamaTokenDataArray,
    /// Two-byte prefixes (`first * 128 + second`) the grammar refused this
    /// step; everything else in [`ChainSampler::pair_refused`] is false.
    refused_pairs: Vec<usize>,
    pair_refused: Vec<bool>,
}

/// The second level of pruning (two-byte prefixes) runs when at most this
/// many first bytes are allowed: at structural positions of JSON, where few
/// characters may follow and most tokens share an allowed first byte (a
/// space) but not an allowed second one.
const PAIR_LEVEL_MAX_FIRST: usize = 12;

/// Tokens the quick scan hands the grammar (see [`ChainSampler::quick_scan`]).
const QUICK_TOP: usize = 64;

/// Whether token `i` may be allowed, by its first byte and first two bytes.
/// `pair_refused`, when given, also refuses by the first two bytes.
fn prefilter_passes(
    texts: &TokenTexts,
    pair_refused: Option<&[bool]>,
    allowed_first: &[bool; 128],
    i: usize,
) -> bool {
    let a = texts.first.get(i).copied().unwrap_or(NO_PRUNE);
    if a == NO_PRUNE {
        return true;
    }
    if !allowed_first[usize::from(a)] {
        return false;
    }
    let Some(pair_refused) = pair_refused else {
        return true;
    };
    let b = texts.second.get(i).copied().unwrap_or(NO_PRUNE);
    b == NO_PRUNE || !pair_refused[usize::from(a) * 128 + usize::from(b)]
}

/// The position and value of the lowest logit in `top`.
fn lowest(top: &[(f32, u32)]) -> (usize, f32) {
    let mut at = 0;
    for (i, entry) in top.iter().enumerate() {
        if entry.0 < top[at].0 {
            at = i;
        }
    }
    (at, top[at].0)
}

/// Tokens in the first chunk of a scan; each later chunk is twice as large.
///
/// Before the scan, one grammar call over the single-byte tokens finds which
/// ASCII bytes may come next: a token whose first byte the grammar refuses is
/// refused whatever follows it, so such tokens are never visited. At a
/// position where only `,` or `}` may follow, that leaves a handful of tokens
/// instead of the vocabulary.
const SCAN_FIRST_CHUNK: usize = 32;

impl ChainSampler {
    /// Which ASCII bytes the grammar lets a token start with now (all of them
    /// while a multi-byte character is incomplete: then nothing is pruned).
    fn allowed_first_bytes(&mut self) -> [bool; 128] {
        let mut allowed = [true; 128];
        if !self.guard.partial.is_empty() || self.guard.texts.single.is_empty() {
            return allowed;
        }
        self.chunk.data.clear();
        self.chunk.data.extend(
            self.guard
                .texts
                .single
                .iter()
                .map(|&(_, token)| LlamaTokenData::new(token, 0.0, 0.0)),
        );
        self.chunk.selected = None;
        self.chunk.sorted = false;
        self.chunk.apply_sampler(&mut self.guard.grammar);
        for (&(byte, _), data) in self.guard.texts.single.iter().zip(&self.chunk.data) {
            allowed[usize::from(byte)] = data.logit().is_finite();
        }
        allowed
    }

    /// Marks in `pair_refused` the two-byte prefixes the grammar refuses,
    /// among those whose first byte it allows, when few first bytes are.
    fn refuse_pairs(&mut self, allowed_first: &[bool; 128]) {
        for key in self.refused_pairs.drain(..) {
            self.pair_refused[key] = false;
        }
        if !self.guard.partial.is_empty()
            || allowed_first.iter().filter(|&&a| a).count() > PAIR_LEVEL_MAX_FIRST
        {
            return;
        }
        self.chunk.data.clear();
        self.chunk.data.extend(
            self.guard
                .texts
                .pairs
                .iter()
                .filter(|&&(key, _)| allowed_first[key / 128])
                .map(|&(_, token)| LlamaTokenData::new(token, 0.0, 0.0)),
        );
        if self.chunk.data.is_empty() {
            return;
        }
        self.chunk.selected = None;
        self.chunk.sorted = false;
        self.chunk.apply_sampler(&mut self.guard.grammar);
        let pairs = self
            .guard
            .texts
            .pairs
            .iter()
            .filter(|&&(key, _)| allowed_first[key / 128]);
        for (&(key, _), data) in pairs.zip(&self.chunk.data) {
            if !data.logit().is_finite() {
                self.pair_refused[key] = true;
                self.refused_pairs.push(key);
            }
        }
    }

    /// Fills `found` with the `keep` most likely allowed tokens (or every
    /// allowed token, when fewer are), in descending logit order.
    fn scan(&mut self, keep: usize) {
        let allowed_first = self.allowed_first_bytes();
        self.refuse_pairs(&allowed_first);
        let texts = &self.guard.texts;
        let pair_refused = &self.pair_refused;
        self.order.clear();
        self.order.extend(
            (0..u32::try_from(self.candidates.data.len()).unwrap_or(u32::MAX)).filter(|&i| {
                prefilter_passes(texts, Some(pair_refused), &allowed_first, i as usize)
            }),
        );
        let n = self.order.len();
        self.found.data.clear();
        let data = std::mem::take(&mut self.candidates.data);
        let by_logit = |a: &u32, b: &u32| {
            let la = data[*a as usize].logit();
            let lb = data[*b as usize].logit();
            lb.total_cmp(&la)
        };
        let (mut start, mut size) = (0, SCAN_FIRST_CHUNK);
        'chunks: while start < n {
            let end = (start + size).min(n);
            if end < n {
                self.order[start..].select_nth_unstable_by(end - start - 1, by_logit);
            }
            self.order[start..end].sort_unstable_by(by_logit);
            self.chunk.data.clear();
            self.chunk.data.extend(
                self.order[start..end]
                    .iter()
                    .map(|&i| data[i as usize])
                    .take_while(|d| d.logit().is_finite()),
            );
            let exhausted = self.chunk.data.len() < end - start;
            self.chunk.selected = None;
            self.chunk.sorted = true;
            self.chunk.apply_sampler(&mut self.guard.grammar);
            for &candidate in &self.chunk.data {
                if candidate.logit().is_finite() && self.guard.guard_allows(candidate.id()) {
                    self.found.data.push(candidate);
                    if self.found.data.len() == keep {
                        break 'chunks;
                    }
                }
            }
            if exhausted {
                break;
            }
            start = end;
            size *= 2;
        }
        self.candidates.data = data;
    }

    /// The scan without building a candidate for every token of the
    /// vocabulary: one pass over the logits keeps the [`QUICK_TOP`] most
    /// likely tokens whose first byte the grammar allows, and the grammar
    /// looks at those. When `keep` of them are allowed, they are exactly the
    /// `keep` most likely allowed tokens of the whole vocabulary (every token
    /// left out is refused by its first byte or less likely than all of
    /// them), so the pick is the full scan's; otherwise this returns false
    /// and [`Self::scan`] runs. Without penalties only (they change the
    /// logits first).
    fn quick_scan(&mut self, logits: &[f32], keep: usize) -> bool {
        // First bytes only: finding the refused two-byte prefixes runs the
        // grammar over thousands of tokens (most of the cost with a 262k
        // vocabulary), and the few tokens looked at here do not need it.
        let allowed_first = self.allowed_first_bytes();
        let texts = &self.guard.texts;
        let top_n = QUICK_TOP.max(keep.saturating_mul(2));
        let mut top: Vec<(f32, u32)> = Vec::with_capacity(top_n);
        let (mut min_at, mut min_logit) = (0, f32::NEG_INFINITY);
        for (i, &logit) in logits.iter().enumerate() {
            // Most tokens fail this one comparison once `top` is full. The
            // full scan never ranks a token it cannot order (±∞, NaN).
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            if !(logit > min_logit)
                || logit == f32::INFINITY
                || !prefilter_passes(texts, None, &allowed_first, i)
            {
                continue;
            }
            let entry = (logit, u32::try_from(i).unwrap_or(u32::MAX));
            if top.len() < top_n {
                top.push(entry);
                if top.len() == top_n {
                    (min_at, min_logit) = lowest(&top);
                }
            } else if logit > min_logit {
                top[min_at] = entry;
                (min_at, min_logit) = lowest(&top);
            }
        }
        top.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        self.chunk.data.clear();
        self.chunk.data.extend(
            top.iter()
                .map(|&(logit, i)| LlamaTokenData::new(LlamaToken(i as i32), logit, 0.0)),
        );
        self.chunk.selected = None;
        self.chunk.sorted = true;
        self.chunk.apply_sampler(&mut self.guard.grammar);
        self.found.data.clear();
        for &candidate in &self.chunk.data {
            if candidate.logit().is_finite() && self.guard.guard_allows(candidate.id()) {
                self.found.data.push(candidate);
                if self.found.data.len() == keep {
                    return true;
                }
            }
        }
        // Fewer than `keep` allowed among the most likely: the full scan
        // looks further.
        false
    }

    fn pick(&mut self, logits: &[f32]) -> Result<LlamaToken, GenerateError> {
        let quick =
            self.penalties.is_none() && self.keep.is_some_and(|keep| self.quick_scan(logits, keep));
        let array = if quick {
            self.found.selected = None;
            self.found.sorted = true;
            &mut self.found
        } else {
            let candidates = &mut self.candidates;
            candidates.data.clear();
            candidates.data.extend(
                (0_i32..)
                    .zip(logits)
                    .map(|(id, &logit)| LlamaTokenData::new(LlamaToken(id), logit, 0.0)),
            );
            candidates.selected = None;
            candidates.sorted = false;
            if let Some(penalties) = &mut self.penalties {
                candidates.apply_sampler(penalties);
            }
            match self.keep {
                Some(keep) => {
                    self.scan(keep);
                    self.found.selected = None;
                    self.found.sorted = true;
                    &mut self.found
                }
                None => {
                    self.candidates.apply_sampler(&mut self.guard.grammar);
                    self.guard.refuse_mismatched(&mut self.candidates);
                    &mut self.candidates
                }
            }
        };
        if array.data.is_empty() {
            return Err(GenerateError::Sampling(
                "the grammar allows no token the model can produce here".into(),
            ));
        }
        array.apply_sampler(&mut self.rest);
        let chosen = array
            .selected
            .and_then(|i| array.data.get(i))
            .ok_or_else(|| GenerateError::Sampling("the sampler chain selected no token".into()))?;
        // The grammar sets every token it refuses to −∞; accepting one would
        // abort inside llama.cpp.
        if !chosen.logit().is_finite() {
            return Err(GenerateError::Sampling(
                "the grammar allows no token the model can produce here".into(),
            ));
        }
        let token = chosen.id();
        let refused = |error| {
            GenerateError::Sampling(format!("the sampler refused token {}: {error}", token.0))
        };
        self.guard.grammar.try_accept(token).map_err(refused)?;
        self.guard.accepted(token);
        if let Some(penalties) = &mut self.penalties {
            penalties.try_accept(token).map_err(refused)?;
        }
        self.rest.try_accept(token).map_err(refused)?;
        Ok(token)
    }
}

/// Picks each next token of one request.
pub(crate) enum TokenSampler {
    /// Unconstrained greedy without penalties: the first highest logit,
    /// read straight from the logits (what llama.cpp's greedy sampler picks,
    /// without filling a candidate array of the whole vocabulary per token:
    /// for a 49k vocabulary that array cost 5% of SmolLM2-135M's generation).
    Greedy,
    /// An unconstrained chain, run by llama.cpp in one call per token.
    Plain(LlamaSampler),
    /// Grammar, guard, then the chain, stepped from Rust.
    Constrained(Box<ChainSampler>),
}

impl std::fmt::Debug for TokenSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSampler::Greedy => f.write_str("Greedy"),
            TokenSampler::Plain(chain) => f.debug_tuple("Plain").field(chain).finish(),
            TokenSampler::Constrained(sampler) => f
                .debug_struct("Constrained")
                .field("rest", &sampler.rest)
                .field("keep", &sampler.keep)
                .finish(),
        }
    }
}

impl TokenSampler {
    /// Builds the sampler for `options`, constrained by `grammar` when
    /// given; `texts` are the model's token texts.
    pub(crate) fn new(
        options: &SamplingOptions,
        model: &LlamaModel,
        grammar: Option<(&Grammar, Arc<TokenTexts>)>,
    ) -> Result<Self, GenerateError> {
        options.validate()?;
        let greedy = options.temperature == 0.0;
        let penalties = options.penalties_active().then(|| {
            LlamaSampler::penalties(
                model.n_vocab(),
                options.repeat_last_n,
                options.repeat_penalty,
                options.frequency_penalty,
                options.presence_penalty,
            )
        });
        let Some((grammar, texts)) = grammar else {
            if greedy && penalties.is_none() {
                return Ok(TokenSampler::Greedy);
            }
            let chain = penalties
                .into_iter()
                .chain(options.chain_after_penalties(true));
            return Ok(TokenSampler::Plain(LlamaSampler::chain(chain, true)));
        };
        let guard = GrammarGuard {
            grammar: grammar.sampler(model)?,
            texts,
            partial: Vec::new(),
            scratch: Vec::new(),
            preserved: grammar.preserved.clone(),
        };
        let keep = if greedy {
            Some(1)
        } else {
            usize::try_from(options.top_k).ok().filter(|&k| k > 0)
        };
        let empty = || LlamaTokenDataArray::new(Vec::new(), false);
        Ok(TokenSampler::Constrained(Box::new(ChainSampler {
            guard,
            penalties,
            // The scan has already kept the top k allowed tokens.
            rest: LlamaSampler::chain(options.chain_after_penalties(false), true),
            keep,
            candidates: empty(),
            order: Vec::new(),
            found: empty(),
            chunk: empty(),
            refused_pairs: Vec::new(),
            pair_refused: vec![false; 128 * 128],
        })))
    }

    /// Picks the token for output `idx` of the last decode and feeds it to
    /// the samplers' state (grammar, penalties) exactly once.
    pub(crate) fn sample(
        &mut self,
        ctx: &LlamaContext<'_>,
        idx: i32,
    ) -> Result<LlamaToken, GenerateError> {
        match self {
            // Without a grammar nothing in the chain can throw, so llama.cpp
            // fills the candidates, picks and accepts in one optimised call.
            TokenSampler::Greedy => Ok(LlamaToken(first_argmax(ctx.get_logits_ith(idx)))),
            TokenSampler::Plain(chain) => Ok(chain.sample(ctx, idx)),
            TokenSampler::Constrained(sampler) => sampler.pick(ctx.get_logits_ith(idx)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_first_highest_logit_as_llama_cpp_does() {
        assert_eq!(first_argmax(&[0.5, 2.0, -1.0, 2.0]), 1);
        assert_eq!(first_argmax(&[3.0]), 0);
        assert_eq!(first_argmax(&[f32::NEG_INFINITY, -5.0]), 1);
        assert_eq!(first_argmax(&[f32::NAN, 1.0, 0.0]), 1);
        let mut long = vec![0.25_f32; 1000];
        long[997] = 9.0;
        long[13] = 9.0;
        assert_eq!(first_argmax(&long), 13);
        long[13] = f32::NAN;
        assert_eq!(first_argmax(&long), 997);
        assert_eq!(first_argmax(&[f32::NEG_INFINITY; 20]), 0);
    }

    #[test]
    fn utf8_prefixes_may_stop_inside_a_character_but_not_break_one() {
        let euro = "€".as_bytes();
        assert!(valid_utf8_prefix(b"abc"));
        assert!(valid_utf8_prefix(&euro[..2]));
        assert!(!valid_utf8_prefix(&[euro[0], b'"']));
        assert!(!valid_utf8_prefix(&[0xFF]));
    }

    #[test]
    fn out_of_range_options_are_refused_by_name() {
        let bad = SamplingOptions {
            top_p: 1.5,
            ..SamplingOptions::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(GenerateError::InvalidSampling { name: "top_p", .. })
        ));
        let bad = SamplingOptions {
            temperature: -0.1,
            ..SamplingOptions::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(GenerateError::InvalidSampling {
                name: "temperature",
                ..
            })
        ));
        assert!(SamplingOptions::greedy().validate().is_ok());
    }

    /// The scan (checking tokens one at a time in logit order) must pick
    /// exactly what masking the whole vocabulary picks, for greedy and for
    /// top-k sampling, step after step of one constrained output.
    #[test]
    fn scanning_picks_what_masking_the_whole_vocabulary_picks() {
        use llama_cpp_2::model::params::LlamaModelParams;
        use troupe_models::synth::{write_synthetic, SynthQuant, SynthShape, SynthSpec};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        let spec = SynthSpec {
            shape: SynthShape::Tiny,
            quant: SynthQuant::F32,
            seed: 3,
        };
        write_synthetic(&path, &spec).unwrap();
        let backend = crate::llama::backend().unwrap();
        let model =
            LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default()).unwrap();
        let texts = Arc::new(TokenTexts::new(&model));
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "tool": {"type": "string", "enum": ["read", "write"]},
                "args": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 4}
            },
            "required": ["tool", "args"]
        });
        let grammar = Grammar {
            text: crate::schema::json_schema_to_gbnf(&schema).unwrap(),
            triggers: Vec::new(),
            at_start: false,
            preserved: Vec::new(),
        };
        let n_vocab = usize::try_from(model.n_vocab()).unwrap();
        for options in [
            SamplingOptions::greedy(),
            SamplingOptions {
                temperature: 0.8,
                top_k: 4,
                seed: Some(11),
                ..SamplingOptions::default()
            },
        ] {
            let build =
                || match TokenSampler::new(&options, &model, Some((&grammar, Arc::clone(&texts))))
                    .unwrap()
                {
                    TokenSampler::Constrained(sampler) => sampler,
                    _ => unreachable!("a grammar was given"),
                };
            let (mut scanning, mut masking) = (build(), build());
            // The reference: mask the whole vocabulary, then the whole chain
            // including top-k, as llama.cpp's grammar-first chain does.
            masking.keep = None;
            masking.rest = LlamaSampler::chain(options.chain_after_penalties(true), true);
            let mut state = 0x2545_f491_4f6c_dd1d_u64;
            let mut scanned_steps = 0;
            for _ in 0..60 {
                let logits: Vec<f32> = (0..n_vocab)
                    .map(|_| {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        (state % 10_000) as f32 / 1000.0
                    })
                    .collect();
                let (Ok(a), Ok(b)) = (scanning.pick(&logits), masking.pick(&logits)) else {
                    panic!("both samplers must find a token");
                };
                assert_eq!(a, b, "scan and full mask disagree");
                scanned_steps += usize::from(scanning.found.data.len() == scanning.keep.unwrap());
                if model.vocab().is_eog(a) {
                    break;
                }
            }
            assert!(scanned_steps > 0, "the scan path never ran for {options:?}");
        }
    }
}
