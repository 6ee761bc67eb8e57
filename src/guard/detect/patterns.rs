//! The built-in entity patterns: one row per pattern (a kind may have several), in priority
//! order. The rows are joined into the detector's one multi-pattern automaton; when two patterns
//! match at the same start, the earlier row wins, so specific prefixes (secrets) come before
//! generic shapes (numbers).
//!
//! Invariants the scanner relies on:
//! - every `\b` here is rewritten to the ASCII boundary `(?-u:\b)` before compiling, so the lazy
//!   DFA never gives up on non-ASCII text (a Unicode `\b` makes it quit on the first non-ASCII
//!   byte); character classes are ASCII (`[0-9]`, never `\d`);
//! - a pattern with context (a label before the value, such as `password:` or `born on`) names
//!   its value `v`; the finding covers `v` only;
//! - no pattern matches the empty string;
//! - a row with a hand-written matcher (`by_hand`, see `hand`) is matched by it, not by the
//!   automaton, in windows whose triggers are only digits and `@`; there, only those rows, IPv6
//!   (never accepted without a `:` trigger) and the label rows (birth dates, the labelled SSN:
//!   `hand::label_at` sends such a window back to the automaton) can match. A new row that can
//!   match with only digit or `@` triggers needs a hand matcher or a label in `hand::label_at`;
//!   the property tests against `scan_unfiltered` catch one left out once its entity is among
//!   their pieces (`tests::piece`), and `tests::the_hand_scan_knows_every_label_word` a label
//!   word added to the birth-date or SSN patterns and not to `hand::label_at`.

use super::hand::{self, Row};
use crate::guard::entity::Class;

/// What the scanner checks on a candidate before it becomes a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// The regex is the whole check.
    Plain,
    /// A PEM header: the finding runs to the matching END line, or to the end of the text.
    PrivateKey,
    /// 40 base64 characters, not part of a longer run, mixed case and digits.
    AwsSecret,
    /// An `sk-` key with enough variety to be a real key.
    ApiKey,
    /// A password value: not a reference (`${VAR}`), a mask (`****`) or a placeholder.
    Password,
    /// As `Password`, from prose ("my password is …"): must also look like a password.
    PasswordProse,
    Email,
    Iban,
    Card,
    Ssn,
    Phone,
    Ipv4,
    Ipv6,
    Dob,
}

pub(super) struct Builtin {
    pub name: &'static str,
    pub class: Class,
    pub check: Check,
    pub regex: &'static str,
    /// The row as a hand-written anchored matcher (`hand`), for windows whose triggers are
    /// only digits and `@`.
    pub hand: Option<Row>,
}

const fn row(name: &'static str, class: Class, check: Check, regex: &'static str) -> Builtin {
    Builtin {
        name,
        class,
        check,
        regex,
        hand: None,
    }
}

impl Builtin {
    const fn by_hand(self, hand: Row) -> Builtin {
        Builtin {
            hand: Some(hand),
            ..self
        }
    }
}

use Check as C;
use Class::{Pii, Secret};

/// Kind names in catalog order (the first rows of every detector's catalog).
pub(super) const KINDS: &[(&str, Class)] = &[
    ("EMAIL", Pii),
    ("PHONE", Pii),
    ("CARD", Pii),
    ("IBAN", Pii),
    ("SSN", Pii),
    ("IP_ADDRESS", Pii),
    ("DOB", Pii),
    ("AWS_ACCESS_KEY", Secret),
    ("AWS_SECRET_KEY", Secret),
    ("GCP_KEY", Secret),
    ("AZURE_CONNECTION_STRING", Secret),
    ("API_KEY", Secret),
    ("GITHUB_TOKEN", Secret),
    ("GITLAB_TOKEN", Secret),
    ("SLACK_TOKEN", Secret),
    ("STRIPE_KEY", Secret),
    ("PRIVATE_KEY", Secret),
    ("JWT", Secret),
    ("PASSWORD", Secret),
];

