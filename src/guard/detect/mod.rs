//! The one-pass PII and secret detector: built-in entities (`patterns`), their validators
//! (`validate`) and the operator's custom entities (regexes with an optional checksum, word
//! lists), all compiled into one multi-pattern automaton (`regex_automata::meta::Regex`, the
//! engine `regex` is built on, used directly for its pattern ids and anchored per-pattern
//! searches).
//!
//! How `scan` works: one leftmost-first search over the text yields the next candidate and the
//! pattern that produced it; its check runs (checksum, ranges, context). A candidate that fails
//! does not hide what else its text may be: the lower-priority patterns are tried anchored at the
//! same start (a 12-digit run that fails Luhn can still be a phone number), then the search
//! resumes one character later. Context patterns (`password: x`, `born on <date>`) carry a
//! capture group `v`; captures are only computed for those, after the match is known.
//!
//! Invariants:
//! - findings are appended sorted by start, non-overlapping, non-empty, on char boundaries;
//! - scanning text with no candidate allocates nothing (the engine's per-thread cache is reused;
//!   the captures buffer is created only when a context pattern matches);
//! - placeholders such as `[EMAIL_1]` are never findings, whatever the patterns;
//! - all built-in patterns use ASCII classes and ASCII word boundaries, so the lazy DFA runs on
//!   non-ASCII text at full speed. Custom regexes are compiled as written (a Unicode `\b` in one
//!   makes the DFA give way to a slower engine on non-ASCII text; `(?-u:\b)` avoids it).
//! - AZURE_CONNECTION_STRING covers the key's value (after `AccountKey=` / `SharedAccessKey=`),
//!   not the whole connection string: the endpoint and account name are not secrets, and a
//!   placeholder in their place would break the string for the model's answer.
//!
//! The search runs only in the windows the prefilter (`prefilter`) finds around triggers, bytes
//! and words every built-in match holds; the rest of the text is never read by the automaton.
//! A window whose triggers are all digits and `@` (addresses, phone numbers, cards: most
//! prompts' entities) is scanned by hand-written matchers of those rows instead (`hand`, exact
//! to the automaton), unless a birth-date or SSN label word starts in it. The findings are the
//! same as a scan of the whole text (`scan_unfiltered`, kept as the reference): tested on the
//! corpus and by property tests. Text dense with triggers (numbers everywhere) gives way to a
//! whole scan after its first 256 bytes.
//!
//! Measured with `cargo bench --bench guard -- guard_scan --warm-up-time 1 --measurement-time 2`
//! (release, 2 shared cores, criterion medians, 2026-12-07, with the hand matchers), `scan`
//! against `scan_unfiltered`:
//!
//! | input                                   | scan     | whole text |
//! |-----------------------------------------|----------|------------|
//! | 2 KB clean prose (numbers every ~40 B)  | 3.80 µs  | 3.64 µs    |
//! | 2 KB with several entities (~a dozen)   | 11.7 µs  | 11.5 µs    |
//! | 64 KB mixed (prose, entities, DE, ZH)   | 266 µs   | 265 µs     |
//! | 2 KB German and Chinese                 | 2.75 µs  | 3.53 µs    |
//!
//! Warm, the windows and the hand matchers cost about what they save; cold (the gateway's case)
//! they save most of the automaton's cache misses: `benches/guard_cold.rs`.
//!
//! Crafted text can make a scan cost time in the square of its length (see `Budget`): each
//! scan has a CPU-time allowance for its size (`Allowance`), and stops with `Overrun` past it;
//! the callers then refuse the text unchecked. `cargo bench --bench guard -- guard_crafted`:
//! 16 KB of `sk-` runs, broken addresses, dotted digits each stop at ~21 ms (2-10 s at 64 KB
//! without the allowance); 16 KB of a card-number table finishes in 1.3 ms.
//!
//! So the prefilter pays where triggers are sparse (long prose, system prompts, most non-English
//! text: the load runner's 1.9 KB body's stage fell from 6.0 to 3.1 µs) and costs up to ~10 %
//! where they are everywhere. Text full of entities costs more per byte: each candidate runs its
//! check, context patterns run a captures search on their match, and a failed candidate retries
//! the lower-priority patterns anchored at its start.

