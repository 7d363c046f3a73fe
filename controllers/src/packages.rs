//! Packages: the size classes a container is given, seeded on first start
//! and chosen from `docker run -m` or the `com.joyent.package` label.
//!
//! [`seed_default_packages`] writes [`default_packages`] when the store
//! holds no package at all, each with create-if-absent: several instances
//! starting at once end up with one set, and a package that exists is never
//! overwritten, so an operator's edits stand. Once any package exists
//! nothing is seeded again — an operator who deleted a default package
//! meant it. (An instance that dies half-way through the first seeding
//! leaves the rest unwritten; `sdc-docker apply` adds them.)
//!
//! [`choose_package`] is the pure selection, as the seeds describe it:
//! with the label, the package whose name, UUID or short UUID (its first 8
//! characters) it names; otherwise the smallest active package whose memory
//! is at least what `-m` asked for. Without `-m` (0) the request is taken
//! as [`DEFAULT_MEMORY_BYTES`], 1 GiB, as Triton's sdc-docker does
//! (`defaultMemory: 1024`): the smallest package would starve most images,
//! and 1 GiB is also Docker's default CPU weight of 1024 in our table.
//!
//! Limits: packages are cluster-wide, in the default account; the label
//! wins over `-m` (the package's memory is what the container gets).

use std::sync::Arc;

use sdc_docker_store::model::{Package, PackageSpec};
use sdc_docker_store::{Api, Error as StoreError, Resource, Store};

/// The Docker label that names a package.
pub const PACKAGE_LABEL: &str = "com.joyent.package";

/// What a request without `-m` is taken to ask for: 1 GiB.
pub const DEFAULT_MEMORY_BYTES: i64 = 1024 * MIB;

/// Bytes in a MiB.
pub const MIB: i64 = 1024 * 1024;

/// Bytes in a GiB.
pub const GIB: i64 = 1024 * MIB;

/// Why no package was chosen, or seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The label names no package, by name, UUID or short UUID.
    #[error(
        "no package matches {PACKAGE_LABEL}={value:?} (a package name, UUID or the first 8 characters of a UUID)"
    )]
    NotFound {
        /// The label's value.
        value: String,
    },
    /// The label names a package that is no longer offered.
    #[error("package {name:?} ({PACKAGE_LABEL}={value:?}) is not active")]
    Inactive {
        /// The label's value.
        value: String,
        /// The package it names.
        name: String,
    },
    /// A short UUID names several packages.
    #[error("{PACKAGE_LABEL}={value:?} matches several packages: {}; give the full UUID or the name", names.join(", "))]
    Ambiguous {
        /// The label's value.
        value: String,
        /// The packages it matches.
        names: Vec<String>,
    },
    /// The label is present but empty.
    #[error("the {PACKAGE_LABEL} label is empty; name a package or leave the label out")]
    EmptyLabel,
    /// `-m` asked for more than any active package offers.
    #[error("no package large enough for -m {} (the largest is {largest} with {})", format_bytes(*requested), format_bytes(*largest_bytes))]
    TooLarge {
        /// What was asked for, bytes.
        requested: i64,
        /// The largest active package.
        largest: String,
        /// Its memory, bytes.
        largest_bytes: i64,
    },
    /// `-m` was negative.
    #[error("invalid memory request -m {0}: must not be negative")]
    InvalidMemory(i64),
    /// There is no active package at all.
    #[error("no active package exists; an operator must create one")]
    NoPackages,
    /// Seeding could not write to the store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PackageError {
    /// A CamelCase reason for a status condition.
    pub fn reason(&self) -> &'static str {
        match self {
            PackageError::NotFound { .. } => "PackageNotFound",
            PackageError::Inactive { .. } => "PackageInactive",
            PackageError::Ambiguous { .. } => "PackageAmbiguous",
            PackageError::EmptyLabel => "PackageNotFound",
            PackageError::TooLarge { .. } => "NoPackageLargeEnough",
            PackageError::InvalidMemory(_) => "InvalidMemory",
            PackageError::NoPackages => "NoPackages",
            PackageError::Store(_) => "StoreError",
        }
    }
}

/// Memory of a package, bytes.
pub fn package_bytes(package: &Package) -> i64 {
    package.spec.memory_mib.saturating_mul(MIB)
}

