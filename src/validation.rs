//! The spec-validation controllers: one per kind, cluster-scoped, on the
//! controller runtime. They deal with values written straight into the
//! store (an operator's `etcdctl put`), which bypass the admin API's checks.
//!
//! - A value that is a JSON object but does not decode as its kind gets a
//!   `status.conditions` entry `{type: Invalid, status: "True", reason:
//!   MalformedSpec, message: <decoder error with field, line and column>}`.
//!   The message is computed on the value as it will be stored (the
//!   condition itself shifts columns), so the write is done once and its
//!   echo changes nothing: no loop.
//! - A value that is not a JSON object is logged when it changes (and at
//!   each resync); the admin API's list shows it with its error.
//! - A valid object still carrying that condition (the operator fixed it)
//!   loses it; one lacking `uid`, `creationTimestamp` or `generation` gets
//!   them.
//!
//! The controllers see every change (`every_change`: an `etcdctl put` does
//! not bump `generation`), read the stored value itself (so fields a newer
//! instance wrote are kept), and write with compare-and-swap on the
//! revision read and the leader's fence: a concurrent write always wins
//! and is looked at in turn, and a deposed leader writes nothing.

use sdc_docker_controllers::{
    Action, Context, Controller, Manager, ObjectKey, ReconcileError, reconcile_fn,
};
use sdc_docker_store::model::Condition;
use sdc_docker_store::{
    Decoded, Error as StoreError, KeyValue, Kind, Resource, decode, new_uid, with_kind,
};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// The condition type recorded on a malformed object.
pub const INVALID: &str = "Invalid";

/// The reason recorded with [`INVALID`].
pub const MALFORMED_SPEC: &str = "MalformedSpec";

/// The name of the validation controller of `kind` (and of its election).
pub fn controller_name(kind: Kind) -> String {
    format!("validate-{}", kind.plural())
}

/// Add the validation controller of every kind to `manager`.
pub fn add_controllers(manager: &mut Manager) {
    for kind in Kind::ALL {
        with_kind!(kind, K => {
            manager.add(
                Controller::<K>::new(&controller_name(kind), reconcile_fn(validate::<K>), ())
                    .cluster_scoped()
                    .every_change()
                    .concurrency(4),
            );
        });
    }
}

/// Look at one stored value and repair what needs it.
async fn validate<K: Resource>(
    key: ObjectKey,
    ctx: Context<K, ()>,
) -> Result<Action, ReconcileError> {
    let store = ctx.api().store().clone();
    let Some(kv) = store.get(&key.store_key()).await? else {
        return Ok(Action::AwaitChange);
    };
    let Some(next) = repaired::<K>(&kv) else {
        return Ok(Action::AwaitChange);
    };
    match store
        .update(&kv.key, next, kv.mod_revision, ctx.fence())
        .await
    {
        // Someone wrote since we read: their write triggers us again.
        Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
            Ok(Action::AwaitChange)
        }
        Err(e) => Err(e.into()),
    }
}

/// What `kv` should be instead, or `None` when it is fine (or cannot carry
/// a status).
fn repaired<K: Resource>(kv: &KeyValue) -> Option<Vec<u8>> {
    match decode::<K>(kv) {
        Decoded::Valid(_) => repaired_valid(&kv.value),
        Decoded::Invalid { message, .. } => match serde_json::from_slice::<Value>(&kv.value) {
            Ok(Value::Object(object)) => {
                let next = with_invalid_condition::<K>(kv, object, &message);
                if next.is_some() {
                    tracing::warn!(key = %kv.key, revision = kv.mod_revision, error = %message, "stored value does not decode; recording it on its status");
                }
                next
            }
            _ => {
                tracing::error!(key = %kv.key, revision = kv.mod_revision, error = %message, "stored value is not a JSON object; it cannot carry a status (the admin API lists it with this error)");
                None
            }
        },
    }
}

/// The condition recorded on a malformed value.
fn invalid_condition(message: &str, since: OffsetDateTime) -> Condition {
    Condition {
        type_: INVALID.to_string(),
        status: "True".to_string(),
        reason: MALFORMED_SPEC.to_string(),
        message: message.to_string(),
        last_transition_time: Some(since),
    }
}

/// Whether a condition (as JSON) is our `Invalid` one.
fn is_invalid_condition(condition: &Value) -> bool {
    condition.get("type").and_then(Value::as_str) == Some(INVALID)
}

