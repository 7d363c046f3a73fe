//! `POST /containers/{name}/rename?name=NEW`: `docker rename`.
//!
//! A Container's store key is its name and the store has no transactions,
//! so a rename writes the same container (spec, id, status, labels) under
//! the new name, then deletes the old key, guarded by the revision it
//! copied: a change to the old object in between is copied again. The
//! zone is named after the container's Docker id, not its name, so it is
//! untouched: the node's controllers keep a zone whose id a Container still
//! has, and map its exits to whichever Container has that id now.
//!
//! The new object is younger than the container; the original creation
//! time is kept in an annotation ([`CREATED_ANNOTATION`]) for `Created`.

use axum::extract::{Path, Query, State};
use http::StatusCode;
use sdc_docker_store::model::Container;
use sdc_docker_store::{Api, Error as StoreError, Resource};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;

use super::list::{CREATED_ANNOTATION, created};
use super::{containers_api, find, valid_name};
use crate::ApiError;
use crate::docker::DockerState;

/// The query of a rename.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RenameQuery {
    /// The new name.
    name: Option<String>,
}

/// How often the copy is refreshed when the old object keeps changing.
const ATTEMPTS: usize = 20;

/// `POST /containers/{name}/rename`.
pub(super) async fn rename(
    State(state): State<DockerState>,
    Path(old): Path<String>,
    Query(query): Query<RenameQuery>,
) -> Result<StatusCode, ApiError> {
    let new = query.name.unwrap_or_default();
    let new = new.strip_prefix('/').unwrap_or(&new).to_owned();
    if old.is_empty() || new.is_empty() {
        return Err(ApiError::bad_request(
            "Neither old nor new names may be empty",
        ));
    }
    let container = find(&state, &old).await?;
    if container.metadata.name == new {
        return Err(ApiError::bad_request(
            "Renaming a container with the same name as its current name",
        ));
    }
    if !valid_name(&new) {
        return Err(ApiError::bad_request(format!(
            "Error when allocating new name: Invalid container name (/{new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    let api = containers_api(&state);
    move_container(&api, container, &new).await?;
    tracing::info!(from = %old, to = %new, "container renamed");
    Ok(StatusCode::NO_CONTENT)
}

/// Docker's 409 for a name in use by the container with id `id`.
fn name_taken(name: &str, id: &str) -> ApiError {
    ApiError::conflict(format!(
        "Error when allocating new name: Conflict. The container name \"/{name}\" is already in use by container \"{id}\". You have to remove (or rename) that container to be able to reuse that name."
    ))
}

/// `container` as it is to be written under `name`: the same spec (its id
/// pinned, so the zone stays its own), labels, annotations and status, its
/// creation time remembered; its status acted upon at the new object's
/// first generation only if the old one's last wish was.
fn copy_named(container: &Container, name: &str) -> Container {
    let mut spec = container.spec.clone();
    spec.id = container.docker_id();
    let mut copy = Container::new(name, spec);
    copy.metadata.labels = container.metadata.labels.clone();
    copy.metadata.annotations = container.metadata.annotations.clone();
    if let Ok(created) = created(container).format(&Rfc3339) {
        copy.metadata
            .annotations
            .insert(CREATED_ANNOTATION.to_owned(), created);
    }
    copy.status = container.status.clone();
    let acted = container.status.observed_generation >= container.metadata.generation;
    copy.status.observed_generation = i64::from(acted);
    copy
}

/// Writes `container` under `new` and deletes its old key.
async fn move_container(
    api: &Api<Container>,
    mut container: Container,
    new: &str,
) -> Result<(), ApiError> {
    let old = container.metadata.name.clone();
    let id = container.docker_id();
    match api.create(&copy_named(&container, new)).await {
        Ok(_) => {}
        Err(StoreError::AlreadyExists { .. }) => {
            let holder = api
                .get(new)
                .await
                .map(|c| c.docker_id())
                .unwrap_or_default();
            return Err(name_taken(new, &holder));
        }
        Err(e) => return Err(e.into()),
    }
    for _ in 0..ATTEMPTS {
        match api
            .delete(&old, Some(container.metadata.resource_version))
            .await
        {
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        // The old object changed after it was copied (a status the node
        // wrote, a `docker stop`): copy it again, then delete that one.
        container = match api.get(&old).await {
            Ok(c) if c.docker_id() == id => c,
            Ok(_) | Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        refresh(api, &container, new).await?;
    }
    Err(ApiError::internal(format!(
        "container {old} kept changing while it was renamed to {new}; both names may name it now"
    )))
}

/// Brings the copy under `new` up to `container` (spec, then status).
async fn refresh(api: &Api<Container>, container: &Container, new: &str) -> Result<(), ApiError> {
    let wanted = copy_named(container, new);
    let mut current = api.get(new).await?;
    if current.spec != wanted.spec {
        current.spec = wanted.spec.clone();
        current = api.replace(&current).await?;
    }
    let mut status = wanted.status;
    let acted = container.status.observed_generation >= container.metadata.generation;
    status.observed_generation = if acted {
        current.metadata.generation
    } else {
        0
    };
    if current.status != status {
        current.status = status;
        api.update_status(&current).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use sdc_docker_store::model::{ContainerSpec, ContainerState, DesiredState};

    use crate::test_support::TestStore;

    use super::*;

    fn running(name: &str) -> Container {
        let mut c = Container::new(
            name,
            ContainerSpec {
                id: "ab".repeat(32),
                image: "busybox".into(),
                desired_state: DesiredState::Running,
                ..Default::default()
            },
        );
        c.status.state = ContainerState::Running;
        c.status.pid = 42;
        c.status.node = "n1".into();
        c
    }

    #[tokio::test]
    async fn a_renamed_container_keeps_its_id_status_and_creation_time() {
        let store = TestStore::new().await;
        let api: Api<Container> = Api::default_account(store.store.clone());
        let written = api.create(&running("old")).await.expect("created");
        let mut acted = written.clone();
        acted.status.observed_generation = written.metadata.generation;
        let acted = api.update_status(&acted).await.expect("status");
        move_container(&api, acted.clone(), "new")
            .await
            .expect("renamed");
        assert!(matches!(
            api.get("old").await,
            Err(StoreError::NotFound { .. })
        ));
        let renamed = api.get("new").await.expect("there");
        assert_eq!(renamed.docker_id(), "ab".repeat(32));
        assert_eq!(renamed.status.state, ContainerState::Running);
        assert_eq!(renamed.status.pid, 42);
        assert_eq!(renamed.status.node, "n1");
        // Acted upon: nothing for the node to do again.
        assert_eq!(
            renamed.status.observed_generation,
            renamed.metadata.generation
        );
        assert_eq!(created(&renamed), created(&acted));
    }

    #[tokio::test]
    async fn renaming_onto_a_taken_name_is_dockers_conflict() {
        let store = TestStore::new().await;
        let api: Api<Container> = Api::default_account(store.store.clone());
        let old = api.create(&running("old")).await.expect("created");
        let mut other = running("taken");
        other.spec.id = "cd".repeat(32);
        api.create(&other).await.expect("created");
        let e = move_container(&api, old, "taken")
            .await
            .expect_err("refused");
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert_eq!(
            e.message(),
            format!(
                "Error when allocating new name: Conflict. The container name \"/taken\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                "cd".repeat(32)
            )
        );
        assert!(api.get("old").await.is_ok());
    }

    #[tokio::test]
    async fn a_change_to_the_old_object_during_a_rename_is_carried_over() {
        let store = TestStore::new().await;
        let api: Api<Container> = Api::default_account(store.store.clone());
        let stale = api.create(&running("old")).await.expect("created");
        // The node writes a status after the rename read the container.
        let mut exited = stale.clone();
        exited.status.state = ContainerState::Exited;
        exited.status.exit_code = 3;
        api.update_status(&exited).await.expect("status");
        move_container(&api, stale, "new").await.expect("renamed");
        let renamed = api.get("new").await.expect("there");
        assert_eq!(renamed.status.state, ContainerState::Exited);
        assert_eq!(renamed.status.exit_code, 3);
        assert!(api.get("old").await.is_err());
    }
}
