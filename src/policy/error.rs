//! Errors of policy loading: every problem names the file, and where it can
//! the route and the field, so `sealgate policy check` can point at the line
//! to fix. Loading collects all problems instead of stopping at the first.

use std::fmt;

/// One thing wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in (as given to the loader).
    pub file: String,
    /// The route's name, when the problem is inside one route.
    pub route: Option<String>,
    /// The field (`path`, `request.encrypt[1]`, …), when one field is at fault.
    pub field: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

impl Problem {
    /// A problem about a whole file.
    pub(crate) fn file(file: &str, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_owned(),
            route: None,
            field: None,
            message: message.into(),
        }
    }

    /// A problem about one field of one route.
    pub(crate) fn field(
        file: &str,
        route: &str,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            file: file.to_owned(),
            route: Some(route.to_owned()),
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(route) = &self.route {
            write!(f, ": route '{route}'")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field '{field}'")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Policy files that could not be read or are not valid; holds every problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// The problems, in file order. Never empty.
    pub problems: Vec<Problem>,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.problems.as_slice() {
            [one] => write!(f, "invalid policy: {one}"),
            many => {
                write!(f, "invalid policy ({} problems):", many.len())?;
                for p in many {
                    write!(f, "\n  {p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for PolicyError {}

impl From<Problem> for PolicyError {
    fn from(problem: Problem) -> Self {
        PolicyError {
            problems: vec![problem],
        }
    }
}
