//! Diagnostics: errors and warnings that name the file, the document and the field.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
}

/// One finding, printed as `origin: document N: field.path: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub level: Level,
    pub origin: String,
    /// 1-based document number within the file.
    pub document: usize,
    /// Dotted field path, e.g. `spec.file.matchDirectories[0].dir`; empty for the whole document.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}: ", self.origin, self.document)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Collects diagnostics for one document at a time.
#[derive(Debug)]
pub(crate) struct Diagnostics {
    origin: String,
    document: usize,
    pub(crate) items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn new(origin: &str) -> Self {
        Self {
            origin: origin.to_string(),
            document: 1,
            items: Vec::new(),
        }
    }

    pub(crate) fn set_document(&mut self, n: usize) {
        self.document = n;
    }

    fn push(&mut self, level: Level, field: impl Into<String>, message: impl Into<String>) {
        self.items.push(Diagnostic {
            level,
            origin: self.origin.clone(),
            document: self.document,
            field: field.into(),
            message: message.into(),
        });
    }

    pub(crate) fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(Level::Error, field, message);
    }

    pub(crate) fn warn(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.push(Level::Warning, field, message);
    }

    pub(crate) fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.level == Level::Error)
            .count()
    }
}
