//! A Markdown → HTML converter for the subset file processing generates, and the generator of
//! that document.
//!
//! Blocks: ATX headings (`#` to `######`), paragraphs (consecutive lines; a blank line ends
//! them), unordered list items (`- ` or `* `), ordered list items (`1. `; a line that is not an
//! item continues the item before it), fenced code blocks (```` ``` ````, with an optional
//! language). Inline: `**strong**`, `*emphasis*` (the opening `*` followed by a non-space, the
//! closing one preceded by one), `` `code` ``, `[text](url)`, backslash escapes of ASCII
//! punctuation. `&`, `<`, `>` and `"` are escaped everywhere. Anything else is text.

use crate::rng::Rng;
use crate::sentiment::{NEGATIVE, POSITIVE};
use crate::words::{vocabulary, vocabulary_distribution};

/// Converts `markdown` to HTML.
///
/// ```
/// let html = faasflow_pack_apps::markdown::to_html("# Hi\n\nSome *text*.\n");
/// assert_eq!(html, "<h1>Hi</h1>\n<p>Some <em>text</em>.</p>\n");
/// ```
pub fn to_html(markdown: &str) -> String {
    let mut out = String::with_capacity(markdown.len() + markdown.len() / 4);
    let mut block = Block::None;
    let mut lines = markdown.lines();
    while let Some(line) = lines.next() {
        if let Some(info) = line.strip_prefix("```") {
            block.close(&mut out);
            code_block(info.trim(), &mut lines, &mut out);
            continue;
        }
        if line.trim().is_empty() {
            block.close(&mut out);
            continue;
        }
        if let Some((level, text)) = heading(line) {
            block.close(&mut out);
            out.push_str(&format!("<h{level}>"));
            inline(text, &mut out);
            out.push_str(&format!("</h{level}>\n"));
            continue;
        }
        if let Some((kind, text)) = list_item(line) {
            block.item(kind, text, &mut out);
            continue;
        }
        block.text(line);
    }
    block.close(&mut out);
    out
}

/// The kind of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Unordered,
    Ordered,
}

impl ListKind {
    fn tag(self) -> &'static str {
        match self {
            ListKind::Unordered => "ul",
            ListKind::Ordered => "ol",
        }
    }
}

/// The block being built: its lines are gathered, then rendered when it closes.
#[derive(Debug)]
enum Block<'a> {
    None,
    Paragraph(Vec<&'a str>),
    /// A list whose last item is being gathered (its lines).
    List(ListKind, Vec<&'a str>),
}

impl<'a> Block<'a> {
    fn close(&mut self, out: &mut String) {
        match std::mem::replace(self, Block::None) {
            Block::None => {}
            Block::Paragraph(lines) => {
                out.push_str("<p>");
                inline(&lines.join("\n"), out);
                out.push_str("</p>\n");
            }
            Block::List(kind, item) => {
                flush_item(&item, out);
                out.push_str(&format!("</{}>\n", kind.tag()));
            }
        }
    }

    fn item(&mut self, kind: ListKind, text: &'a str, out: &mut String) {
        match self {
            Block::List(k, item) if *k == kind => {
                flush_item(item, out);
                item.clear();
                item.push(text);
            }
            _ => {
                self.close(out);
                out.push_str(&format!("<{}>\n", kind.tag()));
                *self = Block::List(kind, vec![text]);
            }
        }
    }

    /// A line that is no heading, item or fence: it continues the paragraph or the last list
    /// item, or starts a paragraph.
    fn text(&mut self, line: &'a str) {
        match self {
            Block::Paragraph(lines) | Block::List(_, lines) => lines.push(line.trim_start()),
            Block::None => *self = Block::Paragraph(vec![line.trim_start()]),
        }
    }
}

fn flush_item(lines: &[&str], out: &mut String) {
    out.push_str("<li>");
    inline(&lines.join("\n"), out);
    out.push_str("</li>\n");
}

/// A fenced code block: its lines up to the closing fence (or the end), escaped.
fn code_block<'a>(info: &str, lines: &mut impl Iterator<Item = &'a str>, out: &mut String) {
    if info.is_empty() {
        out.push_str("<pre><code>");
    } else {
        out.push_str("<pre><code class=\"language-");
        escape(info, out);
        out.push_str("\">");
    }
    for line in lines.by_ref() {
        if line.trim_end() == "```" {
            break;
        }
        escape(line, out);
        out.push('\n');
    }
    out.push_str("</code></pre>\n");
}