/// Month names (EN, DE, FR, ES, IT, NL, PT) and common abbreviations, for DOB dates.
const MONTH: &str = "(?i:january|february|march|april|may|june|july|august|september|october|\
november|december|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec|januar|jänner|februar|märz|\
maerz|mai|juni|juli|oktober|dezember|okt|dez|janvier|février|fevrier|mars|avril|juin|juillet|\
août|aout|septembre|octobre|novembre|décembre|decembre|enero|febrero|marzo|abril|mayo|junio|\
julio|agosto|septiembre|setiembre|octubre|noviembre|diciembre|gennaio|febbraio|aprile|maggio|\
giugno|luglio|settembre|ottobre|dicembre|januari|februari|maart|mei|augustus|janeiro|fevereiro|\
março|marco|maio|junho|julho|setembro|outubro|dezembro)";

/// Words that put a following date in birth context.
pub(super) const DOB_CONTEXT: &str = concat!(
    r"\b(?i:born|dob|d\.o\.b\.?|date of birth|birth ?date|birthday|geboren(?: am)?|",
    r"geburtsdatum|geburtstag|geb\.|née?|nee|date de naissance|nacid[oa]|fecha de nacimiento|",
    r"nat[oa]|data di nascita|data de nascimento|nascid[oa]|geboortedatum)",
);

/// Builds the DOB pattern: context, a short gap without digits, then the date as `v`.
pub(super) fn dob_regex() -> String {
    let date = format!(
        r"(?:[0-9]{{1,2}}[./-][0-9]{{1,2}}[./-](?:[0-9]{{4}}|[0-9]{{2}})|[0-9]{{4}}[-/][0-9]{{1,2}}[-/][0-9]{{1,2}}|[0-9]{{1,2}}(?:st|nd|rd|th|er|º|\.)?\s(?:de\s|of\s)?{MONTH}\.?,?\s(?:de\s)?[0-9]{{4}}|{MONTH}\.?\s[0-9]{{1,2}}(?:st|nd|rd|th)?,?\s[0-9]{{4}})\b"
    );
    format!(r"{DOB_CONTEXT}[\s:,.\-]{{1,3}}[^0-9\n]{{0,28}}?(?P<v>{date})")
}

