//! Words: a fixed vocabulary drawn from with a Zipf-like distribution, the texts the word
//! count generates, and the counting itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Words in the vocabulary.
pub const VOCABULARY_SIZE: usize = 12_000;

/// The exponent of the Zipf-like distribution: word of rank `k` (from 1) is drawn with
/// probability proportional to `1 / k^ZIPF_EXPONENT`.
pub const ZIPF_EXPONENT: f64 = 1.0;

/// The most frequent English words, the head of the vocabulary.
const COMMON: &[&str] = &[
    "the", "of", "and", "to", "a", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with", "as",
    "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "not", "word", "but", "what", "some",
    "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your", "how", "said", "an", "each",
    "she", "which", "do", "their", "time", "if", "will", "way", "about", "many", "then", "them", "write", "would",
    "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look", "more", "day", "could",
    "go", "come", "did", "number", "sound", "no", "most", "people", "my", "over", "know", "water", "than", "call",
    "first", "who", "may", "down", "side", "been", "now", "find", "any", "new", "work", "part", "take", "get", "place",
    "made", "live", "where", "after", "back", "little", "only", "round", "man", "year", "came", "show", "every",
    "good", "me", "give", "our", "under", "name", "very", "through", "just", "form", "sentence", "great", "think",
    "say", "help", "low", "line", "differ", "turn", "cause", "much", "mean", "before", "move", "right", "boy", "old",
    "too", "same", "tell", "does", "set", "three", "want", "air", "well", "also", "play", "small", "end", "put",
    "home", "read", "hand", "port", "large", "spell", "add", "even", "land", "here", "must", "big", "high", "such",
    "follow", "act", "why", "ask", "men", "change", "went", "light", "kind", "off", "need", "house", "picture", "try",
    "us", "again", "animal", "point", "mother", "world", "near", "build", "self", "earth", "father",
];

const CONSONANTS: &[u8] = b"bcdfghklmnprstvz";
const VOWELS: &[u8] = b"aeiou";

/// The vocabulary, most frequent word first: [`COMMON`] English words, then made-up words of
/// two to four syllables, every word distinct.
pub fn vocabulary() -> &'static [String] {
    static VOCABULARY: OnceLock<Vec<String>> = OnceLock::new();
    VOCABULARY.get_or_init(|| {
        let mut seen = BTreeSet::new();
        let mut words = Vec::with_capacity(VOCABULARY_SIZE);
        for w in COMMON {
            if seen.insert((*w).to_owned()) {
                words.push((*w).to_owned());
            }
        }
        let syllables = CONSONANTS.len() * VOWELS.len();
        let mut n = 0usize;
        while words.len() < VOCABULARY_SIZE {
            // n in base `syllables`, at least two digits: "bada", "zuko", "kemipo", …
            let mut word = String::new();
            let mut rest = n + syllables;
            while rest > 0 {
                let s = rest % syllables;
                word.push(CONSONANTS[s / VOWELS.len()] as char);
                word.push(VOWELS[s % VOWELS.len()] as char);
                rest /= syllables;
            }
            if n % 3 == 1 {
                word.push(CONSONANTS[n % CONSONANTS.len()] as char);
            }
            n += 1;
            if seen.insert(word.clone()) {
                words.push(word);
            }
        }
        words
    })
}

/// Draws ranks from `0..n` with probability proportional to `1 / (rank + 1)^s`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    /// A distribution over `n` ranks (`n` > 0) with exponent `s`.
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (1..=n.max(1))
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    /// A rank.
    pub fn sample(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.unit() * total;
        self.cumulative
            .partition_point(|&c| c <= x)
            .min(self.cumulative.len() - 1)
    }
}

/// The distribution of the vocabulary's words.
pub fn vocabulary_distribution() -> &'static Zipf {
    static ZIPF: OnceLock<Zipf> = OnceLock::new();
    ZIPF.get_or_init(|| Zipf::new(vocabulary().len(), ZIPF_EXPONENT))
}

/// Appends sentences of vocabulary words to `out`, at most `len` bytes: it stops before the
/// first word that would not fit, so a few bytes may be left over. Sentences start
/// upper-case and end with a full stop (or a question mark); one in twelve or so ends a
/// paragraph (a blank line).
pub fn write_prose(rng: &mut Rng, out: &mut String, len: usize) {
    let words = vocabulary();
    let zipf = vocabulary_distribution();
    let end = out.len() + len;
    let mut sentence_left = 0usize;
    while out.len() < end {
        let word = &words[zipf.sample(rng)];
        let start_sentence = sentence_left == 0;
        if start_sentence {
            sentence_left = 4 + rng.index(14);
        }
        let sep = if out.is_empty() || out.ends_with('\n') { 0 } else { 1 };
        if out.len() + sep + word.len() + 1 > end {
            break;
        }
        if sep == 1 {
            out.push(' ');
        }
        if start_sentence {
            let mut chars = word.chars();
            if let Some(first) = chars.next() {
                out.push(first.to_ascii_uppercase());
                out.push_str(chars.as_str());
            }
        } else {
            out.push_str(word);
        }
        sentence_left -= 1;
        if sentence_left == 0 {
            out.push(if rng.chance(0.1) { '?' } else { '.' });
            if rng.chance(0.08) && out.len() + 2 <= end {
                out.push_str("\n\n");
            }
        } else if rng.chance(0.06) {
            out.push(',');
        }
    }
}

