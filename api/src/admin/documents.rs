//! Splitting an operator's file into documents, each parsed with errors
//! located in the whole file.
//!
//! A file is JSON when it starts with `{` or `[` (one object, several
//! objects one after another, or an array of objects) and YAML otherwise
//! (documents separated by `---` lines). Each document is handed to the
//! parser (serde_json, or serde-saphyr for YAML) as a text of its own in
//! which everything before it is blanked out but the newlines are kept, so
//! the line and column an error names are those of the whole file.
//!
//! A document comes from a person, so [`Document::parse`] is strict where
//! the store is tolerant: a field the target type does not know (a typo,
//! `spec.imgae`) is an error naming it, where the store drops such fields
//! for the sake of newer instances. Errors name the path of the field
//! (`spec.memory: invalid i64 at line 6, column 11`).
//!
//! Limits: a `---` inside a block scalar indented at column 0 is taken as a
//! separator (YAML forbids it there anyway); `%` directives are ignored;
//! top-level flow-style YAML (`{kind: Container, …}`) is read as JSON and
//! fails as such.

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::field_path::{self, FieldPath};

/// How a document is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON, parsed by serde_json.
    Json,
    /// YAML, parsed by serde-saphyr.
    Yaml,
}

/// One document of a file.
#[derive(Clone, Debug)]
pub struct Document {
    /// Its position among the file's non-empty documents, from 1.
    pub index: usize,
    /// The line of the file it starts on, from 1.
    pub line: usize,
    format: Format,
    /// The document, preceded by blank lines and spaces standing for
    /// everything before it in the file.
    text: String,
}

/// A document that could not be read, located in the file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("document {index} (line {line}): {message}")]
pub struct DocumentError {
    /// Which document, from 1.
    pub index: usize,
    /// The line it starts on.
    pub line: usize,
    /// What is wrong, with the line and column in the file when known.
    pub message: String,
}

/// The part of a document read before its kind is known.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Head {
    /// `sdc-docker/v1`, when given.
    #[serde(default)]
    pub api_version: Option<String>,
    /// `Container`, `container`, `containers`, …
    #[serde(default)]
    pub kind: String,
    /// Name and account.
    #[serde(default)]
    pub metadata: HeadMetadata,
}

/// The identifying part of a document's metadata.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct HeadMetadata {
    /// The object's name.
    #[serde(default)]
    pub name: String,
    /// The account, when the document names one.
    #[serde(default)]
    pub account: Option<String>,
}

impl Document {
    /// How it is written.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Read the document's [`Head`] (`None` when the document is empty),
    /// ignoring every other field: those are checked when the document is
    /// parsed as its kind.
    pub fn head(&self) -> Result<Option<Head>, DocumentError> {
        self.deserialize().map(|(head, _)| head)
    }

    /// Parse the document as `T`. A field `T` does not know is an error
    /// naming it, except under a top-level `status`: that is what
    /// controllers observed, shown by `sdc-docker get -o yaml` (perhaps by a
    /// newer instance that knows more of it) and never taken from a
    /// document by a replace. Errors name the path of the field and the line
    /// and column in the whole file.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, DocumentError> {
        let (value, unknown) = self.deserialize()?;
        let unknown: Vec<String> = unknown
            .iter()
            .filter(|path| path.first_key() != Some(UNCHECKED))
            .map(|path| self.locate(path))
            .collect();
        if unknown.is_empty() {
            Ok(value)
        } else {
            Err(self.error(unknown.join("; ")))
        }
    }

    /// Deserialize the document as `T`, with the paths of the fields `T`
    /// ignored.
    fn deserialize<T: DeserializeOwned>(&self) -> Result<(T, Vec<FieldPath>), DocumentError> {
        let mut unknown = Vec::new();
        let mut record = |path: serde_ignored::Path| unknown.push(FieldPath::from(&path));
        let mut track = serde_path_to_error::Track::new();
        let result = match self.format {
            Format::Json => {
                let mut de = serde_json::Deserializer::from_str(&self.text);
                let tracked = serde_path_to_error::Deserializer::new(&mut de, &mut track);
                T::deserialize(serde_ignored::Deserializer::new(tracked, &mut record))
                    .and_then(|value| de.end().map(|()| value))
                    .map_err(|e| e.to_string())
            }
            Format::Yaml => serde_saphyr::with_deserializer_from_str(&self.text, |de| {
                let tracked = serde_path_to_error::Deserializer::new(de, &mut track);
                T::deserialize(serde_ignored::Deserializer::new(tracked, &mut record))
            })
            .map_err(|e| e.without_snippet().to_string()),
        };
        match result {
            Ok(value) => Ok((value, unknown)),
            Err(message) => {
                let path = FieldPath::from(&track.path());
                if path.is_empty() {
                    Err(self.error(message))
                } else {
                    Err(self.error(format!("{path}: {message}")))
                }
            }
        }
    }

    /// `unknown field PATH`, with the line and column of its key when the
    /// parser finds it again.
    fn locate(&self, path: &FieldPath) -> String {
        let sought = match self.format {
            Format::Json => path
                .seek(&mut serde_json::Deserializer::from_str(&self.text))
                .map_err(|e| e.to_string()),
            Format::Yaml => {
                serde_saphyr::with_deserializer_from_str(&self.text, |de| path.seek(de))
                    .map_err(|e| e.without_snippet().to_string())
            }
        };
        match sought.err().as_deref().and_then(field_path::position) {
            Some(at) => format!("unknown field {path}{at}"),
            None => format!("unknown field {path}"),
        }
    }

    /// An error about this document.
    pub fn error(&self, message: impl Into<String>) -> DocumentError {
        DocumentError {
            index: self.index,
            line: self.line,
            message: message.into(),
        }
    }
}

