//! The look-alike guard: what two questions must share, beyond a close embedding, for one's
//! answer to serve the other.
//!
//! Embeddings place "orders under $50" and "orders over $50" (0.994) or "Convert 100 Fahrenheit
//! to Celsius" and "… Celsius to Fahrenheit" (0.991) closer than most true paraphrases: a
//! sentence vector barely moves when one small word flips the answer. So each question is read
//! into its *anchors*, the small words and tokens that decide an answer, in the order they
//! appear, and a candidate is served only if both questions have the same anchors in the same
//! order:
//! - numbers (digits, decimals, thousands separators dropped; number words one … billion);
//! - units and currencies, by canonical name (`$`, `dollar`, `USD` are one), whose order gives a
//!   conversion's direction;
//! - negations (`not`, `no`, `never`, `without`, `n't`, `impossible`, …);
//! - polarity and direction words (under/over, buy/sell, before/after, first/last, add/remove,
//!   enable/disable, maximum/minimum, off, …), times (months, weekdays, seasons, today/tomorrow);
//! - output formats (haiku, limerick, poem, essay, JSON, YAML, …), languages, audiences
//!   (beginner, expert, child, …);
//! - names: capitalised words other than a sentence's first and `I`, and quoted text.
//!
//! Lower-case, plural-insensitive, punctuation-blind. Words outside these lists may differ (that
//! is what paraphrases do); the embedding's threshold judges them. The lists are English: other
//! languages still have numbers, names and quotes checked. Calibrated on
//! `tests/fixtures/semantic/pairs.json`.

/// One anchor: its kind and canonical text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    Number(String),
    Word(&'static str),
    Negation,
    Name(String),
    Quote(String),
}

/// Whether an answer to `a` may serve `b`: the same anchors in the same order.
pub fn compatible(a: &str, b: &str) -> bool {
    anchors(a) == anchors(b)
}

const NEGATIONS: &[&str] = &[
    "not",
    "no",
    "never",
    "without",
    "none",
    "nothing",
    "nobody",
    "neither",
    "nor",
    "cannot",
    "impossible",
    "unable",
    "unsafe",
    "illegal",
    "invalid",
    "incorrect",
    "unlikely",
    "except",
    "excluding",
];

