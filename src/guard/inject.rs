//! (stub until the scorer lands: the API only)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    User,
    Tool,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    InstructionOverride,
}
impl Family {
    pub fn as_str(self) -> &'static str {
        "instruction_override"
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Verdict {
    pub score: f32,
    pub family: Option<Family>,
}
impl Verdict {
    pub fn max(self, other: Verdict) -> Verdict {
        if other.score > self.score {
            other
        } else {
            self
        }
    }
}
#[derive(Default)]
pub struct Scorer;
impl Scorer {
    pub fn new() -> Scorer {
        Scorer
    }
    pub fn score(&self, text: &str, _source: Source) -> Verdict {
        if text.to_lowercase().contains("ignore previous instructions") {
            Verdict {
                score: 0.9,
                family: Some(Family::InstructionOverride),
            }
        } else {
            Verdict::default()
        }
    }
}
pub const DEFAULT_THRESHOLD: f32 = 0.5;
