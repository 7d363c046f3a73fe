//! The compute node as `sysinfo(8)` describes it: what its `Node` object
//! says of it.

use serde_json::Value;

use super::commands::{Commands, Tool};
use crate::driver::ZoneError;

/// What the node's registration needs from `sysinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysinfo {
    /// `UUID`: the compute node's UUID.
    pub uuid: String,
    /// `Hostname`.
    pub hostname: String,
    /// `MiB of Memory`.
    pub memory_mib: i64,
    /// `CPU Total Cores`.
    pub cpus: i64,
    /// `Datacenter Name` (empty when the node is not set up in one).
    pub datacenter: String,
}

/// A number sysinfo gives as a number or as a string of digits.
fn number(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

impl Sysinfo {
    /// Parses sysinfo's JSON output.
    pub fn parse(json: &[u8]) -> Result<Sysinfo, String> {
        let v: Value =
            serde_json::from_slice(json).map_err(|e| format!("sysinfo printed no JSON: {e}"))?;
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let uuid = text("UUID").ok_or("sysinfo gave no UUID")?;
        let hostname = text("Hostname").ok_or("sysinfo gave no Hostname")?;
        let memory_mib =
            number(v.get("MiB of Memory")).ok_or("sysinfo gave no \"MiB of Memory\"")?;
        let cpus = number(v.get("CPU Total Cores"))
            .or_else(|| number(v.get("CPU Online Count")))
            .ok_or("sysinfo gave no \"CPU Total Cores\"")?;
        Ok(Sysinfo {
            uuid,
            hostname,
            memory_mib,
            cpus,
            datacenter: text("Datacenter Name").unwrap_or_default(),
        })
    }

    /// Runs `sysinfo` and parses it.
    pub async fn read(commands: &Commands) -> Result<Sysinfo, ZoneError> {
        let out = commands.run(Tool::Sysinfo, &[], None).await?;
        Sysinfo::parse(&out.stdout).map_err(|message| ZoneError::Runtime {
            op: "sysinfo".into(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysinfo_numbers_are_read_whether_strings_or_numbers() {
        let info = Sysinfo::parse(
            br#"{"UUID":"44454c4c-3300-1034-8052-b3c04f4b4e31","Hostname":"cn1",
                "MiB of Memory":"262099","CPU Total Cores":48,"Datacenter Name":"us-east-1"}"#,
        )
        .unwrap();
        assert_eq!(info.memory_mib, 262_099);
        assert_eq!(info.cpus, 48);
        assert_eq!(info.datacenter, "us-east-1");
        assert!(Sysinfo::parse(br#"{"Hostname":"cn1"}"#).is_err());
    }
}