mod hand;
mod patterns;
mod prefilter;
pub mod validate;

#[cfg(test)]
mod tests;

use std::time::Duration;

use regex_automata::meta;
use regex_automata::util::captures::Captures;
use regex_automata::{Anchored, Input, MatchKind, PatternID};

use crate::guard::entity::{Catalog, Class, Finding, Kind};
use patterns::Check;

/// The checksum a custom regex's matches must pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    None,
    /// Luhn over the match's digits (separators ignored).
    Luhn,
    /// ISO 7064 mod 97-10 as in IBANs (first four characters moved to the end).
    Mod97,
}

/// How a custom entity is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomPattern {
    /// A regex (Rust `regex` syntax). A group named `v`, if present, is the value the finding
    /// covers; otherwise the whole match is.
    Regex { pattern: String, validator: Validator },
    /// Words or phrases, matched case-insensitively (Unicode case folding) as whole words.
    Words(Vec<String>),
}

/// An operator-defined entity from the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomEntity {
    pub name: String,
    pub class: Class,
    pub pattern: CustomPattern,
}

/// Why a detector could not be built; each names the entity at fault.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("entity {name}: bad regex: {message}")]
    BadRegex { name: String, message: String },
    #[error("entity {name:?}: bad name: must match [A-Z][A-Z0-9_]*")]
    BadName { name: String },
    #[error("entity {name}: the name is already used by a built-in entity")]
    DuplicatesBuiltin { name: String },
    #[error("entity {name}: the name is defined more than once")]
    Duplicate { name: String },
    #[error("entity {name}: the word list is empty (or has only blank words)")]
    EmptyWords { name: String },
    #[error("the combined detector pattern could not be built: {message}")]
    Build { message: String },
}

/// What a pattern of the automaton stands for.
#[derive(Debug, Clone, Copy)]
struct Rule {
    kind: Kind,
    check: RuleCheck,
    /// The capture index of the group `v`, for context patterns.
    value_group: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
enum RuleCheck {
    Builtin(Check),
    Custom(Validator),
    Words,
}

/// The compiled detector: built once per config, shared by `Arc`.
#[derive(Debug)]
pub struct Detector {
    re: meta::Regex,
    rules: Vec<Rule>,
    catalog: Catalog,
    /// Built-in patterns only: the search runs in the prefilter's windows.
    prefilter: bool,
    /// The rows with a hand-written matcher (`hand`), in priority order: the pattern's index.
    hand: Vec<(usize, hand::Row)>,
    allowance: Allowance,
}

/// A scan stopped before the end of its text: it ran past its allowance (`Budget`), so what
/// the text holds is not known. Callers fail closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overrun;

/// The CPU time a scan may take: `base` plus `per_kb` for each KB of its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    pub base: Duration,
    pub per_kb: Duration,
}

impl Allowance {
    /// About 10 times what the densest real text measured costs in an optimised build (a table
    /// of numbers, each a card-like candidate that fails its checksum: ~80-100 µs per KB; prose
    /// ~2-4 µs per KB).
    pub const OPTIMISED: Allowance = Allowance {
        base: Duration::from_millis(5),
        per_kb: Duration::from_millis(1),
    };

    /// `OPTIMISED` in the build that runs (see `calibrated`).
    pub const DEFAULT: Allowance = Allowance::calibrated(Allowance::OPTIMISED);

    /// An allowance measured on an optimised build, for the build that runs: an unoptimised one
    /// (the tests') runs the detector's own code ~20 times slower, and gets 30 times as much.
    pub const fn calibrated(optimised: Allowance) -> Allowance {
        let times = if cfg!(debug_assertions) { 30 } else { 1 };
        Allowance {
            base: optimised.base.saturating_mul(times),
            per_kb: optimised.per_kb.saturating_mul(times),
        }
    }

    fn of(self, len: usize) -> Duration {
        let kb = u32::try_from(len / 1024).unwrap_or(u32::MAX);
        self.base.saturating_add(self.per_kb.saturating_mul(kb))
    }
}