/// The value with `status.conditions` holding our `Invalid` condition whose
/// message is what the decoder says about that very value; `None` when the
/// stored value already says exactly that.
fn with_invalid_condition<K: Resource>(
    kv: &KeyValue,
    object: Map<String, Value>,
    message: &str,
) -> Option<Vec<u8>> {
    let existing = object
        .get("status")
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| is_invalid_condition(c)).cloned());
    let already = existing.as_ref().is_some_and(|c| {
        c.get("status").and_then(Value::as_str) == Some("True")
            && c.get("reason").and_then(Value::as_str) == Some(MALFORMED_SPEC)
            && c.get("message").and_then(Value::as_str) == Some(message)
    });
    if already {
        return None;
    }
    // Keep the transition time while the condition stays true.
    let since = existing
        .filter(|c| c.get("status").and_then(Value::as_str) == Some("True"))
        .and_then(|c| {
            c.get("lastTransitionTime")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .and_then(|t| {
            OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339).ok()
        })
        .unwrap_or_else(OffsetDateTime::now_utc);
    // Writing the condition moves the columns of errors after it, so find
    // the message that describes the value as it will be stored.
    let mut message = message.to_string();
    let mut bytes = Vec::new();
    for _ in 0..4 {
        bytes = serde_json::to_vec(&put_condition(
            object.clone(),
            invalid_condition(&message, since),
        ))
        .ok()?;
        let probe = KeyValue {
            value: bytes.clone(),
            ..kv.clone()
        };
        match decode::<K>(&probe) {
            Decoded::Invalid { message: now, .. } if now != message => message = now,
            _ => break,
        }
    }
    Some(bytes)
}

/// Put `condition` into `status.conditions`, replacing another of its type.
fn put_condition(mut object: Map<String, Value>, condition: Condition) -> Value {
    let condition = serde_json::to_value(condition).unwrap_or(Value::Null);
    let status = object
        .entry("status")
        .or_insert_with(|| Value::Object(Map::new()));
    if !status.is_object() {
        *status = Value::Object(Map::new());
    }
    if let Value::Object(status) = status {
        let conditions = status
            .entry("conditions")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !conditions.is_array() {
            *conditions = Value::Array(Vec::new());
        }
        if let Value::Array(conditions) = conditions {
            conditions.retain(|c| !is_invalid_condition(c));
            conditions.push(condition);
        }
    }
    Value::Object(object)
}

