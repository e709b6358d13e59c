//! HTML pieces: escaping, the page frame, tables and the inline SVG plots.
//! PURE: strings in, strings out; every text that did not come from this
//! file goes through [`esc`].

use std::fmt::Write as _;

/// The console's pages, in the order of the navigation.
pub(crate) const PAGES: [(&str, &str); 4] = [
    ("/routes", "Routes"),
    ("/findings", "Shadow findings"),
    ("/keys", "Keys"),
    ("/audit", "Audit"),
];

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: the head (stylesheet only, no script), a skip link, the
/// navigation with `current` marked, the log-out form (when `csrf` is
/// given: the visitor is logged in) and `body` as the main content.
pub(crate) fn page(title: &str, current: &str, csrf: Option<&str>, body: &str) -> String {
    let mut nav = String::new();
    if csrf.is_some() {
        nav.push_str("<nav aria-label=\"Console\"><ul>");
        for (href, name) in PAGES {
            let here = if href == current {
                " aria-current=\"page\""
            } else {
                ""
            };
            let _ = write!(nav, "<li><a href=\"{href}\"{here}>{name}</a></li>");
        }
        nav.push_str("</ul></nav>");
    }
    let logout = match csrf {
        Some(token) => format!(
            "<form method=\"post\" action=\"/logout\" class=\"logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form>",
            esc(token)
        ),
        None => String::new(),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · sealgate console</title>\
         <link rel=\"stylesheet\" href=\"/static/console.css\"></head>\
         <body><a class=\"skip\" href=\"#main\">Skip to content</a>\
         <header><span class=\"brand\">sealgate console</span>{nav}{logout}</header>\
         <main id=\"main\"><h1>{title}</h1>\n{body}</main></body></html>\n",
        title = esc(title),
    )
}

/// A table with a caption, header cells and rows of already-escaped cells.
pub(crate) fn table(caption: &str, head: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("<table><caption>{}</caption><thead><tr>", esc(caption));
    for h in head {
        let _ = write!(out, "<th scope=\"col\">{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A time as `YYYY-MM-DD HH:MM:SS UTC` (unix seconds in).
pub(crate) fn time(unix: u64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(0)) else {
        return unix.to_string();
    };
    let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.format(f).unwrap_or_else(|_| unix.to_string())
}

/// Width and height of a plot, in SVG user units.
const PLOT_W: f64 = 240.0;
const PLOT_H: f64 = 40.0;

/// A small line plot of `points` (one value per sample interval, oldest
/// first) as inline SVG, with an accessible name saying what it shows.
/// Presentation attributes only: no `style`, so the strict CSP holds.
pub(crate) fn sparkline(what: &str, points: &[u64]) -> String {
    let max = points.iter().copied().max().unwrap_or(0);
    let total: u64 = points.iter().sum();
    let label = format!(
        "{what}: {total} in the last {} samples, at most {max} in one",
        points.len()
    );
    if points.len() < 2 {
        return format!(
            "<span class=\"plot-empty\">{}</span>",
            esc("collecting samples…")
        );
    }
    let step = PLOT_W / (points.len() - 1) as f64;
    let scale = if max == 0 {
        0.0
    } else {
        (PLOT_H - 4.0) / max as f64
    };
    let mut line = String::new();
    for (i, v) in points.iter().enumerate() {
        let x = i as f64 * step;
        let y = PLOT_H - 2.0 - *v as f64 * scale;
        let _ = write!(line, "{x:.1},{y:.1} ");
    }
    format!(
        "<svg class=\"plot\" role=\"img\" aria-label=\"{label}\" viewBox=\"0 0 {PLOT_W} {PLOT_H}\" \
         width=\"{PLOT_W}\" height=\"{PLOT_H}\" xmlns=\"http://www.w3.org/2000/svg\">\
         <title>{label}</title>\
         <line x1=\"0\" y1=\"{base}\" x2=\"{PLOT_W}\" y2=\"{base}\" stroke=\"#c8ccd2\" stroke-width=\"1\"/>\
         <polyline fill=\"none\" stroke=\"#1f5fbf\" stroke-width=\"1.5\" points=\"{pts}\"/></svg>",
        label = esc(&label),
        base = PLOT_H - 2.0,
        pts = line.trim_end(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_page_has_no_script_and_no_inline_style() {
        let p = page("Routes", "/routes", Some("tok"), "<p>x</p>");
        assert!(!p.contains("<script") && !p.contains("style="), "{p}");
        assert!(p.contains("aria-current=\"page\""));
        let plot = sparkline("sealed", &[0, 3, 1]);
        assert!(
            plot.starts_with("<svg") && !plot.contains("style="),
            "{plot}"
        );
        assert!(plot.contains("4 in the last 3 samples, at most 3"));
        assert!(sparkline("sealed", &[1]).contains("collecting"));
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(time(0), "1970-01-01 00:00:00 UTC");
    }
}