/// Words whose presence decides an answer; several spellings map to one canonical word.
const LEXICON: &[(&str, &str)] = &[
    // Direction, comparison, polarity.
    ("under", "under"),
    ("below", "below"),
    ("beneath", "below"),
    ("over", "over"),
    ("above", "above"),
    ("before", "before"),
    ("after", "after"),
    ("buy", "buy"),
    ("purchase", "buy"),
    ("sell", "sell"),
    ("increase", "increase"),
    ("raise", "increase"),
    ("decrease", "decrease"),
    ("reduce", "decrease"),
    ("lower", "lower"),
    ("higher", "higher"),
    ("more", "more"),
    ("less", "less"),
    ("fewer", "less"),
    ("most", "most"),
    ("least", "least"),
    ("maximum", "max"),
    ("max", "max"),
    ("minimum", "min"),
    ("min", "min"),
    ("first", "first"),
    ("last", "last"),
    ("earliest", "earliest"),
    ("latest", "latest"),
    ("oldest", "oldest"),
    ("newest", "newest"),
    ("add", "add"),
    ("remove", "remove"),
    ("delete", "delete"),
    ("enable", "enable"),
    ("disable", "disable"),
    ("start", "start"),
    ("stop", "stop"),
    ("open", "open"),
    ("close", "close"),
    ("include", "include"),
    ("exclude", "exclude"),
    ("import", "import"),
    ("export", "export"),
    ("upload", "upload"),
    ("download", "download"),
    ("push", "push"),
    ("pull", "pull"),
    ("send", "send"),
    ("receive", "receive"),
    ("win", "win"),
    ("lose", "lose"),
    ("rise", "rise"),
    ("up", "up"),
    ("down", "down"),
    ("off", "off"),
    ("left", "left"),
    ("right", "right"),
    ("north", "north"),
    ("south", "south"),
    ("east", "east"),
    ("west", "west"),
    ("inside", "inside"),
    ("outside", "outside"),
    ("input", "input"),
    ("output", "output"),
    ("encrypt", "encrypt"),
    ("decrypt", "decrypt"),
    ("encode", "encode"),
    ("decode", "decode"),
    ("allow", "allow"),
    ("deny", "deny"),
    ("accept", "accept"),
    ("reject", "reject"),
    ("true", "true"),
    ("false", "false"),
    ("positive", "positive"),
    ("negative", "negative"),
    ("cheapest", "cheapest"),
    ("expensive", "expensive"),
    ("fastest", "fastest"),
    ("slowest", "slowest"),
    ("best", "best"),
    ("worst", "worst"),
    ("hot", "hot"),
    ("cold", "cold"),
    ("warm", "warm"),
    ("cool", "cool"),
    ("big", "big"),
    ("small", "small"),
    ("large", "large"),
    ("today", "today"),
    ("tomorrow", "tomorrow"),
    ("yesterday", "yesterday"),
    ("past", "past"),
    ("future", "future"),
    ("next", "next"),
    ("previous", "previous"),
    ("regular", "regular"),
    ("leap", "leap"),
    ("legal", "legal"),
    ("safe", "safe"),
    ("domestic", "domestic"),
    ("international", "international"),
    ("internationally", "international"),
    // Times.
    ("january", "january"),
    ("february", "february"),
    ("march", "march"),
    ("april", "april"),
    ("may", "may"),
    ("june", "june"),
    ("july", "july"),
    ("august", "august"),
    ("september", "september"),
    ("october", "october"),
    ("november", "november"),
    ("december", "december"),
    ("monday", "monday"),
    ("tuesday", "tuesday"),
    ("wednesday", "wednesday"),
    ("thursday", "thursday"),
    ("friday", "friday"),
    ("saturday", "saturday"),
    ("sunday", "sunday"),
    ("spring", "spring"),
    ("summer", "summer"),
    ("autumn", "autumn"),
    ("fall", "autumn"),
    ("winter", "winter"),
    ("weekday", "weekday"),
    ("weekend", "weekend"),
    // Units and currencies.
    ("celsius", "celsius"),
    ("°c", "celsius"),
    ("fahrenheit", "fahrenheit"),
    ("°f", "fahrenheit"),
    ("kelvin", "kelvin"),
    ("mile", "mile"),
    ("kilometer", "km"),
    ("kilometre", "km"),
    ("km", "km"),
    ("meter", "m"),
    ("metre", "m"),
    ("centimeter", "cm"),
    ("centimetre", "cm"),
    ("cm", "cm"),
    ("millimeter", "mm"),
    ("millimetre", "mm"),
    ("mm", "mm"),
    ("foot", "foot"),
    ("feet", "foot"),
    ("ft", "foot"),
    ("inch", "inch"),
    ("inches", "inch"),
    ("yard", "yard"),
    ("pound", "pound"),
    ("lb", "pound"),
    ("lbs", "pound"),
    ("kilogram", "kg"),
    ("kg", "kg"),
    ("gram", "g"),
    ("ounce", "ounce"),
    ("oz", "ounce"),
    ("liter", "liter"),
    ("litre", "liter"),
    ("gallon", "gallon"),
    ("cup", "cup"),
    ("tablespoon", "tablespoon"),
    ("teaspoon", "teaspoon"),
    ("hour", "hour"),
    ("minute", "minute"),
    ("second", "second"),
    ("day", "day"),
    ("week", "week"),
    ("month", "month"),
    ("year", "year"),
    ("decade", "decade"),
    ("century", "century"),
    ("byte", "byte"),
    ("kb", "kb"),
    ("mb", "mb"),
    ("gb", "gb"),
    ("tb", "tb"),
    ("$", "usd"),
    ("usd", "usd"),
    ("dollar", "usd"),
    ("€", "eur"),
    ("eur", "eur"),
    ("euro", "eur"),
    ("£", "gbp"),
    ("gbp", "gbp"),
    ("yen", "jpy"),
    ("jpy", "jpy"),
    ("%", "percent"),
    ("percent", "percent"),
    ("percentage", "percent"),
    // Formats.
    ("haiku", "haiku"),
    ("limerick", "limerick"),
    ("sonnet", "sonnet"),
    ("poem", "poem"),
    ("essay", "essay"),
    ("story", "story"),
    ("tweet", "tweet"),
    ("email", "email"),
    ("letter", "letter"),
    ("json", "json"),
    ("yaml", "yaml"),
    ("xml", "xml"),
    ("csv", "csv"),
    ("table", "table"),
    ("markdown", "markdown"),
    ("html", "html"),
    ("sql", "sql"),
    ("bullet", "bullet"),
    ("paragraph", "paragraph"),
    ("song", "song"),
    ("joke", "joke"),
    // Languages (natural and programming).
    ("english", "english"),
    ("spanish", "spanish"),
    ("french", "french"),
    ("german", "german"),
    ("italian", "italian"),
    ("portuguese", "portuguese"),
    ("chinese", "chinese"),
    ("japanese", "japanese"),
    ("korean", "korean"),
    ("russian", "russian"),
    ("arabic", "arabic"),
    ("hindi", "hindi"),
    ("dutch", "dutch"),
    ("python", "python"),
    ("java", "java"),
    ("javascript", "javascript"),
    ("typescript", "typescript"),
    ("rust", "rust"),
    ("golang", "go"),
    ("ruby", "ruby"),
    ("php", "php"),
    ("kotlin", "kotlin"),
    ("swift", "swift"),
    ("c++", "cpp"),
    ("c#", "csharp"),
    // Audiences.
    ("beginner", "beginner"),
    ("novice", "beginner"),
    ("expert", "expert"),
    ("advanced", "advanced"),
    ("intermediate", "intermediate"),
    ("child", "child"),
    ("children", "child"),
    ("kid", "child"),
    ("adult", "adult"),
    ("professional", "professional"),
];