/// The top-level field whose unknown fields [`Document::parse`] lets pass.
const UNCHECKED: &str = "status";

/// Split `text` into its non-empty documents.
pub fn split(text: &str) -> Result<Vec<Document>, DocumentError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.trim_start().chars().next();
    if matches!(first, Some('{') | Some('[')) {
        split_json(text)
    } else {
        Ok(split_yaml(text))
    }
}

fn split_json(text: &str) -> Result<Vec<Document>, DocumentError> {
    let mut documents = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<&RawValue>();
    for item in stream {
        let raw = item.map_err(|e| DocumentError {
            index: documents.len() + 1,
            line: e.line(),
            message: e.to_string(),
        })?;
        if raw.get().starts_with('[') {
            let elements: Vec<&RawValue> =
                serde_json::from_str(raw.get()).map_err(|e| DocumentError {
                    index: documents.len() + 1,
                    line: e.line(),
                    message: e.to_string(),
                })?;
            for element in elements {
                documents.push(json_document(text, element.get(), documents.len() + 1));
            }
        } else {
            documents.push(json_document(text, raw.get(), documents.len() + 1));
        }
    }
    Ok(documents)
}

/// A JSON document found at `part`, a slice of `text`.
fn json_document(text: &str, part: &str, index: usize) -> Document {
    // `part` borrows from `text`, so its offset is the distance between them.
    let offset = (part.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
    let before = text.get(..offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |i| i + 1);
    let mut positioned = String::with_capacity(line + column + part.len());
    positioned.extend(std::iter::repeat_n('\n', line - 1));
    positioned.extend(std::iter::repeat_n(' ', column));
    positioned.push_str(part);
    Document {
        index,
        line,
        format: Format::Json,
        text: positioned,
    }
}

/// Whether a line is a `---` document marker (possibly followed by content).
fn is_document_marker(line: &str) -> bool {
    line.strip_prefix("---")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
}

/// Whether a line is a `...` document end marker.
fn is_document_end(line: &str) -> bool {
    line.strip_prefix("...")
        .is_some_and(|rest| rest.trim().is_empty())
}

/// Whether a line carries content (not blank, not a comment, not a directive).
fn is_content(line: &str) -> bool {
    let t = line.trim();
    !t.is_empty() && !t.starts_with('#') && !t.starts_with('%')
}

fn split_yaml(text: &str) -> Vec<Document> {
    let mut documents = Vec::new();
    // The document being gathered: its text (with blank lines standing for
    // the lines before it) and the line of its first content.
    let mut current = String::new();
    let mut first_content: Option<usize> = None;
    let mut finish = |current: &mut String, first_content: &mut Option<usize>| {
        if let Some(line) = first_content.take() {
            documents.push(Document {
                index: documents.len() + 1,
                line,
                format: Format::Yaml,
                text: std::mem::take(current),
            });
        }
        current.clear();
    };
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let number = i + 1;
        if is_document_marker(line) || is_document_end(line) {
            finish(&mut current, &mut first_content);
            current.extend(std::iter::repeat_n('\n', number - 1));
            if is_document_marker(line) {
                // Content on the marker line (`--- {a: 1}`) stays in place.
                let rest = &line[3..];
                current.push_str("   ");
                current.push_str(rest);
                if is_content(rest) {
                    first_content = Some(number);
                }
            } else {
                current.push('\n');
            }
            if !current.ends_with('\n') {
                current.push('\n');
            }
            continue;
        }
        if first_content.is_none() && is_content(line) {
            first_content = Some(number);
        }
        current.push_str(line);
    }
    finish(&mut current, &mut first_content);
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Small {
        kind: String,
        count: i64,
    }

    #[test]
    fn yaml_documents_are_split_on_markers_and_blank_ones_dropped() {
        let text = "# leading comment\n---\nkind: A\ncount: 1\n---\n# nothing here\n---\n\nkind: B\ncount: 2\n...\n";
        let docs = split(text).expect("split");
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].index, docs[0].line), (1, 3));
        assert_eq!((docs[1].index, docs[1].line), (2, 9));
        assert_eq!(
            docs[1].parse::<Small>(),
            Ok(Small {
                kind: "B".into(),
                count: 2
            })
        );
    }

    #[test]
    fn a_yaml_error_names_the_line_and_column_in_the_whole_file() {
        let text = "kind: A\ncount: 1\n---\nkind: B\ncount: lots\n";
        let docs = split(text).expect("split");
        let err = docs[1].parse::<Small>().expect_err("count is not a number");
        assert_eq!((err.index, err.line), (2, 4));
        assert!(err.message.contains("line 5"), "{err}");
        assert!(err.message.contains("column 8"), "{err}");
        assert!(
            err.to_string().starts_with("document 2 (line 4): "),
            "{err}"
        );
    }

    #[test]
    fn a_yaml_syntax_error_is_located_too() {
        let docs = split("kind: A\ncount: 1\n---\nkind: [B\ncount: 2\n").expect("split");
        let err = docs[1]
            .parse::<Small>()
            .expect_err("unclosed flow sequence");
        assert!(
            err.message.contains("line 5") || err.message.contains("line 4"),
            "{err}"
        );
    }

    #[test]
    fn content_on_the_marker_line_belongs_to_the_document() {
        let docs = split("--- {kind: A, count: 3}\n").expect("split");
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].parse::<Small>().map(|s| s.count), Ok(3));
    }

    #[test]
    fn json_objects_one_after_another_or_in_an_array_are_documents() {
        let docs = split("{\"kind\": \"A\", \"count\": 1}\n{\"kind\": \"B\", \"count\": 2}")
            .expect("split");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].line, 2);
        let docs =
            split("[\n {\"kind\": \"A\", \"count\": 1},\n {\"kind\": \"B\", \"count\": \"x\"}\n]")
                .expect("split");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].format(), Format::Json);
        let err = docs[1].parse::<Small>().expect_err("count is a string");
        assert!(err.message.ends_with("line 3 column 27"), "{err}");
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Object {
        kind: String,
        #[serde(default)]
        spec: Spec,
        #[serde(default)]
        status: Spec,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Spec {
        #[serde(default)]
        image: String,
        #[serde(default)]
        ports: Vec<Port>,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Port {
        #[serde(default)]
        number: i64,
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_its_path_in_yaml_and_json() {
        let docs =
            split("kind: A\nspec:\n  ports:\n  - number: 1\n  - number: lots\n").expect("split");
        let err = docs[0].parse::<Object>().expect_err("lots is not a number");
        assert_eq!(
            err.to_string(),
            "document 1 (line 1): spec.ports[1].number: invalid i64 at line 5, column 13"
        );
        let docs = split("{\"kind\": \"A\",\n \"spec\": {\"image\": 42}}").expect("split");
        let err = docs[0].parse::<Object>().expect_err("42 is not a string");
        assert_eq!(
            err.to_string(),
            "document 1 (line 1): spec.image: invalid type: integer `42`, expected a string at line 2 column 21"
        );
    }

    #[test]
    fn a_syntax_error_inside_a_mapping_names_the_mapping() {
        let docs = split("kind: A\nspec: {image: x\n").expect("split");
        let err = docs[0].parse::<Object>().expect_err("unclosed mapping");
        assert!(
            err.message.starts_with("spec: ") && !err.message.contains('?'),
            "{err}"
        );
    }

    #[test]
    fn unknown_fields_are_errors_naming_each_with_its_line_and_column() {
        let text = "kind: A\n---\nkind: B\nspec:\n  image: x\n  imgae: y\n  ports:\n  - number: 1\n    nubmer: 2\n";
        let docs = split(text).expect("split");
        assert!(docs[0].parse::<Object>().is_ok());
        let err = docs[1].parse::<Object>().expect_err("two typos");
        assert_eq!(
            err.to_string(),
            "document 2 (line 3): unknown field spec.imgae at line 6, column 3; unknown field spec.ports[0].nubmer at line 9, column 5"
        );
        let docs = split("{\"kind\": \"A\",\n \"spce\": {}}").expect("split");
        let err = docs[0].parse::<Object>().expect_err("a typo");
        assert_eq!(
            err.to_string(),
            "document 1 (line 1): unknown field spce at line 2 column 7"
        );
    }

    #[test]
    fn unknown_fields_under_status_are_let_pass() {
        let docs =
            split("kind: A\nstatus:\n  image: x\n  observedByANewerVersion: 1\n").expect("split");
        let parsed = docs[0].parse::<Object>().expect("status is not checked");
        assert_eq!(parsed.status.image, "x");
    }

    #[test]
    fn the_head_is_read_whatever_else_the_document_holds() {
        let docs = split(
            "apiVersion: sdc-docker/v1\nkind: Container\nmetadata:\n  name: web\n  uid: u\nspec:\n  imgae: x\n",
        )
        .expect("split");
        let head = docs[0].head().expect("head").expect("not empty");
        assert_eq!(
            (head.kind.as_str(), head.metadata.name.as_str()),
            ("Container", "web")
        );
        assert!(
            split("~\n").expect("split")[0]
                .head()
                .expect("head")
                .is_none()
        );
    }

    #[test]
    fn malformed_json_is_an_error_with_its_position() {
        let err = split("{\"kind\": \"A\",\n \"count\": }").expect_err("no value");
        assert_eq!(err.index, 1);
        assert!(err.message.contains("line 2 column 11"), "{err}");
    }
}
