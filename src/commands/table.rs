//! The table `sdc-docker get` prints by default, kubectl style: NAME, a
//! column or two that matter for the kind, GENERATION and AGE; values that
//! do not decode are rows marked `<invalid>`, their errors listed below.

use sdc_docker_api::admin::wire::ObjectList;
use sdc_docker_store::Kind;
use serde_json::Value;
use time::OffsetDateTime;

use super::object_ref;

/// The columns shown for a kind, between NAME and GENERATION: a header and
/// the JSON pointer of the value in the object.
fn columns(kind: Kind) -> &'static [(&'static str, &'static str)] {
    match kind {
        Kind::Container => &[
            ("IMAGE", "/spec/image"),
            ("DESIRED", "/spec/desiredState"),
            ("STATE", "/status/state"),
        ],
        Kind::Image => &[("TAGS", "/spec/repoTags"), ("SIZE", "/spec/size")],
        Kind::Network => &[("DRIVER", "/spec/driver"), ("SUBNET", "/spec/subnet")],
        Kind::Volume => &[("DRIVER", "/spec/driver"), ("STATE", "/status/state")],
        Kind::Node => &[("HOSTNAME", "/spec/hostname"), ("DRIVER", "/spec/driver")],
        Kind::Package => &[
            ("MEMORY (MiB)", "/spec/memoryMib"),
            ("ACTIVE", "/spec/active"),
        ],
    }
}

/// A cell: strings as they are, lists joined with commas, absent as `-`.
fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) if s.is_empty() => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) if items.is_empty() => "-".to_string(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| cell(Some(i)))
            .collect::<Vec<_>>()
            .join(","),
        Some(other) => other.to_string(),
    }
}

/// How long ago, the way kubectl says it: `42s`, `5m`, `3h`, `12d`, `2y`.
pub fn age(since: OffsetDateTime, now: OffsetDateTime) -> String {
    let secs = (now - since).whole_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 730 * 86400 => format!("{}d", s / 86400),
        s => format!("{}y", s / (365 * 86400)),
    }
}

fn age_of(object: &Value, now: OffsetDateTime) -> String {
    object
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
        .map_or_else(|| "-".to_string(), |t| age(t, now))
}

/// The table of `list` (restricted to `only` when given), and the lines
/// describing its invalid values.
pub fn render(
    kind: Kind,
    list: &ObjectList,
    only: Option<&str>,
    now: OffsetDateTime,
) -> (String, Vec<String>) {
    let extra = columns(kind);
    let mut header = vec!["NAME".to_string()];
    header.extend(extra.iter().map(|(h, _)| h.to_string()));
    header.extend(["GENERATION".to_string(), "AGE".to_string()]);

    let wanted = |name: &str| only.is_none_or(|o| o == name);
    let mut rows: Vec<Vec<String>> = Vec::new();
    for object in &list.items {
        let name = cell(object.pointer("/metadata/name"));
        if !wanted(&name) {
            continue;
        }
        let mut row = vec![name];
        row.extend(
            extra
                .iter()
                .map(|(_, pointer)| cell(object.pointer(pointer))),
        );
        row.push(cell(object.pointer("/metadata/generation")));
        row.push(age_of(object, now));
        rows.push(row);
    }
    let mut errors = Vec::new();
    for bad in list.invalid.iter().filter(|b| wanted(&b.name)) {
        let mut row = vec![bad.name.clone(), "<invalid>".to_string()];
        row.extend(std::iter::repeat_n("-".to_string(), extra.len()));
        // AGE of a value we cannot read is unknown.
        row.push("-".to_string());
        rows.push(row);
        errors.push(format!(
            "{} does not decode: {}",
            object_ref(kind, &bad.name),
            bad.error
        ));
    }
    rows.sort_by(|a, b| a[0].cmp(&b[0]));

    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows.iter()) {
        let last = row.len() - 1;
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   "));
            }
        }
        out.push('\n');
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sdc_docker_api::admin::wire::InvalidObject;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn ages_read_like_kubectl() {
        let now = datetime!(2025-01-10 12:00:00 UTC);
        assert_eq!(age(datetime!(2025-01-10 11:59:18 UTC), now), "42s");
        assert_eq!(age(datetime!(2025-01-10 11:00:00 UTC), now), "60m");
        assert_eq!(age(datetime!(2025-01-10 00:00:00 UTC), now), "12h");
        assert_eq!(age(datetime!(2025-01-01 12:00:00 UTC), now), "9d");
    }

    #[test]
    fn the_table_aligns_columns_and_marks_invalid_rows() {
        let now = datetime!(2025-01-10 12:00:00 UTC);
        let list = ObjectList {
            kind: "Container".into(),
            account: "default".into(),
            resource_version: 9,
            items: vec![json!({
                "metadata": {"name": "web", "generation": 2, "creationTimestamp": "2025-01-10T11:59:00Z"},
                "spec": {"image": "nginx", "desiredState": "running"},
                "status": {"state": "created"}
            })],
            invalid: vec![InvalidObject {
                name: "bad".into(),
                account: "default".into(),
                key: "/sdc-docker/v1/containers/default/bad".into(),
                resource_version: 8,
                error: "invalid type at line 1 column 9".into(),
                raw: "{}".into(),
            }],
        };
        let (table, errors) = render(Kind::Container, &list, None, now);
        assert_eq!(
            table,
            "NAME   IMAGE       DESIRED   STATE     GENERATION   AGE\n\
             bad    <invalid>   -         -         -            -\n\
             web    nginx       running   created   2            60s\n"
        );
        assert_eq!(
            errors,
            vec!["container/bad does not decode: invalid type at line 1 column 9"]
        );
    }
}