/// What one scan spends, against its allowance. Why a scan needs one: a candidate its check
/// rejects is searched for again one character later, and the engine reads on past a match while
/// a preferred pattern may still match. On crafted text (an address's local part that never
/// ends, `sk-sk-sk-…`, dotted digits) each search re-reads what the last one read, so the scan's
/// time grows with the square of the text's length: 64 KB took seconds. Bounding every pattern
/// instead would not do: counted repetitions multiply the lazy DFA's states, and it gave way to
/// a slower engine on plain text (measured: 1600 times slower on 64 KB of `a@a@…`).
///
/// So the automaton's searches are counted; from the `FREE`th on, every `EVERY`th compares this
/// thread's CPU time since then with the allowance. Text with fewer searches (nearly every
/// prompt) never reads the clock; a scan past it stops with `Overrun`.
struct Budget {
    searches: u32,
    since: Option<Duration>,
    allowance: Duration,
}

impl Budget {
    const FREE: u32 = 64;
    const EVERY: u32 = 64;

    fn new(allowance: Duration) -> Budget {
        Budget {
            searches: 0,
            since: None,
            allowance,
        }
    }

    /// One more search.
    fn tick(&mut self) -> Result<(), Overrun> {
        self.searches = self.searches.wrapping_add(1);
        if self.searches < Self::FREE || self.searches % Self::EVERY != 0 {
            return Ok(());
        }
        let now = crate::time::thread_cpu_time();
        match self.since {
            None => self.since = Some(now),
            Some(t) if now.saturating_sub(t) > self.allowance => return Err(Overrun),
            Some(_) => {}
        }
        Ok(())
    }
}

/// Why the windowed scan stopped: a character the prefilter does not fold (scan whole), or the
/// budget.
enum Stop {
    Fold,
    Overrun,
}

impl From<prefilter::Fold> for Stop {
    fn from(_: prefilter::Fold) -> Stop {
        Stop::Fold
    }
}

impl From<Overrun> for Stop {
    fn from(_: Overrun) -> Stop {
        Stop::Overrun
    }
}

/// A match ending this close to its window's end may have been cut by it (`scan_range`).
const TAIL: usize = 8;
/// Bytes of a text the prefilter reads before it may give way to a whole scan (`scan_windows`).
const DENSE_AFTER: usize = 256;

fn valid_name(name: &str) -> bool {
    let mut b = name.bytes();
    b.next().is_some_and(|c| c.is_ascii_uppercase())
        && b.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_')
}

impl Detector {
    /// The built-in entities only.
    pub fn builtin() -> Detector {
        match Detector::new(&[], &[]) {
            Ok(d) => d,
            // The built-in patterns are fixed and covered by tests; this arm cannot run.
            Err(e) => unreachable!("built-in detector patterns: {e}"),
        }
    }

