//! Consul's flag spelling for every Isthmus binary.
//!
//! Consul's CLI takes long flags with one dash (`-cas -modify-index=716`); users also type
//! the GNU spelling (`--cas --modify-index 716`). [`normalize_consul_flags`] rewrites the
//! first into the second so one clap parser accepts both.

/// Rewrites `-name` and `-name=value` into `--name` and `--name=value`.
///
/// Left alone: the program name (the first element), `-` alone (stdin), single-letter
/// flags (`-h`), negative numbers, anything already starting with `--`, and everything
/// after a bare `--`.
pub fn normalize_consul_flags(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let args: Vec<String> = args.into_iter().collect();
    // The verb: the first argument that is neither a flag nor a flag's value.
    let mut verb_at = None;
    let mut skip = false;
    for (i, arg) in args.iter().enumerate().skip(1) {
        if skip {
            skip = false;
            continue;
        }
        if arg.starts_with('-') {
            let name = arg.trim_start_matches('-');
            skip = !name.contains('=') && TAKES_VALUE.contains(&name);
            continue;
        }
        verb_at = Some(i);
        break;
    }
    // Verbs whose positional arguments end the flags, as Go's `flag` stops at the first
    // one: what follows is a command line of its own (`lock PREFIX sh -c ...`), left as is.
    let command_verb =
        verb_at.is_some_and(|i| matches!(args[i].as_str(), "lock" | "watch" | "exec" | "event"));
    let mut out = Vec::new();
    let mut after_double_dash = false;
    let mut value_next = false;
    for (index, arg) in args.into_iter().enumerate() {
        if index == 0 || after_double_dash {
            out.push(arg);
            continue;
        }
        if command_verb && Some(index) == verb_at {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            after_double_dash = true;
            out.push(arg);
            continue;
        }
        if command_verb && verb_at.is_some_and(|v| index > v) {
            if value_next {
                value_next = false;
                out.push(arg);
                continue;
            }
            if !arg.starts_with('-') {
                // The first positional: the rest is not ours.
                after_double_dash = true;
                out.push(arg);
                continue;
            }
            let name = arg.trim_start_matches('-');
            value_next = !name.contains('=') && TAKES_VALUE.contains(&name);
        }
        let is_consul_long = arg.starts_with('-')
            && !arg.starts_with("--")
            && arg.len() > 2
            && arg[1..].starts_with(|c: char| c.is_ascii_alphabetic());
        if is_consul_long {
            out.push(format!("-{arg}"));
        } else {
            out.push(arg);
        }
    }
    out
}

/// Flags of `lock`, `watch`, `exec` and `event` (and the HTTP options) that take a value,
/// so that `-name foo` is known not to end the flags.
const TAKES_VALUE: &[&str] = &[
    "n",
    "name",
    "timeout",
    "try",
    "monitor-retry",
    "http-addr",
    "token",
    "token-file",
    "datacenter",
    "ca-file",
    "ca-path",
    "client-cert",
    "client-key",
    "tls-server-name",
    "type",
    "key",
    "prefix",
    "service",
    "tag",
    "state",
    "node",
    "wait",
    "wait-repl",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_consul_spelling_only() {
        let args = [
            "kv",
            "put",
            "-cas",
            "-modify-index=716",
            "--flags",
            "3",
            "-",
            "-5",
            "-h",
            "key",
            "--",
            "-literal",
        ];
        let normalized = normalize_consul_flags(args.iter().map(|s| s.to_string()));
        assert_eq!(
            normalized,
            [
                "kv",
                "put",
                "--cas",
                "--modify-index=716",
                "--flags",
                "3",
                "-",
                "-5",
                "-h",
                "key",
                "--",
                "-literal"
            ]
        );
    }

    #[test]
    fn a_command_after_lock_keeps_its_own_flags() {
        let args = [
            "dc-agent",
            "lock",
            "-n=2",
            "-name",
            "x",
            "-verbose",
            "service/leader",
            "my-prog",
            "-verbose",
            "-c",
        ];
        let normalized = normalize_consul_flags(args.iter().map(|s| s.to_string()));
        assert_eq!(
            normalized,
            [
                "dc-agent",
                "lock",
                "--n=2",
                "--name",
                "x",
                "--verbose",
                "service/leader",
                "my-prog",
                "-verbose",
                "-c"
            ]
        );
    }

    #[test]
    fn the_verb_is_found_after_global_flags() {
        let args = [
            "dc-agent",
            "-http-addr",
            "127.0.0.1:8500",
            "watch",
            "-type=key",
            "-key",
            "k",
            "h",
            "-x",
        ];
        let normalized = normalize_consul_flags(args.iter().map(|s| s.to_string()));
        assert_eq!(
            normalized,
            [
                "dc-agent",
                "--http-addr",
                "127.0.0.1:8500",
                "watch",
                "--type=key",
                "--key",
                "k",
                "h",
                "-x"
            ]
        );
    }
}