/// `parts` texts of about `total / parts` bytes each (together at most `total`), made of
/// vocabulary words drawn with a Zipf-like distribution from `seed`: the word count's input.
pub fn generate_texts(seed: u64, total: usize, parts: usize) -> Vec<String> {
    let parts = parts.max(1);
    (0..parts)
        .map(|i| {
            let len = total / parts + usize::from(i < total % parts);
            let mut text = String::with_capacity(len);
            write_prose(&mut Rng::stream(seed, i as u64), &mut text, len);
            text
        })
        .collect()
}

/// Word counts, by word (sorted, so that the JSON is deterministic).
pub type Counts = BTreeMap<String, u64>;

/// Counts the words of `text`: runs of letters, digits and apostrophes, lower-cased.
pub fn count_words(text: &str) -> Counts {
    let mut counts = Counts::new();
    let mut word = String::new();
    for word_raw in text.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
        let trimmed = word_raw.trim_matches('\'');
        if trimmed.is_empty() {
            continue;
        }
        word.clear();
        word.extend(trimmed.chars().flat_map(char::to_lowercase));
        match counts.get_mut(word.as_str()) {
            Some(n) => *n += 1,
            None => {
                counts.insert(word.clone(), 1);
            }
        }
    }
    counts
}

/// What the word count reports: the total, the distinct words, the most frequent ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Words counted.
    pub words: u64,
    /// Distinct words.
    pub distinct: u64,
    /// The most frequent words with their counts, most frequent first (ties: alphabetical).
    pub top: Vec<(String, u64)>,
}

/// Words [`merge_counts`] lists in [`Summary::top`].
pub const TOP: usize = 10;

/// Sums word counts and summarises them.
pub fn merge_counts(lists: impl IntoIterator<Item = Counts>) -> Summary {
    let mut total = Counts::new();
    for counts in lists {
        for (word, n) in counts {
            *total.entry(word).or_default() += n;
        }
    }
    let mut top: Vec<(String, u64)> = total.iter().map(|(w, n)| (w.clone(), *n)).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top.truncate(TOP);
    Summary {
        words: total.values().sum(),
        distinct: total.len() as u64,
        top,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vocabulary_is_distinct_and_complete() {
        let v = vocabulary();
        assert_eq!(v.len(), VOCABULARY_SIZE);
        assert_eq!(v.iter().collect::<BTreeSet<_>>().len(), VOCABULARY_SIZE);
        assert_eq!(&v[..3], ["the", "of", "and"]);
        assert!(
            v.iter()
                .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        );
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let z = Zipf::new(100, 1.0);
        let mut rng = Rng::new(1);
        let mut hits = [0u32; 100];
        for _ in 0..20_000 {
            hits[z.sample(&mut rng)] += 1;
        }
        // Rank 1 has probability 1/H(100) ≈ 0.193, rank 2 half of that.
        assert!((3500..4200).contains(&hits[0]), "{}", hits[0]);
        assert!((1700..2200).contains(&hits[1]), "{}", hits[1]);
        assert!(hits[0] > hits[9] * 5);
    }

    #[test]
    fn texts_have_the_asked_size_and_depend_on_the_seed() {
        let texts = generate_texts(3, 10_000, 4);
        assert_eq!(texts.len(), 4);
        for t in &texts {
            assert!(t.len() <= 2500 && t.len() > 2400, "{}", t.len());
        }
        assert_eq!(texts, generate_texts(3, 10_000, 4));
        assert_ne!(texts, generate_texts(4, 10_000, 4));
        let counts = count_words(&texts.concat());
        assert_eq!(
            counts.iter().max_by_key(|(_, n)| **n).map(|(w, _)| w.as_str()),
            Some("the")
        );
    }

    #[test]
    fn counting_lower_cases_and_drops_punctuation() {
        let c = count_words("The cat, the HAT. -- the dog's 'bone'");
        assert_eq!(
            c,
            Counts::from([
                ("the".into(), 3),
                ("cat".into(), 1),
                ("hat".into(), 1),
                ("dog's".into(), 1),
                ("bone".into(), 1)
            ])
        );
        assert!(count_words("  \n ").is_empty());
    }

    #[test]
    fn merging_sums_and_ranks() {
        let s = merge_counts([count_words("b a b c"), count_words("c b d")]);
        assert_eq!(s.words, 7);
        assert_eq!(s.distinct, 4);
        assert_eq!(
            s.top,
            [("b".into(), 3), ("c".into(), 2), ("a".into(), 1), ("d".into(), 1)]
        );
    }
}
