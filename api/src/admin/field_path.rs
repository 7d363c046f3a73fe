//! The path of a field in a document (`spec.portBindings[0].hostIp`), as
//! the errors of [`Document::parse`](super::documents::Document::parse) name
//! it, and finding a key again by its path to say on which line it is.
//!
//! serde_ignored reports a field the target type ignored by its path only,
//! when the parser's position is out of reach; [`FieldPath::seek`] reads the
//! document a second time (only when there is an error to report) and
//! fails at that key, so the parser names its line and column.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, Deserialize, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess};

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
    /// A step the parser failed inside of before knowing it (a key that
    /// does not parse).
    Unknown,
}

/// Where a field is in a document: `spec.portBindings[0].hostIp`, written
/// as serde_path_to_error writes paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldPath(Vec<Step>);

impl From<&serde_path_to_error::Path> for FieldPath {
    /// The path of an error, without the unknown steps it ends with (an
    /// error in a key says `metadata`, not `metadata.?`).
    fn from(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment;
        let mut steps: Vec<Step> = path
            .iter()
            .map(|segment| match segment {
                Segment::Seq { index } => Step::Index(*index),
                Segment::Map { key } | Segment::Enum { variant: key } => Step::Key(key.clone()),
                Segment::Unknown => Step::Unknown,
            })
            .collect();
        while steps.last() == Some(&Step::Unknown) {
            steps.pop();
        }
        FieldPath(steps)
    }
}

impl From<&serde_ignored::Path<'_>> for FieldPath {
    /// The path of a field serde_ignored reports.
    fn from(path: &serde_ignored::Path<'_>) -> Self {
        use serde_ignored::Path;
        let mut steps = Vec::new();
        let mut at = path;
        loop {
            at = match at {
                Path::Root => break,
                Path::Seq { parent, index } => {
                    steps.push(Step::Index(*index));
                    parent
                }
                Path::Map { parent, key } => {
                    steps.push(Step::Key(key.clone()));
                    parent
                }
                // Options and newtypes add no step to the document.
                Path::Some { parent }
                | Path::NewtypeStruct { parent }
                | Path::NewtypeVariant { parent } => parent,
            };
        }
        steps.reverse();
        FieldPath(steps)
    }
}

impl FieldPath {
    /// The path of the document itself.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The top-level key the path starts with.
    pub fn first_key(&self) -> Option<&str> {
        match self.0.first() {
            Some(Step::Key(key)) => Some(key),
            _ => None,
        }
    }

    /// Read a document down this path and fail just after reading its last
    /// key, so that the parser's error says where that key is (see
    /// [`position`]). Succeeds, or fails otherwise, when the path is not
    /// there.
    pub fn seek<'de, D: Deserializer<'de>>(&self, deserializer: D) -> Result<(), D::Error> {
        FindKey(&self.0).deserialize(deserializer)
    }
}

/// Where the key [`FieldPath::seek`] stopped at is (` at line 6, column 3`),
/// from the parser's error; `None` for any other error.
pub fn position(error: &str) -> Option<&str> {
    error
        .strip_prefix(FOUND)
        .filter(|at| at.starts_with(" at "))
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            let name = match step {
                Step::Index(index) => {
                    write!(f, "[{index}]")?;
                    continue;
                }
                Step::Key(key) => key.as_str(),
                Step::Unknown => "?",
            };
            if i > 0 {
                f.write_str(".")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

/// The message [`FindKey`] fails with when it reaches its key; the parser
/// appends where it was.
const FOUND: &str = "the field sought is here";

/// A mapping key: whether it is `wanted`, or the error [`FindKey`] raises
/// when it is and it is the `last` step. Failing while the key itself is
/// read makes the YAML parser name the key's line and column (not those of
/// its mapping).
#[derive(Clone, Copy)]
struct Key<'a> {
    wanted: &'a str,
    last: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        let key = String::deserialize(deserializer)?;
        match (key == self.wanted, self.last) {
            (true, true) => Err(de::Error::custom(FOUND)),
            (found, _) => Ok(found),
        }
    }
}

/// [`FieldPath::seek`], one step at a time.
struct FindKey<'a>(&'a [Step]);

impl<'de> DeserializeSeed<'de> for FindKey<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> de::Visitor<'de> for FindKey<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((Step::Key(wanted), rest)) = self.0.split_first() else {
            return Ok(());
        };
        let key = Key {
            wanted,
            last: rest.is_empty(),
        };
        while let Some(found) = map.next_key_seed(key)? {
            if found {
                return map.next_value_seed(FindKey(rest));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((Step::Index(wanted), rest)) = self.0.split_first() else {
            return Ok(());
        };
        let mut index = 0;
        while index < *wanted {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
            index += 1;
        }
        seq.next_element_seed(FindKey(rest)).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only its shape matters: which fields it knows.
    #[derive(serde::Deserialize)]
    struct Outer {
        #[serde(default)]
        #[expect(dead_code, reason = "read only to find the fields it ignores")]
        items: Vec<Option<Inner>>,
    }

    #[derive(serde::Deserialize)]
    struct Inner {}

    /// The fields `Outer` ignores in `json`, as paths.
    fn ignored(json: &str) -> Vec<FieldPath> {
        let mut paths = Vec::new();
        let mut de = serde_json::Deserializer::from_str(json);
        let _: Outer = serde_ignored::deserialize(&mut de, |path| {
            paths.push(FieldPath::from(&path));
        })
        .expect("decodes");
        paths
    }

    /// Where `path` is in `json`, as `seek` finds it.
    fn seek(json: &str, path: &FieldPath) -> Option<String> {
        let error = path
            .seek(&mut serde_json::Deserializer::from_str(json))
            .err()?
            .to_string();
        position(&error).map(str::to_string)
    }

    #[test]
    fn an_ignored_field_inside_an_option_in_a_list_is_written_with_its_index() {
        let json = "{\"items\": [null,\n {\"x\": 1}], \"extra\": true}";
        let paths = ignored(json);
        let written: Vec<String> = paths.iter().map(ToString::to_string).collect();
        assert_eq!(written, ["items[1].x", "extra"]);
        assert_eq!(
            seek(json, &paths[0]).as_deref(),
            Some(" at line 2 column 5")
        );
        assert_eq!(paths[1].first_key(), Some("extra"));
    }

    #[test]
    fn seeking_a_path_that_is_not_there_finds_no_position() {
        let paths = ignored("{\"extra\": true}");
        assert_eq!(seek("{\"other\": true}", &paths[0]), None);
        assert_eq!(seek("[1, 2]", &paths[0]), None);
    }
}
