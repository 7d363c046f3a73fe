//! Docker's `filters` query parameter: JSON of filter name to values, in
//! either shape the CLI has sent over the years (`{"label":{"a=b":true}}`,
//! or `{"label":["a=b"]}`).

use std::collections::BTreeMap;

use crate::ApiError;

/// Parsed `filters`: each name with its values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters(BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the `filters` parameter (absent or empty means none), refusing
    /// names not in `known` with Docker's `invalid filter 'x'`.
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Filters, ApiError> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(Filters::default());
        };
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| ApiError::bad_request("invalid filter: not a JSON object"))?;
        let mut filters = BTreeMap::new();
        for (name, values) in object {
            if !known.contains(&name.as_str()) {
                return Err(ApiError::bad_request(format!("invalid filter '{name}'")));
            }
            let values: Vec<String> = match values {
                serde_json::Value::Object(map) => map
                    .iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(false))
                    .map(|(v, _)| v.clone())
                    .collect(),
                serde_json::Value::Array(list) => list
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned).ok_or(()))
                    .collect::<Result<_, _>>()
                    .map_err(|()| {
                        ApiError::bad_request(format!(
                            "invalid filter '{name}': values must be strings"
                        ))
                    })?,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "invalid filter '{name}': values must be a list or a map"
                    )));
                }
            };
            filters.insert(name.clone(), values);
        }
        Ok(Filters(filters))
    }

    /// The values of filter `name` (empty when not given).
    pub fn get(&self, name: &str) -> &[String] {
        self.0.get(name).map(Vec::as_slice).unwrap_or_default()
    }

    /// Adds `value` to filter `name`.
    pub fn add(&mut self, name: &str, value: impl Into<String>) {
        self.0
            .entry(name.to_owned())
            .or_default()
            .push(value.into());
    }

    /// Whether filter `name` was given.
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// A boolean filter (`dangling=true`): `None` when absent, Docker's
    /// error for a value other than true/false/1/0.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        let values = self.get(name);
        let Some(value) = values.first() else {
            return Ok(None);
        };
        match value.to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(ApiError::bad_request(format!(
                "invalid filter '{name}={value}'"
            ))),
        }
    }

    /// Whether `labels` satisfy every `label` value (`key` or `key=value`).
    pub fn labels_match(&self, labels: &BTreeMap<String, String>) -> bool {
        self.get("label")
            .iter()
            .all(|want| match want.split_once('=') {
                Some((key, value)) => labels.get(key).is_some_and(|v| v == value),
                None => labels.contains_key(want.as_str()),
            })
    }
}

/// Go's `path.Match`: `*` is any run of characters but `/`, `?` one such
/// character, `[…]` a class (with `^` negation and ranges), `\` escapes.
/// A malformed pattern matches nothing.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    fn class(p: &[char], c: char) -> Option<(bool, usize)> {
        // p starts after '['; returns (matched, length consumed incl. ']').
        let mut i = 0;
        let negate = p.first() == Some(&'^');
        if negate {
            i += 1;
        }
        let mut matched = false;
        let mut first = true;
        loop {
            let lo = *p.get(i)?;
            if lo == ']' && !first {
                i += 1;
                break;
            }
            first = false;
            let lo = if lo == '\\' {
                i += 1;
                *p.get(i)?
            } else {
                lo
            };
            i += 1;
            let mut hi = lo;
            if p.get(i) == Some(&'-') && p.get(i + 1).is_some_and(|c| *c != ']') {
                hi = *p.get(i + 1)?;
                if hi == '\\' {
                    hi = *p.get(i + 2)?;
                    i += 1;
                }
                i += 2;
            }
            if lo <= c && c <= hi {
                matched = true;
            }
        }
        Some((matched != negate, i))
    }
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len())
                .take_while(|&k| k == 0 || n[k - 1] != '/')
                .any(|k| go(&p[1..], &n[k..])),
            Some('?') => n.first().is_some_and(|c| *c != '/') && go(&p[1..], &n[1..]),
            Some('[') => match n.first() {
                Some(&c) if c != '/' => match class(&p[1..], c) {
                    Some((true, used)) => go(&p[1 + used..], &n[1..]),
                    _ => false,
                },
                _ => false,
            },
            Some('\\') => p.get(1).is_some_and(|e| n.first() == Some(e)) && go(&p[2..], &n[1..]),
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_in_both_the_map_and_the_list_shape() {
        let map =
            Filters::parse(Some(r#"{"label":{"a=b":true,"c":false}}"#), &["label"]).expect("ok");
        assert_eq!(map.get("label"), ["a=b"]);
        let list = Filters::parse(Some(r#"{"label":["a=b"]}"#), &["label"]).expect("ok");
        assert_eq!(list, map);
        assert!(Filters::parse(None, &[]).expect("ok").get("x").is_empty());
    }

    #[test]
    fn an_unknown_filter_is_refused_with_dockers_words() {
        let e = Filters::parse(Some(r#"{"colour":["red"]}"#), &["label"]).expect_err("refused");
        assert_eq!(e.message(), "invalid filter 'colour'");
        assert!(Filters::parse(Some("nope"), &["label"]).is_err());
    }

    #[test]
    fn globs_match_like_gos_path_match() {
        assert!(glob_match("busy*", "busybox"));
        assert!(glob_match("busybox:*", "busybox:latest"));
        assert!(!glob_match("*", "127.0.0.1:5000/app"));
        assert!(glob_match("*/app", "127.0.0.1:5000/app"));
        assert!(glob_match("b?sybox", "busybox"));
        assert!(glob_match("[a-c]usybox", "busybox"));
        assert!(!glob_match("[^a-c]usybox", "busybox"));
        assert!(!glob_match("[a-c", "a"));
    }

    #[test]
    fn labels_match_by_key_or_by_key_and_value() {
        let f = Filters::parse(Some(r#"{"label":["a","b=2"]}"#), &["label"]).expect("ok");
        let labels: BTreeMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        assert!(f.labels_match(&labels));
        let other: BTreeMap<String, String> = [("a".into(), "1".into())].into();
        assert!(!f.labels_match(&other));
    }
}
