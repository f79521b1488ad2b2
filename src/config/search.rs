//! Host names as the system resolver reads them: a relative name (no trailing dot) is looked
//! up as written and under each domain of the resolver's search list (`/etc/resolv.conf`;
//! in a Pod `<namespace>.svc.cluster.local svc.cluster.local cluster.local`), so
//! `kubernetes.default` may reach `kubernetes.default.svc.cluster.local`. The endpoint policy
//! compares names through [`searched_names`], so a denied name is denied under every name the
//! resolver could turn into it. Pure: the search list is handed in.

/// The names the resolver may look `name` up as: `name` itself (lower case, without a
/// trailing dot), then `name.<domain>` for each search domain — unless `name` ends with a dot,
/// which makes it absolute (looked up as written, never searched). Empty labels are dropped
/// from domains as the resolver drops them.
pub fn searched_names(name: &str, search: &[String]) -> Vec<String> {
    let lower = name.to_ascii_lowercase();
    let absolute = lower.ends_with('.');
    let bare = lower.trim_end_matches('.').to_owned();
    let mut names = vec![bare.clone()];
    if absolute || bare.is_empty() {
        return names;
    }
    for domain in search {
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            continue;
        }
        let expanded = format!("{bare}.{domain}");
        if !names.contains(&expanded) {
            names.push(expanded);
        }
    }
    names
}

/// The search list of a resolver configuration in `resolv.conf` syntax: the last `search` (or
/// `domain`) line wins, as in glibc; comments start with `#` or `;`.
pub fn parse_resolv_conf(text: &str) -> Vec<String> {
    let mut search = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if let Some("search" | "domain") = words.next() {
            search = words.map(str::to_owned).collect();
        }
    }
    search
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Vec<String> {
        [
            "tenant-acme.svc.cluster.local",
            "svc.cluster.local",
            "cluster.local",
        ]
        .map(String::from)
        .to_vec()
    }

    #[test]
    fn a_relative_name_is_searched_and_an_absolute_one_is_not() {
        assert_eq!(
            searched_names("Kubernetes.Default", &pod()),
            [
                "kubernetes.default",
                "kubernetes.default.tenant-acme.svc.cluster.local",
                "kubernetes.default.svc.cluster.local",
                "kubernetes.default.cluster.local"
            ]
        );
        assert_eq!(
            searched_names("kubernetes.default.", &pod()),
            ["kubernetes.default"]
        );
        assert_eq!(searched_names("db", &[]), ["db"]);
    }

    #[test]
    fn the_last_search_line_wins_and_comments_are_ignored() {
        let conf = "# generated\nnameserver 10.96.0.10\ndomain example.com\nsearch a.svc.cluster.local svc.cluster.local ; local\noptions ndots:5\n";
        assert_eq!(
            parse_resolv_conf(conf),
            ["a.svc.cluster.local", "svc.cluster.local"]
        );
        assert!(parse_resolv_conf("nameserver 1.1.1.1\n").is_empty());
    }
}
