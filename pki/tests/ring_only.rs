//! Isthmus uses rustls with the ring provider only: no aws-lc (a C/C++ build) anywhere in
//! the dependency graph. Checked on the lockfile, so adding a crate that pulls aws-lc fails.

#[test]
fn the_lockfile_has_no_aws_lc() {
    let lockfile = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let text = std::fs::read_to_string(&lockfile).expect("the workspace has a Cargo.lock");
    let offenders: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .map(|name| name.trim_end_matches('"'))
        .filter(|name| name.starts_with("aws-lc"))
        .collect();
    assert!(
        offenders.is_empty(),
        "Cargo.lock pulls {offenders:?}; select rustls' ring provider"
    );
}
