//! Limits on manifest input, checked before any YAML parser sees it: a file larger than a
//! limit, or nested deeper than one, is refused at once. The YAML scanner's time grows with the
//! square of the flow nesting depth (a 500 KB file of `{a: {a: …` keeps it busy for about a
//! minute), and no Kubernetes object needs more than a few dozen levels.
//!
//! The depth is found by one linear pass that follows YAML's lexical rules far enough to never
//! count less than a parser would nest: flow brackets outside quoted scalars and comments, plus
//! block levels by indentation. Where it cannot tell (a bracket inside a plain or block scalar),
//! it counts, so it may refuse a strange file but never lets a deep one through.

/// How much input is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputLimits {
    /// Largest file, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of collections (block and flow together).
    pub max_depth: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_bytes: 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// Why input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputRefusal {
    /// The input is larger than the limit.
    #[error(
        "is {} bytes, more than the limit of {limit} bytes (--max-file-bytes): manifests are far smaller; split it or raise the limit",
        bytes
    )]
    TooLarge {
        /// Its size (at least; reading stops past the limit).
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The input nests deeper than the limit.
    #[error(
        "line {line}: nested deeper than the limit of {limit} levels (--max-depth): no Kubernetes object needs that many"
    )]
    TooDeep {
        /// Where the limit was passed, from 1.
        line: usize,
        /// The limit.
        limit: usize,
    },
}

/// Checks `text` against `limits`, in one pass over it.
pub fn check(text: &str, limits: InputLimits) -> Result<(), InputRefusal> {
    if text.len() > limits.max_bytes {
        return Err(InputRefusal::TooLarge {
            bytes: text.len(),
            limit: limits.max_bytes,
        });
    }
    let mut scan = Scan::default();
    for (index, line) in text.split('\n').enumerate() {
        if scan.line(line, limits.max_depth) > limits.max_depth {
            return Err(InputRefusal::TooDeep {
                line: index + 1,
                limit: limits.max_depth,
            });
        }
    }
    Ok(())
}

/// What a quoted scalar that spans lines is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Quote {
    #[default]
    None,
    Single,
    Double,
}

/// The state carried from one line to the next.
#[derive(Debug, Default)]
struct Scan {
    /// Indentations of the open block levels.
    indents: Vec<usize>,
    /// Open flow collections.
    flow: usize,
    quote: Quote,
}

impl Scan {
    /// Scans one line; returns the deepest nesting seen on it, stopping as soon as it passes
    /// `limit`.
    fn line(&mut self, line: &str, limit: usize) -> usize {
        let bytes = line.as_bytes();
        let mut deepest = 0;
        let mut i = 0;
        if self.quote == Quote::None && self.flow == 0 {
            let indent = bytes.iter().take_while(|b| **b == b' ').count();
            let rest = &bytes[indent..];
            let blank = rest.is_empty() || rest[0] == b'#' || rest == b"\r";
            if !blank {
                // Document markers start over.
                if indent == 0 && (rest.starts_with(b"---") || rest.starts_with(b"...")) {
                    self.indents.clear();
                }
                while self.indents.last().is_some_and(|top| *top > indent) {
                    self.indents.pop();
                }
                if self.indents.last().is_none_or(|top| *top < indent) {
                    self.indents.push(indent);
                }
                // `- - - a` nests without indenting.
                let mut j = indent;
                while bytes.get(j) == Some(&b'-') && matches!(bytes.get(j + 1), Some(b' ') | None) {
                    deepest = deepest.max(self.indents.len() + 1 + (j - indent) / 2);
                    j += 2;
                }
            }
        }
        let block = self.indents.len();
        let mut previous = b' ';
        while i < bytes.len() {
            let b = bytes[i];
            match self.quote {
                Quote::Double => {
                    if b == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b == b'"' {
                        self.quote = Quote::None;
                    }
                }
                Quote::Single => {
                    if b == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        self.quote = Quote::None;
                    }
                }
                Quote::None => {
                    let token_start = matches!(previous, b' ' | b'\t' | b'[' | b'{' | b',');
                    match b {
                        b'#' if matches!(previous, b' ' | b'\t') || i == 0 => break,
                        b'"' if token_start
                            || (previous == b':'
                                && self.flow > 0
                                && matches!(
                                    last_solid_before_colon(bytes, i),
                                    b'"' | b']' | b'}'
                                )) =>
                        {
                            self.quote = Quote::Double;
                        }
                        b'\'' if token_start => self.quote = Quote::Single,
                        b'[' | b'{' => {
                            self.flow += 1;
                            deepest = deepest.max(block + self.flow);
                            if deepest > limit {
                                return deepest;
                            }
                        }
                        // In block context a closing bracket is text: never below zero.
                        b']' | b'}' => self.flow = self.flow.saturating_sub(1),
                        _ => {}
                    }
                }
            }
            previous = b;
            i += 1;
        }
        deepest.max(block + self.flow)
    }
}

