//! `GET /images/search?term=&limit=&filters=`: `docker search`.
//!
//! The registry is the one the term names (`127.0.0.1:5000/busy` searches
//! `127.0.0.1:5000` for `busy`), else Docker Hub, split as Docker's
//! `splitReposSearchTerm` does. Docker Hub answers with its search API;
//! other registries with their catalog, filtered by substring (see
//! [`Client::search`](sdc_docker_images::registry::Client::search)). The
//! filters `is-official`, `is-automated` and `stars` apply to the results.

use axum::Json;
use axum::extract::{Query, State};
use http::HeaderMap;
use sdc_docker_images::registry::{RegistryError, SearchResult};
use serde::Deserialize;

use super::registry_auth;
use crate::ApiError;
use crate::docker::DockerState;
use crate::docker::filters::Filters;

/// Results when the request gives no `limit` (Docker's default).
const DEFAULT_LIMIT: usize = 25;

/// The most results a search may ask for (Docker's limit).
const MAX_LIMIT: usize = 100;

/// Docker Hub, where terms without a registry are searched.
const DOCKER_HUB: &str = "docker.io";

/// The query of `GET /images/search`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchQuery {
    /// What to search for, optionally prefixed by a registry.
    pub term: String,
    /// At most this many results.
    pub limit: Option<String>,
    /// `is-official`, `is-automated`, `stars`.
    pub filters: Option<String>,
}

/// `GET /images/search`.
pub async fn search(
    State(state): State<DockerState>,
    Query(query): Query<SearchQuery>,
    headers: HeaderMap,
) -> Result<Json<Vec<SearchResult>>, ApiError> {
    let limit = match query.limit.as_deref().filter(|l| !l.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(l) => {
            let n: i64 = l
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?;
            if n < 1 || n > MAX_LIMIT as i64 {
                return Err(ApiError::bad_request(format!(
                    "limit {n} is outside the range of [1, {MAX_LIMIT}]"
                )));
            }
            n as usize
        }
    };
    let filters = Filters::parse(
        query.filters.as_deref(),
        &["is-official", "is-automated", "stars"],
    )?;
    let wanted = Wanted::from(&filters)?;
    let (host, term) = split_term(&query.term);
    let credentials = registry_auth(&headers)?;
    let client = state.images.client_for(host, credentials);
    let results = client
        .search(host, term, limit)
        .await
        .map_err(search_error)?;
    Ok(Json(
        results.into_iter().filter(|r| wanted.keeps(r)).collect(),
    ))
}

/// The registry a term names and the term to search it for.
fn split_term(term: &str) -> (&str, &str) {
    if let Some((first, rest)) = term.split_once('/')
        && (first.contains('.') || first.contains(':') || first == "localhost")
    {
        return (first, rest);
    }
    (DOCKER_HUB, term)
}

/// What the filters keep.
#[derive(Debug, Default, PartialEq, Eq)]
struct Wanted {
    official: Option<bool>,
    automated: Option<bool>,
    min_stars: u64,
}

impl Wanted {
    fn from(filters: &Filters) -> Result<Wanted, ApiError> {
        let mut min_stars = 0;
        for value in filters.get("stars") {
            let n: u64 = value
                .parse()
                .map_err(|_| ApiError::bad_request(format!("invalid filter 'stars={value}'")))?;
            min_stars = min_stars.max(n);
        }
        Ok(Wanted {
            official: filters.boolean("is-official")?,
            automated: filters.boolean("is-automated")?,
            min_stars,
        })
    }

    fn keeps(&self, result: &SearchResult) -> bool {
        self.official.is_none_or(|o| o == result.is_official)
            && self.automated.is_none_or(|a| a == result.is_automated)
            && result.star_count >= self.min_stars
    }
}

/// A search failure with the status Docker answers it with.
fn search_error(e: RegistryError) -> ApiError {
    match e {
        RegistryError::Unauthorized { .. } => {
            ApiError::new(http::StatusCode::UNAUTHORIZED, e.to_string())
        }
        RegistryError::SearchUnsupported { .. } => ApiError::not_found(e.to_string()),
        e => ApiError::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_with_a_registry_searches_that_registry_and_others_docker_hub() {
        assert_eq!(
            split_term("127.0.0.1:5000/busy"),
            ("127.0.0.1:5000", "busy")
        );
        assert_eq!(split_term("localhost/busy"), ("localhost", "busy"));
        assert_eq!(
            split_term("reg.example.com/team/app"),
            ("reg.example.com", "team/app")
        );
        assert_eq!(split_term("busybox"), ("docker.io", "busybox"));
        assert_eq!(split_term("user/app"), ("docker.io", "user/app"));
    }

    fn result(official: bool, stars: u64) -> SearchResult {
        SearchResult {
            name: "x".into(),
            is_official: official,
            star_count: stars,
            ..SearchResult::default()
        }
    }

    #[test]
    fn filters_keep_official_images_and_those_with_enough_stars() {
        let filters = Filters::parse(
            Some(r#"{"is-official":["true"],"stars":["3"]}"#),
            &["is-official", "is-automated", "stars"],
        )
        .expect("filters");
        let wanted = Wanted::from(&filters).expect("valid");
        assert!(wanted.keeps(&result(true, 3)));
        assert!(!wanted.keeps(&result(true, 2)));
        assert!(!wanted.keeps(&result(false, 10)));
        assert!(Wanted::default().keeps(&result(false, 0)));
    }

    #[test]
    fn a_stars_filter_that_is_not_a_number_is_a_bad_request() {
        let filters = Filters::parse(Some(r#"{"stars":["many"]}"#), &["stars"]).expect("filters");
        let e = Wanted::from(&filters).expect_err("refused");
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        assert_eq!(e.message(), "invalid filter 'stars=many'");
    }

    #[test]
    fn results_are_written_with_dockers_field_names() {
        let json = serde_json::to_value(result(true, 7)).expect("json");
        assert_eq!(
            json,
            serde_json::json!({
                "name": "x", "description": "", "star_count": 7,
                "is_official": true, "is_automated": false
            })
        );
    }
}
