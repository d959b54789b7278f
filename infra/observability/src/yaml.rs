//! Writing YAML scalars for the template: plain where that is safe, `!Ref`/`!GetAtt`/`!Sub` for `${...}`
//! values, folded blocks for long text.

/// `s` as a plain scalar if it can only be read back as that string, else double-quoted.
pub fn scalar(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c))
        && !["true", "false", "yes", "no", "on", "off", "null", "y", "n"].contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_owned()
    } else {
        quoted(s)
    }
}

/// A double-quoted scalar: JSON's escapes are YAML's.
pub fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// A value written in `!Sub` syntax as the template writes it: `${X}` is `!Ref X`, `${X.Attr}` is
/// `!GetAtt X.Attr`, other text with `${` is a `!Sub`, the rest a string.
pub fn value(s: &str) -> String {
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        if !inner.contains(['$', '{', '}', '!']) {
            return match inner.split_once('.') {
                Some(_) if !inner.starts_with("AWS::") => format!("!GetAtt {inner}"),
                _ => format!("!Ref {inner}"),
            };
        }
    }
    if s.contains("${") {
        format!("!Sub {}", quoted(s))
    } else {
        scalar(s)
    }
}

/// `key: text` as a folded block (`>-`, a `!Sub` if the text has `${`), wrapped to `width` columns, at
/// `indent` spaces; a text a fold would change (line breaks, runs of spaces) is double-quoted instead.
pub fn folded(key: &str, text: &str, indent: usize, width: usize) -> String {
    let pad = " ".repeat(indent);
    let tag = if text.contains("${") { "!Sub " } else { "" };
    if text.is_empty() || text.contains(['\n', '\t']) || text.contains("  ") || text.trim() != text {
        return format!("{pad}{key}: {tag}{}\n", quoted(text));
    }
    let mut out = format!("{pad}{key}: {tag}>-\n");
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && indent + 2 + line.len() + 1 + word.len() > width {
            out.push_str(&format!("{pad}  {line}\n"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&format!("{pad}  {line}\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_are_plain_only_where_yaml_reads_them_back_as_strings() {
        assert_eq!(scalar("AWS/ApiGateway"), "AWS/ApiGateway");
        assert_eq!(scalar("notBreaching"), "notBreaching");
        for s in ["5xx", "$default", "true", "No", "a: b", "x, y", "", "50%", "[a]"] {
            assert_eq!(scalar(s), quoted(s), "{s}");
            let back: String = serde_yaml_ng::from_str(&scalar(s)).unwrap();
            assert_eq!(back, s);
        }
        assert_eq!(quoted("a \"b\"\n"), r#""a \"b\"\n""#);
    }

    #[test]
    fn sub_syntax_becomes_the_intrinsic_the_template_would_use() {
        assert_eq!(value("${HttpApi}"), "!Ref HttpApi");
        assert_eq!(value("${Queue.QueueName}"), "!GetAtt Queue.QueueName");
        assert_eq!(value("${AWS::Region}"), "!Ref AWS::Region");
        assert_eq!(value("${AWS::StackName}-x"), r#"!Sub "${AWS::StackName}-x""#);
        assert_eq!(value("IF(a >= ${Min}, 1, 0)"), r#"!Sub "IF(a >= ${Min}, 1, 0)""#);
        assert_eq!(value("$default"), r#""$default""#);
    }

    #[test]
    fn folded_text_reads_back_as_written() {
        let text = "More than 5% of API requests were answered 5xx: look at the \"request\" lines # not a comment.";
        let yaml = folded("AlarmDescription", text, 6, 40);
        assert!(yaml.starts_with("      AlarmDescription: >-\n        More than"), "{yaml}");
        assert!(yaml.lines().all(|l| l.len() <= 40 || !l.trim().contains(' ')), "{yaml}");
        let back: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back["AlarmDescription"].as_str(), Some(text));
        let sub = folded("D", "after ${Seconds} s", 0, 80);
        assert_eq!(sub, "D: !Sub >-\n  after ${Seconds} s\n");
        for odd in ["two  spaces", " leading", "a\nb", ""] {
            let back: serde_yaml_ng::Value = serde_yaml_ng::from_str(&folded("D", odd, 0, 80)).unwrap();
            assert_eq!(back["D"].as_str(), Some(odd));
        }
    }
}
