//! One rule of the injection scorer and its constructors, shared by the English table (`rules`)
//! and the other languages' (`rules_intl`), so neither table imports the other's.

use super::Family;

/// How much a rule's weight rises when the text is a tool result, unless the rule says otherwise.
pub(super) const TOOL_LIFT: f32 = 0.10;

pub(super) struct Rule {
    pub family: Family,
    pub user: f32,
    pub tool: f32,
    pub pattern: String,
}

pub(super) fn r(family: Family, w: f32, pattern: String) -> Rule {
    Rule {
        family,
        user: w,
        tool: (w + TOOL_LIFT).min(1.0),
        pattern,
    }
}

pub(super) fn rt(family: Family, user: f32, tool: f32, pattern: String) -> Rule {
    Rule {
        family,
        user,
        tool,
        pattern,
    }
}

pub(super) fn s(p: &str) -> String {
    p.to_string()
}