/// Bytes for people: `512 MiB`, `2 GiB`, `1.5 GiB`, `100 bytes`.
pub fn format_bytes(bytes: i64) -> String {
    let unit = |n: i64, size: i64, name: &str| {
        if n % size == 0 {
            format!("{} {name}", n / size)
        } else {
            format!("{:.1} {name}", n as f64 / size as f64)
        }
    };
    if bytes.abs() >= GIB {
        unit(bytes, GIB, "GiB")
    } else if bytes.abs() >= MIB {
        unit(bytes, MIB, "MiB")
    } else {
        format!("{bytes} bytes")
    }
}

/// Choose the package for a container: by `label` (the value of
/// [`PACKAGE_LABEL`]) when given, else the smallest active package with at
/// least `memory_bytes` (0: [`DEFAULT_MEMORY_BYTES`]). Ties between
/// packages of equal memory go to the lower name, then the lower UUID.
///
/// By label, a name match wins over a UUID match, which wins over a short
/// UUID (the first 8 characters, case-insensitive); an inactive package is
/// refused, not replaced by another. Without `-m`, when no active package
/// reaches 1 GiB the largest is chosen.
pub fn choose_package<'a, I>(
    packages: I,
    memory_bytes: i64,
    label: Option<&str>,
) -> Result<&'a Package, PackageError>
where
    I: IntoIterator<Item = &'a Package>,
{
    let mut packages: Vec<&Package> = packages.into_iter().collect();
    packages.sort_by(|a, b| {
        (a.spec.memory_mib, &a.metadata.name, &a.spec.uuid).cmp(&(
            b.spec.memory_mib,
            &b.metadata.name,
            &b.spec.uuid,
        ))
    });
    if let Some(value) = label {
        return by_label(&packages, value);
    }
    if memory_bytes < 0 {
        return Err(PackageError::InvalidMemory(memory_bytes));
    }
    let active: Vec<&Package> = packages.into_iter().filter(|p| p.spec.active).collect();
    let largest = *active.last().ok_or(PackageError::NoPackages)?;
    if memory_bytes == 0 {
        return Ok(active
            .iter()
            .find(|p| package_bytes(p) >= DEFAULT_MEMORY_BYTES)
            .copied()
            .unwrap_or(largest));
    }
    active
        .iter()
        .find(|p| package_bytes(p) >= memory_bytes)
        .copied()
        .ok_or_else(|| PackageError::TooLarge {
            requested: memory_bytes,
            largest: largest.metadata.name.clone(),
            largest_bytes: package_bytes(largest),
        })
}

fn by_label<'a>(sorted: &[&'a Package], value: &str) -> Result<&'a Package, PackageError> {
    let value_trimmed = value.trim();
    if value_trimmed.is_empty() {
        return Err(PackageError::EmptyLabel);
    }
    let wanted = value_trimmed.to_ascii_lowercase();
    let by_name = sorted.iter().find(|p| p.metadata.name == value_trimmed);
    let by_uuid = || {
        sorted
            .iter()
            .find(|p| !p.spec.uuid.is_empty() && p.spec.uuid.to_ascii_lowercase() == wanted)
    };
    let found = match by_name.or_else(by_uuid) {
        Some(p) => *p,
        None => {
            let short: Vec<&&Package> = if wanted.len() == 8 {
                sorted
                    .iter()
                    .filter(|p| {
                        p.spec
                            .uuid
                            .get(..8)
                            .is_some_and(|s| s.eq_ignore_ascii_case(&wanted))
                    })
                    .collect()
            } else {
                Vec::new()
            };
            match short.as_slice() {
                [] => {
                    return Err(PackageError::NotFound {
                        value: value.to_string(),
                    });
                }
                [one] => **one,
                many => {
                    return Err(PackageError::Ambiguous {
                        value: value.to_string(),
                        names: many.iter().map(|p| p.metadata.name.clone()).collect(),
                    });
                }
            }
        }
    };
    if !found.spec.active {
        return Err(PackageError::Inactive {
            value: value.to_string(),
            name: found.metadata.name.clone(),
        });
    }
    Ok(found)
}

