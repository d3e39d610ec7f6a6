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
    let mut out = Vec::new();
    let mut after_double_dash = false;
    for (index, arg) in args.into_iter().enumerate() {
        if index == 0 || after_double_dash {
            out.push(arg);
            continue;
        }
        if arg == "--" {
            after_double_dash = true;
            out.push(arg);
            continue;
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
}
