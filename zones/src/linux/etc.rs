//! The three files a zone gets in `/etc` from the node rather than from its
//! image: `hosts`, `resolv.conf` and `hostname`, as Docker writes them.
//!
//! Pure text: the driver writes them into the zone's directory and
//! bind-mounts them. The zone has no network address yet (no networking
//! controller), so its own name points at the loopback address.

use crate::spec::ZoneSpec;

/// Name servers a zone gets when the host only has local ones (Docker's).
const FALLBACK_NAMESERVERS: &[&str] = &["8.8.8.8", "8.8.4.4"];

/// `/etc/hostname`.
pub fn hostname(spec: &ZoneSpec) -> String {
    format!("{}\n", spec.hostname)
}

/// `/etc/hosts`: localhost, Docker's IPv6 names, the zone's own name, then
/// `--add-host` entries in order.
pub fn hosts(spec: &ZoneSpec) -> String {
    let mut out = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    let own = if spec.domainname.is_empty() {
        spec.hostname.clone()
    } else {
        format!("{}.{} {}", spec.hostname, spec.domainname, spec.hostname)
    };
    out.push_str(&format!("127.0.0.1\t{own}\n"));
    for (host, ip) in &spec.extra_hosts {
        out.push_str(&format!("{ip}\t{host}\n"));
    }
    out
}

/// `/etc/resolv.conf` from the host's (`host`): the spec's name servers and
/// search domains replace the host's; local name servers (unreachable from
/// the zone's own network namespace) are dropped, and Google's are used when
/// none is left, as Docker does. Options are kept.
pub fn resolv_conf(spec: &ZoneSpec, host: &str) -> String {
    let mut nameservers = Vec::new();
    let mut search = Vec::new();
    let mut options = Vec::new();
    for line in host.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => nameservers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                search = words.map(str::to_string).collect();
            }
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    nameservers.retain(|ns| !is_local(ns));
    if !spec.dns.is_empty() {
        nameservers = spec.dns.clone();
    }
    if nameservers.is_empty() {
        nameservers = FALLBACK_NAMESERVERS.iter().map(|s| s.to_string()).collect();
    }
    if !spec.dns_search.is_empty() {
        search = spec.dns_search.clone();
    }
    let mut out = String::new();
    if !search.is_empty() && search != ["."] {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for ns in nameservers {
        out.push_str(&format!("nameserver {ns}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

fn is_local(nameserver: &str) -> bool {
    nameserver.starts_with("127.") || nameserver == "::1"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ZoneSpec {
        ZoneSpec {
            hostname: "web1".to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn hosts_has_localhost_the_zones_name_and_extra_hosts_in_order() {
        let mut s = spec();
        s.extra_hosts = vec![
            ("db".to_string(), "10.0.0.2".to_string()),
            ("v6".to_string(), "fe80::1".to_string()),
        ];
        let hosts = hosts(&s);
        assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(
            hosts.ends_with("127.0.0.1\tweb1\n10.0.0.2\tdb\nfe80::1\tv6\n"),
            "{hosts}"
        );
        s.domainname = "example.com".to_string();
        assert!(hosts_contains(&s, "127.0.0.1\tweb1.example.com web1\n"));
    }

    fn hosts_contains(s: &ZoneSpec, line: &str) -> bool {
        hosts(s).contains(line)
    }

    #[test]
    fn resolv_conf_keeps_the_hosts_remote_servers_and_options() {
        let host = "# generated\nnameserver 127.0.0.53\nnameserver 10.1.1.1\nsearch corp.example\noptions ndots:2\n";
        assert_eq!(
            resolv_conf(&spec(), host),
            "search corp.example\nnameserver 10.1.1.1\noptions ndots:2\n"
        );
    }

    #[test]
    fn resolv_conf_falls_back_to_googles_servers_when_the_host_has_only_local_ones() {
        assert_eq!(
            resolv_conf(&spec(), "nameserver 127.0.0.53\n"),
            "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
        );
    }

    #[test]
    fn resolv_conf_takes_the_specs_servers_and_search_domains() {
        let mut s = spec();
        s.dns = vec!["1.1.1.1".to_string()];
        s.dns_search = vec!["a.example".to_string(), "b.example".to_string()];
        assert_eq!(
            resolv_conf(&s, "nameserver 10.1.1.1\nsearch corp.example\n"),
            "search a.example b.example\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn hostname_is_one_line() {
        assert_eq!(hostname(&spec()), "web1\n");
    }
}