/// `# text` … `###### text`: the level and the text (without closing `#`s).
fn heading(line: &str) -> Option<(usize, &str)> {
    let level = line.bytes().take_while(|&b| b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &line[level..];
    if !rest.is_empty() && !rest.starts_with(' ') {
        return None;
    }
    Some((level, rest.trim().trim_end_matches('#').trim_end()))
}

/// `- text`, `* text` or `12. text`: the kind of list and the text.
fn list_item(line: &str) -> Option<(ListKind, &str)> {
    if let Some(text) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) {
        return Some((ListKind::Unordered, text.trim()));
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=9).contains(&digits)
        && let Some(text) = line[digits..].strip_prefix(". ")
    {
        return Some((ListKind::Ordered, text.trim()));
    }
    None
}

/// Appends `text` with `&`, `<`, `>` and `"` escaped.
pub fn escape(text: &str, out: &mut String) {
    let mut start = 0;
    for (i, b) in text.bytes().enumerate() {
        let entity = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            _ => continue,
        };
        out.push_str(&text[start..i]);
        out.push_str(entity);
        start = i + 1;
    }
    out.push_str(&text[start..]);
}

/// Renders the inline markup of `text`.
fn inline(text: &str, out: &mut String) {
    let end = Inline { text }.run(0, None, out);
    debug_assert_eq!(end, None, "no closer was asked for");
}

/// The inline parser over one block's text. Every delimiter is ASCII, so byte offsets at
/// delimiters are character boundaries.
struct Inline<'a> {
    text: &'a str,
}

impl Inline<'_> {
    /// Renders from `i` until `closer` (an emphasis delimiter) is found where it may close, and
    /// returns the offset after it; without a closer, renders to the end and returns `None`.
    /// When the closer is never found, returns `None` (the caller then treats its opener as
    /// text and discards what was rendered).
    fn run(&self, mut i: usize, closer: Option<&str>, out: &mut String) -> Option<usize> {
        let s = self.text;
        let b = s.as_bytes();
        let mut plain = i;
        while i < b.len() {
            let c = b[i];
            if !matches!(c, b'*' | b'`' | b'[' | b'\\' | b'&' | b'<' | b'>' | b'"') {
                i += 1;
                continue;
            }
            out.push_str(&s[plain..i]);
            if let Some(cl) = closer
                && s[i..].starts_with(cl)
                && i > 0
                && !b[i - 1].is_ascii_whitespace()
                && !(cl == "*" && s[i..].starts_with("**") && self.closes_later(i + 2, "**"))
            {
                return Some(i + cl.len());
            }
            i = match c {
                b'*' => self.emphasis(i, out),
                b'`' => self.code(i, out),
                b'[' => self.link(i, out),
                b'\\' => self.backslash(i, out),
                _ => {
                    escape(&s[i..i + 1], out);
                    i + 1
                }
            };
            plain = i;
        }
        out.push_str(&s[plain..]);
        None
    }

    /// Whether a `delim` that may close starts somewhere at or after `from`.
    fn closes_later(&self, from: usize, delim: &str) -> bool {
        let b = self.text.as_bytes();
        let mut at = from;
        while let Some(k) = self.text[at..].find(delim) {
            let pos = at + k;
            if pos > 0 && !b[pos - 1].is_ascii_whitespace() {
                return true;
            }
            at = pos + delim.len();
        }
        false
    }

    /// `**strong**` or `*emphasis*` at `i`, or a literal `*`.
    fn emphasis(&self, i: usize, out: &mut String) -> usize {
        let s = self.text;
        let delim = if s[i..].starts_with("**") { "**" } else { "*" };
        let after = i + delim.len();
        let first = s[after..].chars().next().filter(|c| !c.is_whitespace());
        if let Some(first) = first
            && self.closes_later(after + first.len_utf8(), delim)
        {
            let mut inner = String::new();
            if let Some(end) = self.run(after, Some(delim), &mut inner) {
                let tag = if delim == "**" { "strong" } else { "em" };
                out.push_str(&format!("<{tag}>{inner}</{tag}>"));
                return end;
            }
        }
        out.push_str(delim);
        after
    }

    /// `` `code` `` at `i`, or a literal backtick.
    fn code(&self, i: usize, out: &mut String) -> usize {
        match self.text[i + 1..].find('`') {
            Some(k) => {
                out.push_str("<code>");
                escape(&self.text[i + 1..i + 1 + k], out);
                out.push_str("</code>");
                i + k + 2
            }
            None => {
                out.push('`');
                i + 1
            }
        }
    }

    /// `[text](url)` at `i`, or a literal `[`.
    fn link(&self, i: usize, out: &mut String) -> usize {
        let s = self.text;
        let parsed = s[i + 1..].find(']').and_then(|k| {
            let close = i + 1 + k;
            let url_start = close + 1;
            if !s[url_start..].starts_with('(') {
                return None;
            }
            let url_end = url_start + 1 + s[url_start + 1..].find(')')?;
            let url = &s[url_start + 1..url_end];
            (!url.contains(char::is_whitespace)).then_some((close, url, url_end))
        });
        match parsed {
            Some((close, url, url_end)) => {
                out.push_str("<a href=\"");
                escape(url, out);
                out.push_str("\">");
                inline(&s[i + 1..close], out);
                out.push_str("</a>");
                url_end + 1
            }
            None => {
                out.push('[');
                i + 1
            }
        }
    }

    /// `\` before ASCII punctuation makes it literal; otherwise a literal backslash.
    fn backslash(&self, i: usize, out: &mut String) -> usize {
        match self.text.as_bytes().get(i + 1) {
            Some(&c) if c.is_ascii_punctuation() => {
                escape(&self.text[i + 1..i + 2], out);
                i + 2
            }
            _ => {
                out.push('\\');
                i + 1
            }
        }
    }
}