    /// Built-ins plus custom entities; `external` are extra kind names with no pattern (entities
    /// an external analyzer such as Presidio reports: PERSON, LOCATION, ORGANIZATION), added to
    /// the catalog as `Class::Pii`. An external name equal to a built-in shares its kind; one
    /// equal to a custom entity is a `Duplicate`.
    pub fn new(custom: &[CustomEntity], external: &[&str]) -> Result<Detector, DetectError> {
        let mut catalog = Catalog::default();
        for (name, class) in patterns::KINDS {
            catalog.add(name, *class);
        }
        let builtin_count = catalog.len();
        let mut sources: Vec<String> = Vec::new();
        let mut checks: Vec<(Kind, RuleCheck)> = Vec::new();
        let mut hand = Vec::new();
        for row in patterns::ROWS {
            let kind = catalog.add(row.name, row.class);
            if let Some(f) = row.hand {
                hand.push((sources.len(), f));
            }
            sources.push(ascii_boundaries(row.regex));
            checks.push((kind, RuleCheck::Builtin(row.check)));
        }
        let dob = catalog.add("DOB", Class::Pii);
        sources.push(ascii_boundaries(&patterns::dob_regex()));
        checks.push((dob, RuleCheck::Builtin(Check::Dob)));

        for entity in custom {
            let name = entity.name.as_str();
            if !valid_name(name) {
                return Err(DetectError::BadName { name: name.to_owned() });
            }
            if let Some(k) = catalog.kind(name) {
                return Err(if usize::from(k.0) < builtin_count {
                    DetectError::DuplicatesBuiltin { name: name.to_owned() }
                } else {
                    DetectError::Duplicate { name: name.to_owned() }
                });
            }
            let (source, check) = custom_source(entity)?;
            let kind = catalog.add(name, entity.class);
            sources.push(source);
            checks.push((kind, check));
        }
        for &name in external {
            if !valid_name(name) {
                return Err(DetectError::BadName { name: name.to_owned() });
            }
            if let Some(k) = catalog.kind(name) {
                if usize::from(k.0) >= builtin_count {
                    return Err(DetectError::Duplicate { name: name.to_owned() });
                }
            }
            catalog.add(name, Class::Pii);
        }

        let re = meta::Regex::builder()
            .configure(
                meta::Config::new()
                    .match_kind(MatchKind::LeftmostFirst)
                    .utf8_empty(true)
                    .nfa_size_limit(Some(64 << 20)),
            )
            .build_many(&sources)
            .map_err(|e| DetectError::Build { message: e.to_string() })?;
        let rules = checks
            .into_iter()
            .enumerate()
            .map(|(i, (kind, check))| Rule {
                kind,
                check,
                value_group: PatternID::new(i).ok().and_then(|p| re.group_info().to_index(p, "v")),
            })
            .collect();
        Ok(Detector {
            re,
            rules,
            catalog,
            prefilter: custom.is_empty(),
            hand,
            allowance: Allowance::DEFAULT,
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The same detector with another CPU-time allowance per scan (`Allowance::DEFAULT`
    /// otherwise).
    pub fn with_allowance(mut self, allowance: Allowance) -> Detector {
        self.allowance = allowance;
        self
    }

    /// Appends what `text` holds: non-overlapping findings sorted by start, ranges on char
    /// boundaries, covering the sensitive value only. `Overrun` (findings up to there appended):
    /// the scan ran past its CPU-time allowance (`Budget`) and the rest of the text is unknown.
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>) -> Result<(), Overrun> {
        self.scan_within(text, out, self.allowance)
    }

    /// `scan` with another allowance than the detector's.
    pub fn scan_within(&self, text: &str, out: &mut Vec<Finding>, allowance: Allowance) -> Result<(), Overrun> {
        let mut caps: Option<Captures> = None;
        let mut budget = Budget::new(allowance.of(text.len()));
        if self.prefilter {
            let mark = out.len();
            match self.scan_windows(text, out, &mut caps, &mut budget) {
                Ok(()) => return Ok(()),
                Err(Stop::Overrun) => return Err(Overrun),
                Err(Stop::Fold) => out.truncate(mark),
            }
        }
        self.scan_range(text, (0, text.len(), usize::MAX), out, &mut caps, &mut budget)
            .map(|_| ())
    }

    /// `scan` without the prefilter or the allowance: the whole text through the automaton. The
    /// reference the prefilter is tested against (and the bench's baseline).
    pub fn scan_unfiltered(&self, text: &str, out: &mut Vec<Finding>) {
        let mut budget = Budget::new(Duration::MAX);
        let _ = self.scan_range(text, (0, text.len(), usize::MAX), out, &mut None, &mut budget);
    }

    /// The search in the prefilter's windows only (see `prefilter`): the windows come in order,
    /// each scanned once it cannot grow any more.
    fn scan_windows(
        &self,
        text: &str,
        out: &mut Vec<Finding>,
        caps: &mut Option<Captures>,
        budget: &mut Budget,
    ) -> Result<(), Stop> {
        let b = text.as_bytes();
        let mut windows = prefilter::Windows::default();
        let mut pos = 0;
        // The open window: its bounds, the start of its last trigger (no match can start after
        // that: every match holds a trigger), and whether its triggers are all digits and `@`
        // (the hand matchers' windows).
        let mut open: Option<(usize, usize, usize, bool)> = None;
        // Bytes of the closed windows, to see whether the windows are worth their cost.
        let mut closed = 0;
        // The hand matchers' next `@` (`scan_hand`), kept from one window to the next.
        let mut at_sign = None;
        for j in prefilter::Candidates::new(b) {
            let Some(t) = prefilter::trigger_at(b, j)? else {
                continue;
            };
            let (ws, we) = windows.of(text, t);
            let simple = matches!(b[t.start], b'0'..=b'9' | b'@');
            open = match open {
                Some((s, e, last, all)) if ws <= e => Some((s, e.max(we), last.max(t.start), all && simple)),
                Some((s, e, last, all)) => {
                    pos = self.scan_window(text, (pos.max(s), e, last), all, &mut at_sign, out, caps, budget)?;
                    closed += e - s;
                    Some((ws, we, t.start, simple))
                }
                None => Some((ws, we, t.start, simple)),
            };
            // Text dense with triggers (numbers everywhere) is nearly all windows: past
            // `DENSE_AFTER` bytes, if they cover three quarters of it, the rest is scanned whole
            // instead of paying for both. (The text before `j` is done or in the open window.)
            if let (true, Some((s, e, _, _))) = (j >= DENSE_AFTER, open) {
                if 4 * (closed + e.min(j) - s) >= 3 * j {
                    self.scan_range(text, (pos.max(s), text.len(), usize::MAX), out, caps, budget)?;
                    return Ok(());
                }
            }
        }
        if let Some((s, e, last, all)) = open {
            self.scan_window(text, (pos.max(s), e, last), all, &mut at_sign, out, caps, budget)?;
        }
        Ok(())
    }

    /// One window's scan (`(pos, end, last)` as `scan_range` takes them): by the hand matchers
    /// when its triggers are all digits and `@` (`simple`) and no birth-date or SSN label starts
    /// in it, else by the automaton.
    #[allow(clippy::too_many_arguments)]
    fn scan_window(
        &self,
        text: &str,
        (pos, end, last): (usize, usize, usize),
        simple: bool,
        at_sign: &mut Option<(usize, usize)>,
        out: &mut Vec<Finding>,
        caps: &mut Option<Captures>,
        budget: &mut Budget,
    ) -> Result<usize, Overrun> {
        if simple {
            if let Some(pos) = self.scan_hand(text, (pos, end, last), at_sign, out, caps) {
                return Ok(pos);
            }
        }
        self.scan_range(text, (pos, end, last), out, caps, budget)
    }

    /// `scan_range` by the hand matchers (see `hand`: in a window whose triggers are all
    /// digits and `@`, only their rows, and the label rows, can give a finding). At each start
    /// the rows are tried in priority order and the first one accepted is the finding, as the
    /// automaton's leftmost-first search followed by the anchored retries finds it. None, with
    /// nothing added: a birth-date or SSN label word starts in the window (the automaton's
    /// turn). `at_sign` is the next `@` at or after where it was looked for, and where the run
    /// of local-part bytes before it starts (an address can start only there or after:
    /// `hand::local_start`); `(usize::MAX, usize::MAX)` when the text has no more. The caller
    /// keeps it from one window to the next, so each `@` is looked for once a text.
    fn scan_hand(
        &self,
        text: &str,
        (mut pos, end, last): (usize, usize, usize),
        at_sign: &mut Option<(usize, usize)>,
        out: &mut Vec<Finding>,
        caps: &mut Option<Captures>,
    ) -> Option<usize> {
        let b = text.as_bytes();
        let mark = out.len();
        'next: while pos < end && pos <= last {
            let class = hand::start_class(b, pos);
            if class != 0 {
                if class == hand::LETTER && hand::label_at(b, pos) {
                    out.truncate(mark);
                    return None;
                }
                if at_sign.is_none_or(|(a, _)| a < pos) {
                    *at_sign = Some(match memchr::memchr(b'@', &b[pos..]) {
                        Some(k) => (pos + k, hand::local_start(b, pos + k)),
                        None => (usize::MAX, usize::MAX),
                    });
                }
                let no_address = at_sign.is_some_and(|(_, local)| pos < local);
                for &(pid, row) in &self.hand {
                    if row.starts & class == 0 || (no_address && row.starts & hand::NEEDS_AT != 0) {
                        continue;
                    }
                    let Some(e) = (row.matcher)(b, pos) else { continue };
                    if let Some((kind, vs, ve)) = self.accept(text, pid, pos, e, caps) {
                        out.push(Finding {
                            kind,
                            start: vs,
                            end: ve,
                        });
                        pos = ve;
                        continue 'next;
                    }
                }
            }
            // (A byte that is not ASCII cannot start a row: stepping into a character is safe.)
            pos += 1;
        }
        Some(pos)
    }

    /// The scan of the matches starting in `text[pos..end]`, none of which can start after
    /// `last` (a window's last trigger: once past it, the rest of the window holds no match and
    /// is not searched); returns where a later search resumes. A match that ends within `TAIL`
    /// bytes of a window's end is searched for again over the rest of the text, so a window
    /// never cuts one short. Each search is counted against `budget`.
    fn scan_range(
        &self,
        text: &str,
        (mut pos, end, last): (usize, usize, usize),
        out: &mut Vec<Finding>,
        caps: &mut Option<Captures>,
        budget: &mut Budget,
    ) -> Result<usize, Overrun> {
        while pos < end && pos <= last {
            budget.tick()?;
            let Some(mut m) = self.re.search(&Input::new(text).range(pos..end)) else {
                break;
            };
            if end < text.len() && m.end() + TAIL >= end {
                match self.re.search(&Input::new(text).range(pos..)) {
                    Some(whole) => m = whole,
                    None => break,
                }
            }
            let s = m.start();
            let pid = m.pattern().as_usize();
            let mut hit = self.accept(text, pid, s, m.end(), caps);
            if hit.is_none() {
                // The lower-priority patterns may still match here (leftmost-first only
                // reported the first); try each anchored at the same start.
                for j in pid + 1..self.rules.len() {
                    budget.tick()?;
                    let Ok(p) = PatternID::new(j) else { break };
                    let input = Input::new(text).range(s..).anchored(Anchored::Pattern(p));
                    if let Some(m2) = self.re.search(&input) {
                        hit = self.accept(text, j, s, m2.end(), caps);
                        if hit.is_some() {
                            break;
                        }
                    }
                }
            }
            match hit {
                Some((kind, vs, ve)) => {
                    out.push(Finding {
                        kind,
                        start: vs,
                        end: ve,
                    });
                    pos = ve;
                }
                None => pos = s + text[s..].chars().next().map_or(1, char::len_utf8),
            }
        }
        Ok(pos)
    }

    /// Checks the candidate of pattern `pid` matched at `text[s..e]`; returns the finding's kind
    /// and value range.
    fn accept(
        &self,
        text: &str,
        pid: usize,
        s: usize,
        e: usize,
        caps: &mut Option<Captures>,
    ) -> Option<(Kind, usize, usize)> {
        let rule = self.rules.get(pid)?;
        let (vs, ve) = match rule.value_group {
            Some(g) => self.value_span(text, pid, s, g, caps)?,
            None => (s, e),
        };
        let v = text.get(vs..ve)?;
        let (vs, ve) = match rule.check {
            RuleCheck::Builtin(check) => builtin_check(check, text, vs, ve, v)?,
            RuleCheck::Custom(Validator::None) => (vs, ve),
            RuleCheck::Custom(Validator::Luhn) => validate::luhn(v).then_some((vs, ve))?,
            RuleCheck::Custom(Validator::Mod97) => validate::mod97(v).then_some((vs, ve))?,
            RuleCheck::Words => validate::whole_word(text, vs, ve).then_some((vs, ve))?,
        };
        if ve <= vs || validate::in_placeholder(text, vs, ve) {
            return None;
        }
        Some((rule.kind, vs, ve))
    }

    /// The span of group `g` of pattern `pid` matched at `s` (captures run on that match only).
    fn value_span(
        &self,
        text: &str,
        pid: usize,
        s: usize,
        g: usize,
        caps: &mut Option<Captures>,
    ) -> Option<(usize, usize)> {
        let caps = caps.get_or_insert_with(|| self.re.create_captures());
        let p = PatternID::new(pid).ok()?;
        let input = Input::new(text).range(s..).anchored(Anchored::Pattern(p));
        self.re.search_captures(&input, caps);
        let span = caps.get_group(g)?;
        Some((span.start, span.end))
    }
}

/// The built-in checks; returns the (possibly narrowed or extended) value range.
fn builtin_check(check: Check, text: &str, s: usize, e: usize, v: &str) -> Option<(usize, usize)> {
    use validate as val;
    let ok = |b: bool| b.then_some((s, e));
    match check {
        Check::Plain => Some((s, e)),
        Check::PrivateKey => Some((s, val::pem_end(text, e))),
        Check::AwsSecret => {
            let next = text.as_bytes().get(e).copied();
            let run_on = next.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'/' || c == b'+');
            let mixed = v.bytes().any(|c| c.is_ascii_uppercase()) && v.bytes().any(|c| c.is_ascii_lowercase());
            ok(!run_on && mixed && val::varied(v, 15))
        }
        Check::ApiKey => ok(val::varied(v.get(3..).unwrap_or(""), 10)),
        Check::Password | Check::PasswordProse => {
            let e = val::trim_trailing_punct(text, s, e);
            let v = text.get(s..e)?;
            let good = if check == Check::Password {
                val::password_value(v)
            } else {
                val::password_like(v)
            };
            good.then_some((s, e))
        }
        Check::Email => ok(val::email(v)),
        Check::Iban => val::iban(text, s, e).map(|end| (s, end)),
        Check::Card => {
            let end = val::card(text, s, e)?;
            (!val::embedded_in_number(text, s, end)).then_some((s, end))
        }
        Check::Ssn => ok(val::ssn(v) && !val::embedded_in_number(text, s, e)),
        Check::Phone => ok(val::phone(text, s, e)),
        Check::Ipv4 => {
            let b = text.as_bytes();
            let dotted_on = b.get(e) == Some(&b'.') && b.get(e + 1).is_some_and(u8::is_ascii_digit);
            let dotted_before = s >= 2 && b.get(s - 1) == Some(&b'.') && b.get(s - 2).is_some_and(u8::is_ascii_digit);
            ok(val::ipv4(v) && !dotted_on && !dotted_before && !val::after_version_word(text, s))
        }
        Check::Ipv6 => {
            let b = text.as_bytes();
            let glued =
                |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, b':' | b'.' | b'_'));
            if s > 0 && glued(b.get(s - 1)) {
                return None;
            }
            let end = val::ipv6(text, s, e)?;
            (!glued(b.get(end)) || b.get(end) == Some(&b'.') && !b.get(end + 1).is_some_and(u8::is_ascii_digit))
                .then_some((s, end))
        }
        Check::Dob => ok(val::birth_date(v)),
    }
}