/// The default packages: `sample-128M` to `sample-64G`, named as Triton's
/// sample packages are, with fixed UUIDs (so instances seeding at once
/// write identical objects). For memory M MiB: swap 2×M, disk 16×M (2 GiB
/// for the smallest, 1 TiB for the largest), CPU shares M (so 1 GiB has
/// Docker's default weight, 1024), a CPU cap of one CPU per GiB (at least
/// 20 %), 4000 lightweight processes and ZFS I/O priority 100 (SmartOS's
/// defaults for Docker zones).
pub fn default_packages() -> Vec<Package> {
    const TABLE: [(&str, i64, &str); 10] = [
        ("sample-128M", 128, "0e9878a1-0961-4cd7-a368-525a350a10a2"),
        ("sample-256M", 256, "addad36c-c628-44e8-a1fe-e293b577659f"),
        ("sample-512M", 512, "f38fd439-f50d-432b-95e1-2b45ef9b6365"),
        ("sample-1G", 1024, "624c4b27-f684-4991-914a-be6a3a29ebbb"),
        ("sample-2G", 2048, "056b54b9-af8a-4e95-a135-7c85b0aa33a1"),
        ("sample-4G", 4096, "4ecb5c0e-e1b0-4870-b39d-83c9757e94ee"),
        ("sample-8G", 8192, "8f3de9b9-5132-481a-8962-76fe33d5c1cb"),
        ("sample-16G", 16384, "21733ecc-5716-4f77-a716-c3ca7f7cd38e"),
        ("sample-32G", 32768, "ac4a9b60-82a8-4fc4-a37b-5d0af1db6030"),
        ("sample-64G", 65536, "5e049d9e-622e-4f90-af3b-4c677f3706d5"),
    ];
    TABLE
        .iter()
        .map(|&(name, memory_mib, uuid)| {
            Package::new(
                name,
                PackageSpec {
                    uuid: uuid.to_string(),
                    memory_mib,
                    swap_mib: 2 * memory_mib,
                    disk_mib: 16 * memory_mib,
                    cpu_cap: (memory_mib * 100 / 1024).max(20),
                    cpu_shares: memory_mib,
                    max_lwps: 4000,
                    zfs_io_priority: 100,
                    active: true,
                },
            )
        })
        .collect()
}