/// The rows, in priority order. DOB is added by `dob_regex` (it is built from the month table).
pub(super) const ROWS: &[Builtin] = &[
    row(
        "PRIVATE_KEY",
        Secret,
        C::PrivateKey,
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",
    ),
    row(
        "JWT",
        Secret,
        C::Plain,
        r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
    ),
    row(
        "AWS_ACCESS_KEY",
        Secret,
        C::Plain,
        r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b",
    ),
    row(
        "AWS_SECRET_KEY",
        Secret,
        C::AwsSecret,
        r#"\b(?i:aws_?secret_?access_?key|aws_?secret_?key|secret_?access_?key|aws secret access key|aws secret key|secret_?key|secret)["']?[ \t]{0,3}(?:[:=]|=>|is)?[ \t]{0,3}["']?(?P<v>[A-Za-z0-9/+]{40})"#,
    ),
    row(
        "GCP_KEY",
        Secret,
        C::Plain,
        r#""private_key_id"\s*:\s*"(?P<v>[0-9a-f]{40})""#,
    ),
    row(
        "AZURE_CONNECTION_STRING",
        Secret,
        C::Plain,
        r"\b(?:AccountKey|SharedAccessKey)=(?P<v>[A-Za-z0-9+/]{20,}={0,2})",
    ),
    row(
        "STRIPE_KEY",
        Secret,
        C::Plain,
        r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b",
    ),
    row("API_KEY", Secret, C::ApiKey, r"\bsk-[A-Za-z0-9_-]{20,}"),
    row(
        "GITHUB_TOKEN",
        Secret,
        C::Plain,
        r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{40,255})\b",
    ),
    row("GITLAB_TOKEN", Secret, C::Plain, r"\bglpat-[A-Za-z0-9_-]{20,}"),
    row("SLACK_TOKEN", Secret, C::Plain, r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    row(
        "SLACK_TOKEN",
        Secret,
        C::Plain,
        r"https://hooks\.slack\.com/services/[A-Za-z0-9_/-]{20,}",
    ),
    row(
        "PASSWORD",
        Secret,
        C::Password,
        r#""[A-Za-z0-9_]*(?i:password|passwd|passwort|kennwort|pwd)"\s*:\s*"(?P<v>[^"\n]{1,128})""#,
    ),
    row(
        "PASSWORD",
        Secret,
        C::Password,
        r#"\b(?:[A-Za-z0-9_]*(?i:password|passwd|passwort|kennwort|pwd)|(?i:pass|mot de passe|contraseña|senha))[ \t]*(?:=|=>)[ \t]*["']?(?P<v>[^\s"'<>,;]{1,128})"#,
    ),
    // `password: word` is often prose ("password: see the vault"); the value must look like one.
    row(
        "PASSWORD",
        Secret,
        C::PasswordProse,
        r#"\b(?:[A-Za-z0-9_]*(?i:password|passwd|passwort|kennwort|pwd)|(?i:pass|mot de passe|contraseña|senha))[ \t]*:[ \t]*["']?(?P<v>[^\s"'<>,;]{1,128})"#,
    ),
    // Credentials in a URL: `scheme://user:secret@host`.
    row(
        "PASSWORD",
        Secret,
        C::Password,
        r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]+:(?P<v>[^\s:/@]{1,128})@",
    ),
    row(
        "PASSWORD",
        Secret,
        C::PasswordProse,
        r#"\b(?i:password|passwort|kennwort|mot de passe|contraseña|senha)\s(?i:is|was|ist|lautet|est|es|é)\s(?:["']|: ?)?(?P<v>[^\s"']{4,64})"#,
    ),
    row(
        "EMAIL",
        Pii,
        C::Email,
        r"\b[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
    )
    .by_hand(hand::EMAIL),
    row(
        "IBAN",
        Pii,
        C::Iban,
        r"\b[A-Za-z]{2}[0-9]{2}(?:[ ]?[A-Za-z0-9]){11,32}\b",
    )
    .by_hand(hand::IBAN),
    row("SSN", Pii, C::Ssn, r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b").by_hand(hand::SSN_DASHED),
    row("SSN", Pii, C::Ssn, r"\b[0-9]{3} [0-9]{2} [0-9]{4}\b").by_hand(hand::SSN_SPACED),
    row(
        "SSN",
        Pii,
        C::Ssn,
        r"\b(?i:ssn|social security number|social security no\.?|social security)[^0-9A-Za-z\n]{0,3}(?:(?i:is|was|number|no\.?|#|:)[^0-9A-Za-z\n]{0,3}){0,2}(?P<v>[0-9]{9})\b",
    ),
    row("CARD", Pii, C::Card, r"\b[0-9](?:[ -]?[0-9]){11,18}\b").by_hand(hand::CARD),
    row(
        "PHONE",
        Pii,
        C::Phone,
        r"\+[1-9][0-9]{0,3}(?:[ .-]?\(0?[0-9]{1,4}\))?(?:[ .-]?[0-9]{1,5}){2,7}\b",
    )
    .by_hand(hand::PHONE_PLUS),
    row(
        "PHONE",
        Pii,
        C::Phone,
        r"(?:\b1[ .-]?)?(?:\([2-9][0-9]{2}\)[ ]?|\b[2-9][0-9]{2}[ .-])[0-9]{3}[ .-][0-9]{4}\b",
    )
    .by_hand(hand::PHONE_NANP),
    row(
        "PHONE",
        Pii,
        C::Phone,
        r"(?:\(0[0-9]{1,4}\)[ ]?|\b0[0-9]{1,4}[ /.-]?)[0-9]{2,4}(?:[ .-]?[0-9]{2,4}){0,3}\b",
    )
    .by_hand(hand::PHONE_TRUNK),
    row(
        "IP_ADDRESS",
        Pii,
        C::Ipv4,
        r"\b[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\b",
    )
    .by_hand(hand::IPV4),
    row(
        "IP_ADDRESS",
        Pii,
        C::Ipv6,
        r"(?:[0-9A-Fa-f]{1,4}|:)(?::[0-9A-Fa-f]{0,4}){1,7}(?:\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})?",
    ),
];