/// A Markdown document of about `len` bytes (a little more: it ends with a whole section),
/// drawn from `seed`: sections with headings, paragraphs of vocabulary prose with emphasis,
/// code spans, links and sentiment words, lists and code blocks. File processing's input.
pub fn generate_document(seed: u64, len: usize) -> String {
    let mut rng = Rng::new(seed);
    // The document's mood: how much likelier positive words are than negative ones.
    let positive_share = 0.25 + 0.5 * rng.unit();
    let mut doc = String::with_capacity(len + 4096);
    let mut section = 0u64;
    while doc.len() < len {
        section += 1;
        let level = if section == 1 { 1 } else { 2 + rng.index(2) };
        doc.push_str(&"#".repeat(level));
        doc.push(' ');
        let words = 2 + rng.index(5);
        sentence(&mut rng, positive_share, words, false, &mut doc);
        doc.push_str("\n\n");
        for _ in 0..1 + rng.index(4) {
            for line in 0..1 + rng.index(3) {
                if line > 0 {
                    doc.push('\n');
                }
                for k in 0..2 + rng.index(3) {
                    if k > 0 {
                        doc.push(' ');
                    }
                    let words = 5 + rng.index(14);
                    sentence(&mut rng, positive_share, words, true, &mut doc);
                    doc.push('.');
                }
            }
            doc.push_str("\n\n");
        }
        if rng.chance(0.4) {
            let ordered = rng.chance(0.4);
            for item in 1..=2 + rng.index(5) {
                if ordered {
                    doc.push_str(&format!("{item}. "));
                } else {
                    doc.push_str("- ");
                }
                let words = 3 + rng.index(8);
                sentence(&mut rng, positive_share, words, true, &mut doc);
                doc.push('\n');
            }
            doc.push('\n');
        }
        if rng.chance(0.15) {
            doc.push_str("```rust\n");
            for k in 0..2 + rng.index(6) {
                let v = &vocabulary()[vocabulary_distribution().sample(&mut rng)];
                doc.push_str(&format!("let {v}_{k} = {} << {};\n", rng.below(1000), rng.below(8)));
            }
            doc.push_str("```\n\n");
        }
    }
    doc
}