/// Rewrites `\b` to the ASCII word boundary (see the module's invariants).
fn ascii_boundaries(re: &str) -> String {
    re.replace(r"\b", r"(?-u:\b)")
}

/// The automaton source and check of a custom entity, after validating it on its own (so a bad
/// regex is reported with `regex`'s message and the entity's name).
fn custom_source(entity: &CustomEntity) -> Result<(String, RuleCheck), DetectError> {
    let name = entity.name.clone();
    match &entity.pattern {
        CustomPattern::Regex { pattern, validator } => {
            let single = regex::Regex::new(pattern).map_err(|e| DetectError::BadRegex {
                name: name.clone(),
                message: e.to_string(),
            })?;
            if single.is_match("") {
                return Err(DetectError::BadRegex {
                    name,
                    message: "matches the empty string".into(),
                });
            }
            Ok((format!("(?:{pattern})"), RuleCheck::Custom(*validator)))
        }
        CustomPattern::Words(words) => {
            let mut words: Vec<&str> = words.iter().map(|w| w.trim()).filter(|w| !w.is_empty()).collect();
            if words.is_empty() {
                return Err(DetectError::EmptyWords { name });
            }
            // Longest first, so "Anna Maria" wins over "Anna" at the same start.
            words.sort_by_key(|w| std::cmp::Reverse(w.len()));
            let alts: Vec<String> = words.iter().map(|w| regex::escape(w)).collect();
            Ok((format!("(?i:{})", alts.join("|")), RuleCheck::Words))
        }
    }
}
