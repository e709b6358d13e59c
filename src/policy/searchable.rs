//! Searchable fields in the URL: query parameters and path segments that a
//! route seals deterministically, so `GET /users?email=…` reaches the
//! upstream with the same envelope the body field `$.email` was stored as.
//!
//! Written in a route as `query_params = ["email"]` and
//! `path_params = ["ssn"]`; each entry is `name` (the field label is the
//! name: it matches a top-level body field of that name) or `name=label`
//! (the label of a nested field, e.g. `"email=contact.email"` for
//! `$.contact.email`).

use super::template::PathTemplate;

/// One parameter to seal: its name in the URL and the field label it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchParam {
    /// Query parameter name, or `{param}` name of the path template.
    pub name: String,
    /// The field label the AAD binds (as [`super::label_of`] makes it).
    pub label: String,
}

/// The URL parameters a route seals deterministically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Searchable {
    /// Query parameters.
    pub query: Vec<SearchParam>,
    /// Path template parameters.
    pub path: Vec<SearchParam>,
}

impl Searchable {
    /// True when no URL parameter is sealed.
    pub fn is_empty(&self) -> bool {
        self.query.is_empty() && self.path.is_empty()
    }
}

/// Parses one list; pushes `(field, message)` for each problem.
fn parse_list(
    field: &str,
    list: &[String],
    path: Option<&PathTemplate>,
    bad: &mut dyn FnMut(&str, String),
) -> Vec<SearchParam> {
    let mut out: Vec<SearchParam> = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let at = format!("{field}[{i}]");
        let (name, label) = match entry.split_once('=') {
            Some((n, l)) => (n.trim(), l.trim()),
            None => (entry.trim(), entry.trim()),
        };
        if name.is_empty() || label.is_empty() {
            bad(
                &at,
                format!("'{entry}': write 'name' or 'name=field.label'"),
            );
            continue;
        }
        if label.starts_with('$') {
            bad(
                &at,
                format!("'{entry}': the label is member names joined by '.', not a JSONPath"),
            );
            continue;
        }
        if let Some(p) = path {
            if !p.params().any(|n| n == name) {
                bad(
                    &at,
                    format!("'{name}' is not a {{param}} of the path '{}'", p.as_str()),
                );
                continue;
            }
        }
        if out.iter().any(|o| o.name == name) {
            bad(&at, format!("'{name}' is listed twice"));
            continue;
        }
        out.push(SearchParam {
            name: name.to_owned(),
            label: label.to_owned(),
        });
    }
    out
}

/// Validates a route's `query_params` and `path_params`.
pub(crate) fn parse(
    query: Option<&[String]>,
    path_params: Option<&[String]>,
    path: Option<&PathTemplate>,
    bad: &mut dyn FnMut(&str, String),
) -> Searchable {
    let query = query.map_or_else(Vec::new, |l| parse_list("query_params", l, None, bad));
    let path = match (path_params, path) {
        (Some(l), Some(p)) => parse_list("path_params", l, Some(p), bad),
        _ => Vec::new(),
    };
    Searchable { query, path }
}

#[cfg(test)]
mod tests {
    use crate::policy::PolicySet;

    fn load(extra: &str) -> Result<PolicySet, String> {
        let text = format!("[[route]]\nname = \"r\"\npath = \"/p/{{ssn}}\"\nkey = \"k\"\n{extra}");
        PolicySet::from_sources(&[("f.toml".into(), text)]).map_err(|e| e.to_string())
    }

    #[test]
    fn params_and_deterministic_are_validated() {
        let set = load("query_params = [\"email\", \"mail=contact.email\"]\npath_params = [\"ssn\"]\nrequest.deterministic = [\"$.email\"]\n").unwrap();
        let r = &set.routes()[0];
        assert_eq!(r.searchable.query[1].name, "mail");
        assert_eq!(r.searchable.query[1].label, "contact.email");
        assert_eq!(r.searchable.path[0].label, "ssn");
        assert!(!r.request.is_empty() && r.request.seals());

        let e = load("path_params = [\"id\"]\n").unwrap_err();
        assert!(
            e.contains("path_params[0]") && e.contains("not a {param}"),
            "{e}"
        );
        let e = load("query_params = [\"a\", \"a\"]\n").unwrap_err();
        assert!(e.contains("listed twice"), "{e}");
        let e = load("query_params = [\"a=$.a\"]\n").unwrap_err();
        assert!(e.contains("not a JSONPath"), "{e}");
        let e =
            load("request.deterministic = [\"$.a\"]\nrequest.encrypt = [\"$.a\"]\n").unwrap_err();
        assert!(e.contains("request.deterministic"), "{e}");
    }
}
