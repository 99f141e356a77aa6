//! Translating a caption word by word (Spanish → English, a built-in dictionary) and
//! censoring banned words: the recognizer's `translate` and `word_censor`.

use serde::{Deserialize, Serialize};

/// The dictionary: Spanish words (without accents, as the font draws them) and their
/// English translations.
pub const DICTIONARY: &[(&str, &str)] = &[
    ("el", "the"),
    ("la", "the"),
    ("los", "the"),
    ("las", "the"),
    ("un", "a"),
    ("una", "a"),
    ("unos", "some"),
    ("y", "and"),
    ("o", "or"),
    ("de", "of"),
    ("del", "of the"),
    ("en", "in"),
    ("con", "with"),
    ("sin", "without"),
    ("por", "by"),
    ("para", "for"),
    ("su", "his"),
    ("es", "is"),
    ("son", "are"),
    ("esta", "is"),
    ("tiene", "has"),
    ("hay", "there is"),
    ("muy", "very"),
    ("hoy", "today"),
    ("manana", "tomorrow"),
    ("aqui", "here"),
    ("hombre", "man"),
    ("mujer", "woman"),
    ("nino", "boy"),
    ("nina", "girl"),
    ("perro", "dog"),
    ("gato", "cat"),
    ("casa", "house"),
    ("calle", "street"),
    ("ciudad", "city"),
    ("parque", "park"),
    ("playa", "beach"),
    ("sol", "sun"),
    ("dia", "day"),
    ("noche", "night"),
    ("agua", "water"),
    ("arbol", "tree"),
    ("coche", "car"),
    ("libro", "book"),
    ("escuela", "school"),
    ("amigo", "friend"),
    ("amigos", "friends"),
    ("familia", "family"),
    ("feliz", "happy"),
    ("bonito", "beautiful"),
    ("grande", "big"),
    ("pequeno", "small"),
    ("rojo", "red"),
    ("azul", "blue"),
    ("verde", "green"),
    ("juega", "plays"),
    ("come", "eats"),
    ("corre", "runs"),
    ("lleva", "carries"),
    ("mira", "watches"),
    ("compra", "buys"),
    ("vende", "sells"),
    ("quiere", "wants"),
    ("manzana", "apple"),
    ("pan", "bread"),
    ("flores", "flowers"),
    ("pistola", "gun"),
    ("arma", "weapon"),
    ("armas", "weapons"),
    ("bomba", "bomb"),
    ("matar", "kill"),
    ("mata", "kills"),
    ("cuchillo", "knife"),
    ("droga", "drug"),
    ("drogas", "drugs"),
    ("sangre", "blood"),
    ("ataque", "attack"),
    ("explosivo", "explosive"),
    ("veneno", "poison"),
    ("robar", "steal"),
];

/// English words `word_censor` flags.
pub const BANNED: &[&str] = &[
    "gun",
    "guns",
    "weapon",
    "weapons",
    "bomb",
    "bombs",
    "kill",
    "kills",
    "knife",
    "drug",
    "drugs",
    "blood",
    "attack",
    "explosive",
    "poison",
    "steal",
];

/// A translated text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Translation {
    /// The text with every known word translated; punctuation kept.
    pub text: String,
    /// Words the dictionary does not know (kept as they were), in order of appearance.
    pub untranslated: Vec<String>,
}

/// Translates `text` word by word with [`DICTIONARY`]. A word is a whitespace-separated
/// token without its leading and trailing punctuation, compared lower-cased; the output is
/// lower-case.
///
/// ```
/// let t = faasflow_pack_apps::language::translate("El perro come pan, hoy!");
/// assert_eq!(t.text, "the dog eats bread, today!");
/// assert!(t.untranslated.is_empty());
/// ```
pub fn translate(text: &str) -> Translation {
    let mut words = Vec::new();
    let mut untranslated = Vec::new();
    for token in text.split_whitespace() {
        let token = token.to_lowercase();
        let core = token.trim_matches(|c: char| !c.is_alphanumeric());
        if core.is_empty() {
            words.push(token);
            continue;
        }
        let start = token.find(core).unwrap_or(0);
        let (before, after) = (&token[..start], &token[start + core.len()..]);
        match DICTIONARY.iter().find(|(es, _)| *es == core) {
            Some((_, en)) => words.push(format!("{before}{en}{after}")),
            None => {
                if !core.bytes().all(|b| b.is_ascii_digit()) {
                    untranslated.push(core.to_owned());
                }
                words.push(token.clone());
            }
        }
    }
    Translation {
        text: words.join(" "),
        untranslated,
    }
}

/// What `word_censor` decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Censorship {
    /// Whether the text has a banned word.
    pub censored: bool,
    /// The banned words found, in order of appearance, each once.
    pub banned: Vec<String>,
    /// Words read.
    pub words: u64,
}

/// Looks for [`BANNED`] words in `text` (runs of letters, compared lower-cased).
///
/// ```
/// let c = faasflow_pack_apps::language::censor("The man carries a GUN and a gun.");
/// assert_eq!((c.censored, c.banned, c.words), (true, vec!["gun".to_string()], 8));
/// ```
pub fn censor(text: &str) -> Censorship {
    let mut banned: Vec<String> = Vec::new();
    let mut words = 0;
    for word in text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()) {
        words += 1;
        let word = word.to_lowercase();
        if BANNED.contains(&word.as_str()) && !banned.contains(&word) {
            banned.push(word);
        }
    }
    Censorship {
        censored: !banned.is_empty(),
        banned,
        words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_keeps_punctuation_and_lists_unknown_words() {
        let t = translate("el hombre lleva una pistola, y una bomba! 42 xyz - 'no?'");
        assert_eq!(t.text, "the man carries a gun, and a bomb! 42 xyz - 'no?'");
        assert_eq!(t.untranslated, ["xyz", "no"]);
        assert_eq!(translate("").text, "");
    }

    #[test]
    fn censorship_flags_only_banned_words() {
        assert!(!censor("the boy plays in the park with his dog").censored);
        let c = censor("the man carries a gun, and a bomb! gunshot");
        assert_eq!(c.banned, ["gun", "bomb"]);
        assert_eq!(c.words, 9);
        assert!(censor(&translate("el nino mira un cuchillo").text).censored);
    }

    #[test]
    fn every_translation_is_lower_case_and_spanish_words_are_unique() {
        for (i, (es, en)) in DICTIONARY.iter().enumerate() {
            assert!(!DICTIONARY[i + 1..].iter().any(|(o, _)| o == es), "{es} twice");
            assert_eq!(*en, en.to_lowercase());
        }
    }
}