const NUMBER_WORDS: &[(&str, &str)] = &[
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("thirteen", "13"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("sixteen", "16"),
    ("seventeen", "17"),
    ("eighteen", "18"),
    ("nineteen", "19"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("sixty", "60"),
    ("seventy", "70"),
    ("eighty", "80"),
    ("ninety", "90"),
    ("hundred", "100"),
    ("thousand", "1000"),
    ("million", "1e6"),
    ("billion", "1e9"),
    ("dozen", "12"),
    ("half", "0.5"),
    ("twice", "x2"),
    ("double", "x2"),
    ("triple", "x3"),
];

fn lexicon(word: &str) -> Option<&'static str> {
    let find = |w: &str| LEXICON.iter().find(|(k, _)| *k == w).map(|(_, v)| *v);
    find(word).or_else(|| {
        // Plurals: `miles`, `hours`, `kids`, `poems`.
        let stem = word.strip_suffix("es").filter(|s| s.len() > 2).and_then(find);
        stem.or_else(|| word.strip_suffix('s').filter(|s| s.len() > 1).and_then(find))
    })
}

/// The anchors of `text`, in order.
pub fn anchors(text: &str) -> Vec<Anchor> {
    let mut out = Vec::new();
    // Quoted text, whole.
    for q in quotes(text) {
        out.push(Anchor::Quote(q.to_lowercase()));
    }
    let mut sentence_start = true;
    for token in tokens(text) {
        let lower = token.to_lowercase();
        let first = std::mem::replace(&mut sentence_start, token.ends_with(['.', '!', '?']));
        let word = lower.trim_matches(|c: char| matches!(c, '.' | '!' | '?' | ',' | ';' | ':' | '"' | '(' | ')'));
        if word.is_empty() {
            continue;
        }
        if word.ends_with("n't") || word.ends_with("n’t") || NEGATIONS.contains(&word) {
            out.push(Anchor::Negation);
            continue;
        }
        if let Some(n) = number(word) {
            // A unit glued to a number: `$50`, `30%`, `5km`; after the number either way, so
            // `$50` reads as `50 dollars`.
            let (pre, digits, post) = n;
            out.push(Anchor::Number(digits));
            if let Some(u) = lexicon(pre) {
                out.push(Anchor::Word(u));
            }
            if let Some(u) = lexicon(post) {
                out.push(Anchor::Word(u));
            }
            continue;
        }
        if let Some(n) = NUMBER_WORDS.iter().find(|(k, _)| *k == word).map(|(_, v)| *v) {
            out.push(Anchor::Number(n.to_string()));
            continue;
        }
        if let Some(w) = lexicon(word) {
            out.push(Anchor::Word(w));
            continue;
        }
        let capital = token
            .trim_start_matches(['"', '(', '\''])
            .chars()
            .next()
            .is_some_and(char::is_uppercase);
        if capital && !first && word != "i" && !word.starts_with("i'") && !word.starts_with("i’") {
            out.push(Anchor::Name(
                word.trim_end_matches("'s").trim_end_matches("’s").to_string(),
            ));
        }
    }
    out
}

/// Whitespace-separated tokens, with apostrophes kept inside words (`what's`, `don't`).
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || c == '/')
        .filter(|t| !t.is_empty())
}