/// Write [`default_packages`] to the default account when it holds no
/// package (valid or not); returns how many this call created. Safe to run
/// from several instances at once: each package is created only if absent.
pub async fn seed_default_packages(store: Arc<dyn Store>) -> Result<usize, PackageError> {
    let api = Api::<Package>::default_account(store);
    let existing = api.list().await?;
    if !existing.items.is_empty() || !existing.invalid.is_empty() {
        tracing::debug!(
            packages = existing.items.len(),
            "packages exist; not seeding"
        );
        return Ok(0);
    }
    let mut created = 0;
    for package in default_packages() {
        match api.create(&package).await {
            Ok(_) => created += 1,
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if created > 0 {
        tracing::info!(created, "seeded the default packages");
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(name: &str, memory_mib: i64, uuid: &str, active: bool) -> Package {
        Package::new(
            name,
            PackageSpec {
                uuid: uuid.into(),
                memory_mib,
                active,
                ..Default::default()
            },
        )
    }

    fn names(chosen: Result<&Package, PackageError>) -> String {
        match chosen {
            Ok(p) => p.metadata.name.clone(),
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn memory_rounds_up_to_the_smallest_package_large_enough() {
        let all = default_packages();
        assert_eq!(names(choose_package(&all, 128 * MIB, None)), "sample-128M");
        assert_eq!(
            names(choose_package(&all, 128 * MIB + 1, None)),
            "sample-256M"
        );
        assert_eq!(names(choose_package(&all, 600 * MIB, None)), "sample-1G");
        assert_eq!(names(choose_package(&all, 1, None)), "sample-128M");
        assert_eq!(names(choose_package(&all, 64 * GIB, None)), "sample-64G");
    }

    #[test]
    fn no_memory_means_the_one_gib_default_or_the_largest_below_it() {
        let all = default_packages();
        assert_eq!(names(choose_package(&all, 0, None)), "sample-1G");
        let small = [pkg("a", 128, "", true), pkg("b", 512, "", true)];
        assert_eq!(names(choose_package(&small, 0, None)), "b");
    }

    #[test]
    fn a_request_larger_than_every_package_says_so_with_the_largest() {
        let all = default_packages();
        let e = choose_package(&all, 100 * GIB, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no package large enough for -m 100 GiB (the largest is sample-64G with 64 GiB)"
        );
        assert_eq!(e.reason(), "NoPackageLargeEnough");
        assert!(matches!(
            choose_package(&all, -1, None),
            Err(PackageError::InvalidMemory(-1))
        ));
    }

    #[test]
    fn inactive_packages_are_never_chosen_by_memory() {
        let set = [
            pkg("old-1G", 1024, "", false),
            pkg("new-2G", 2048, "", true),
        ];
        assert_eq!(names(choose_package(&set, GIB, None)), "new-2G");
        let none_active = [pkg("old", 1024, "", false)];
        assert!(matches!(
            choose_package(&none_active, GIB, None),
            Err(PackageError::NoPackages)
        ));
        let empty: [Package; 0] = [];
        assert!(matches!(
            choose_package(&empty, 0, None),
            Err(PackageError::NoPackages)
        ));
    }

    #[test]
    fn ties_between_equal_sizes_go_to_the_lower_name_whatever_the_order() {
        let a = [pkg("zeta", 1024, "", true), pkg("alpha", 1024, "", true)];
        let b = [pkg("alpha", 1024, "", true), pkg("zeta", 1024, "", true)];
        assert_eq!(names(choose_package(&a, GIB, None)), "alpha");
        assert_eq!(names(choose_package(&b, GIB, None)), "alpha");
    }

    #[test]
    fn the_label_chooses_by_name_uuid_or_short_uuid() {
        let all = default_packages();
        let uuid = "8f3de9b9-5132-481a-8962-76fe33d5c1cb";
        assert_eq!(
            names(choose_package(&all, 0, Some("sample-2G"))),
            "sample-2G"
        );
        assert_eq!(names(choose_package(&all, 0, Some(uuid))), "sample-8G");
        assert_eq!(
            names(choose_package(&all, 0, Some(&uuid.to_uppercase()))),
            "sample-8G"
        );
        assert_eq!(
            names(choose_package(&all, 0, Some("8f3de9b9"))),
            "sample-8G"
        );
        // The label wins over -m.
        assert_eq!(
            names(choose_package(&all, 32 * GIB, Some("sample-128M"))),
            "sample-128M"
        );
    }

    #[test]
    fn a_name_match_wins_over_a_short_uuid_match() {
        let set = [
            pkg(
                "abcdef12",
                512,
                "00000000-0000-0000-0000-000000000001",
                true,
            ),
            pkg("other", 1024, "abcdef12-0000-0000-0000-000000000002", true),
        ];
        assert_eq!(names(choose_package(&set, 0, Some("abcdef12"))), "abcdef12");
    }

    #[test]
    fn an_unknown_ambiguous_empty_or_inactive_label_is_a_clear_error() {
        let set = [
            pkg("a", 512, "abcdef12-0000-0000-0000-000000000001", true),
            pkg("b", 1024, "abcdef12-0000-0000-0000-000000000002", true),
            pkg(
                "retired",
                1024,
                "12345678-0000-0000-0000-000000000003",
                false,
            ),
        ];
        let e = choose_package(&set, 0, Some("huge")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no package matches com.joyent.package=\"huge\" (a package name, UUID or the first 8 characters of a UUID)"
        );
        assert_eq!(e.reason(), "PackageNotFound");
        let e = choose_package(&set, 0, Some("abcdef12")).unwrap_err();
        assert!(
            e.to_string().contains("matches several packages: a, b"),
            "{e}"
        );
        let e = choose_package(&set, 0, Some("12345678")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "package \"retired\" (com.joyent.package=\"12345678\") is not active"
        );
        assert!(matches!(
            choose_package(&set, 0, Some(" ")),
            Err(PackageError::EmptyLabel)
        ));
        // An empty package UUID never matches.
        let no_uuid = [pkg("x", 512, "", true)];
        assert!(choose_package(&no_uuid, 0, Some("")).is_err());
    }

    #[test]
    fn bytes_are_formatted_for_people() {
        assert_eq!(format_bytes(2 * GIB), "2 GiB");
        assert_eq!(format_bytes(GIB + GIB / 2), "1.5 GiB");
        assert_eq!(format_bytes(512 * MIB), "512 MiB");
        assert_eq!(format_bytes(100), "100 bytes");
        assert_eq!(format_bytes(0), "0 bytes");
    }

    #[test]
    fn the_default_packages_are_sorted_sizes_with_unique_names_and_uuids() {
        let all = default_packages();
        assert_eq!(all.len(), 10);
        let mut uuids: Vec<_> = all.iter().map(|p| p.spec.uuid.clone()).collect();
        uuids.sort();
        uuids.dedup();
        assert_eq!(uuids.len(), 10);
        assert!(
            all.windows(2)
                .all(|w| w[0].spec.memory_mib < w[1].spec.memory_mib)
        );
        let one_gib = &all[3];
        assert_eq!(
            (
                one_gib.spec.cpu_shares,
                one_gib.spec.cpu_cap,
                one_gib.spec.disk_mib
            ),
            (1024, 100, 16384)
        );
        assert_eq!(all[0].spec.cpu_cap, 20);
    }
}
