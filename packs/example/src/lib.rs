//! An example faasflow pack: word count (`split`, `count`, `merge`) and `upper`. See
//! `README.md` for the workflow that uses it.
//!
//! The logic is in plain functions ([`split_text`], [`count_words`], [`merge_counts`]) that
//! know nothing of faasflow; the functions of the pack only read inputs and write outputs.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use faasflow_sdk::{Context, Error, Pack};

/// Chunks `split` makes when its `parts` input is absent.
pub const DEFAULT_PARTS: usize = 4;

/// Word counts, by word (sorted, so the JSON is deterministic).
pub type Counts = BTreeMap<String, u64>;

/// The pack: `split`, `count`, `merge` and `upper`.
pub fn pack() -> Pack {
    Pack::new("example")
        .function("split", split)
        .function("count", count)
        .function("merge", merge)
        .function("upper", upper)
}

/// `split`: input `text` (UTF-8 bytes) and optional input `parts` (a JSON number, default
/// [`DEFAULT_PARTS`]) → output `chunks`, a JSON list of at most `parts` strings cut between
/// words.
pub fn split(ctx: &mut Context<'_>) -> Result<(), Error> {
    let text = std::str::from_utf8(ctx.input("text")?)
        .map_err(|e| Error::new(format_args!("input `text` is not UTF-8: {e}")))?;
    let parts = match ctx.input_opt("parts")? {
        None => DEFAULT_PARTS,
        Some(_) => ctx.input_json::<usize>("parts")?,
    };
    if parts == 0 {
        return Err("input `parts` must be at least 1".into());
    }
    ctx.output_json("chunks", &split_text(text, parts))
}

/// `count`: input `chunk` (a JSON string, or raw UTF-8 text) → output `counts`, a JSON object
/// from word to count.
pub fn count(ctx: &mut Context<'_>) -> Result<(), Error> {
    let chunk = ctx.input("chunk")?;
    let counts = match serde_json::from_slice::<String>(chunk) {
        Ok(s) => count_words(&s),
        Err(_) => count_words(
            std::str::from_utf8(chunk)
                .map_err(|e| Error::new(format_args!("input `chunk` is neither a JSON string nor UTF-8: {e}")))?,
        ),
    };
    ctx.output_json("counts", &counts)
}

/// `merge`: input `counts`, the list of every chunk's counts (a foreach's outputs) → output
/// `total`, the summed counts.
pub fn merge(ctx: &mut Context<'_>) -> Result<(), Error> {
    let lists = ctx
        .inputs("counts")?
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            serde_json::from_slice::<Counts>(bytes)
                .map_err(|e| Error::new(format_args!("element {i} of input `counts` is not a word count: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    ctx.output_json("total", &merge_counts(lists))
}

/// `upper`: input `text` → output `text` with ASCII letters upper-cased, written in place in
/// the arena.
pub fn upper(ctx: &mut Context<'_>) -> Result<(), Error> {
    let text = ctx.input("text")?;
    ctx.output_with("text", text.len(), |buf| {
        buf.copy_from_slice(text);
        buf.make_ascii_uppercase();
    })
}

/// Cuts `text` into at most `parts` chunks of about equal length, between words (no word is
/// cut; whitespace at the cuts is dropped). Empty text gives no chunks.
pub fn split_text(text: &str, parts: usize) -> Vec<String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || parts == 0 {
        return Vec::new();
    }
    let total: usize = words.iter().map(|w| w.len() + 1).sum();
    let target = total.div_ceil(parts);
    let mut chunks = Vec::new();
    let mut current = String::new();
    for word in words {
        if !current.is_empty() && current.len() + 1 + word.len() > target && chunks.len() + 1 < parts {
            chunks.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(word);
    }
    chunks.push(current);
    chunks
}

/// Counts the whitespace-separated words of `text`, lower-cased, without surrounding
/// punctuation.
pub fn count_words(text: &str) -> Counts {
    let mut counts = Counts::new();
    for word in text.split_whitespace() {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
        if !word.is_empty() {
            *counts.entry(word).or_default() += 1;
        }
    }
    counts
}

/// Sums word counts.
pub fn merge_counts(lists: impl IntoIterator<Item = Counts>) -> Counts {
    let mut total = Counts::new();
    for counts in lists {
        for (word, n) in counts {
            *total.entry(word).or_default() += n;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use faasflow_sdk::testing::TestCall;

    #[test]
    fn split_cuts_between_words_into_at_most_n_chunks() {
        let text = "the quick brown fox jumps over the lazy dog";
        for parts in 1..12 {
            let chunks = split_text(text, parts);
            assert!(!chunks.is_empty() && chunks.len() <= parts, "{parts}: {chunks:?}");
            assert_eq!(chunks.join(" "), text, "no word lost or cut");
        }
        assert_eq!(split_text(text, 3).len(), 3);
        assert_eq!(split_text("   ", 3), Vec::<String>::new());
        assert_eq!(split_text("one", 5), ["one"]);
    }

    #[test]
    fn count_normalises_words() {
        let c = count_words("The cat, the HAT. -- the");
        assert_eq!(c.get("the"), Some(&3));
        assert_eq!(c.get("cat"), Some(&1));
        assert_eq!(c.get("hat"), Some(&1));
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn merge_sums() {
        let a = count_words("a b b");
        let b = count_words("b c");
        let t = merge_counts([a, b]);
        assert_eq!(t, Counts::from([("a".into(), 1), ("b".into(), 3), ("c".into(), 1)]));
    }

    #[test]
    fn the_word_count_pipeline_through_the_pack() -> Result<(), Error> {
        let pack = pack();
        let text = "to be or not to be that is the question";
        let split = TestCall::new("split")
            .input("text", text)
            .input("parts", "3")
            .run_in(&pack)?;
        let chunks: Vec<String> = split.output_json("chunks")?;
        assert_eq!(chunks.len(), 3);
        let mut counts = Vec::new();
        for chunk in &chunks {
            let json = serde_json::to_vec(chunk)?;
            let out = TestCall::new("count").input("chunk", json).run_in(&pack)?;
            counts.push(out.output("counts").unwrap_or_default().to_vec());
        }
        let merged = TestCall::new("merge").input_list("counts", &counts).run_in(&pack)?;
        let total: Counts = merged.output_json("total")?;
        assert_eq!(total, count_words(text));
        assert_eq!(total.get("be"), Some(&2));
        Ok(())
    }

    #[test]
    fn split_defaults_and_rejects_zero_parts() -> Result<(), Error> {
        let pack = pack();
        let long = "w ".repeat(100);
        let out = TestCall::new("split")
            .input("text", &long)
            .input_absent("parts")
            .run_in(&pack)?;
        assert_eq!(out.output_json::<Vec<String>>("chunks")?.len(), DEFAULT_PARTS);
        let err = TestCall::new("split")
            .input("text", "a")
            .input("parts", "0")
            .run_in(&pack)
            .unwrap_err();
        assert!(err.message().contains("at least 1"));
        Ok(())
    }

    #[test]
    fn count_takes_raw_text_too_and_upper_works_in_place() -> Result<(), Error> {
        let pack = pack();
        let out = TestCall::new("count").input("chunk", "a a b").run_in(&pack)?;
        assert_eq!(out.output_json::<Counts>("counts")?.get("a"), Some(&2));
        let out = TestCall::new("upper")
            .input("text", "héllo")
            .reserve("text", 16)
            .run_in(&pack)?;
        assert_eq!(out.output("text"), Some("HéLLO".as_bytes()));
        assert!(out.allocs().is_empty(), "fits its reservation");
        Ok(())
    }
}