/// Text between matching single or double quotes (straight or typographic), at most 200 chars.
fn quotes(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for (open, close) in [('"', '"'), ('“', '”'), ('‘', '’')] {
        let mut rest = text;
        while let Some(i) = rest.find(open) {
            let after = &rest[i + open.len_utf8()..];
            let Some(j) = after.find(close) else { break };
            let inner = &after[..j];
            if !inner.is_empty() && inner.len() <= 200 {
                out.push(inner);
            }
            rest = &after[j + close.len_utf8()..];
        }
    }
    // Single straight quotes: only around whole words (`'good morning'`), not apostrophes.
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let boundary_before = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if b[i] == b'\'' && boundary_before {
            if let Some(len) = text[i + 1..].find('\'') {
                let end = i + 1 + len;
                let boundary_after = end + 1 >= b.len() || !b[end + 1].is_ascii_alphanumeric();
                if boundary_after && len > 0 && len <= 200 {
                    out.push(&text[i + 1..end]);
                    i = end + 1;
                    continue;
                }
            }
        }
        i += 1;
    }
    out
}

/// `$1,200.50` → ("$", "1200.50", ""); `30%` → ("", "30", "%"); `5km` → ("", "5", "km").
fn number(word: &str) -> Option<(&str, String, &str)> {
    let start = word.find(|c: char| c.is_ascii_digit())?;
    let (pre, rest) = word.split_at(start);
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(rest.len());
    let (digits, post) = rest.split_at(end);
    if pre.chars().any(char::is_alphanumeric) {
        // `v2`, `gpt4`: a name, not a number.
        return None;
    }
    let digits = digits.trim_end_matches(['.', ',']);
    let thousands = digits.contains(',') && digits.split(',').skip(1).all(|g| g.len() == 3);
    let canonical = if thousands {
        digits.replace(',', "")
    } else {
        digits.replace(',', ".")
    };
    Some((pre, canonical, post))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issues_look_alikes_differ_and_their_paraphrases_do_not() {
        for (a, b) in [
            (
                "What is our refund policy for orders under $50?",
                "What is our refund policy for orders over $50?",
            ),
            ("Convert 100 Fahrenheit to Celsius", "Convert 100 Celsius to Fahrenheit"),
            ("Can I return it without a receipt?", "Can I return it with a receipt?"),
            ("Which fruits are safe for dogs?", "Which fruits aren't safe for dogs?"),
            ("Write a haiku about autumn.", "Write a limerick about autumn."),
            (
                "Split $120 between 4 people.",
                "Split $120 between four people and a dog, 2 of them.",
            ),
            ("What happened in 1969?", "What happened in 1968?"),
            ("Explain it to a beginner.", "Explain it to an expert."),
            ("Translate 'good morning'.", "Translate 'good night'."),
            ("What is the capital of France?", "What is the capital of Germany?"),
        ] {
            assert!(!compatible(a, b), "{a} | {b}: {:?} vs {:?}", anchors(a), anchors(b));
        }
        for (a, b) in [
            (
                "What is our refund policy for orders under $50?",
                "What's our refund policy for orders under 50 dollars?",
            ),
            (
                "Convert 100 Fahrenheit to Celsius",
                "convert 100 fahrenheit into celsius, please",
            ),
            ("How do I reset my password?", "How can I reset my password?"),
            ("Split $1,200 between 4 people.", "Split 1200 USD between four people."),
            ("What's the capital city of France?", "What is the capital of France?"),
            (
                "How long are 5 miles in kilometres?",
                "5 miles: how long in kilometers?",
            ),
        ] {
            assert!(compatible(a, b), "{a} | {b}: {:?} vs {:?}", anchors(a), anchors(b));
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_reads_without_panicking(s in "\\PC{0,200}") {
            let _ = anchors(&s);
            proptest::prop_assert!(compatible(&s, &s));
        }
    }
}