/// The last non-space character before the `:` just before position `at`.
fn last_solid_before_colon(bytes: &[u8], at: usize) -> u8 {
    bytes[..at.saturating_sub(1)]
        .iter()
        .rev()
        .find(|b| !matches!(b, b' ' | b'\t'))
        .copied()
        .unwrap_or(b' ')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_ok(text: &str, max_depth: usize) -> Result<(), InputRefusal> {
        check(
            text,
            InputLimits {
                max_bytes: usize::MAX,
                max_depth,
            },
        )
    }

    #[test]
    fn ordinary_manifests_pass_and_their_depth_is_counted() {
        let config = "apiVersion: tenantmcp.dev/v1alpha1\nkind: TenantMcpConfig\nmetadata: {name: acme, namespace: tenant-acme, labels: {a: b}}\nspec:\n  tenantId: acme\n  servers:\n    postgres:\n      host: db\n      credentialsSecretRef: {name: pg}\n    mcpServers:\n      - name: search\n        headers:\n          - name: X\n            valueFrom: {name: s, key: k}\n";
        depth_ok(config, 64).unwrap();
        // spec > servers > mcpServers > - > headers > - > valueFrom {…}
        assert!(depth_ok(config, 5).is_err());
        let json =
            r#"{"apiVersion": "v1", "kind": "List", "items": [{"metadata": {"name": "x"}}]}"#;
        // The document itself, then {…}, [ ], {…}, {…}.
        depth_ok(json, 5).unwrap();
        assert!(depth_ok(json, 4).is_err());
    }

    #[test]
    fn brackets_in_quotes_comments_and_block_text_do_not_hide_real_nesting() {
        // Closing brackets inside quotes cannot cancel real ones.
        let hidden = format!("a: {}\n", r#"{b: "}", c: "#.repeat(100));
        assert!(matches!(
            depth_ok(&hidden, 64),
            Err(InputRefusal::TooDeep { line: 1, .. })
        ));
        let json_keys = format!("{}\n", r#"{"k":"}","v":"#.repeat(100));
        assert!(depth_ok(&json_keys, 64).is_err());
        // An apostrophe in a plain word opens no quote.
        let apostrophe = format!("a: don't {}\n", "[".repeat(100));
        assert!(depth_ok(&apostrophe, 64).is_err());
        // Balanced text, commented brackets and quoted brackets are fine.
        depth_ok(
            "note: \"[[[[[[[[\" # {{{{{{{{{{\nother: '{{{{{{{{' \nrule: x}}}}}}\nlast: [1, [2]]\n",
            3,
        )
        .unwrap();
    }

    #[test]
    fn block_nesting_and_sequence_dashes_count() {
        let deep: String = (0..70).map(|i| format!("{}a:\n", "  ".repeat(i))).collect();
        assert!(matches!(
            depth_ok(&deep, 64),
            Err(InputRefusal::TooDeep { line: 65, .. })
        ));
        let dashes = format!("{}x\n", "- ".repeat(70));
        assert!(depth_ok(&dashes, 64).is_err());
    }

    #[test]
    fn size_is_checked_first() {
        let err = check(
            &"a".repeat(11),
            InputLimits {
                max_bytes: 10,
                max_depth: 64,
            },
        )
        .unwrap_err();
        assert_eq!(
            err,
            InputRefusal::TooLarge {
                bytes: 11,
                limit: 10
            }
        );
    }
}
