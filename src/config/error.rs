//! Config errors: each names the file, the line (when known) and the key path.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    /// Dotted key path (`models.demo.targets[0].provider`); empty for whole-file problems.
    pub path: String,
    pub message: String,
}

/// The message of the note that ends a list cut at `parse::MAX_PROBLEMS`.
const MORE_PROBLEMS: &str = "more problems follow: only the first ";

impl ConfigError {
    /// The note that ends a list of the file's first `shown` problems when it has more.
    pub(crate) fn more_problems(file: &std::path::Path, shown: usize) -> ConfigError {
        ConfigError {
            file: file.display().to_string(),
            line: None,
            path: String::new(),
            message: format!("{MORE_PROBLEMS}{shown} are listed; fix them and check again for the rest"),
        }
    }

    /// Whether this is that note rather than a problem.
    pub fn is_more_problems(&self) -> bool {
        self.line.is_none() && self.path.is_empty() && self.message.starts_with(MORE_PROBLEMS)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in one config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors {
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}
