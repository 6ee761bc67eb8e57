//! (stub until the detector lands: the API only)
use super::entity::{Catalog, Class, Finding};

pub enum Validator {
    None,
    Luhn,
    Mod97,
}
pub enum CustomPattern {
    Regex { pattern: String, validator: Validator },
    Words(Vec<String>),
}
pub struct CustomEntity {
    pub name: String,
    pub class: Class,
    pub pattern: CustomPattern,
}
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("{0}")]
    Bad(String),
}
pub struct Detector {
    catalog: Catalog,
    email: regex::Regex,
}
impl Detector {
    pub fn builtin() -> Detector {
        Self::new(&[], &[]).unwrap_or_else(|_| unreachable!())
    }
    pub fn new(custom: &[CustomEntity], external: &[&str]) -> Result<Detector, DetectError> {
        let mut catalog = Catalog::default();
        catalog.add("EMAIL", Class::Pii);
        catalog.add("API_KEY", Class::Secret);
        for c in custom {
            catalog.add(&c.name, c.class);
        }
        for e in external {
            catalog.add(e, Class::Pii);
        }
        Ok(Detector {
            catalog,
            email: regex::Regex::new(r"[a-z0-9.]+@[a-z0-9.]+\.[a-z]+").map_err(|e| DetectError::Bad(e.to_string()))?,
        })
    }
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }
    pub fn scan(&self, text: &str, out: &mut Vec<Finding>) {
        for m in self.email.find_iter(text) {
            out.push(Finding {
                kind: super::entity::Kind(0),
                start: m.start(),
                end: m.end(),
            });
        }
    }
}
