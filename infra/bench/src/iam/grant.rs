//! What an Allow statement grants, and matching it against a request as IAM does.

use super::Access;

/// One (action, resource) an Allow statement grants, with its condition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// Where it comes from: the statement's Sid, or the policy template's name.
    pub source: String,
    pub action: String,
    pub resource: String,
    /// (operator, key, allowed values).
    pub conditions: Vec<(String, String, Vec<String>)>,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}] {} on {}", self.source, self.action, self.resource)?;
        for (op, key, values) in &self.conditions {
            write!(f, " if {op} {key} {values:?}")?;
        }
        Ok(())
    }
}

impl Grant {
    pub fn allows(&self, access: &Access) -> bool {
        glob(&self.action.to_ascii_lowercase(), &access.action.to_ascii_lowercase())
            && glob(&self.resource, &access.resource)
            && self.conditions.iter().all(|(op, key, values)| match access.context.get(key) {
                // A condition on a key the request does not carry is not met.
                None => false,
                Some(v) => values.iter().any(|allowed| match op.as_str() {
                    "StringLike" => glob(allowed, v),
                    _ => allowed == v,
                }),
            })
    }
}

/// IAM's wildcard match: `*` any run of characters, `?` one.
pub fn glob(pattern: &str, s: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), s.chars().collect());
    let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            pi += 1;
            si += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const USERS: &str = "arn:aws:dynamodb:REGION:ACCOUNT:table/UsersTable";

    #[test]
    fn grants_match_wildcards_and_prefix_conditions() {
        assert!(glob("arn:aws:s3:::B/uploads/*", "arn:aws:s3:::B/uploads/u/x.jpg"));
        assert!(!glob("arn:aws:s3:::B/uploads/*", "arn:aws:s3:::B/outputs/u/x.jpg"));
        assert!(glob("s3:*", "s3:GetObject") && glob("a?c", "abc") && !glob("a?c", "ac"));
        let list = Grant {
            source: "ImagesList".into(),
            action: "s3:ListBucket".into(),
            resource: "arn:aws:s3:::B".into(),
            conditions: vec![("StringLike".into(), "s3:prefix".into(), vec!["uploads/*".into()])],
        };
        let mut access = Access::new("s3:ListBucket", "arn:aws:s3:::B");
        assert!(!list.allows(&access), "a request without the key does not meet the condition");
        access.context.insert("s3:prefix".into(), "uploads/u1/".into());
        assert!(list.allows(&access));
        access.context.insert("s3:prefix".into(), "".into());
        assert!(!list.allows(&access), "the whole bucket is not an allowed prefix");
        let get =
            Grant { source: "x".into(), action: "dynamodb:GetItem".into(), resource: USERS.into(), conditions: vec![] };
        assert!(get.allows(&Access::new("dynamodb:getitem", USERS)), "actions are case-insensitive");
        assert!(!get.allows(&Access::new("dynamodb:GetItem", format!("{USERS}/index/ByUser"))));
    }
}
