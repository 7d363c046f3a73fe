//! Signal names and numbers as Docker accepts them.
//!
//! `TERM`, `SIGTERM`, `sigterm` and `15` are the same signal; `RTMIN+3` and
//! `RTMAX-1` name real-time signals. Anything else is refused with Docker's
//! own words, `Invalid signal: …`. The numbers are Linux's (x86-64 and
//! arm64 agree); SmartOS numbers differ and its driver maps names itself.

/// A signal that is not a Linux signal name or number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid signal: {0}")]
pub struct InvalidSignal(pub String);

/// Linux's signal names, without `SIG`.
const NAMES: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
    ("RTMIN", 34),
    ("RTMAX", 64),
];

/// The lowest and highest signal numbers.
const RANGE: std::ops::RangeInclusive<i32> = 1..=64;

/// The number of `raw`: a name with or without `SIG` in any case, a
/// real-time offset (`RTMIN+2`), or a number from 1 to 64.
pub fn parse(raw: &str) -> Result<i32, InvalidSignal> {
    let invalid = || InvalidSignal(raw.to_string());
    if let Ok(n) = raw.parse::<i32>() {
        return if RANGE.contains(&n) {
            Ok(n)
        } else {
            Err(invalid())
        };
    }
    let upper = raw.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let by_name = |n: &str| NAMES.iter().find(|(k, _)| *k == n).map(|(_, v)| *v);
    let number = if let Some((base, offset)) = name.split_once('+') {
        (base == "RTMIN")
            .then(|| offset.parse::<i32>().ok())
            .flatten()
            .map(|o| 34 + o)
    } else if let Some((base, offset)) = name.split_once('-') {
        (base == "RTMAX")
            .then(|| offset.parse::<i32>().ok())
            .flatten()
            .map(|o| 64 - o)
    } else {
        by_name(name)
    };
    number.filter(|n| RANGE.contains(n)).ok_or_else(invalid)
}

/// The canonical name of signal `n` (`SIGTERM`), for logs and errors.
pub fn name(n: i32) -> String {
    NAMES
        .iter()
        .find(|(_, v)| *v == n)
        .map(|(k, _)| format!("SIG{k}"))
        .unwrap_or_else(|| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_or_without_sig_and_in_any_case_are_the_same_signal() {
        for raw in ["TERM", "SIGTERM", "sigterm", "Term", "15"] {
            assert_eq!(parse(raw), Ok(15), "{raw}");
        }
        assert_eq!(parse("KILL"), Ok(9));
        assert_eq!(parse("SIGHUP"), Ok(1));
        assert_eq!(parse("USR1"), Ok(10));
    }

    #[test]
    fn every_signal_the_seeds_list_for_docker_kill_is_accepted_but_siglost() {
        // The seeds' `docker kill` list; SIGLOST is not a Linux signal (it
        // exists on SmartOS only), so the linux driver refuses it.
        let seeds = [
            "SIGABRT",
            "SIGALRM",
            "SIGBUS",
            "SIGCHLD",
            "SIGCONT",
            "SIGFPE",
            "SIGHUP",
            "SIGILL",
            "SIGINT",
            "SIGIO",
            "SIGIOT",
            "SIGKILL",
            "SIGPIPE",
            "SIGPOLL",
            "SIGPROF",
            "SIGPWR",
            "SIGQUIT",
            "SIGSEGV",
            "SIGSTOP",
            "SIGSYS",
            "SIGTERM",
            "SIGTRAP",
            "SIGTSTP",
            "SIGTTIN",
            "SIGTTOU",
            "SIGURG",
            "SIGUSR1",
            "SIGUSR2",
            "SIGVTALRM",
            "SIGWINCH",
            "SIGXCPU",
            "SIGXFSZ",
        ];
        for name in seeds {
            assert!(parse(name).is_ok(), "{name}");
            assert!(parse(&name[3..]).is_ok(), "{name} without SIG");
        }
        assert!(parse("SIGLOST").is_err());
    }

    #[test]
    fn real_time_signals_are_named_by_offset() {
        assert_eq!(parse("RTMIN"), Ok(34));
        assert_eq!(parse("SIGRTMIN+3"), Ok(37));
        assert_eq!(parse("RTMAX-1"), Ok(63));
        assert_eq!(parse("RTMAX"), Ok(64));
    }

    #[test]
    fn unknown_names_and_out_of_range_numbers_get_dockers_error() {
        for raw in ["FOO", "SIGFOO", "0", "65", "-1", "", "RTMIN+99", "TERM+1"] {
            let error = parse(raw).unwrap_err();
            assert_eq!(error.to_string(), format!("Invalid signal: {raw}"));
        }
    }

    #[test]
    fn numbers_have_canonical_names_for_logs() {
        assert_eq!(name(15), "SIGTERM");
        assert_eq!(name(9), "SIGKILL");
        assert_eq!(name(40), "40");
    }
}
