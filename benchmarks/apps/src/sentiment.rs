//! Lexicon-based sentiment: count the positive and negative words of a text (a negation just
//! before a word turns it around) and score the balance.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Words that count as positive.
pub const POSITIVE: &[&str] = &[
    "good",
    "great",
    "excellent",
    "happy",
    "joy",
    "love",
    "wonderful",
    "fantastic",
    "pleasant",
    "bright",
    "success",
    "successful",
    "win",
    "brilliant",
    "beautiful",
    "delight",
    "delightful",
    "glad",
    "hope",
    "kind",
    "nice",
    "perfect",
    "positive",
    "praise",
    "proud",
    "calm",
    "clean",
    "clever",
    "comfort",
    "easy",
    "elegant",
    "fair",
    "fresh",
    "friendly",
    "generous",
    "gentle",
    "healthy",
    "helpful",
    "honest",
    "lucky",
    "peace",
    "reliable",
    "safe",
    "smooth",
    "strong",
    "superb",
    "thanks",
    "trust",
    "useful",
    "warm",
];

/// Words that count as negative.
pub const NEGATIVE: &[&str] = &[
    "bad",
    "terrible",
    "awful",
    "sad",
    "hate",
    "horrible",
    "poor",
    "fail",
    "failure",
    "angry",
    "broken",
    "dark",
    "dirty",
    "difficult",
    "fear",
    "weak",
    "wrong",
    "worse",
    "worst",
    "ugly",
    "pain",
    "painful",
    "loss",
    "lose",
    "crash",
    "danger",
    "dangerous",
    "error",
    "slow",
    "sick",
    "tired",
    "toxic",
    "unfair",
    "unhappy",
    "upset",
    "useless",
    "boring",
    "bitter",
    "cruel",
    "damage",
    "doubt",
    "grim",
    "guilty",
    "harsh",
    "hostile",
    "lazy",
    "messy",
    "noisy",
    "rude",
    "sorry",
];

/// Words that turn the sentiment of the word right after them around.
pub const NEGATIONS: &[&str] = &["not", "no", "never", "hardly", "without"];

/// The sentiment of a text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sentiment {
    /// Words read (runs of ASCII letters).
    pub words: u64,
    /// Words counted as positive.
    pub positive: u64,
    /// Words counted as negative.
    pub negative: u64,
    /// `(positive − negative) / (positive + negative)`, from −1 (all negative) to 1 (all
    /// positive); 0 when the text has no sentiment word.
    pub score: f64,
}

/// What a lexicon word does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Positive,
    Negative,
    Negation,
}

/// The lexicon, by word.
fn lexicon() -> &'static HashMap<&'static str, Kind> {
    static LEXICON: OnceLock<HashMap<&'static str, Kind>> = OnceLock::new();
    LEXICON.get_or_init(|| {
        let of = |words: &'static [&'static str], kind| words.iter().map(move |w| (*w, kind));
        of(POSITIVE, Kind::Positive)
            .chain(of(NEGATIVE, Kind::Negative))
            .chain(of(NEGATIONS, Kind::Negation))
            .collect()
    })
}

/// Scores `text`: its words are runs of ASCII letters, compared lower-cased with
/// [`POSITIVE`] and [`NEGATIVE`]; a word right after one of [`NEGATIONS`] counts the other
/// way round.
///
/// ```
/// let s = faasflow_pack_apps::sentiment::score("A good day, not bad. Great! Or awful?");
/// assert_eq!((s.words, s.positive, s.negative), (8, 3, 1));
/// assert_eq!(s.score, 0.5);
/// ```
pub fn score(text: &str) -> Sentiment {
    let (mut words, mut positive, mut negative) = (0u64, 0u64, 0u64);
    let lexicon = lexicon();
    let mut negated = false;
    let mut word = String::new();
    for raw in text.split(|c: char| !c.is_ascii_alphabetic()) {
        if raw.is_empty() {
            continue;
        }
        words += 1;
        word.clear();
        word.push_str(raw);
        word.make_ascii_lowercase();
        let kind = lexicon.get(word.as_str()).copied();
        match (kind, negated) {
            (Some(Kind::Positive), false) | (Some(Kind::Negative), true) => positive += 1,
            (Some(Kind::Negative), false) | (Some(Kind::Positive), true) => negative += 1,
            _ => {}
        }
        negated = kind == Some(Kind::Negation);
    }
    let counted = positive + negative;
    let score = if counted == 0 {
        0.0
    } else {
        (positive as f64 - negative as f64) / counted as f64
    };
    Sentiment {
        words,
        positive,
        negative,
        score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_count_both_ways_and_negations_turn_words_around() {
        let s = score("Bad, BAD and terrible: not good at all; never sad though.");
        assert_eq!((s.words, s.positive, s.negative), (11, 1, 4));
        assert_eq!(s.score, -0.6);
        let none = score("nothing to see here 123");
        assert_eq!((none.words, none.positive, none.negative, none.score), (4, 0, 0, 0.0));
        assert_eq!(score("").words, 0);
    }

    #[test]
    fn the_lexicons_are_disjoint_lower_case_words() {
        for w in POSITIVE.iter().chain(NEGATIVE).chain(NEGATIONS) {
            assert!(w.bytes().all(|b| b.is_ascii_lowercase()), "{w}");
        }
        assert!(POSITIVE.iter().all(|w| !NEGATIVE.contains(w) && !NEGATIONS.contains(w)));
        assert!(NEGATIVE.iter().all(|w| !NEGATIONS.contains(w)));
    }
}