/// Appends a sentence of `words` words, capitalised, with inline markup when `markup`.
fn sentence(rng: &mut Rng, positive_share: f64, words: usize, markup: bool, out: &mut String) {
    let vocabulary = vocabulary();
    let zipf = vocabulary_distribution();
    for k in 0..words {
        if k > 0 {
            out.push(' ');
        }
        let word: &str = if rng.chance(0.05) {
            let lexicon = if rng.chance(positive_share) { POSITIVE } else { NEGATIVE };
            lexicon[rng.index(lexicon.len())]
        } else {
            &vocabulary[zipf.sample(rng)]
        };
        let word = if k == 0 { capitalise(word) } else { word.to_owned() };
        if !markup {
            out.push_str(&word);
            continue;
        }
        match rng.below(40) {
            0 => out.push_str(&format!("*{word}*")),
            1 => out.push_str(&format!("**{word}**")),
            2 => out.push_str(&format!("`{}_{}()`", word.to_lowercase(), rng.below(100))),
            3 => out.push_str(&format!(
                "[{word}](https://example.org/{}/{})",
                word.to_lowercase(),
                rng.below(1000)
            )),
            4 => out.push_str(&format!("{word} & more")),
            _ => out.push_str(&word),
        }
    }
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(markdown: &str, html: &str) {
        assert_eq!(to_html(markdown), html, "markdown: {markdown:?}");
    }

    #[test]
    fn headings_and_paragraphs() {
        check(
            "# One\n## Two ##\n###### Six",
            "<h1>One</h1>\n<h2>Two</h2>\n<h6>Six</h6>\n",
        );
        check("####### seven", "<p>####### seven</p>\n");
        check("#tag", "<p>#tag</p>\n");
        check("a\nb\n\n\nc", "<p>a\nb</p>\n<p>c</p>\n");
        check("para\n# head\nmore", "<p>para</p>\n<h1>head</h1>\n<p>more</p>\n");
        check("", "");
    }

    #[test]
    fn lists() {
        check(
            "- a\n- b\n\n1. x\n2. y",
            "<ul>\n<li>a</li>\n<li>b</li>\n</ul>\n<ol>\n<li>x</li>\n<li>y</li>\n</ol>\n",
        );
        check(
            "* a\n  continued\n- *b*",
            "<ul>\n<li>a\ncontinued</li>\n<li><em>b</em></li>\n</ul>\n",
        );
        check("- a\n1. b", "<ul>\n<li>a</li>\n</ul>\n<ol>\n<li>b</li>\n</ol>\n");
        check("-a", "<p>-a</p>\n");
        check("1.5 is a number", "<p>1.5 is a number</p>\n");
    }

    #[test]
    fn code_blocks_are_escaped_verbatim() {
        check(
            "```rust\nlet a = *b < c;\n\n# not a heading\n```\nafter",
            "<pre><code class=\"language-rust\">let a = *b &lt; c;\n\n# not a heading\n</code></pre>\n<p>after</p>\n",
        );
        check("```\nunclosed", "<pre><code>unclosed\n</code></pre>\n");
    }

    #[test]
    fn inline_markup() {
        check(
            "*em* and **strong**",
            "<p><em>em</em> and <strong>strong</strong></p>\n",
        );
        check("*a **b** c*", "<p><em>a <strong>b</strong> c</em></p>\n");
        check("**a *b* c**", "<p><strong>a <em>b</em> c</strong></p>\n");
        check("2 * 3 * 4", "<p>2 * 3 * 4</p>\n");
        check("*open only", "<p>*open only</p>\n");
        check("`a < *b*` x", "<p><code>a &lt; *b*</code> x</p>\n");
        check("`unclosed", "<p>`unclosed</p>\n");
        check(
            "see [the *docs*](https://x.org/?a=1&b=\"2\") now",
            "<p>see <a href=\"https://x.org/?a=1&amp;b=&quot;2&quot;\">the <em>docs</em></a> now</p>\n",
        );
        check("[no link] (x) [a](b c)", "<p>[no link] (x) [a](b c)</p>\n");
        check("\\*not em\\* \\q", "<p>*not em* \\q</p>\n");
        check("a & b <i> \"q\"", "<p>a &amp; b &lt;i&gt; &quot;q&quot;</p>\n");
        check("héllo *wörld*", "<p>héllo <em>wörld</em></p>\n");
        check("*é* **ü** *", "<p><em>é</em> <strong>ü</strong> *</p>\n");
    }

    #[test]
    fn the_generated_document_has_every_construct() {
        let doc = generate_document(5, 20_000);
        assert!(doc.len() >= 20_000 && doc.len() < 30_000, "{}", doc.len());
        assert_eq!(doc, generate_document(5, 20_000));
        let html = to_html(&doc);
        for tag in [
            "<h1>", "<h2>", "<p>", "<ul>", "<li>", "<em>", "<strong>", "<code>", "<a href=", "&amp;",
        ] {
            assert!(html.contains(tag), "{tag} missing");
        }
        assert!(!html.contains('*'), "every emphasis was matched");
    }
}
