//! (being written) The `vmadm create` payload of a zone spec.
use serde_json::Value;

use crate::spec::ZoneSpec;

/// What goes into every payload besides the spec.
#[derive(Clone, Debug, Default)]
pub struct PayloadOptions {}

/// The `vmadm create` payload.
pub fn vmadm_payload(_spec: &ZoneSpec, _image_uuid: &str, _options: &PayloadOptions) -> Value {
    Value::Null
}