/// For a value that decodes: the same value without our `Invalid`
/// condition and with `uid`, `creationTimestamp` and `generation` filled
/// in; `None` when nothing needs changing.
fn repaired_valid(raw: &[u8]) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(raw) else {
        return None;
    };
    let mut changed = false;
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        if meta
            .get("uid")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            meta.insert("uid".into(), new_uid().into());
            changed = true;
        }
        if meta.get("creationTimestamp").is_none_or(Value::is_null) {
            let now = OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .ok()?;
            meta.insert("creationTimestamp".into(), now.into());
            changed = true;
        }
        if meta.get("generation").and_then(Value::as_i64).unwrap_or(0) < 1 {
            meta.insert("generation".into(), 1.into());
            changed = true;
        }
        if changed {
            // Never stored (it is the revision itself).
            meta.remove("resourceVersion");
        }
    }
    if let Some(Value::Array(conditions)) = object
        .get_mut("status")
        .and_then(|s| s.get_mut("conditions"))
    {
        let before = conditions.len();
        conditions.retain(|c| {
            !(is_invalid_condition(c)
                && c.get("reason").and_then(Value::as_str) == Some(MALFORMED_SPEC))
        });
        changed |= conditions.len() != before;
    }
    if !changed {
        return None;
    }
    serde_json::to_vec(&Value::Object(object)).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use sdc_docker_controllers::ManagerOptions;
    use sdc_docker_store::model::Container;
    use sdc_docker_store::{Api, Store};
    use tokio::sync::watch;

    use super::*;

    fn kv(value: &str) -> KeyValue {
        KeyValue {
            key: "/sdc-docker/v1/containers/default/bad".into(),
            value: value.as_bytes().to_vec(),
            create_revision: 5,
            mod_revision: 7,
            lease: None,
        }
    }

    fn decode_message(raw: &[u8]) -> Option<String> {
        match decode::<Container>(&KeyValue {
            value: raw.to_vec(),
            ..kv("")
        }) {
            Decoded::Invalid { message, .. } => Some(message),
            Decoded::Valid(_) => None,
        }
    }

    /// Wait (polling, with a deadline) until `key` holds a value `check` accepts.
    async fn wait_for_value(
        store: &Arc<dyn Store>,
        key: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(kv)) = store.get(key).await
                && let Ok(value) = serde_json::from_slice::<Value>(&kv.value)
                && check(&value)
            {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {key}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn the_controllers_mark_bad_values_fill_metadata_and_leave_good_ones_alone() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = sdc_docker_store::connect("embedded", dir.path())
            .await
            .expect("embedded store");
        let bad = "/sdc-docker/v1/networks/acme/bad";
        let bare = "/sdc-docker/v1/containers/default/bare";
        store
            .create(
                bad,
                br#"{"metadata":{"name":"bad"},"spec":{"vlanId":"ten"}}"#.to_vec(),
                None,
                None,
            )
            .await
            .expect("create");
        let mut manager = Manager::new(
            store.clone(),
            ManagerOptions {
                instance_id: "test".into(),
                lease_ttl: Duration::from_secs(5),
                ..Default::default()
            },
        );
        add_controllers(&mut manager);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(manager.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }));

        // Written before and after the loop started: both are handled.
        let marked = wait_for_value(&store, bad, |v| {
            v.pointer("/status/conditions/0/reason") == Some(&Value::from(MALFORMED_SPEC))
        })
        .await;
        assert!(marked.pointer("/status/conditions/0/message").is_some());
        store
            .create(
                bare,
                br#"{"metadata":{"name":"bare"},"spec":{"image":"busybox"}}"#.to_vec(),
                None,
                None,
            )
            .await
            .expect("create");
        let filled = wait_for_value(&store, bare, |v| {
            v.pointer("/metadata/generation") == Some(&Value::from(1))
        })
        .await;
        assert!(filled.pointer("/metadata/uid").is_some());

        let good = Api::<Container>::default_account(store.clone())
            .create(&Container::new("good", Default::default()))
            .await
            .expect("create");
        let _ = stop.send(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the controllers stop when asked")
            .expect("the manager does not panic")
            .expect("the manager stops cleanly");
        let kv = store
            .get(&Api::<Container>::default_account(store.clone()).key("good"))
            .await;
        assert_eq!(
            kv.ok().flatten().map(|kv| kv.mod_revision),
            Some(good.metadata.resource_version),
            "a valid object is never rewritten"
        );
    }

    #[test]
    fn a_malformed_value_gets_a_condition_describing_itself_once() {
        let raw = r#"{"metadata": {"name": "bad"}, "status": {"state": "bogus"}, "spec": {"memory": "lots"}}"#;
        let Ok(Value::Object(object)) = serde_json::from_str::<Value>(raw) else {
            panic!("test value is an object")
        };
        let message = decode_message(raw.as_bytes()).expect("invalid");
        let written =
            with_invalid_condition::<Container>(&kv(raw), object, &message).expect("a write");
        let stored: Value = serde_json::from_slice(&written).expect("JSON");
        let condition = &stored["status"]["conditions"][0];
        assert_eq!(condition["type"], "Invalid");
        assert_eq!(condition["reason"], "MalformedSpec");
        let now = decode_message(&written).expect("still invalid");
        assert_eq!(
            condition["message"],
            now.as_str(),
            "describes the stored value"
        );
        assert!(now.contains("column"), "{now}");
        assert!(now.starts_with("spec.memory: "), "names the field: {now}");

        // Its echo changes nothing.
        let Value::Object(object) = stored else {
            panic!()
        };
        assert_eq!(
            with_invalid_condition::<Container>(&kv(""), object, &now),
            None
        );
    }

    #[test]
    fn a_value_whose_kind_is_lower_case_or_plural_is_not_malformed() {
        for kind in ["container", "containers"] {
            let raw = format!(r#"{{"kind": "{kind}", "metadata": {{"name": "ok"}}}}"#);
            assert_eq!(decode_message(raw.as_bytes()), None, "{kind}");
        }
    }

    #[test]
    fn a_fixed_value_loses_the_condition_and_gets_its_metadata() {
        let raw = r#"{"metadata": {"name": "ok"}, "spec": {"image": "nginx"}, "status": {"conditions": [{"type": "Invalid", "status": "True", "reason": "MalformedSpec", "message": "x"}, {"type": "Ready", "status": "True"}]}}"#;
        let written = repaired_valid(raw.as_bytes()).expect("a write");
        let stored: Value = serde_json::from_slice(&written).expect("JSON");
        assert_eq!(
            stored["status"]["conditions"].as_array().map(Vec::len),
            Some(1)
        );
        assert_eq!(stored["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(stored["metadata"]["generation"], 1);
        assert!(
            stored["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| !u.is_empty())
        );
        assert!(stored["metadata"]["creationTimestamp"].is_string());
        assert_eq!(repaired_valid(&written), None, "nothing more to do");
    }
}
